import CellprovCore
import CellprovEnrollmentAPI
import CellprovReporter
import CellprovSerial
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// cellprovd's configuration (`--config FILE`, TOML). Keys and defaults: config/cellprovd.toml.example.
public struct DaemonConfig: Sendable, Equatable {
    public struct Backend: Sendable, Equatable {
        public var url: URL
        public var tokenFile: String?
        public var caFile: String?
        public var clientCertificate: String?
        public var clientKey: String?
    }

    public var stateDirectory: String
    public var udev = true
    /// Static ports; each one's slot key is the path exactly as written.
    public var staticPorts: [String] = []
    public var probeUnknown = false
    public var reprobeInterval: Duration = .seconds(900)
    public var baudRate = 115_200
    /// The vendor port table (udev/ports.tsv); nil: look in the installed locations.
    public var portsTable: String?
    public var logLevel = "info"
    public var backend: Backend?
    public var deviceSerial: String?
    /// `[discovery] modemmanager`: read the modems ModemManager manages (and cellprov has no AT session on)
    /// over D-Bus. docs/udev-and-coexistence.md says exactly what each mode decides.
    public var modemManager: ModemManagerMode = .auto

    /// `[discovery] modemmanager`.
    public enum ModemManagerMode: String, Sendable, Equatable, CaseIterable {
        /// Use ModemManager when it is on the system bus; its absence is normal and logged at debug level.
        case auto
        /// ModemManager is expected: its absence (or an unreachable bus) is logged at error level, and the
        /// client keeps retrying.
        case always
        /// Never talk to ModemManager (no D-Bus connection at all).
        case never
    }

    /// The defaults: a gateway with udev, no static ports, no backend (events stay in the local outbox).
    public init(stateDirectory: String = DaemonConfig.defaultStateDirectory) {
        self.stateDirectory = stateDirectory
    }

    /// systemd's `$STATE_DIRECTORY` when set (StateDirectory=), else /var/lib/cellprov.
    public static var defaultStateDirectory: String {
        if let dir = ProcessInfo.processInfo.environment["STATE_DIRECTORY"], !dir.isEmpty {
            return String(dir.split(separator: ":").first ?? Substring(dir))
        }
        return "/var/lib/cellprov"
    }
}

/// A configuration problem, naming the key (and the line, when known). Exits the daemon before anything starts.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var key: String?
    public var line: Int?
    public var message: String

    public var description: String {
        var where_ = file
        if let line { where_ += ":\(line)" }
        if let key { return "\(where_): \(key): \(message)" }
        return "\(where_): \(message)"
    }
}

extension DaemonConfig {
    /// The schema: every table and key cellprovd knows, with its expected type.
    enum Kind: String { case string, bool, int, stringArray = "array of strings" }

    static let schema: [String: [String: Kind]] = [
        "daemon": ["state_directory": .string, "log_level": .string],
        "discovery": [
            "udev": .bool, "static_ports": .stringArray, "probe_unknown": .bool, "reprobe_interval_seconds": .int,
            "baud_rate": .int, "ports_table": .string, "modemmanager": .string,
        ],
        "backend": [
            "url": .string, "token_file": .string, "ca_file": .string, "client_certificate": .string,
            "client_key": .string,
        ],
        "device": ["serial": .string, "serial_file": .string],
    ]

    /// The first control character TOML does not allow (all but tab, LF and CR), with its 1-based line.
    static func controlCharacter(in text: String) -> (line: Int, scalar: Unicode.Scalar)? {
        var line = 1
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x0A: line += 1
            case 0x09, 0x0D: break
            case 0x00...0x1F, 0x7F: return (line, scalar)
            default: break
            }
        }
        return nil
    }

    /// The line of the first table header whose first key starts with neither a key character nor a quote ("[#]",
    /// "[.]", "[=]", "[[,]]", "[" alone): toml++ fails an assertion on them (found by fuzzing; with NDEBUG, in
    /// release builds, the assertion becomes an assumption, which is worse) instead of reporting a syntax error.
    /// A line starting with "[" inside a multi-line string or array is checked too: such a configuration may be
    /// refused though valid TOML; none of cellprovd's keys takes a multi-line string or nested arrays.
    static func badTableHeader(in text: String) -> Int? {
        // Unicode scalars, not Characters: "[" followed by a combining mark is one Character.
        enum Where { case lineStart, afterBracket, afterSecondBracket, elsewhere }
        var line = 1
        var state = Where.lineStart
        var spaceAfterBracket = false
        for scalar in text.unicodeScalars {
            let v = scalar.value
            if v == 0x0A || v == 0x0D {
                if state == .afterBracket || state == .afterSecondBracket { return line }  // "[" ends the line
                if v == 0x0A { line += 1 }
                state = .lineStart
                continue
            }
            switch state {
            case .lineStart:
                // toml++ skips a byte-order mark and (its idea of) whitespace before a header: so does this check.
                if scalar.properties.isWhitespace || v == 0xFEFF { continue }
                state = v == 0x5B ? .afterBracket : .elsewhere
                spaceAfterBracket = false
            case .afterBracket, .afterSecondBracket:
                if v == 0x20 || v == 0x09 {
                    spaceAfterBracket = true
                } else if v == 0x5B && state == .afterBracket && !spaceAfterBracket {
                    state = .afterSecondBracket
                } else if Self.startsKey(v) {
                    state = .elsewhere
                } else {
                    return line
                }
            case .elsewhere:
                continue
            }
        }
        return state == .afterBracket || state == .afterSecondBracket ? line : nil
    }

    /// The line of the first '}' that follows '[' or ',' (across whitespace, line ends and comments) outside strings
    /// and comments: toml++ fails an assertion in parse_value on it ("x = [}", "x = [1, }", found by fuzzing) instead
    /// of reporting a syntax error. Never valid TOML, so nothing valid is refused.
    static func closingBraceForValue(in text: String) -> Int? {
        let s = Array(text.unicodeScalars)
        var i = 0
        var line = 1
        var expectingValue = false  // after '[' or ',' with only blanks and comments since
        func at(_ k: Int) -> Unicode.Scalar? { k < s.count ? s[k] : nil }
        while i < s.count {
            let c = s[i]
            switch c {
            case "\n":
                line += 1
                i += 1
            case "#":
                while i < s.count, s[i] != "\n" { i += 1 }
            case "\"", "'":
                expectingValue = false
                let multi = at(i + 1) == c && at(i + 2) == c
                i += multi ? 3 : 1
                while i < s.count {
                    if s[i] == "\n" {
                        line += 1
                        if !multi { break }  // an unterminated string: toml++ reports it
                    }
                    if c == "\"" && s[i] == "\\" {
                        i += 2
                        continue
                    }
                    if s[i] == c && (!multi || (at(i + 1) == c && at(i + 2) == c)) {
                        i += multi ? 3 : 1
                        break
                    }
                    i += 1
                }
            case "[", ",":
                expectingValue = true
                i += 1
            case "}" where expectingValue:
                return line
            case " ", "\t", "\r":
                i += 1
            default:
                expectingValue = false
                i += 1
            }
        }
        return nil
    }

    /// What toml++'s parse_table_header may hand to parse_key: a bare key character or a quote, or the ']' of an
    /// empty header (which it reports itself). Non-ASCII is refused too: no table of ours has such a name.
    static func startsKey(_ v: UInt32) -> Bool {
        switch v {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x5F, 0x2D, 0x22, 0x27, 0x5D: true
        default: false
        }
    }

    /// Loads and checks `path`: syntax, unknown keys, types, values, and that every file it names exists.
    public static func load(path: String) throws(ConfigError) -> DaemonConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, message: "cannot read the configuration file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, message: "the configuration file is not UTF-8 text")
        }
        var config = try parse(text, file: path)
        try config.checkFiles(file: path, text: text)
        return config
    }

    /// Parses configuration text: syntax, unknown keys, types and values. No file-system checks.
    public static func parse(_ text: String, file: String = "<config>") throws(ConfigError) -> DaemonConfig {
        // TOML allows no control character but tab and the line ends, and toml++ (behind CTOMLShim) aborts the
        // process on some of them (an assertion on "[\u{1}]", found by fuzzing): refused before it sees them.
        if let (line, scalar) = controlCharacter(in: text) {
            let hex = String(scalar.value, radix: 16, uppercase: true)
            let code = String(repeating: "0", count: 4 - hex.count) + hex
            throw ConfigError(
                file: file, line: line, message: "syntax error: control character U+\(code) is not allowed")
        }
        if let line = badTableHeader(in: text) {
            throw ConfigError(
                file: file, line: line,
                message: "syntax error: a table header must start with a key, as in [discovery]")
        }
        if let line = closingBraceForValue(in: text) {
            throw ConfigError(file: file, line: line, message: "syntax error: '}' where a value is expected")
        }
        let root: ConfigTable
        do {
            root = try ConfigTable(string: text)
        } catch {
            throw ConfigError(file: file, line: error.line, message: "syntax error: \(error.description)")
        }
        let lines = KeyLines(text)
        func fail(_ key: String, _ message: String) -> ConfigError {
            ConfigError(file: file, key: key, line: lines.line(of: key), message: message)
        }

        var config = DaemonConfig()
        for section in root.keys {
            guard let table = root[section]?.table else {
                throw fail(section, "expected a table ([\(section)]); known tables: \(schema.keys.sorted().joined(separator: ", "))")
            }
            guard let keys = schema[section] else {
                throw fail(section, "unknown table; known tables: \(schema.keys.sorted().joined(separator: ", "))")
            }
            for key in table.keys {
                let name = "\(section).\(key)"
                guard let kind = keys[key] else {
                    throw fail(name, "unknown key; known keys in [\(section)]: \(keys.keys.sorted().joined(separator: ", "))")
                }
                let value = table[key]!
                let ok: Bool = switch kind {
                case .string: value.string != nil
                case .bool: value.bool != nil
                case .int: value.int != nil
                case .stringArray: value.array.map { a in a.allSatisfy { $0.string != nil } } ?? false
                }
                guard ok else { throw fail(name, "expected \(kind.rawValue), found \(value.type)") }
            }
        }

        let daemon = root["daemon"]?.table
        let discovery = root["discovery"]?.table
        let backend = root["backend"]?.table
        let device = root["device"]?.table

        if let dir = daemon?["state_directory"]?.string {
            guard dir.hasPrefix("/") else { throw fail("daemon.state_directory", "must be an absolute path") }
            config.stateDirectory = dir
        }
        if let level = daemon?["log_level"]?.string {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(level) else {
                throw fail("daemon.log_level", "must be one of \(levels.joined(separator: ", "))")
            }
            config.logLevel = level
        }
        if let udev = discovery?["udev"]?.bool { config.udev = udev }
        if let unknown = discovery?["probe_unknown"]?.bool { config.probeUnknown = unknown }
        if let ports = discovery?["static_ports"]?.array {
            config.staticPorts = ports.compactMap(\.string)
            for port in config.staticPorts where !port.hasPrefix("/") {
                throw fail("discovery.static_ports", "\"\(port)\" is not an absolute path")
            }
            if Set(config.staticPorts).count != config.staticPorts.count {
                throw fail("discovery.static_ports", "lists a port twice")
            }
        }
        if let seconds = discovery?["reprobe_interval_seconds"]?.int {
            guard (10...604_800).contains(seconds) else {
                throw fail("discovery.reprobe_interval_seconds", "must be between 10 and 604800 seconds")
            }
            config.reprobeInterval = .seconds(seconds)
        }
        if let baud = discovery?["baud_rate"]?.int {
            guard SerialSettings.supportedBaudRates[baud] != nil else {
                let supported = SerialSettings.supportedBaudRates.keys.sorted().map(String.init).joined(separator: ", ")
                throw fail("discovery.baud_rate", "unsupported baud rate; one of \(supported)")
            }
            config.baudRate = baud
        }
        config.portsTable = discovery?["ports_table"]?.string
        if let mode = discovery?["modemmanager"]?.string {
            guard let value = ModemManagerMode(rawValue: mode) else {
                let modes = ModemManagerMode.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
                throw fail("discovery.modemmanager", "must be one of \(modes)")
            }
            config.modemManager = value
        }
        if !config.udev && config.staticPorts.isEmpty && config.modemManager == .never {
            throw fail(
                "discovery.udev",
                "udev is off, no static_ports are given and modemmanager is \"never\": there is nothing to watch")
        }

        // An empty [backend] table (the shipped example: every key commented out) is no backend; a table with
        // keys but no url is a mistake (a token without an address), and says so.
        if let backend, !backend.keys.isEmpty {
            guard let raw = backend["url"]?.string else {
                throw fail("backend", "the [backend] table needs a url (leave the table out to keep events local)")
            }
            guard let url = URL(string: raw) else { throw fail("backend.url", "not a valid URL") }
            switch BackendURL.check(url) {
            case .allowed: break
            case .invalid: throw fail("backend.url", "not a valid URL")
            case .plainHTTPNotLoopback:
                throw fail("backend.url", "plain http is allowed only to loopback addresses; use https")
            case .unsupportedScheme: throw fail("backend.url", "the scheme must be https")
            }
            var b = Backend(url: url)
            b.tokenFile = backend["token_file"]?.string
            b.caFile = backend["ca_file"]?.string
            b.clientCertificate = backend["client_certificate"]?.string
            b.clientKey = backend["client_key"]?.string
            if (b.clientCertificate == nil) != (b.clientKey == nil) {
                throw fail(
                    b.clientCertificate == nil ? "backend.client_key" : "backend.client_certificate",
                    "client_certificate and client_key go together: give both or neither")
            }
            config.backend = b
        }

        let serial = device?["serial"]?.string
        let serialFile = device?["serial_file"]?.string
        if serial != nil && serialFile != nil {
            throw fail("device.serial_file", "give serial or serial_file, not both")
        }
        if let serial {
            guard !serial.trimmingWhitespace().isEmpty else { throw fail("device.serial", "is empty") }
            config.deviceSerial = serial
        }
        return config
    }

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
