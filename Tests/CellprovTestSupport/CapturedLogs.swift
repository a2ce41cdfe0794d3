import Logging
import NIOConcurrencyHelpers

/// Test kit: a log handler that keeps each message with its level, for the assertions.
public final class CapturedLogs: LogHandler, @unchecked Sendable {
    private let lines = NIOLockedValueBox<[(Logger.Level, String)]>([])
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public init() {}

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        lines.withLockedValue { $0.append((event.level, "\(event.message)")) }
    }

    /// The messages logged at `level`, in order.
    public func messages(_ level: Logger.Level) -> [String] {
        lines.withLockedValue { $0.filter { $0.0 == level }.map(\.1) }
    }
}
