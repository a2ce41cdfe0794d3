import CellprovCore
import Foundation
import Logging

/// stderr logging for the CLI: swift-log's stream handler, level from -v.
enum CLILogging {
    static func bootstrap(verbosity: Int) -> Logger {
        let level: Logger.Level = switch verbosity {
        case 0: .warning
        case 1: .info
        case 2: .debug
        default: .trace
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "cellprov")
    }
}

/// The per-installation pseudonym key, shared with the daemon so references in both logs match.
enum PseudonymKey {
    struct Error: Swift.Error, CustomStringConvertible {
        var description: String
    }

    /// Uses the key in `path` if the file exists; otherwise keeps the process's random key.
    static func configure(fromFileIfPresent path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        guard let data = FileManager.default.contents(atPath: path) else {
            // Present but unreadable (the daemon's key is 0600): references will not match the daemon's.
            return
        }
        guard data.count == Pseudonymizer.keyLength else {
            throw Error(description: "\(path): a pseudonym key must be \(Pseudonymizer.keyLength) bytes")
        }
        Redaction.configure(Pseudonymizer(key: [UInt8](data)))
    }
}
