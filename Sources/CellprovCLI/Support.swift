import CellprovCore
import CellprovStore
import CellprovSystemd
import FoundationEssentials
import Logging

/// stderr logging for the CLI: swift-log's stream handler, level from -v. Not CellprovSystemd's handlers: linking
/// libsystemd (and the libraries it loads) into the CLI cost about 1 ms of start-up per probe (measured).
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

/// Uses the daemon's pseudonym key when this user can read it, so references in the CLI's output match the
/// daemon's log lines; otherwise the process keeps a random key (references are then only self-consistent).
enum PseudonymKey {
    static func configure(stateDirectory: String) throws {
        let path = stateDirectory + "/" + PseudonymKeyFile.fileName
        guard FileManager.default.fileExists(atPath: path) else { return }
        guard FileManager.default.isReadableFile(atPath: path) else {
            StandardStream.error.write(
                "cellprov: note: \(path) is not readable by this user; references (ref ...) will not match the daemon's logs (run as root or the cellprov user)\n")
            return
        }
        if let key = try PseudonymKeyFile.load(path: path) {
            Redaction.configure(Pseudonymizer(key: key))
        }
    }
}
