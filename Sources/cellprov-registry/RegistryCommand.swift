import ArgumentParser
import CellprovCore
import CellprovRegistryAlerts
import CellprovRegistryCore
import CellprovRegistryHTTP
import CellprovRegistryStore
import CellprovSystemd
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL
import ServiceLifecycle

/// `cellprov-registry`: the fleet's enrollment registry (docs/registry.md). Thin: it parses arguments and wires
/// the store, the HTTP layer and logging; the parts live in CellprovRegistryStore and CellprovRegistryHTTP.
@main
struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cellprov-registry",
        abstract: "The fleet's enrollment registry: receives cellprovd's and the factory stations' events.",
        version: "0.1.0",
        subcommands: [Serve.self, DeviceCommand.self, StationCommand.self, OperatorCommand.self]
    )
}

/// `--database URL`, shared by every subcommand.
struct DatabaseOption: ParsableArguments {
    @Option(
        help: """
            sqlite:///ABSOLUTE/PATH, or postgres://[USER[:PASSWORD]@][HOST][:PORT]/DB[?PARAM=VALUE&...] read as \
            libpq reads it: PGHOST, PGUSER, PGPASSWORD, ~/.pgpass and the other PG* variables fill what it leaves \
            out; the role defaults to the operating-system user; sslmode and sslrootcert as in libpq. Peer \
            authentication on this host: postgres:///cellprov?host=/run/postgresql
            """)
    var database: String = Registry.defaultDatabaseURL
}

/// A management command's store: errors to stderr (never stdout, which carries only the token), exit 1.
func openStore(_ url: String, logger: Logger) async throws -> any RegistryStore {
    do {
        return try await RegistryDatabase.open(url: url, logger: logger)
    } catch {
        FileHandle.standardError.write(Data("cellprov-registry: cannot open the database: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// Management commands log warnings and errors only, to stderr.
func managementLogger() -> Logger {
    var logger = Logger(label: "cellprov-registry") { label in StderrLogHandler(label: label, logLevel: .warning) }
    logger.logLevel = .warning
    return logger
}

/// Runs one management step on the store at `database`: the store is closed afterwards, and a failure is printed
/// (`cellprov-registry: ...`) and exits 1.
func withManagementStore<T: Sendable>(
    _ database: String, _ body: @escaping @Sendable (any RegistryStore) async throws -> T
) async throws -> T {
    let store = try await openStore(database, logger: managementLogger())
    do {
        let result = try await body(store)
        await store.close()
        return result
    } catch {
        await store.close()
        FileHandle.standardError.write(Data("cellprov-registry: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// Creates or replaces a credential and prints its token (one line, nothing else on stdout).
func issueToken(
    database: String, kind: TokenKind,
    put: @escaping @Sendable (any RegistryStore, String) async throws -> Void
) async throws {
    let token = Tokens.generate(kind)
    try await withManagementStore(database) { store in try await put(store, Tokens.hash(token)) }
    print(token)
}

struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device", abstract: "Manage device credentials.", subcommands: [Add.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a device (or give it a new token, revoking the old one); prints its bearer token.")
        @Argument(help: "The device serial (as cellprovd's [device] serial reports it).") var serial: String
        @OptionGroup var db: DatabaseOption

        func validate() throws {
            guard !serial.isEmpty, serial.utf8.count <= 128, serial.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw ValidationError("a serial is 1 to 128 printable ASCII characters without blanks")
            }
        }

        func run() async throws {
            let serial = self.serial
            try await issueToken(database: db.database, kind: .device) { store, hash in
                try await store.putDeviceToken(serial: serial, tokenHash: hash, at: Date())
            }
        }
    }
}

struct StationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "station", abstract: "Manage factory station credentials.", subcommands: [Add.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a factory station token (it may post `manufactured` records); prints it.")
        @Argument(help: "The station's name.") var name: String
        @OptionGroup var db: DatabaseOption

        func validate() throws {
            guard !name.isEmpty, name.utf8.count <= 128, !name.contains(where: \.isNewline) else {
                throw ValidationError("a station name is 1 to 128 characters on one line")
            }
        }

        func run() async throws {
            let name = self.name
            try await issueToken(database: db.database, kind: .station) { store, hash in
                try await store.putStationToken(name: name, tokenHash: hash, at: Date())
            }
        }
    }
}

struct OperatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "operator", abstract: "Manage operator credentials.", subcommands: [Add.self, Revoke.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an operator token (viewer or admin); prints it once.")
        @Argument(help: "The operator's name (shown in the audit log).") var name: String
        @Option(help: "viewer or admin") var role: String
        @OptionGroup var db: DatabaseOption

        func validate() throws {
            guard OperatorRole(rawValue: role) != nil else { throw ValidationError("--role is viewer or admin") }
            guard !name.isEmpty, name.utf8.count <= 128, !name.contains(where: \.isNewline) else {
                throw ValidationError("an operator name is 1 to 128 characters on one line")
            }
        }

        func run() async throws {
            let name = self.name
            let role = OperatorRole(rawValue: self.role)!
            try await issueToken(database: db.database, kind: .operator) { store, hash in
                try await store.putOperatorToken(name: name, role: role, tokenHash: hash, at: Date())
            }
        }
    }
}

extension OperatorCommand {
    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke an operator's tokens and end their page sessions (someone who left, a leaked token).",
            discussion: """
                Works while a server runs on the same database: the operator's next request is refused (API: 401; \
                pages: signed out). Written to the audit log. Exit status: 0 revoked; 1 the operator had no valid \
                token; 64 bad arguments.
                """)
        @Argument(help: "The operator's name, as given to `operator add`.") var name: String
        @OptionGroup var db: DatabaseOption

        func run() async throws {
            let name = self.name
            let environment = ProcessInfo.processInfo.environment
            // Who ran the command, for the audit log: the sudo user when there is one, the uid in any case.
            let actor = "cli:" + (environment["SUDO_USER"].map { "\($0) via sudo, " } ?? "") + "uid \(getuid())"
            let revoked = try await withManagementStore(db.database) { store in
                try await store.revokeOperator(name: name, by: actor, at: Date())
            }
            guard revoked else {
                FileHandle.standardError.write(Data("cellprov-registry: operator \(name) has no valid token\n".utf8))
                throw ExitCode(1)
            }
            print("revoked")
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the registry's HTTP server.",
        discussion: "Exit status: 0 stopped (SIGTERM/SIGINT); 64 bad arguments; 78 configuration error; 1 failure.")

    @Option(help: "HOST:PORT to listen on (port 0: any free port, logged).") var listen: String = "127.0.0.1:8443"
    @OptionGroup var db: DatabaseOption
    @Option(help: "Configuration file (TOML), optional.") var config: String?
    @Option(help: "TLS certificate chain (PEM); with --tls-key, serves HTTPS.") var tlsCertificate: String?
    @Option(help: "TLS private key (PEM).") var tlsKey: String?
    @Option(help: "CA (PEM) that signs device client certificates: enables mutual TLS (device serial = subject CN).")
    var tlsClientCa: String?
    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical).") var logLevel: String = "info"

    func validate() throws {
        guard ListenAddress(listen) != nil else { throw ValidationError("--listen is HOST:PORT") }
        guard (tlsCertificate == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-certificate and --tls-key go together")
        }
        guard tlsClientCa == nil || tlsCertificate != nil else {
            throw ValidationError("--tls-client-ca needs --tls-certificate and --tls-key")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level") }
    }

    func run() async throws {
        CellprovLogging.bootstrap(identifier: "cellprov-registry", level: Logger.Level(rawValue: logLevel)!)
        let logger = Logger(label: "cellprov-registry")
        let settings: RegistrySettings
        do {
            settings = try config.map { try RegistrySettings.load(path: $0) } ?? RegistrySettings()
        } catch {
            logger.critical("configuration: \(error)")
            throw ExitCode(78)
        }
        let address = ListenAddress(listen)!

        let store: any RegistryStore
        do {
            store = try await RegistryDatabase.open(url: db.database, logger: logger)
            // Masked identifiers in answers carry references under the registry's own key, shared by every
            // instance on the database, so a reference means the same thing whichever instance printed it.
            Redaction.configure(Pseudonymizer(key: try await store.pseudonymKey()))
        } catch {
            logger.critical("cannot open the database: \(error)")
            throw ExitCode(1)
        }

        // Connection hygiene (docs/security.md): idle and body deadlines, and a cap below the descriptor limit.
        let limits = ConnectionLimits(
            maxConnections: ConnectionLimits.effectiveCap(
                configured: settings.maxConnections, fileLimit: Self.openFileLimit()))
        if limits.maxConnections < settings.maxConnections {
            logger.warning(
                "server.max_connections lowered to \(limits.maxConnections) by the open-file limit (LimitNOFILE)")
        }
        let server: HTTPServerBuilder
        var options = RegistryHTTPOptions(
            tls: tlsCertificate != nil, sessionLifetime: TimeInterval(settings.sessionHours) * 3600)
        options.reconcile = settings.reconcileHook
        options.unitSilentThreshold = TimeInterval(settings.unitSilentDays * 86_400)
        // Alerts out: critical flags to the webhook (when configured), and the periodic unit_silent check.
        let alerter = settings.webhookURL.map { WebhookAlerter(configuration: .init(url: $0), logger: logger) }
        options.onFlagsRaised = { flags in alerter?.enqueue(flags) }
        let silence = SilenceMonitor(
            store: store, threshold: .seconds(settings.unitSilentDays * 86_400), logger: logger,
            onRaised: { flags in alerter?.enqueue(flags) })
        if let tlsCertificate, let tlsKey {
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(tlsCertificate).map { NIOSSLCertificateSource.certificate($0) }
                let key = try NIOSSLPrivateKey(file: tlsKey, format: .pem)
                var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
                if let tlsClientCa {
                    // A presented client certificate must chain to this CA; one without a certificate still connects
                    // (it then needs a token), so devices can move from tokens to certificates one at a time.
                    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(tlsClientCa))
                    tls.certificateVerification = .optionalVerification
                    options.mutualTLS = true
                }
                server = try .tls(.http1(configuration: limits.http1), tlsConfiguration: tls)
            } catch {
                logger.critical("TLS: cannot load the certificate or key: \(error)")
                await store.close()
                throw ExitCode(78)
            }
        } else {
            server = .http1(configuration: limits.http1)
        }

        let router: Router<RegistryRequestContext>
        do {
            router = try await RegistryHTTP.makeRouter(store: store, options: options, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            await store.close()
            throw ExitCode(1)
        }
        var appLogger = logger
        appLogger.logLevel = max(logger.logLevel, .notice)  // Hummingbird's per-request lines stay out
        let app = Application(
            router: router, server: server,
            configuration: .init(
                address: .hostname(address.host, port: address.port), serverName: nil, backlog: 1024,
                availableConnectionsDelegate: limits.availableConnections(logger: logger)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? address.port
                logger.notice(
                    "listening on \(address.hostForDisplay):\(port)",
                    metadata: ["MESSAGE_ID": "\(RegistryMessageID.listening.id)"])
                _ = SystemdNotifier.ready(status: "listening on \(address.hostForDisplay):\(port)")
            },
            logger: appLogger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: app), .init(service: BackgroundTask { await silence.run() }),
        ]
        if let alerter { services.append(.init(service: BackgroundTask { await alerter.run() })) }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            logger.error("server stopped: \(error)")
            _ = SystemdNotifier.stopping()
            await store.close()
            throw ExitCode(1)
        }
        _ = SystemdNotifier.stopping()
        await store.close()
        logger.notice("stopped")
    }
}

extension Serve {
    /// RLIMIT_NOFILE's soft limit (what `LimitNOFILE=` or `prlimit --nofile` set).
    static func openFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return Int(clamping: limit.rlim_cur)  // RLIM_INFINITY (all ones) clamps to Int.max
    }
}

/// A loop that ends when cancelled (the alerter, the silence monitor), run as a service: graceful shutdown
/// cancels it.
struct BackgroundTask: Service {
    let body: @Sendable () async -> Void
    init(_ body: @escaping @Sendable () async -> Void) { self.body = body }
    func run() async throws {
        await cancelWhenGracefulShutdown { await body() }
    }
}

/// `HOST:PORT`, `[IPv6]:PORT`.
struct ListenAddress {
    var host: String
    var port: Int

    init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }

    var hostForDisplay: String { host.contains(":") ? "[\(host)]" : host }
}
