import CellprovRegistryCore

// How a `postgres://` URL, the PG* environment variables and a password file become one connection, by libpq's
// rules (PostgreSQL documentation, "Connection Strings", "Environment Variables", "The Password File",
// "SSL Support"). Pure: the environment, the operating-system user, the home directory and the files it looks at
// come in as `PostgresSettingsInputs`; RegistryDatabase.swift fills them from the process, PostgresConnect.swift
// connects. Where postgres-nio cannot do what libpq does, docs/decisions.md says so ("PostgreSQL connections the
// libpq way").

/// A PostgreSQL server and database, resolved. `password` is never printed (``description``, ``summary``).
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The socket file (`DIR/.s.PGSQL.PORT`).
        case unixSocket(path: String)
    }

    /// libpq's `sslmode`.
    public enum TLSMode: String, Sendable, Equatable, CaseIterable {
        case disable
        case allow
        case prefer
        case require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    /// The certificates a server's chain must end in: a PEM file (`sslrootcert=FILE`, `~/.postgresql/root.crt`) or
    /// the system's trusted roots (`sslrootcert=system`).
    public enum RootCertificates: Sendable, Equatable {
        case file(String)
        case system
    }

    /// What is checked of the server's certificate.
    public enum TLSCheck: Sendable, Equatable {
        /// Nothing (libpq's `prefer`, `allow`, and `require` without a root certificate).
        case none
        /// The chain, not the name (`verify-ca`, and `require` when a root certificate file exists).
        case chain(RootCertificates)
        /// The chain and the host name (`verify-full`).
        case chainAndHostName(RootCertificates)
    }

    /// One way of connecting. A mode is tried as a list: `prefer` is TLS, then plain; `allow` plain, then TLS.
    public enum TLSAttempt: Sendable, Equatable, CustomStringConvertible {
        case plain
        /// TLS when the server offers it, plain when it answers that it has none; the certificate is not checked.
        case tlsIfOffered
        case tls(TLSCheck)

        public var description: String {
            switch self {
            case .plain: "without TLS"
            case .tlsIfOffered: "with TLS if the server offers it (certificate not checked)"
            case .tls(.none): "with TLS (certificate not checked)"
            case .tls(.chain(let root)): "with TLS, certificate chain checked against \(root.label)"
            case .tls(.chainAndHostName(let root)):
                "with TLS, certificate chain checked against \(root.label) and the host name"
            }
        }
    }

    /// Where each setting came from, for messages.
    public struct Sources: Sendable, Equatable {
        public var host: PostgresSettingSource
        public var port: PostgresSettingSource
        public var user: PostgresSettingSource
        public var database: PostgresSettingSource
        public var password: PostgresSettingSource
        public var sslmode: PostgresSettingSource

        public init(
            host: PostgresSettingSource = .url, port: PostgresSettingSource = .url, user: PostgresSettingSource = .url,
            database: PostgresSettingSource = .url, password: PostgresSettingSource = .url,
            sslmode: PostgresSettingSource = .url
        ) {
            self.host = host
            self.port = port
            self.user = user
            self.database = database
            self.password = password
            self.sslmode = sslmode
        }
    }

    public var endpoint: Endpoint
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode
    /// The ways to connect, in order; the first that works is kept (PostgresConnect.swift).
    public var tlsAttempts: [TLSAttempt]
    /// The name the certificate must carry and SNI sends when it differs from the endpoint's host (`hostaddr`).
    public var tlsServerName: String?
    public var applicationName: String?
    /// `connect_timeout` in seconds (nil: the registry's default).
    public var connectTimeoutSeconds: Int?
    public var sources: Sources
    /// Things the user should know (a password file ignored for its mode), logged as warnings at start.
    public var notes: [String]

    public init(
        endpoint: Endpoint, user: String, password: String?, database: String, tls: TLSMode,
        tlsAttempts: [TLSAttempt]? = nil, tlsServerName: String? = nil, applicationName: String? = nil,
        connectTimeoutSeconds: Int? = nil, sources: Sources = Sources(), notes: [String] = []
    ) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
        self.tlsAttempts = tlsAttempts ?? Self.attempts(tls, endpoint: endpoint, root: nil)
        self.tlsServerName = tlsServerName
        self.applicationName = applicationName
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.sources = sources
        self.notes = notes
    }

    /// The location without its password.
    public var description: String {
        switch endpoint {
        case .tcp(let host, let port): "postgres://\(user)@\(Self.bracketed(host)):\(port)/\(database)"
        case .unixSocket(let path): "postgres://\(user)@/\(database) (socket \(path))"
        }
    }

    /// What will be tried, and where each part came from: the line the registry logs at start and the start of
    /// every connection error. No password, only where one came from.
    public var summary: String {
        var parts: [String] = []
        switch endpoint {
        case .tcp(let host, let port):
            var server = "server \(Self.bracketed(host)):\(port)"
            if let tlsServerName { server += " as \(tlsServerName)" }
            parts.append("\(server) (host \(sources.host), port \(sources.port))")
        case .unixSocket(let path):
            parts.append("socket \(path) (directory \(sources.host), port \(sources.port))")
        }
        parts.append("role \"\(user)\" (\(sources.user))")
        parts.append("database \"\(database)\" (\(sources.database))")
        switch sources.password {
        case .notFound(let why): parts.append("no password (\(why))")
        case .passwordFile: parts.append("password from \(sources.password)")
        default: parts.append("password \(sources.password)")
        }
        if case .unixSocket = endpoint {
            parts.append("no TLS on a unix socket")
        } else {
            parts.append(
                "sslmode \(tls.rawValue) (\(sources.sslmode)): "
                    + tlsAttempts.map(\.description).joined(separator: ", else "))
        }
        return parts.joined(separator: "; ")
    }

    /// The same server, another database (tests create one database per test).
    public func with(database: String) -> PostgresLocation {
        var copy = self
        copy.database = database
        return copy
    }

    /// The attempts a mode makes (libpq's, see ``TLSAttempt``). Unix sockets never use TLS (libpq neither).
    static func attempts(_ mode: TLSMode, endpoint: Endpoint, root: RootCertificates?) -> [TLSAttempt] {
        if case .unixSocket = endpoint { return [.plain] }
        switch mode {
        case .disable: return [.plain]
        case .allow: return [.plain, .tls(.none)]
        case .prefer: return [.tlsIfOffered, .plain]
        case .require: return [.tls(root.map { .chain($0) } ?? .none)]
        case .verifyCA: return [.tls(.chain(root ?? .system))]
        case .verifyFull: return [.tls(.chainAndHostName(root ?? .system))]
        }
    }

    static func bracketed(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }
}

extension PostgresLocation.RootCertificates {
    var label: String {
        switch self {
        case .file(let path): path
        case .system: "the system's trusted roots"
        }
    }
}

/// Where a connection setting came from.
public enum PostgresSettingSource: Sendable, Equatable, CustomStringConvertible {
    case url
    case environment(String)
    case operatingSystemUser
    /// The database named after the user (libpq's default).
    case userName
    /// A built-in default, described ("by default").
    case builtIn(String)
    case passwordFile(path: String, line: Int)
    /// No value: what was looked at.
    case notFound(String)

    public var description: String {
        switch self {
        case .url: "from the URL"
        case .environment(let name): "from \(name)"
        case .operatingSystemUser: "the operating-system user"
        case .userName: "the user name"
        case .builtIn(let what): what
        case .passwordFile(let path, let line): "the password file \(path), line \(line)"
        case .notFound(let why): why
        }
    }
}

/// What resolution reads from outside: the process's environment, user and files. Filled from the process by
/// ``PostgresSettingsInputs/current()``; tests give their own.
public struct PostgresSettingsInputs: Sendable {
    public var environment: [String: String]
    /// The name of the effective user (getpwuid(geteuid())), nil when it has none.
    public var operatingSystemUser: String?
    /// `HOME`, else the user's home directory from the password database.
    public var home: String?
    /// The state of a file (following symbolic links), with its contents when it is a regular file.
    public var file: @Sendable (String) -> PostgresFileState

    public init(
        environment: [String: String], operatingSystemUser: String?, home: String?,
        file: @escaping @Sendable (String) -> PostgresFileState
    ) {
        self.environment = environment
        self.operatingSystemUser = operatingSystemUser
        self.home = home
        self.file = file
    }
}

public enum PostgresFileState: Sendable, Equatable {
    case missing
    case notRegularFile
    case unreadable(String)
    /// `mode`: the permission bits (07777). `contents`: nil when the file could not be read as text.
    case regular(mode: UInt32, contents: String?)
}

/// libpq's connection URI, split into its keywords (percent-decoded). Later values win, so a query parameter
/// overrides the same setting in the host part, as in libpq.
public enum PostgresURI {
    /// The keywords the registry understands.
    static let supported: Set<String> = [
        "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "sslmode", "sslrootcert",
        "application_name", "connect_timeout",
    ]
    /// libpq's other keywords: named as unsupported rather than unknown.
    static let unsupported: Set<String> = [
        "options", "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
        "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "gsslib", "gssdelegation", "sslcert",
        "sslkey", "sslpassword", "sslcertmode", "sslcrl", "sslcrldir", "sslsni", "sslcompression", "sslnegotiation",
        "ssl_min_protocol_version", "ssl_max_protocol_version", "sslkeylogfile", "requirepeer", "require_auth",
        "channel_binding", "krbsrvname", "service", "target_session_attrs", "load_balance_hosts", "client_encoding",
        "scram_client_key", "scram_server_key", "min_protocol_version", "max_protocol_version",
    ]

    public static func parse(_ text: String) throws -> [String: String] {
        let lower = text.lowercased()
        let rest: Substring
        if lower.hasPrefix("postgresql://") {
            rest = text.dropFirst("postgresql://".count)
        } else if lower.hasPrefix("postgres://") {
            rest = text.dropFirst("postgres://".count)
        } else {
            throw RegistryDatabaseURLError("a PostgreSQL URL starts with postgres:// or postgresql://")
        }
        var values: [String: String] = [:]
        var s = rest
        if s.contains("#") { throw RegistryDatabaseURLError("the PostgreSQL URL has a fragment (#…)") }

        // user[:password]@ — an '@' before the first '/' (libpq's rule).
        if let at = s.firstIndex(where: { $0 == "@" || $0 == "/" }), s[at] == "@" {
            let credentials = s[..<at]
            s = s[s.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = try decode(credentials[..<colon], "user name")
                let password = try decode(credentials[credentials.index(after: colon)...], "password")
                if !user.isEmpty { values["user"] = user }
                if !password.isEmpty { values["password"] = password }
            } else {
                let user = try decode(credentials, "user name")
                if !user.isEmpty { values["user"] = user }
            }
        }

        // host[:port][,host[:port]...]
        var hosts: [String] = []
        var ports: [String] = []
        var terminator: Character? = nil
        while true {
            var host: Substring
            if s.first == "[" {
                s = s.dropFirst()
                guard let close = s.firstIndex(of: "]") else {
                    throw RegistryDatabaseURLError("the PostgreSQL URL has '[' without ']' around an IPv6 address")
                }
                host = s[..<close]
                guard !host.isEmpty else { throw RegistryDatabaseURLError("the PostgreSQL URL has an empty '[]'") }
                s = s[s.index(after: close)...]
                if let c = s.first, !":/?,".contains(c) {
                    throw RegistryDatabaseURLError("the PostgreSQL URL has '\(c)' after an IPv6 address")
                }
            } else {
                let end = s.firstIndex(where: { ":/?,".contains($0) }) ?? s.endIndex
                host = s[..<end]
                s = s[end...]
            }
            hosts.append(try decode(host, "host"))
            var port = ""
            if s.first == ":" {
                s = s.dropFirst()
                let end = s.firstIndex(where: { "/?,".contains($0) }) ?? s.endIndex
                port = try decode(s[..<end], "port")
                s = s[end...]
            }
            ports.append(port)
            terminator = s.first
            if terminator == "," {
                s = s.dropFirst()
                continue
            }
            break
        }
        let hostList = hosts.joined(separator: ",")
        let portList = ports.joined(separator: ",")
        if !hostList.isEmpty && hostList != String(repeating: ",", count: hosts.count - 1) {
            values["host"] = hostList
        }
        if !portList.isEmpty && portList != String(repeating: ",", count: ports.count - 1) {
            values["port"] = portList
        }

        // /dbname
        if terminator == "/" {
            s = s.dropFirst()
            let end = s.firstIndex(of: "?") ?? s.endIndex
            let database = try decode(s[..<end], "database name")
            if !database.isEmpty { values["dbname"] = database }
            s = s[end...]
        }

        // ?key=value&key=value
        if s.first == "?" {
            s = s.dropFirst()
            for pair in s.split(separator: "&", omittingEmptySubsequences: true) {
                let parts = pair.split(separator: "=", maxSplits: 2, omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw RegistryDatabaseURLError(
                        parts.count < 2
                            ? "a parameter of the PostgreSQL URL has no '=' (key=value)"
                            : "a parameter of the PostgreSQL URL has more than one '='")
                }
                var key = try decode(parts[0], "parameter name")
                var value = try decode(parts[1], "parameter value")
                if key == "ssl" {
                    // libpq's compatibility with JDBC's ssl=true.
                    guard value == "true" else {
                        throw RegistryDatabaseURLError("the PostgreSQL URL's ssl parameter can only be true")
                    }
                    key = "sslmode"
                    value = "require"
                }
                guard supported.contains(key) else {
                    let name = String(key.prefix(30))
                    if unsupported.contains(key) {
                        throw RegistryDatabaseURLError(
                            "the PostgreSQL URL's parameter '\(name)' is one cellprov-registry does not support")
                    }
                    throw RegistryDatabaseURLError("unknown parameter '\(name)' in the PostgreSQL URL")
                }
                values[key] = value
            }
        } else if !s.isEmpty {
            throw RegistryDatabaseURLError("the PostgreSQL URL has unexpected text after its host")
        }
        return values
    }

    /// libpq's percent-decoding: `%XX` only (a '+' stays a '+'), `%00` refused.
    static func decode(_ text: Substring, _ what: String) throws -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let b = utf8.first {
            utf8 = utf8.dropFirst()
            guard b == UInt8(ascii: "%") else {
                bytes.append(b)
                continue
            }
            guard utf8.count >= 2, let hi = hex(utf8[utf8.startIndex]), let lo = hex(utf8[utf8.startIndex + 1])
            else {
                throw RegistryDatabaseURLError("the PostgreSQL URL's \(what) has a malformed %-escape")
            }
            utf8 = utf8.dropFirst(2)
            let value = hi << 4 | lo
            guard value != 0 else { throw RegistryDatabaseURLError("the PostgreSQL URL's \(what) contains %00") }
            bytes.append(value)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw RegistryDatabaseURLError("the PostgreSQL URL's \(what) is not UTF-8 once decoded")
        }
        return decoded
    }

    static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// libpq's password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`): lines `host:port:database:user:password`,
/// `#` comments, `*` as a whole field matching anything, `\:` and `\\` escapes. The first matching line wins.
public enum PgPassFile {
    /// The password of the first line matching, and that line's number (1-based).
    public static func lookup(_ contents: String, host: String, port: String, database: String, user: String)
        -> (password: String, line: Int)?
    {
        let tokens = [host, port, database, user].map { Array($0.utf8) }
        var number = 0
        for rawLine in contents.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            var line = Array(rawLine)
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if line.isEmpty || line[0] == UInt8(ascii: "#") { continue }
            var index = 0
            var matched = true
            for token in tokens {
                guard let next = field(line, from: index, matches: token) else {
                    matched = false
                    break
                }
                index = next
            }
            guard matched else { continue }
            // The password: up to the next unescaped ':', escapes removed.
            var password: [UInt8] = []
            var i = index
            while i < line.count, line[i] != UInt8(ascii: ":") {
                if line[i] == UInt8(ascii: "\\"), i + 1 < line.count { i += 1 }
                password.append(line[i])
                i += 1
            }
            return (String(decoding: password, as: UTF8.self), number)
        }
        return nil
    }

    /// libpq's pwdfMatchesString: the index just past the field's ':' when the field at `start` matches `token`.
    static func field(_ line: [UInt8], from start: Int, matches token: [UInt8]) -> Int? {
        let colon = UInt8(ascii: ":")
        if start + 1 < line.count, line[start] == UInt8(ascii: "*"), line[start + 1] == colon { return start + 2 }
        var i = start
        var t = 0
        while i < line.count {
            var escaped = false
            if line[i] == UInt8(ascii: "\\") {
                i += 1
                escaped = true
                guard i < line.count else { return nil }
            }
            if line[i] == colon && t == token.count && !escaped { return i + 1 }
            guard t < token.count, line[i] == token[t] else { return nil }
            i += 1
            t += 1
        }
        return nil
    }
}

/// The resolution itself: libpq's precedence for each setting (the URL, then the environment variable, then the
/// default).
public enum PostgresSettings {
    /// libpq's default socket directory as Debian builds it (`pg_config --configure`: DEFAULT_PGSOCKET_DIR).
    public static let defaultSocketDirectory = "/var/run/postgresql"
    public static let defaultPort = 5432
    /// The longest socket path a `sockaddr_un` holds (108 bytes with the terminating NUL).
    static let maxSocketPath = 107

    public static func resolve(url: String, inputs: PostgresSettingsInputs) throws -> PostgresLocation {
        try resolve(PostgresURI.parse(url), inputs: inputs)
    }

    public static func resolve(_ params: [String: String], inputs: PostgresSettingsInputs) throws
        -> PostgresLocation
    {
        /// A URL value shadows the variable even when empty (then the default applies), as in libpq.
        func pick(_ key: String, _ variable: String?) -> (value: String, source: PostgresSettingSource)? {
            if let v = params[key] { return v.isEmpty ? nil : (v, .url) }
            if let variable, let v = inputs.environment[variable], !v.isEmpty { return (v, .environment(variable)) }
            return nil
        }
        func origin(_ source: PostgresSettingSource) -> String {
            switch source {
            case .environment(let name): "(from \(name))"
            default: "(from the URL)"
            }
        }

        // Host, address, port.
        let host = pick("host", "PGHOST")
        let hostaddr = pick("hostaddr", "PGHOSTADDR")
        for setting in [host, hostaddr].compactMap({ $0 }) where setting.value.contains(",") {
            throw RegistryDatabaseURLError(
                "several PostgreSQL hosts \(origin(setting.source)): cellprov-registry connects to one host")
        }
        let portSetting = pick("port", "PGPORT")
        let port: Int
        if let portSetting {
            guard !portSetting.value.contains(",") else {
                throw RegistryDatabaseURLError(
                    "several PostgreSQL ports \(origin(portSetting.source)): cellprov-registry connects to one host")
            }
            guard let p = Int(portSetting.value), (1...65535).contains(p) else {
                throw RegistryDatabaseURLError(
                    "the PostgreSQL port \(origin(portSetting.source)) is not a number from 1 to 65535")
            }
            port = p
        } else {
            port = defaultPort
        }
        let portSource = portSetting?.source ?? .builtIn("by default")

        let endpoint: PostgresLocation.Endpoint
        var hostSource: PostgresSettingSource
        var tlsServerName: String?
        if let hostaddr {
            endpoint = .tcp(host: hostaddr.value, port: port)
            hostSource = hostaddr.source
            if let host, !host.value.hasPrefix("/"), !isIPAddress(host.value) { tlsServerName = host.value }
        } else if let host {
            hostSource = host.source
            if host.value.hasPrefix("/") {
                var dir = host.value
                while dir.count > 1 && dir.hasSuffix("/") { dir.removeLast() }
                let path = (dir == "/" ? "" : dir) + "/.s.PGSQL.\(port)"
                guard path.utf8.count <= maxSocketPath else {
                    throw RegistryDatabaseURLError(
                        "the PostgreSQL socket path \(path) is longer than \(maxSocketPath) bytes")
                }
                endpoint = .unixSocket(path: path)
            } else if host.value.hasPrefix("@") {
                throw RegistryDatabaseURLError(
                    "PostgreSQL host \(origin(host.source)) names an abstract socket (@…): not supported")
            } else {
                endpoint = .tcp(host: host.value, port: port)
            }
        } else {
            endpoint = .unixSocket(path: defaultSocketDirectory + "/.s.PGSQL.\(port)")
            hostSource = .builtIn("by default")
        }

        // User and database.
        let user: String
        let userSource: PostgresSettingSource
        if let u = pick("user", "PGUSER") {
            (user, userSource) = u
        } else if let os = inputs.operatingSystemUser, !os.isEmpty {
            (user, userSource) = (os, .operatingSystemUser)
        } else {
            throw RegistryDatabaseURLError(
                "no PostgreSQL user: none in the URL, PGUSER is unset, and the process's user has no name")
        }
        let (database, databaseSource) = pick("dbname", "PGDATABASE") ?? (user, .userName)

        // TLS.
        let modeSetting = pick("sslmode", "PGSSLMODE")
        let rootSetting = pick("sslrootcert", "PGSSLROOTCERT")
        var mode = PostgresLocation.TLSMode.prefer
        var modeSource = PostgresSettingSource.builtIn("by default")
        if let modeSetting {
            guard let m = PostgresLocation.TLSMode(rawValue: modeSetting.value) else {
                throw RegistryDatabaseURLError(
                    "sslmode \(origin(modeSetting.source)) is not one of "
                        + PostgresLocation.TLSMode.allCases.map(\.rawValue).joined(separator: ", "))
            }
            (mode, modeSource) = (m, modeSetting.source)
        }
        var root: PostgresLocation.RootCertificates?
        let isTCP: Bool
        if case .tcp = endpoint { isTCP = true } else { isTCP = false }
        if rootSetting?.value == "system" {
            // libpq 16: the system's roots only with the name checked.
            if modeSetting == nil {
                (mode, modeSource) = (.verifyFull, .builtIn("as sslrootcert=system requires"))
            } else if mode != .verifyFull && isTCP {
                throw RegistryDatabaseURLError(
                    "sslrootcert=system needs sslmode=verify-full (the system's roots vouch for names, so the name "
                        + "must be checked), not \(mode.rawValue)")
            }
            root = .system
        } else if isTCP && [.require, .verifyCA, .verifyFull].contains(mode) {
            let path: String
            if let rootSetting {
                path = rootSetting.value
            } else if let home = inputs.home {
                path = home + "/.postgresql/root.crt"
            } else {
                path = "~/.postgresql/root.crt"
            }
            if inputs.file(path) != .missing {
                root = .file(path)
            } else if mode != .require {
                throw RegistryDatabaseURLError(
                    "sslmode=\(mode.rawValue) needs the server's root certificate and \(path) does not exist: set "
                        + "sslrootcert=FILE, or sslrootcert=system for the system's trusted roots")
            }
        }
        let attempts = PostgresLocation.attempts(mode, endpoint: endpoint, root: root)

        // Password: the URL, PGPASSWORD, then the password file.
        var notes: [String] = []
        let password: String?
        let passwordSource: PostgresSettingSource
        if let p = pick("password", "PGPASSWORD") {
            (password, passwordSource) = (p.value, p.source)
        } else {
            let fileSetting = pick("passfile", "PGPASSFILE")
            let passHost: String
            if let host {
                passHost = host.value == defaultSocketDirectory ? "localhost" : host.value
            } else {
                passHost = hostaddr?.value ?? "localhost"
            }
            let lookup = passwordFromFile(
                path: fileSetting?.value ?? inputs.home.map { $0 + "/.pgpass" }, named: fileSetting != nil,
                inputs: inputs, host: passHost, port: String(port), database: database, user: user)
            password = lookup.password
            passwordSource = lookup.source
            notes += lookup.notes
        }

        var timeout: Int?
        if let t = pick("connect_timeout", "PGCONNECT_TIMEOUT") {
            guard let seconds = Int(t.value) else {
                throw RegistryDatabaseURLError("connect_timeout \(origin(t.source)) is not a whole number of seconds")
            }
            // libpq: zero or less waits for ever (here: the registry's default), and at least 2 seconds.
            timeout = seconds <= 0 ? nil : max(2, seconds)
        }

        return PostgresLocation(
            endpoint: endpoint, user: user, password: password, database: database, tls: mode,
            tlsAttempts: attempts, tlsServerName: tlsServerName,
            applicationName: pick("application_name", "PGAPPNAME")?.value, connectTimeoutSeconds: timeout,
            sources: .init(
                host: hostSource, port: portSource, user: userSource, database: databaseSource,
                password: passwordSource, sslmode: modeSource),
            notes: notes)
    }

    static func passwordFromFile(
        path: String?, named: Bool, inputs: PostgresSettingsInputs, host: String, port: String, database: String,
        user: String
    ) -> (password: String?, source: PostgresSettingSource, notes: [String]) {
        let before = "none in the URL, PGPASSWORD unset"
        guard let path else {
            return (nil, .notFound("\(before), no home directory for ~/.pgpass"), [])
        }
        switch inputs.file(path) {
        case .missing:
            let notes = named ? ["password file \(path) does not exist"] : []
            return (nil, .notFound("\(before), no password file \(path)"), notes)
        case .notRegularFile:
            let note = "password file \(path) ignored: not a regular file"
            return (nil, .notFound("\(before), \(note)"), [note])
        case .unreadable(let why):
            let note = "password file \(path) ignored: cannot be read (\(why))"
            return (nil, .notFound("\(before), \(note)"), [note])
        case .regular(let mode, let contents):
            if mode & 0o077 != 0 {
                let octal = "0" + String(mode & 0o7777, radix: 8)
                let note =
                    "password file \(path) ignored: its mode \(octal) lets others read it; use chmod 0600 \(path)"
                return (nil, .notFound("\(before), \(note)"), [note])
            }
            guard let contents else {
                let note = "password file \(path) ignored: not text"
                return (nil, .notFound("\(before), \(note)"), [note])
            }
            guard let found = PgPassFile.lookup(contents, host: host, port: port, database: database, user: user) else {
                return (nil, .notFound("\(before), no line for \(host):\(port):\(database):\(user) in \(path)"), [])
            }
            guard !found.password.isEmpty else {
                return (nil, .notFound("\(before), line \(found.line) of \(path) has an empty password"), [])
            }
            return (found.password, .passwordFile(path: path, line: found.line), [])
        }
    }

    /// An IPv4 or IPv6 literal (a name in `host` is what the certificate must carry; an address is checked by
    /// NIOSSL against the certificate's IP addresses).
    static func isIPAddress(_ text: String) -> Bool {
        if text.contains(":") { return text.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." } }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in UInt8(p) != nil && p.allSatisfy(\.isASCII) }
    }
}
