import CellprovCore
import CellprovEnrollmentAPI
import CellprovReporter
import CellprovStore
import CellprovSystemd
import Dispatch
import FoundationEssentials
import Logging
import NIOConcurrencyHelpers

/// The state store while it opens on a thread of its own at start-up, then the store.
///
/// Why: opening the store (SQLite, the state marker, salvage when needed, the live view's reset: a durable
/// write) is the longest step of cellprovd's start that does not need a modem, and reading a modem does not need
/// the store until the observation is committed. Opening it beside udev's enumeration and the first AT commands
/// takes it off the start -> identities path (issue 8; figures in docs/performance.md). Presence changes that
/// come before it is open are kept, in order, and written first; observations wait for it.
public final class StoreOpening: Sendable {
    private enum State {
        case opening(pending: [Presence], waiters: [CheckedContinuation<Void, Never>])
        case open(StateStore)
        case failed(String)
    }

    struct Presence {
        var slot: String
        var port: String
        var present: Bool
    }

    private let state: NIOLockedValueBox<State>
    private let logger: Logger

    /// A store that is open already.
    public init(store: StateStore, logger: Logger) {
        self.logger = logger
        state = NIOLockedValueBox(.open(store))
        Self.clearPresence(store, logger: logger)
    }

    /// Opens the store with `open` on a dispatch queue of its own (a serial queue: no worker of the global
    /// pools, see ``DaemonExecutor``); ``opened()`` gives it, or the error.
    public init(logger: Logger, open: @escaping @Sendable () throws -> StateStore) {
        self.logger = logger
        state = NIOLockedValueBox(.opening(pending: [], waiters: []))
        DispatchQueue(label: "cellprovd.store-open").async { [self] in
            let store: StateStore
            do {
                store = try open()
            } catch {
                let waiters = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
                    guard case .opening(_, let waiters) = s else { return [] }
                    s = .failed("\(error)")
                    return waiters
                }
                for waiter in waiters { waiter.resume() }
                return
            }
            Self.clearPresence(store, logger: logger)
            // Presence changes recorded meanwhile, oldest first; the store is "open" once none is left.
            while true {
                let step = state.withLockedValue { s -> (batch: [Presence], waiters: [CheckedContinuation<Void, Never>]) in
                    guard case .opening(let pending, let waiters) = s else { return ([], []) }
                    if pending.isEmpty {
                        s = .open(store)
                        return ([], waiters)
                    }
                    s = .opening(pending: [], waiters: waiters)
                    return (pending, [])
                }
                if step.batch.isEmpty {
                    for waiter in step.waiters { waiter.resume() }
                    return
                }
                for change in step.batch { Self.write(change, to: store, logger: logger) }
            }
        }
    }

    /// The store, or the reason it could not be opened (thrown): waits while it opens.
    public func opened() async throws -> StateStore {
        await waitUntilSettled()
        switch state.withLockedValue({ $0 }) {
        case .open(let store): return store
        case .failed(let message): throw StoreError(message)
        case .opening: preconditionFailure("settled")
        }
    }

    /// The store, or nil if it could not be opened.
    func store() async -> StateStore? { try? await opened() }

    /// The store if it is open now.
    var current: StateStore? {
        state.withLockedValue { s in
            if case .open(let store) = s { return store }
            return nil
        }
    }

    /// The live view's presence of a slot: written now when the store is open, kept for the opener otherwise.
    func setPresence(slot: String, port: String, present: Bool) {
        let change = Presence(slot: slot, port: port, present: present)
        let store = state.withLockedValue { s -> StateStore? in
            switch s {
            case .open(let store): return store
            case .opening(var pending, let waiters):
                pending.append(change)
                s = .opening(pending: pending, waiters: waiters)
                return nil
            case .failed: return nil
            }
        }
        if let store { Self.write(change, to: store, logger: logger) }
    }

    private func waitUntilSettled() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let settled = state.withLockedValue { s -> Bool in
                guard case .opening(let pending, var waiters) = s else { return true }
                waiters.append(continuation)
                s = .opening(pending: pending, waiters: waiters)
                return false
            }
            if settled { continuation.resume() }
        }
    }

    private static func clearPresence(_ store: StateStore, logger: Logger) {
        do {
            try store.clearPresence()
        } catch {
            logger.warning("cannot reset the live view: \(error)")
        }
    }

    private static func write(_ change: Presence, to store: StateStore, logger: Logger) {
        do {
            try store.setPresence(slot: change.slot, port: change.port, present: change.present)
        } catch {
            logger.warning("cannot record the slot's presence: \(error)", metadata: ["slot": "\(change.slot)"])
        }
    }
}

/// Observations into the state store (change detection and outbox in one transaction), events into the log
/// (redacted) and the reporter woken for delivery.
public final class StoreSink: ObservationSink {
    let opening: StoreOpening
    private let reporterBox: NIOLockedValueBox<Reporter?>
    let logger: Logger
    /// `[metrics] textfile`: told of every presence change and read (it rewrites the file at most once a second).
    let metrics: MetricsTextfile?
    /// `[hawkbit]`: told of every read committed (it pulls the attributes and sends them when they changed).
    private let hawkBitBox = NIOLockedValueBox<HawkBitUpdater?>(nil)

    var reporter: Reporter? { reporterBox.withLockedValue { $0 } }

    public convenience init(store: StateStore, reporter: Reporter?, logger: Logger) {
        self.init(opening: StoreOpening(store: store, logger: logger), reporter: reporter, logger: logger)
    }

    /// A sink over a store that may still be opening; the reporter, which needs the open store, can come later
    /// (``attach(_:)``): events committed before it are in the outbox, which it delivers when it starts.
    public init(opening: StoreOpening, reporter: Reporter? = nil, logger: Logger, metrics: MetricsTextfile? = nil) {
        self.opening = opening
        reporterBox = NIOLockedValueBox(reporter)
        self.logger = logger
        self.metrics = metrics
    }

    public func attach(_ reporter: Reporter?) {
        reporterBox.withLockedValue { $0 = reporter }
    }

    /// The hawkBit updater, once the store is open (it sends what the store holds when it starts).
    public func attach(hawkBit: HawkBitUpdater) {
        hawkBitBox.withLockedValue { $0 = hawkBit }
    }

    public func presence(_ slot: ModuleSlot, present: Bool) async {
        opening.setPresence(slot: slot.key, port: slot.port, present: present)
        metrics?.changed()
    }

    public func observe(_ observation: Observation, presentSlots: Set<String>) async -> Bool {
        // A store that could not be opened stops the daemon (DaemonService): nothing to record meanwhile.
        guard let store = await opening.store() else { return false }
        try? store.recordRead(
            slot: observation.slot.key, port: observation.slot.port, valid: observation.report.isValid,
            problems: observation.report.problems.map(\.code.rawValue), at: observation.observedAt)
        metrics?.observed(slot: observation.slot.key, valid: observation.report.isValid, at: observation.observedAt)
        defer {
            metrics?.changed()
            hawkBitBox.withLockedValue { $0 }?.changed()
        }
        let events: [IdentityEvent]
        do {
            events = try store.commit(observation, presentSlots: presentSlots)
        } catch {
            // A full disk or a failing store: the observation is not lost for good, the next read (re-probe,
            // URC, SIGHUP) brings it again and the change detector compares against the last committed record.
            logger.error(
                "cannot record the observation; reading again in 30 s: \(error)",
                metadata: ["slot": "\(observation.slot.key)"])
            return false
        }
        logger.debug(
            "observation committed", metadata: ["slot": "\(observation.slot.key)", "events": "\(events.count)"])
        for event in events { log(event, observation: observation) }
        if !events.isEmpty { reporter?.wake() }
        return true
    }

    public func statusSummary() async -> String? {
        // Not waiting for a store still opening: the status line is published as slots come (READY follows the
        // open store).
        guard let store = opening.current, let depth = try? store.outboxDepth() else { return nil }
        var text = "outbox \(depth)"
        if depth > 0, reporter == nil { text += " (no backend)" }
        if reporter != nil, (try? store.credentialsRefused()) != nil { text += "; backend refuses our credentials" }
        return text
    }

    private func log(_ event: IdentityEvent, observation: Observation) {
        let r = observation.report
        var meta: Logger.Metadata = [
            "event": "\(event.type.rawValue)", "event_id": "\(event.id.uuidString.lowercased())",
            "slot": "\(event.slot)", "sequence": "\(event.sequence)", "severity": "\(event.severity.rawValue)",
        ]
        if let imei = r.imei {
            meta["tac"] = "\(imei.tac)"
            meta["imei_ref"] = "\(imei.reference)"
        }
        if let serial = event.module.usbSerial { meta["usb_serial"] = "\(serial)" }
        if let source = event.module.source { meta["source"] = "\(source.rawValue)" }
        let id: CellprovMessageID
        let text: String
        switch event.type {
        case .enrolled:
            id = .enrolled
            text = "enrolled: \(event.identity)"
        case .simChanged:
            id = .simChanged
            text = "SIM changed: \(event.previous.map { "\($0)" } ?? "none") -> \(event.identity); re-enrollment"
        case .simRemoved:
            id = .simChanged
            text = "SIM removed: \(event.previous.map { "\($0)" } ?? "unknown")"
        case .simInserted:
            id = .simChanged
            text = "SIM inserted again: \(event.identity)"
        case .profileSwitched:
            id = .profileSwitched
            text = "eSIM profile switched on the same card: \(event.previous.map { "\($0)" } ?? "none") -> \(event.identity)"
        case .simSlotSwitched:
            id = .simSlotSwitched
            text = "active SIM slot switched: \(event.previous.map { "\($0)" } ?? "none") -> \(event.identity)"
        case .profileCloneSuspected:
            id = .profileCloneSuspected
            text = "the same ICCID is read from another eUICC (misread or cloned profile): "
                + "\(event.previous.map { "\($0)" } ?? "none") -> \(event.identity)"
        case .imeiChanged:
            id = .imeiChanged
            let how = switch event.usbSerialChanged {
            case .some(false): "same module (USB serial unchanged): possible tampering"
            case .some(true): "different module (USB serial changed): service swap?"
            case nil: "module without USB serial"
            }
            text = "IMEI changed on this slot: \(event.previous.map { "\($0)" } ?? "?") -> \(event.identity); \(how)"
        case .identityInvalid:
            id = .identityProblem
            text = "invalid identity reported: " + event.problems.map(\.code.rawValue).joined(separator: ", ")
        case .duplicateIMEI:
            id = .duplicateIMEI
            text = "the same IMEI is reported by slot(s) \((event.otherSlots ?? []).joined(separator: ", "))"
        case .firmwareChanged:
            // Firmware revisions are the module's text, not identifiers; the log line goes through the same
            // cleaning as the wire (no control characters, bounded).
            id = .firmwareChanged
            let clean = { (text: String?) in WireText.cleaned(text, maxBytes: 64) ?? "?" }
            text = "firmware changed: \(clean(event.previousRevision)) -> \(clean(event.module.revision))"
        }
        meta["MESSAGE_ID"] = "\(id.id)"
        switch event.severity {
        case .info, .notice: logger.notice("\(text)", metadata: meta)
        case .warning: logger.warning("\(text)", metadata: meta)
        case .critical: logger.critical("\(text)", metadata: meta)
        }
    }
}
