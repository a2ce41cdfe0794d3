import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Chooses and installs cellprov's log handler.
public enum CellprovLogging {
    /// Where records go.
    public enum Backend: Sendable, Equatable {
        /// Structured records through `sd_journal_sendv` (``JournalLogHandler``).
        case journal
        /// Human lines on standard error (``StderrLogHandler``).
        case stderr
    }

    /// Installs the handler for the whole process: journald when our stderr is journald's stream (see
    /// ``preferredBackend``), else standard error. Call once, first thing in `main`: swift-log allows a single
    /// bootstrap per process.
    public static func bootstrap(identifier: String, level: Logger.Level) {
        let backend = preferredBackend
        LoggingSystem.bootstrap(
            { label, provider in
                makeHandler(
                    label: label,
                    identifier: identifier,
                    level: level,
                    backend: backend,
                    metadataProvider: provider
                )
            },
            metadataProvider: nil
        )
    }

    /// A handler for `backend`, for callers that build their own `Logger`s.
    public static func makeHandler(
        label: String,
        identifier: String,
        level: Logger.Level,
        backend: Backend,
        metadataProvider: Logger.MetadataProvider? = nil
    ) -> any LogHandler {
        switch backend {
        case .journal:
            JournalLogHandler(label: label, identifier: identifier, logLevel: level, metadataProvider: metadataProvider)
        case .stderr:
            StderrLogHandler(label: label, logLevel: level, metadataProvider: metadataProvider)
        }
    }

    /// ``Backend/journal`` when `JOURNAL_STREAM` is set and names the device and inode of our standard error, as
    /// systemd.exec(5) documents (a stderr redirected elsewhere by a child's shell keeps the variable but not the
    /// stream), else ``Backend/stderr``.
    public static var preferredBackend: Backend {
        let journalStream = getenv("JOURNAL_STREAM").map { String(cString: $0) }
        return backend(journalStream: journalStream, stderrIdentity: stderrIdentity())
    }

    /// The choice for a given `JOURNAL_STREAM` value and stderr identity (pure, for tests).
    static func backend(journalStream: String?, stderrIdentity: (device: UInt64, inode: UInt64)?) -> Backend {
        guard let journalStream, let expected = parseJournalStream(journalStream), let actual = stderrIdentity,
            expected.device == actual.device, expected.inode == actual.inode
        else { return .stderr }
        return .journal
    }

    /// Parses `JOURNAL_STREAM`'s `"device:inode"` (both decimal).
    static func parseJournalStream(_ value: String) -> (device: UInt64, inode: UInt64)? {
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return nil }
        return (device, inode)
    }

    /// `fstat(2)`'s device and inode, or nil when fd 2 is closed.
    static func stderrIdentity() -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard fstat(2, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }
}
