import ArgumentParser
import CellprovCore
import CellprovDaemon
import CellprovStore
import CellprovSystemd
import FoundationEssentials
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// cellprovd: argument parsing and wiring only; the parts live in CellprovDaemon. Run by the multi-call
/// executable (Sources/cellprov-main) when invoked as cellprovd, and by the development `cellprovd` executable.
public struct CellprovDaemonCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "cellprovd",
        abstract: "Watch cellular modules' identities (IMEI, IMSI, ICCID) and report changes.",
        discussion: "Exit status: 0 stopped cleanly; 78 configuration error; 1 failure at start.",
        version: "0.1.0"
    )

    static let defaultConfigPath = "/etc/cellprov/cellprovd.toml"

    @Option(help: "Configuration file (TOML). Without it, \(defaultConfigPath) if present, else the defaults.")
    var config: String?

    @Flag(help: "Check the configuration and exit.")
    var check = false

    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical); overrides the configuration.")
    var logLevel: String?

    public init() {}

    /// What the daemon process sets up before anything else runs: its own executor for Swift concurrency's global
    /// jobs (``DaemonExecutor``: no libdispatch pool monitor, no wake-up while idle). Call first in `main`.
    /// `CELLPROVD_EXECUTOR=default` in the environment keeps Swift's default executor instead: a fallback should a
    /// dependency ever block a task on another task, and the benchmark's A/B comparison (docs/performance.md).
    public static func prepareProcess() {
        if let choice = getenv("CELLPROVD_EXECUTOR"), String(cString: choice) == "default" { return }
        DaemonExecutor.install()
    }

    public func run() async throws {
        let settings: DaemonConfig
        let path = config ?? (FileManager.default.fileExists(atPath: Self.defaultConfigPath) ? Self.defaultConfigPath : nil)
        do {
            settings = try path.map { p throws(ConfigError) in try DaemonConfig.load(path: p) } ?? DaemonConfig()
        } catch {
            StandardStream.error.write("cellprovd: \(error)\n")
            throw ExitCode(78)
        }
        if check {
            print("\(path ?? "defaults"): configuration is valid")
            return
        }
        let levelName = logLevel ?? settings.logLevel
        guard let level = Logger.Level(rawValue: levelName) else {
            StandardStream.error.write("cellprovd: unknown log level \(levelName)\n")
            throw ExitCode(64)
        }
        CellprovLogging.bootstrap(identifier: "cellprovd", level: level)
        let logger = Logger(label: "cellprovd")

        do {
            Redaction.configure(try PseudonymKeyFile.loadOrCreate(in: settings.stateDirectory))
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }

        let discovery: (any SlotDiscovery)? = try makeDiscovery(settings, logger: logger)
        let service = DaemonService(config: settings, logger: logger, discovery: discovery)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: service)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }

    private func makeDiscovery(_ settings: DaemonConfig, logger: Logger) throws -> (any SlotDiscovery)? {
        guard settings.udev else { return nil }
        return try UdevSlotDiscovery(config: settings, logger: logger)
    }
}
