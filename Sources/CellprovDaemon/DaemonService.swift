import CellprovCore
import CellprovModem
import CellprovReporter
import CellprovSerial
import CellprovStore
import CellprovSystemd
import Dispatch
import FoundationEssentials
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Where module slots come from besides the configuration's static ports.
public protocol SlotDiscovery: Sendable {
    /// The modules present now.
    func enumerate() async throws -> [ModuleSlot]
    /// Modules appearing and disappearing from now on, until the task is cancelled.
    func events() async throws -> AsyncStream<SlotEvent>
    /// SIGHUP: look again at what could not be used before (ports whose probe found no modem).
    func rescan() async
}

public enum SlotEvent: Sendable, Equatable {
    case added(ModuleSlot)
    case removed(key: String)
}

/// cellprovd's main service: wires discovery, the slot supervisor, systemd notification and the signals.
public struct DaemonService: Service, CustomStringConvertible {
    public let config: DaemonConfig
    public let logger: Logger
    public let discovery: (any SlotDiscovery)?

    public init(config: DaemonConfig, logger: Logger, discovery: (any SlotDiscovery)?) {
        self.config = config
        self.logger = logger
        self.discovery = discovery
    }

    public var description: String { "cellprovd" }

    public func run() async throws {
        var options = IdentityReadOptions()
        options.serial = SerialSettings(baudRate: config.baudRate)
        let reader = IdentityReader(options: options, logger: logger)
        let logger = self.logger
        let directory = config.stateDirectory
        // Opened beside udev's enumeration and the first reads (StoreOpening); a store that cannot be opened stops
        // the daemon below, before READY, as it did when it was opened first.
        let opening = StoreOpening(logger: logger) {
            try StateStore(directory: directory) { incident in
                let id: CellprovMessageID = incident.kind == .damaged ? .stateDamaged : .stateLost
                logger.critical(
                    "\(incident.message)",
                    metadata: [
                        "MESSAGE_ID": "\(id.id)", "reason": "\(incident.reason.rawValue)",
                        "events_salvaged": "\(incident.eventsSalvaged)", "events_pending": "\(incident.pendingSalvaged)",
                        "events_lost": "\(incident.eventsLost)",
                    ])
            }
        }
        let release = StartupMemory.AfterQuiet(logger: logger)
        let metrics = config.metricsTextfile.map { MetricsTextfile(path: $0, logger: logger) }
        let sink = StoreSink(opening: opening, logger: logger, metrics: metrics)
        let supervisor = Supervisor(
            reader: reader, interval: config.reprobeInterval, logger: logger, sink: sink,
            onStatus: { line in
                _ = SystemdNotifier.status(line)
                release.poke()  // a slot added, read or removed: give the memory back once it is quiet again
            })

        logger.notice(
            "cellprovd starting",
            metadata: [
                "static_ports": "\(config.staticPorts.count)", "udev": "\(config.udev)",
                "modemmanager": "\(config.modemManager.rawValue)",
                "MESSAGE_ID": "\(CellprovMessageID.daemonStarted.id)",
            ])

        for port in config.staticPorts {
            await supervisor.add(ModuleSlot(key: port, port: port, origin: .static))
        }

        try await withThrowingDiscardingTaskGroup { group in
            if let discovery {
                let events = try await discovery.events()  // subscribe before enumerating: no add is lost
                for slot in try await discovery.enumerate() { await supervisor.add(slot) }
                group.addTask {
                    for await event in events {
                        switch event {
                        case .added(let slot): await supervisor.add(slot, trigger: .udevAdd)
                        case .removed(let key): await supervisor.remove(key: key)
                        }
                    }
                }
            }
            let store = try await opening.opened()
            let reporter = try config.backend.map { backend in
                try Reporter(config: try reporterConfiguration(backend), outbox: store, logger: logger) { _, outcome in
                    metrics?.delivered(outcome)
                }
            }
            if let metrics {
                metrics.attach(store)
                logger.notice(
                    "metrics file: \(metrics.path) (node_exporter textfile, rewritten on change, at most once a second)")
            }
            let hawkBit = try config.hawkBit.map { h in
                try HawkBitUpdater(
                    config: try h.updaterConfiguration(deviceSerial: config.deviceSerial), logger: logger,
                    attributes: { try HawkBitAttributes.current(store, identifiers: h.identifiers) })
            }
            if let hawkBit, let h = config.hawkBit {
                sink.attach(hawkBit: hawkBit)
                group.addTask { await hawkBit.run() }
                logger.notice(
                    """
                    hawkBit: keeping target \(h.controllerID ?? config.deviceSerial ?? "") (tenant \(h.tenant)) \
                    attributes current, identifiers \(h.identifiers.rawValue)
                    """)
            }
            if let reporter {
                sink.attach(reporter)
                group.addTask { await reporter.run() }
                reporter.wake()  // deliver what an earlier run left in the outbox, and what the first reads added
            } else {
                logger.notice("no backend url configured: events stay in the local outbox (cellprov events)")
            }
            if config.modemManager != .never {
                // After udev's enumeration: the modules cellprov reads over AT have their sessions already.
                let source = ModemManagerSource(mode: config.modemManager, supervisor: supervisor, logger: logger)
                group.addTask { await source.run() }
            }
            _ = SystemdNotifier.ready(status: await supervisor.statusLine())
            release.poke()

            if let interval = SystemdNotifier.watchdogInterval {
                group.addTask {
                    while !Task.isCancelled {
                        _ = SystemdNotifier.watchdog()
                        try? await Task.sleep(for: interval)
                    }
                }
            }

            let hangups = SignalStream(SIGHUP)
            group.addTask {
                for await _ in hangups.stream {
                    logger.notice("SIGHUP: reading every module again")
                    if let reporter, let backend = config.backend {
                        // The credentials may have been renewed after the backend refused them.
                        do {
                            try await reporter.reload(try reporterConfiguration(backend))
                            logger.notice("SIGHUP: backend credentials (token file, certificates) read again")
                        } catch {
                            logger.error(
                                "SIGHUP: cannot read the backend credentials again; keeping the old ones: \(error)",
                                metadata: ["MESSAGE_ID": "\(CellprovMessageID.configError.id)"])
                        }
                    }
                    if let hawkBit, let h = config.hawkBit {
                        do {
                            try await hawkBit.reload(try h.updaterConfiguration(deviceSerial: config.deviceSerial))
                            logger.notice("SIGHUP: hawkBit credentials read again")
                        } catch {
                            logger.error(
                                "SIGHUP: cannot read the hawkBit credentials again; keeping the old ones: \(error)",
                                metadata: ["MESSAGE_ID": "\(CellprovMessageID.configError.id)"])
                        }
                    }
                    reporter?.wake()  // an event requeued with `cellprov events --requeue`
                    metrics?.changed()
                    await supervisor.reloadAll()
                    await discovery?.rescan()
                }
            }

            try? await gracefulShutdown()
            _ = SystemdNotifier.stopping()
            logger.notice("cellprovd stopping", metadata: ["MESSAGE_ID": "\(CellprovMessageID.daemonStopping.id)"])
            hangups.cancel()
            release.cancel()
            await supervisor.stopAll()
            group.cancelAll()
        }
    }
}

extension DaemonService {
    /// The reporter's configuration, with the token read under ``TokenFile``'s rule: at start and on SIGHUP alike.
    func reporterConfiguration(_ backend: DaemonConfig.Backend) throws -> ReporterConfiguration {
        let token = try backend.tokenFile.map { path throws(ReporterError) in try TokenFile.read(path: path) }
        return ReporterConfiguration(
            url: backend.url, token: token, caFile: backend.caFile, clientCertificate: backend.clientCertificate,
            clientKey: backend.clientKey, deviceSerial: config.deviceSerial)
    }
}

/// A POSIX signal delivered as an async stream (a dispatch signal source; the default action is ignored).
final class SignalStream: Sendable {
    let stream: AsyncStream<Void>
    private nonisolated(unsafe) let source: DispatchSourceSignal

    init(_ signo: Int32) {
        signal(signo, SIG_IGN)
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.stream = stream
        source = DispatchSource.makeSignalSource(signal: signo, queue: DaemonExecutor.queue)
        source.setEventHandler { continuation.yield() }
        source.setCancelHandler { continuation.finish() }
        source.resume()
    }

    func cancel() { source.cancel() }
}
