import CellprovCore
import CellprovModem
import FoundationEssentials
import CellprovSystemd
import Logging

/// Receives every observation (the change detector and store hook in here).
public protocol ObservationSink: Sendable {
    /// `presentSlots`: the slots present now. Returns false if the observation could not be recorded.
    func observe(_ observation: Observation, presentSlots: Set<String>) async -> Bool
    /// A fragment for systemd's STATUS= line (outbox depth), if any.
    func statusSummary() async -> String?
    /// A slot appeared or went away (for the live view of `cellprov status`).
    func presence(_ slot: ModuleSlot, present: Bool) async
}

/// The slots the daemon watches: one ``SlotSession`` per module slot, added and removed by discovery.
public actor Supervisor {
    private var sessions: [String: SlotSession] = [:]
    /// Slots read through ModemManager (origin `.modemmanager`): no session, ModemManagerSource observes them.
    private var external: [String: ModuleSlot] = [:]
    private var latest: [String: Observation] = [:]
    private var lastEvent: String?
    private let reader: IdentityReader
    private let interval: Duration
    private let logger: Logger
    private let sink: (any ObservationSink)?
    private let onStatus: @Sendable (String) -> Void

    public init(
        reader: IdentityReader, interval: Duration, logger: Logger, sink: (any ObservationSink)?,
        onStatus: @escaping @Sendable (String) -> Void
    ) {
        self.reader = reader
        self.interval = interval
        self.logger = logger
        self.sink = sink
        self.onStatus = onStatus
    }

    public var slotKeys: [String] { Set(sessions.keys).union(external.keys).sorted() }

    /// Starts watching `slot`, or asks an existing session to read again (udev add of a known module). A slot
    /// whose AT port changed gets a new session.
    public func add(_ slot: ModuleSlot, trigger: ReadTrigger = .start) async {
        if external.removeValue(forKey: slot.key) != nil {
            // cellprov's own AT session wins: it sees the SIM URCs first hand (docs/udev-and-coexistence.md).
            latest[slot.key] = nil
            logger.notice(
                "slot now read over its AT port; ModemManager's view of it is no longer used",
                metadata: ["slot": "\(slot.key)", "port": "\(slot.port)"])
        }
        if let existing = sessions[slot.key] {
            if existing.slot == slot {
                existing.trigger(trigger)
                return
            }
            await existing.stop()
        }
        var meta: Logger.Metadata = ["slot": "\(slot.key)", "port": "\(slot.port)", "origin": "\(slot.origin)"]
        if let serial = slot.usbSerial { meta["usb_serial"] = "\(serial)" }
        meta["MESSAGE_ID"] = "\(CellprovMessageID.modemAppeared.id)"
        logger.notice("modem slot appeared", metadata: meta)
        let session = SlotSession(slot: slot, reader: reader, interval: interval, logger: logger) { [weak self] o in
            await self?.handle(o) ?? true
        }
        sessions[slot.key] = session
        await sink?.presence(slot, present: true)
        await session.start(trigger)
        await publishStatus()
    }

    /// Stops watching `key` (udev remove).
    public func remove(key: String) async {
        guard let session = sessions.removeValue(forKey: key) else { return }
        latest[key] = nil
        await session.stop()
        await sink?.presence(session.slot, present: false)
        lastEvent = "removed \(key)"
        logger.notice("modem slot removed", metadata: ["slot": "\(key)", "MESSAGE_ID": "\(CellprovMessageID.modemRemoved.id)"])
        await publishStatus()
    }

    // MARK: - Slots read through ModemManager

    /// True when an AT session owns the slot `key`, or has one of `ports` (device nodes) open: such a module is
    /// never read through ModemManager as well. A session's port is compared as written and with its symlinks resolved (a static port may be a link such
    /// as /dev/modem; ModemManager names the device node).
    public func hasATSession(key: String, ports: Set<String> = []) -> Bool {
        if sessions[key] != nil { return true }
        guard !ports.isEmpty else { return false }
        return sessions.values.contains { session in
            let port = session.slot.port
            return ports.contains(port) || ports.contains(URL(fileURLWithPath: port).resolvingSymlinksInPath().path)
        }
    }

    /// Starts watching a slot read through ModemManager. False (and nothing done) when an AT session owns it.
    @discardableResult
    public func addExternal(_ slot: ModuleSlot) async -> Bool {
        guard sessions[slot.key] == nil else { return false }
        if external[slot.key] == slot { return true }
        let isNew = external[slot.key] == nil
        external[slot.key] = slot
        guard isNew else {
            await sink?.presence(slot, present: true)  // another port name (ModemManager re-probed): the live view
            return true
        }
        var meta: Logger.Metadata = ["slot": "\(slot.key)", "port": "\(slot.port)", "origin": "\(slot.origin)"]
        if let serial = slot.usbSerial { meta["usb_serial"] = "\(serial)" }
        meta["MESSAGE_ID"] = "\(CellprovMessageID.modemAppeared.id)"
        logger.notice("modem slot appeared", metadata: meta)
        await sink?.presence(slot, present: true)
        await publishStatus()
        return true
    }

    /// An observation of a slot read through ModemManager (ignored if the slot is not, or no longer, one).
    @discardableResult
    public func observeExternal(_ observation: Observation) async -> Bool {
        guard external[observation.slot.key] != nil, sessions[observation.slot.key] == nil else { return true }
        return await handle(observation)
    }

    /// Stops watching a slot read through ModemManager (the modem object went away, or ModemManager did). No
    /// event: its record stays in the store, and the next observation is compared with it.
    public func removeExternal(key: String, reason: String) async {
        guard let slot = external.removeValue(forKey: key) else { return }
        latest[key] = nil
        await sink?.presence(slot, present: false)
        lastEvent = "removed \(key)"
        logger.notice(
            "modem slot removed",
            metadata: ["slot": "\(key)", "reason": "\(reason)", "MESSAGE_ID": "\(CellprovMessageID.modemRemoved.id)"])
        await publishStatus()
    }

    /// The keys of the slots read through ModemManager.
    public var externalKeys: Set<String> { Set(external.keys) }

    /// SIGHUP: every slot reads again.
    public func reloadAll() {
        for session in sessions.values { session.trigger(.reload) }
    }

    public func stopAll() async {
        for session in sessions.values { await session.stop() }
        sessions.removeAll()
        external.removeAll()
    }

    func handle(_ observation: Observation) async -> Bool {
        guard sessions[observation.slot.key] != nil || external[observation.slot.key] != nil else { return true }
        latest[observation.slot.key] = observation
        log(observation)
        lastEvent = observation.report.isValid ? "read \(observation.slot.key)" : "problem on \(observation.slot.key)"
        let recorded = await sink?.observe(observation, presentSlots: Set(sessions.keys).union(external.keys)) ?? true
        await publishStatus()
        return recorded
    }

    private func log(_ o: Observation) {
        let r = o.report
        var meta: Logger.Metadata = ["slot": "\(o.slot.key)", "port": "\(o.slot.port)", "reason": "\(o.reason)"]
        if o.slot.origin == .modemmanager { meta["source"] = "\(ObservationSource.modemmanager.rawValue)" }
        if let imei = r.imei {
            meta["tac"] = "\(imei.tac)"
            meta["imei_ref"] = "\(imei.reference)"
        }
        if let serial = o.slot.usbSerial { meta["usb_serial"] = "\(serial)" }
        meta["commands"] = "\(r.commandCount)"
        if r.isValid && r.problems.isEmpty {
            meta["MESSAGE_ID"] = "\(CellprovMessageID.identityRead.id)"
            logger.info("identity read: \(r.imei!), \(r.imsi!), \(r.iccid!)", metadata: meta)
        } else {
            meta["MESSAGE_ID"] = "\(CellprovMessageID.identityProblem.id)"
            meta["problems"] = "\(r.problems.map(\.code.rawValue).joined(separator: ","))"
            let text = r.problems.map { "\($0.code): \($0.message)" }.joined(separator: "; ")
            logger.warning("identity read with problems: \(r) (\(text))", metadata: meta)
        }
    }

    /// One line for systemd's STATUS=: modems, how many read cleanly, the outbox, the last event.
    public func statusLine() async -> String {
        let total = sessions.count + external.count
        let valid = latest.values.filter(\.report.isValid).count
        var line = "\(total) modem\(total == 1 ? "" : "s"), \(valid) with valid identity"
        if let summary = await sink?.statusSummary() { line += ", \(summary)" }
        if let lastEvent { line += "; last: \(lastEvent)" }
        return line
    }

    /// The latest observation per slot (for status views and tests).
    public func observations() -> [String: Observation] { latest }

    private func publishStatus() async {
        onStatus(await statusLine())
    }
}
