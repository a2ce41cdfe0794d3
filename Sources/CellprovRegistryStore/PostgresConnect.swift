import CellprovRegistryCore
import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO

#if canImport(Glibc)
    import Glibc
#endif

// The edge of PostgresConnectionSettings.swift: the process's environment, user and files in; postgres-nio's
// configurations out; the first connection made by hand (libpq's fallbacks, and an error that says what was tried).

extension PostgresSettingsInputs {
    /// The running process: its environment, its effective user (getpwuid(geteuid())), `HOME` or that user's home
    /// directory, and files as stat(2) and a bounded read see them.
    public static func current() -> PostgresSettingsInputs {
        let environment = ProcessInfo.processInfo.environment
        var userName: String?
        var userHome: String?
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        if getpwuid_r(geteuid(), &entry, &buffer, buffer.count, &result) == 0, result != nil {
            userName = entry.pw_name.map { String(cString: $0) }
            userHome = entry.pw_dir.map { String(cString: $0) }
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? userHome
        return PostgresSettingsInputs(
            environment: environment, operatingSystemUser: userName, home: home, file: Self.fileState)
    }

    /// A password file or certificate is small: more than 1 MiB is refused rather than read.
    static let maxFileSize = 1 << 20

    @Sendable static func fileState(_ path: String) -> PostgresFileState {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return .missing }
            return .unreadable(String(cString: strerror(code)))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return .notRegularFile }
        let mode = UInt32(st.st_mode) & 0o7777
        guard st.st_size <= maxFileSize else { return .unreadable("larger than 1 MiB") }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            return .unreadable(String(cString: strerror(errno)))
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: maxFileSize + 1)) ?? Data()
        return .regular(mode: mode, contents: String(data: data, encoding: .utf8))
    }
}

extension PostgresLocation {
    /// The application name sent when the URL names none (seen in pg_stat_activity).
    static let defaultApplicationName = "cellprov-registry"
    static let defaultConnectTimeout = 10

    /// NIOSSL's configuration for a check: nothing checked, the chain, or the chain and the name.
    static func tlsConfiguration(_ check: TLSCheck) -> TLSConfiguration {
        var config = TLSConfiguration.makeClientConfiguration()
        switch check {
        case .none:
            config.certificateVerification = .none
        case .chain(let root):
            config.trustRoots = root.trustRoots
            config.certificateVerification = .noHostnameVerification
        case .chainAndHostName(let root):
            config.trustRoots = root.trustRoots
            config.certificateVerification = .fullVerification
        }
        return config
    }

    /// postgres-nio's pool configuration for the first of ``tlsAttempts`` (after ``PostgresConnector/connect``,
    /// the one that worked).
    public func clientConfiguration() -> PostgresClient.Configuration {
        var config: PostgresClient.Configuration
        switch endpoint {
        case .unixSocket(let path):
            config = .init(unixSocketPath: path, username: user, password: password, database: database)
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS
            switch tlsAttempts.first ?? .plain {
            case .plain: tls = .disable
            case .tlsIfOffered: tls = .prefer(Self.tlsConfiguration(.none))
            case .tls(let check): tls = .require(Self.tlsConfiguration(check))
            }
            config = .init(
                host: host, port: port, username: user, password: password, database: database, tls: tls)
            config.options.tlsServerName = tlsServerName
        }
        config.options.connectTimeout = .seconds(Int64(connectTimeoutSeconds ?? Self.defaultConnectTimeout))
        config.options.additionalStartupParameters = [
            ("application_name", applicationName ?? Self.defaultApplicationName)
        ]
        return config
    }

    /// One connection's configuration for `attempt` (the certificates loaded now, so a bad file is named).
    func connectionConfiguration(_ attempt: TLSAttempt) throws -> PostgresConnection.Configuration {
        var config: PostgresConnection.Configuration
        switch endpoint {
        case .unixSocket(let path):
            config = .init(unixSocketPath: path, username: user, password: password, database: database)
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS
            switch attempt {
            case .plain:
                tls = .disable
            case .tlsIfOffered:
                tls = .prefer(try NIOSSLContext(configuration: Self.tlsConfiguration(.none)))
            case .tls(let check):
                var tlsConfig = Self.tlsConfiguration(check)
                switch check {
                case .chain(.file(let path)), .chainAndHostName(.file(let path)):
                    tlsConfig.trustRoots = .certificates(try Self.rootCertificates(path))
                default: break
                }
                tls = .require(try NIOSSLContext(configuration: tlsConfig))
            }
            config = .init(
                host: host, port: port, username: user, password: password, database: database, tls: tls)
            config.options.tlsServerName = tlsServerName
        }
        config.options.connectTimeout = .seconds(Int64(connectTimeoutSeconds ?? Self.defaultConnectTimeout))
        config.options.additionalStartupParameters = [
            ("application_name", applicationName ?? Self.defaultApplicationName)
        ]
        return config
    }

    static func rootCertificates(_ path: String) throws -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw RegistryStoreError("the root certificate file \(path) (sslrootcert) cannot be read as PEM: \(error)")
        }
        guard !certificates.isEmpty else {
            throw RegistryStoreError("the root certificate file \(path) (sslrootcert) holds no certificate")
        }
        return certificates
    }
}

extension PostgresLocation.RootCertificates {
    var trustRoots: NIOSSLTrustRoots {
        switch self {
        case .file(let path): .file(path)
        case .system: .default
        }
    }
}

/// The first connection, made by hand before the pool takes over: each of the location's TLS attempts in turn
/// (libpq's `prefer` falls back to plain, `allow` to TLS), so the pool is configured with the one that worked, and
/// a failure says what was tried and what the server answered.
public enum PostgresConnector {
    /// The location with the attempt that worked as its only one, and whether that connection is encrypted (as the
    /// server's pg_stat_ssl says; nil on a unix socket or when the server does not say).
    public static func connect(_ location: PostgresLocation, logger: Logger) async throws
        -> (location: PostgresLocation, encrypted: Bool?)
    {
        var failures: [(attempt: PostgresLocation.TLSAttempt, reason: String)] = []
        for attempt in location.tlsAttempts {
            do {
                let config = try location.connectionConfiguration(attempt)
                let connection = try await PostgresConnection.connect(
                    configuration: config, id: 0, logger: logger)
                var encrypted: Bool?
                if case .tcp = location.endpoint {
                    encrypted = try? await connection.query(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: logger
                    ).collect().first?.decode(Bool.self)
                }
                try? await connection.close()
                var chosen = location
                chosen.tlsAttempts = [attempt]
                return (chosen, encrypted)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                failures.append((attempt, explain(error, location, attempt)))
                // Nobody listening: the other attempt would only fail the same way.
                if !reachedServer(error) { break }
            }
        }
        throw RegistryStoreError(
            scrub(
                "cannot connect to PostgreSQL (\(location.summary)): "
                    + (failures.count == 1
                        ? failures[0].reason : failures.map { "\($0.attempt): \($0.reason)" }.joined(separator: "; ")),
                location))
    }

    /// Whether the error came after the server answered (TLS or authentication), not from reaching it.
    static func reachedServer(_ error: any Error) -> Bool {
        guard let e = error as? PSQLError else { return !(error is RegistryStoreError) }
        if e.code == .connectionError {
            return e.underlying.map { isTLSError($0) } ?? false
        }
        return true
    }

    static func isTLSError(_ error: any Error) -> Bool {
        error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError
    }

    /// What went wrong, in words: the server's message and SQLSTATE, or what about TLS or the password failed.
    static func explain(_ error: any Error, _ location: PostgresLocation, _ attempt: PostgresLocation.TLSAttempt)
        -> String
    {
        guard let e = error as? PSQLError else { return explainUnderlying(error, location, attempt) }
        switch e.code {
        case .server:
            let state = e.serverInfo?[.sqlState] ?? "-"
            var text = "the server answered: \(e.serverInfo?[.message] ?? "an error") (SQLSTATE \(state))"
            if let detail = e.serverInfo?[.detail] { text += " \(detail)" }
            if state == "28P01" { text += "; the password came from \(location.sources.password)" }
            if state == "28000", (e.serverInfo?[.message] ?? "").contains("Peer authentication") {
                text +=
                    "; peer authentication needs the role to match the operating-system user running "
                    + "cellprov-registry (or a pg_ident.conf map)"
            }
            return text
        case .authMechanismRequiresPassword:
            if case .notFound(let why) = location.sources.password {
                return "the server asks for a password and there is none (\(why))"
            }
            return "the server asks for a password and there is none"
        case .sslUnsupported:
            return "the server does not offer TLS (sslmode=\(location.tls.rawValue) requires it)"
        case .unsupportedAuthMechanism:
            return "the server asks for an authentication method postgres-nio does not speak (it speaks trust, "
                + "peer over a unix socket, password, md5 and scram-sha-256)"
        default:
            if let underlying = e.underlying { return explainUnderlying(underlying, location, attempt) }
            return "\(e.code)"
        }
    }

    static func explainUnderlying(
        _ error: any Error, _ location: PostgresLocation, _ attempt: PostgresLocation.TLSAttempt
    ) -> String {
        let text = String(describing: error)
        if let code = errnoCode(in: text) {
            switch (code, location.endpoint) {
            case (ENOENT, .unixSocket(let path)):
                return "no socket \(path): no server listens there (not running, or another port or directory?)"
            case (ECONNREFUSED, .unixSocket(let path)):
                return "connection refused on \(path): the server is not running"
            case (ECONNREFUSED, .tcp(let host, let port)):
                return "connection refused: no server listens on \(PostgresLocation.bracketed(host)):\(port)"
            case (EACCES, .unixSocket(let path)):
                return "permission denied on the socket \(path) (or its directory)"
            default:
                return "cannot connect: \(String(cString: strerror(code))) (\(text))"
            }
        }
        if let e = error as? NIOSSLExtraError, e == .failedToValidateHostname {
            let name: String
            if let server = location.tlsServerName {
                name = server
            } else if case .tcp(let host, _) = location.endpoint {
                name = host
            } else {
                name = "?"
            }
            return "TLS: the server's certificate is not for \(name) (sslmode=verify-full checks the name)"
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            let roots: String
            switch attempt {
            case .tls(.chain(let root)), .tls(.chainAndHostName(let root)): roots = root.label
            default: roots = "the root certificates"
            }
            return "TLS: the server's certificate does not chain to \(roots) (\(text))"
        }
        if isTLSError(error) { return "TLS: \(text)" }
        return text
    }

    /// The errno of a socket error as NIO prints it (`... (errno: 111)`), possibly inside a connection error's list.
    static func errnoCode(in text: String) -> Int32? {
        guard let range = text.range(of: "(errno: ", options: .backwards) else { return nil }
        return Int32(text[range.upperBound...].prefix(while: \.isNumber))
    }

    /// Belt and braces: the password never appears in a message, whatever a library put there.
    static func scrub(_ text: String, _ location: PostgresLocation) -> String {
        guard let password = location.password, password.count >= 4 else { return text }
        return text.replacingOccurrences(of: password, with: "***")
    }
}
