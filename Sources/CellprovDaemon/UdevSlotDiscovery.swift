import CellprovCore
import CellprovModem
import CellprovSerial
import CellprovUdev
import FoundationEssentials
import NIOConcurrencyHelpers
import Logging

/// Module slots from udev: every tty and WWAN port is classified (our rules' properties, the port table,
/// ModemManager's hints; a WWAN port's kernel type first), ports are grouped by their USB device (or, for a PCIe
/// module's WWAN ports, their PCI device), and each module's one AT port becomes a slot keyed by the USB device's
/// ID_PATH (or "pci-<address>"). Unknown modem-class ports are AT-probed only when `probe_unknown` is on; QCDM,
/// GPS/NMEA, data, MBIM/QMI and secondary AT ports are never opened. A WWAN AT port is opened like any other:
/// SerialPort finds out from sysfs that it is not a tty.
public final class UdevSlotDiscovery: SlotDiscovery, @unchecked Sendable {
    let config: DaemonConfig
    let logger: Logger
    let udev: Udev
    let table: PortTable
    private let lock = NIOLock()
    private var decisions: [String: PortDecision] = [:]  // devnode -> decision
    private var candidates: [String: PortCandidate] = [:]
    private var announced: [String: ModuleSlot] = [:]  // slot key -> slot
    private var probed: [String: Bool] = [:]  // devnode -> answered AT
    private var probing: Set<String> = []  // devnodes being probed now
    private var leftAlone: Set<String> = []  // slots whose unknown ports were reported as left alone
    private var continuation: AsyncStream<SlotEvent>.Continuation?

    public init(config: DaemonConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        do {
            udev = try Udev()
        } catch {
            throw DiscoveryError(description: "udev: \(error)")
        }
        do {
            let (table, path) = try PortTableFile.load(explicit: config.portsTable)
            self.table = table
            if let path {
                logger.debug("port table loaded", metadata: ["path": "\(path)", "rows": "\(table.rows.count)"])
            } else {
                logger.warning("no port table found; relying on udev properties (install udev/ports.tsv)")
            }
        } catch {
            throw DiscoveryError(description: "\(error)")
        }
    }

    public func enumerate() async throws -> [ModuleSlot] {
        for device in udev.enumeratePorts() { remember(device) }
        let (known, toProbe) = currentSlots()
        lock.withLock { for s in known where announced[s.key] == nil { announced[s.key] = s } }
        probeInBackground(toProbe)
        return known
    }

    public func events() async throws -> AsyncStream<SlotEvent> {
        let monitor: UdevMonitor
        do {
            monitor = try UdevMonitor(udev: udev)
        } catch {
            throw DiscoveryError(description: "udev monitor: \(error)")
        }
        let (stream, continuation) = AsyncStream.makeStream(of: SlotEvent.self)
        lock.withLock { self.continuation = continuation }
        let task = Task {
            for await device in monitor.events {
                for event in await self.handle(device) { continuation.yield(event) }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in
            task.cancel()
            monitor.stop()
        }
        return stream
    }

    /// Forgets the ports whose probe found no modem (one may have been slow to boot) and probes them again.
    public func rescan() async {
        lock.withLock { probed = probed.filter { $0.value } }
        probeInBackground(currentSlots().toProbe)
    }

    // MARK: -

    private func remember(_ device: UdevDevice) {
        guard let devnode = device.devnode else { return }
        let candidate = PortCandidate(device)
        let decision = PortClassifier.classify(candidate, table: table)
        lock.withLock {
            decisions[devnode] = decision
            candidates[devnode] = candidate
        }
    }

    private func handle(_ device: UdevDevice) async -> [SlotEvent] {
        guard let devnode = device.devnode else { return [] }
        if device.action == "remove" {
            let removed: [SlotEvent] = lock.withLock {
                let gone = decisions.removeValue(forKey: devnode)
                candidates[devnode] = nil
                probed[devnode] = nil
                guard let slot = gone?.slot, let known = announced[slot], known.port == devnode else { return [] }
                announced[slot] = nil
                return [.removed(key: slot)]
            }
            for case .removed(let key) in removed {
                logger.info("udev: module's AT port removed", metadata: ["slot": "\(key)", "port": "\(devnode)"])
            }
            return removed
        }
        remember(device)
        let (slots, toProbe) = currentSlots()
        probeInBackground(toProbe)
        return lock.withLock {
            var events: [SlotEvent] = []
            for slot in slots where announced[slot.key] != slot || device.action == "add" && slot.port == devnode {
                announced[slot.key] = slot
                events.append(.added(slot))
            }
            return events
        }
    }

    /// A module without a known AT port whose unknown ports may be probed.
    struct ProbeCandidate {
        var slot: String
        var usbSerial: String?
        var devnodes: [String]
    }

    /// The slots of the modules whose AT port is known now, and the modules to probe (only with probe_unknown).
    private func currentSlots() -> (known: [ModuleSlot], toProbe: [ProbeCandidate]) {
        let all = lock.withLock { Array(decisions.values) }
        var slots: [ModuleSlot] = []
        var toProbe: [ProbeCandidate] = []
        for module in PortClassifier.chooseATPorts(all) {
            if let at = module.atPort {
                slots.append(ModuleSlot(key: module.slot, port: at.devnode, usbSerial: module.usbSerial, origin: .udev))
                continue
            }
            let unknown = module.ports.filter { $0.role == .unknown }.map(\.devnode)
            guard !unknown.isEmpty else { continue }
            guard config.probeUnknown else {
                if lock.withLock({ leftAlone.insert(module.slot).inserted }) {
                    logger.debug("unknown serial ports left alone (probe_unknown = false)", metadata: ["slot": "\(module.slot)"])
                }
                continue
            }
            let eligible = unknown.filter { devnode in
                guard let candidate = lock.withLock({ candidates[devnode] }) else { return false }
                return PortClassifier.shouldProbeUnknown(candidate, probeUnknown: true, table: table)
            }
            if !eligible.isEmpty {
                toProbe.append(ProbeCandidate(slot: module.slot, usbSerial: module.usbSerial, devnodes: eligible))
            }
        }
        return (slots, toProbe)
    }

    /// Probes the candidates without holding up the modules already known (a silent port costs a second); a
    /// port that answers becomes its module's slot, announced as `.added`.
    private func probeInBackground(_ candidates: [ProbeCandidate]) {
        guard !candidates.isEmpty else { return }
        Task {
            for module in candidates {
                for devnode in module.devnodes {
                    let start = lock.withLock { probing.insert(devnode).inserted }
                    guard start else { continue }
                    let answered = await probe(devnode)
                    lock.withLock { _ = probing.remove(devnode) }
                    guard answered else { continue }
                    let slot = ModuleSlot(key: module.slot, port: devnode, usbSerial: module.usbSerial, origin: .udev)
                    let (isNew, continuation) = lock.withLock { () -> (Bool, AsyncStream<SlotEvent>.Continuation?) in
                        // Still present, and not announced with this port already?
                        guard decisions[devnode] != nil, announced[slot.key] != slot else { return (false, nil) }
                        announced[slot.key] = slot
                        return (true, self.continuation)
                    }
                    if isNew { continuation?.yield(.added(slot)) }
                    break
                }
            }
        }
    }

    /// A short AT probe: does the port answer `AT` within a second? Remembered per port until it is removed.
    private func probe(_ devnode: String) async -> Bool {
        if let known = lock.withLock({ probed[devnode] }) { return known }
        var answered = false
        if let port = try? SerialPort.open(devnode, settings: SerialSettings(baudRate: config.baudRate)) {
            let channel = ATChannel(transport: port, logger: logger)
            channel.start()
            for _ in 0..<2 where !answered {
                if let a = try? await channel.send("AT", timeout: .milliseconds(500)), a.result == .ok { answered = true }
            }
            channel.close()
        }
        logger.info(
            "probed an unknown modem-class port", metadata: ["port": "\(devnode)", "answers_at": "\(answered)"])
        lock.withLock { probed[devnode] = answered }
        return answered
    }
}

public struct DiscoveryError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}
