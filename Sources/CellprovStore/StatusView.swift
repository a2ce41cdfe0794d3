import CellprovCore
import FoundationEssentials

/// One read of the state store as `cellprov status --json`, `cellprov inventory` and cellprovd's metrics file
/// (`[metrics] textfile`) show it: the slots (record, live view, last event), the outbox and the last state loss.
/// Read through the store's public views only; what each slot's read status, SIM state and hot-swap finding mean
/// is decided here, once, so that the three outputs agree.
public struct StatusView: Sendable {
    public struct Slot: Sendable {
        public var slot: String
        /// The slot's remembered identity; nil while no identity has been recorded.
        public var record: SlotRecord?
        /// What the daemon saw at its last look (presence, last read); nil when the live view has no row.
        public var live: StateStore.LiveSlot?
        /// The slot's newest event (nil: none, or not read: ``StatusView/init(store:lastEvents:)``).
        public var lastEvent: StoredEvent?

        public init(
            slot: String, record: SlotRecord? = nil, live: StateStore.LiveSlot? = nil, lastEvent: StoredEvent? = nil
        ) {
            self.slot = slot
            self.record = record
            self.live = live
            self.lastEvent = lastEvent
        }

        /// Problem codes of the last read (none when never read).
        public var problemCodes: [String] { live?.problems ?? [] }

        /// The outcome of the slot's last read.
        public var readStatus: ReadStatus {
            guard let live, live.lastReadAt != nil else { return .notRead }
            guard live.valid == true else { return .error }
            return live.problems.isEmpty ? .ok : .warning
        }

        /// When the last read that gave a full valid identity ended, as far as the store knows: the last read's
        /// time when it was valid (the store keeps only the last read).
        public var lastSuccessfulReadAt: Date? {
            guard let live, live.valid == true else { return nil }
            return live.lastReadAt
        }

        /// The SIM's state at the last read that could tell.
        public var simState: SIMState {
            let codes = problemCodes
            for (code, state) in SIMState.byProblem where codes.contains(code) { return state }
            // A read that could not talk to the module says nothing about the SIM.
            if live?.lastReadAt == nil || codes.contains(where: SIMState.portProblems.contains) { return .unknown }
            guard let record else { return .unknown }
            return record.simPresent ? .ready : .absent
        }

        /// The module's SIM hot-swap reports are known not to work (its card detection is off, or it refused the
        /// report command: a swap shows only at the next re-probe): the last read carries
        /// `sim_hotswap_unavailable`. false: no such finding (reports switched on, a vendor that reports without
        /// being asked, or a modem read over ModemManager). nil: never read.
        public var simHotSwapUnavailable: Bool? {
            guard live?.lastReadAt != nil else { return nil }
            return problemCodes.contains(Problem.Code.simHotSwapUnavailable.rawValue)
        }
    }

    /// `ok`: a full valid identity and no problem; `warning`: valid with warnings (a test network, hot-swap
    /// reports unavailable); `error`: no valid identity (no SIM, a locked SIM, a module that does not answer, a
    /// bad value); `not_read`: no read recorded yet.
    public enum ReadStatus: String, Sendable, CaseIterable, Codable {
        case ok, warning, error
        case notRead = "not_read"
    }

    /// The SIM as the last read saw it (`AT+CPIN?` and the identity reads).
    public enum SIMState: String, Sendable, CaseIterable, Codable {
        case ready, absent
        case pinRequired = "pin_required"
        case pukRequired = "puk_required"
        case busy, failure, wrong, unknown

        static let byProblem: [(String, SIMState)] = [
            (Problem.Code.simNotInserted.rawValue, .absent), (Problem.Code.simPINRequired.rawValue, .pinRequired),
            (Problem.Code.simPUKRequired.rawValue, .pukRequired), (Problem.Code.simBusy.rawValue, .busy),
            (Problem.Code.simFailure.rawValue, .failure), (Problem.Code.simWrong.rawValue, .wrong),
        ]
        static let portProblems: Set<String> = [
            Problem.Code.noResponse, .portBusy, .portUnavailable, .portClosed, .notAModem,
        ].reduce(into: []) { $0.insert($1.rawValue) }
    }

    /// Every slot with a record or a live row, sorted by slot key.
    public var slots: [Slot]
    /// Events waiting for delivery.
    public var outboxPending: Int
    /// The oldest event waiting for delivery.
    public var oldestPending: StoredEvent?
    public var lastDeliveryError: String?
    /// The backend's last refusal of our credentials not yet followed by a delivery (`HTTP 401: ...`).
    public var credentialsRefused: String?
    public var stateLoss: StateStore.LossRecord?

    public init(
        slots: [Slot], outboxPending: Int = 0, oldestPending: StoredEvent? = nil, lastDeliveryError: String? = nil,
        credentialsRefused: String? = nil, stateLoss: StateStore.LossRecord? = nil
    ) {
        self.slots = slots
        self.outboxPending = outboxPending
        self.oldestPending = oldestPending
        self.lastDeliveryError = lastDeliveryError
        self.credentialsRefused = credentialsRefused
        self.stateLoss = stateLoss
    }

    /// Reads the view. `lastEvents` false skips the history (cellprovd's metrics need no event, and the history
    /// grows for ever).
    public init(store: StateStore, lastEvents: Bool = true) throws(StoreError) {
        let records = Dictionary(try store.slotRecords().map { ($0.slot, $0) }, uniquingKeysWith: { a, _ in a })
        let live = Dictionary(try store.liveSlots().map { ($0.slot, $0) }, uniquingKeysWith: { a, _ in a })
        var last: [String: StoredEvent] = [:]
        if lastEvents {
            for e in try store.events() where last[e.event.slot] == nil { last[e.event.slot] = e }  // newest first
        }
        slots = Set(records.keys).union(live.keys).sorted().map { key in
            Slot(slot: key, record: records[key], live: live[key], lastEvent: last[key])
        }
        outboxPending = try store.outboxDepth()
        oldestPending = outboxPending > 0 ? try store.pendingEvents(limit: 1).first : nil
        lastDeliveryError = try store.lastDeliveryError()
        credentialsRefused = try store.credentialsRefused()
        stateLoss = try store.lastStateLoss()
    }
}
