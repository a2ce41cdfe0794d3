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

    /// `[hawkbit]`: keep an Eclipse hawkBit target's attributes current (HawkBitFeed.swift; docs/operations.md,
    /// "hawkBit").
    public struct HawkBit: Sendable, Equatable {
        /// hawkBit's base URL: https, or plain http to loopback (the backend's rule).
        public var url: URL
        /// The tenant. Default: `DEFAULT`, hawkBit's default tenant.
        public var tenant = "DEFAULT"
        /// The target's controller id. Default: the device serial (`[device] serial`, or nil until `serial_file` is
        /// read by ``DaemonConfig/load(path:)``).
        public var controllerID: String?
        /// The target security token, one line, under the backend token file's rule.
        public var tokenFile: String?
        public var caFile: String?
        public var clientCertificate: String?
        public var clientKey: String?
        public var identifiers: Identifiers = .masked

        /// What the attributes show of IMEI, IMSI, ICCID and EID.
        public enum Identifiers: String, Sendable, Equatable, CaseIterable {
            /// The journal's and the registry's text: TAC / MCC-MNC / issuer and the keyed reference.
            case masked
            /// The digits.
            case full
        }
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
    /// `[metrics] textfile`: node_exporter's textfile collector file cellprovd keeps current (MetricsTextfile.swift);
    /// nil: no metrics file.
    public var metricsTextfile: String?
    /// `[hawkbit]`; nil: no hawkBit sink.
    public var hawkBit: HawkBit?

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
        "metrics": ["textfile": .string],
        "hawkbit": [
            "url": .string, "tenant": .string, "controller_id": .string, "token_file": .string, "ca_file": .string,
            "client_certificate": .string, "client_key": .string, "identifiers": .string,
        ],
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
        // TOML allows no control character but tab and the line ends (in strings and comments too): refused here
        // with the character's code and line, which toml++'s own message ("expected ..., saw ...") does not make
        // as plain. Every other malformed text is toml++'s to report: a check of its own that fails becomes a
        // syntax error in CTOMLShim, never an abort or an assumption (docs/decisions.md).
        if let (line, scalar) = controlCharacter(in: text) {
            let hex = String(scalar.value, radix: 16, uppercase: true)
            let code = String(repeating: "0", count: 4 - hex.count) + hex
            throw ConfigError(
                file: file, line: line, message: "syntax error: control character U+\(code) is not allowed")
        }
        let root: ConfigTable
        do {
            root = try ConfigTable(string: text)
        } catch {
            throw ConfigError(
                file: file, line: error.line > 0 ? error.line : nil, message: "syntax error: \(error.description)")
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

        if let path = root["metrics"]?.table?["textfile"]?.string {
            // node_exporter's textfile collector reads only *.prom files; the temporary file beside it is a dot file.
            let name = path.split(separator: "/").last.map(String.init) ?? ""
            guard path.hasPrefix("/"), name.hasSuffix(".prom"), !name.hasPrefix("."), name.count > 5 else {
                throw fail(
                    "metrics.textfile", "must be an absolute path to a file named *.prom (node_exporter reads only those)")
            }
            config.metricsTextfile = path
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

        if let table = root["hawkbit"]?.table, !table.keys.isEmpty {
            config.hawkBit = try parseHawkBit(table, serial: serial, serialFile: serialFile != nil, fail: fail)
        }
        return config
    }

    /// `[hawkbit]`: the URL under the backend's rule, the tenant and controller id as a URL path carries them, the
    /// credentials (a token file or a client certificate), the identifiers' form.
    private static func parseHawkBit(
        _ table: ConfigTable, serial: String?, serialFile: Bool, fail: (String, String) -> ConfigError
    ) throws(ConfigError) -> HawkBit {
        guard let raw = table["url"]?.string else {
            throw fail("hawkbit", "the [hawkbit] table needs a url (leave the table out for no hawkBit)")
        }
        guard let url = URL(string: raw) else { throw fail("hawkbit.url", "not a valid URL") }
        switch BackendURL.check(url) {
        case .allowed: break
        case .invalid: throw fail("hawkbit.url", "not a valid URL")
        case .plainHTTPNotLoopback:
            throw fail("hawkbit.url", "plain http is allowed only to loopback addresses; use https")
        case .unsupportedScheme: throw fail("hawkbit.url", "the scheme must be https")
        }
        guard url.query == nil, url.fragment == nil else {
            throw fail("hawkbit.url", "give hawkBit's base URL, without a query or fragment")
        }
        var h = HawkBit(url: url)
        if let tenant = table["tenant"]?.string {
            if let problem = HawkBitDDI.tenantProblem(tenant) { throw fail("hawkbit.tenant", problem) }
            h.tenant = tenant
        }
        if let id = table["controller_id"]?.string {
            if let problem = HawkBitDDI.controllerIDProblem(id) { throw fail("hawkbit.controller_id", problem) }
            h.controllerID = id
        } else if let serial {
            if let problem = HawkBitDDI.controllerIDProblem(serial) {
                throw fail(
                    "hawkbit.controller_id",
                    "not given, and the device serial cannot be one: it \(problem); set controller_id")
            }
            h.controllerID = serial
        } else if !serialFile {
            throw fail(
                "hawkbit.controller_id",
                "not given and no device serial to default to: set controller_id (the target's id in hawkBit) or "
                    + "[device] serial")
        }
        h.tokenFile = table["token_file"]?.string
        h.caFile = table["ca_file"]?.string
        h.clientCertificate = table["client_certificate"]?.string
        h.clientKey = table["client_key"]?.string
        if (h.clientCertificate == nil) != (h.clientKey == nil) {
            throw fail(
                h.clientCertificate == nil ? "hawkbit.client_key" : "hawkbit.client_certificate",
                "client_certificate and client_key go together: give both or neither")
        }
        if h.tokenFile == nil && h.clientCertificate == nil {
            throw fail(
                "hawkbit.token_file",
                "hawkBit needs the target's security token (token_file) or a client certificate for its "
                    + "certificate-checking proxy (client_certificate and client_key)")
        }
        if let mode = table["identifiers"]?.string {
            guard let value = HawkBit.Identifiers(rawValue: mode) else {
                throw fail("hawkbit.identifiers", "must be \"masked\" or \"full\"")
            }
            h.identifiers = value
        }
        return h
    }
}
