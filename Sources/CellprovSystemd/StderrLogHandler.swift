import CellprovCore
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A plain standard-error handler for when journald is not our stderr: one human line per record,
/// `LEVEL message key=value ...` (no timestamp and no `<priority>` prefix; the supervisor adds its own).
///
/// Metadata is sorted by key; values containing spaces, quotes or `=` are quoted. `MESSAGE_ID` is left out (it is
/// for the journal). Continuation lines of a multi-line message are indented so each record stays recognisable.
public struct StderrLogHandler: LogHandler {
    public let label: String
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata
    public var metadataProvider: Logger.MetadataProvider?

    public init(
        label: String,
        logLevel: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider
    ) {
        self.label = label
        self.logLevel = logLevel
        self.metadata = [:]
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = mergedMetadata(event.metadata)
        let line = Self.format(
            level: event.level,
            message: event.message.description,
            metadata: merged,
            error: event.error
        )
        Self.writeLine(line)
    }

    /// One record as a line, without the trailing newline.
    static func format(
        level: Logger.Level,
        message: String,
        metadata: Logger.Metadata,
        error: (any Error)? = nil
    ) -> String {
        var line = level.rawValue.uppercased()
        line += " "
        line += message.replacingNewlines(with: "\n    ")
        for key in metadata.keys.sorted() where key != CellprovMessageID.metadataKey {
            guard let value = metadata[key] else { continue }
            line += " \(key)=\(quoted(JournalLogHandler.metadataString(value)))"
        }
        if let error {
            line += " error=\(quoted(String(describing: error)))"
        }
        return line
    }

    static func quoted(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }
        guard needsQuotes else { return value }
        var escaped = ""
        for character in value {
            switch character {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r", "\r\n": escaped += "\\r"
            default: escaped.append(character)
            }
        }
        return "\"\(escaped)\""
    }

    /// Writes `line` and a newline to fd 2 in one piece (``StandardStream``).
    static func writeLine(_ line: String) {
        StandardStream.error.write(line + "\n")
    }
}

extension String {
    fileprivate func replacingNewlines(with replacement: String) -> String {
        guard contains(where: \.isNewline) else { return self }
        var out = ""
        for character in self {
            if character.isNewline { out += replacement } else { out.append(character) }
        }
        return out
    }
}

extension LogHandler {
    /// The metadata of one record: the handler's own, then its provider's, then the event's (a later one wins on
    /// the same key), as swift-log's handlers merge them.
    func mergedMetadata(_ eventMetadata: Logger.Metadata?) -> Logger.Metadata {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let eventMetadata { merged.merge(eventMetadata) { _, new in new } }
        return merged
    }
}
