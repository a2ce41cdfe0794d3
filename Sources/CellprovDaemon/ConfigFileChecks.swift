import CellprovCore
import CellprovReporter
import FoundationEssentials

// The configuration's checks against the file system (``DaemonConfig/load(path:)`` runs them after parsing): every
// file it names is there and readable, the token files follow ``TokenFile``'s rule, `serial_file` is read; errors
// name the key and its line (``KeyLines``).
extension DaemonConfig {
    /// Checks that every file the configuration names is there (and the token file is private); reads
    /// `serial_file`.
    mutating func checkFiles(file: String, text: String) throws(ConfigError) {
        let lines = KeyLines(text)
        func fail(_ key: String, _ message: String) -> ConfigError {
            ConfigError(file: file, key: key, line: lines.line(of: key), message: message)
        }
        let fm = FileManager.default
        if let b = backend {
            let files: [(String, String?)] = [
                ("backend.token_file", b.tokenFile), ("backend.ca_file", b.caFile),
                ("backend.client_certificate", b.clientCertificate), ("backend.client_key", b.clientKey),
            ]
            for case let (key, path?) in files {
                guard fm.isReadableFile(atPath: path) else { throw fail(key, "\(path): no such readable file") }
            }
            // The token file's rule (``TokenFile``: 0600, or 0640 root:cellprov as the example says; one token on
            // one line), the same the reporter applies when it reads the file at start and on SIGHUP.
            if let token = b.tokenFile {
                do {
                    _ = try TokenFile.read(path: token)
                } catch {
                    throw fail("backend.token_file", error.description)
                }
            }
        }
        let device = (try? ConfigTable(string: text))?["device"]?.table
        if let serialFile = device?["serial_file"]?.string {
            guard let data = fm.contents(atPath: serialFile) else {
                throw fail("device.serial_file", "\(serialFile): no such readable file")
            }
            let first = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first
            guard let serial = first.map({ $0.trimmingWhitespace() }), !serial.isEmpty else {
                throw fail("device.serial_file", "\(serialFile) is empty")
            }
            deviceSerial = serial
        }
        if let h = hawkBit {
            let files: [(String, String?)] = [
                ("hawkbit.token_file", h.tokenFile), ("hawkbit.ca_file", h.caFile),
                ("hawkbit.client_certificate", h.clientCertificate), ("hawkbit.client_key", h.clientKey),
            ]
            for case let (key, path?) in files {
                guard fm.isReadableFile(atPath: path) else { throw fail(key, "\(path): no such readable file") }
            }
            if let token = h.tokenFile {
                do {
                    _ = try TokenFile.read(path: token)
                } catch {
                    throw fail("hawkbit.token_file", error.description)
                }
            }
            if h.controllerID == nil, let serial = deviceSerial {
                if let problem = HawkBitDDI.controllerIDProblem(serial) {
                    throw fail(
                        "hawkbit.controller_id",
                        "not given, and the device serial (serial_file) cannot be one: it \(problem); set controller_id")
                }
                hawkBit?.controllerID = serial
            }
        }
        if let table = portsTable, !fm.isReadableFile(atPath: table) {
            throw fail("discovery.ports_table", "\(table): no such readable file")
        }
    }
}

/// Finds the line of `table.key` (or `[table]`) in TOML text, for error messages; toml++ (``ConfigTable``) gives
/// positions only for syntax errors.
struct KeyLines {
    private var positions: [String: Int] = [:]

    init(_ text: String) {
        var table = ""
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingWhitespace()
            if line.hasPrefix("["), let end = line.firstIndex(of: "]") {
                table = line[line.index(after: line.startIndex)..<end].trimmingWhitespace()
                if positions[table] == nil { positions[table] = index + 1 }
            } else if let eq = line.firstIndex(of: "="), !line.hasPrefix("#") {
                let key = line[..<eq].trimmingWhitespace().trimmingScalars {
                    $0 == "\"" || $0 == "'"
                }
                let full = table.isEmpty ? key : "\(table).\(key)"
                if positions[full] == nil { positions[full] = index + 1 }
            }
        }
    }

    func line(of key: String) -> Int? { positions[key] }
}
