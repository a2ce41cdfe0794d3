import CellprovCore
import CellprovModem
import CellprovSerial
import CellprovUdev
import Foundation
import Logging

/// Module slots from udev: every tty is classified (our rules' properties, the port table, ModemManager's hints),
/// ports are grouped by their USB device, and each module's one AT port becomes a slot keyed by the USB device's
/// ID_PATH. Unknown modem-class ports are AT-probed only when `probe_unknown` is on; QCDM, GPS/NMEA, data and
/// secondary AT ports are never opened.
public final class UdevSlotDiscovery: SlotDiscovery, @unchecked Sendable {
    let config: DaemonConfig
    let logger: Logger
    let udev: Udev
    let table: PortTable
    private let lock = NSLock()
    private var decisions: [String: PortDecision] = [:]  // devnode -> decision
    private var candidates: [String: PortCandidate] = [:]
    private var announced: [String: ModuleSlot] = [:]  // slot key -> slot
    private var probed: [String: Bool] = [:]  // devnode -> answered AT

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
        for device in udev.enumerateTTYs() { remember(device) }
        return await currentSlots()
    }

    public func events() async throws -> AsyncStream<SlotEvent> {
        let monitor: UdevMonitor
        do {
            monitor = try UdevMonitor(udev: udev)
        } catch {
            throw DiscoveryError(description: "udev monitor: \(error)")
        }
        let (stream, continuation) = AsyncStream.makeStream(of: SlotEvent.self)
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
        let slots = await currentSlots()
        return lock.withLock {
            var events: [SlotEvent] = []
            for slot in slots where announced[slot.key] != slot || device.action == "add" && slot.port == devnode {
                announced[slot.key] = slot
                events.append(.added(slot))
            }
            return events
        }
    }

    /// The slots of the modules known now, probing unknown ports once if the operator opted in.
    private func currentSlots() async -> [ModuleSlot] {
        let all = lock.withLock { Array(decisions.values) }
        var slots: [ModuleSlot] = []
        for module in PortClassifier.chooseATPorts(all) {
            if let at = module.atPort {
                slots.append(ModuleSlot(key: module.slot, port: at.devnode, usbSerial: module.usbSerial, origin: .udev))
                continue
            }
            guard config.probeUnknown else {
                if module.ports.contains(where: { $0.role == .unknown }) {
                    logger.debug("unknown serial ports left alone (probe_unknown = false)", metadata: ["slot": "\(module.slot)"])
                }
                continue
            }
            for port in module.ports where port.role == .unknown {
                guard let candidate = lock.withLock({ candidates[port.devnode] }),
                    PortClassifier.shouldProbeUnknown(candidate, probeUnknown: true, table: table)
                else { continue }
                if await probe(port.devnode) {
                    slots.append(ModuleSlot(key: module.slot, port: port.devnode, usbSerial: module.usbSerial, origin: .udev))
                    break
                }
            }
        }
        lock.withLock { for s in slots where announced[s.key] == nil { announced[s.key] = s } }
        return slots
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
