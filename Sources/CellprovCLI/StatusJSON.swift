import CellprovCore
import CellprovStore
import FoundationEssentials

/// `cellprov status --json`: one object, documented in docs/operations.md ("cellprov status --json"), for scripts.
/// A data channel like `cellprov events --json`: full identifiers, and the same names for the same things
/// (`slot`, `module`, `identity`, `sequence`, `occurred_at`, `delivery`, `problems[].code`). Every key is written
/// on every object (null when it has no value), except inside `module` and `identity`, which follow the event's
/// rule (a value not known is left out). `version` grows only when a key changes meaning or goes away; keys may be
/// added within a version.
struct StatusDocument: Encodable {
    static let version = 1

    var version = Self.version
    var stateDirectory: String
    var outbox: Outbox
    var stateLoss: StateLoss?
    var slots: [Slot]

    struct Outbox: Encodable {
        var pending: Int
        var oldestPendingOccurredAt: Date?
        var lastDeliveryError: String?
        var credentialsRefused: String?

        enum CodingKeys: String, CodingKey {
            case pending
            case oldestPendingOccurredAt = "oldest_pending_occurred_at"
            case lastDeliveryError = "last_delivery_error"
            case credentialsRefused = "credentials_refused"
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(pending, forKey: .pending)
            try c.encode(oldestPendingOccurredAt, forKey: .oldestPendingOccurredAt)
            try c.encode(lastDeliveryError, forKey: .lastDeliveryError)
            try c.encode(credentialsRefused, forKey: .credentialsRefused)
        }
    }

    struct StateLoss: Encodable {
        var reason: String
        var detectedAt: Date
        var eventsSalvaged: Int
        var eventsLost: Int

        enum CodingKeys: String, CodingKey {
            case reason
            case detectedAt = "detected_at"
            case eventsSalvaged = "events_salvaged"
            case eventsLost = "events_lost"
        }
    }

    struct Slot: Encodable {
        var slot: String
        var recorded: Bool
        var module: ModuleInfo
        var identity: IdentitySnapshot
        var simPresent: Bool?
        var enrolled: Bool
        var sequence: Int
        var updatedAt: Date?
        var present: Bool?
        var port: String?
        var lastRead: LastRead?
        var simState: String
        var simHotSwapUnavailable: Bool?
        var lastEvent: LastEvent?

        struct LastRead: Encodable {
            var at: Date
            var status: String
            var problems: [Code]

            struct Code: Encodable { var code: String }
        }

        struct LastEvent: Encodable {
            var id: String
            var type: String
            var sequence: Int
            var occurredAt: Date
            var severity: String
            var delivery: EventLine.Delivery

            enum CodingKeys: String, CodingKey {
                case id, type, sequence, severity, delivery
                case occurredAt = "occurred_at"
            }
        }

        enum CodingKeys: String, CodingKey {
            case slot, recorded, module, identity, enrolled, sequence, present, port
            case simPresent = "sim_present"
            case updatedAt = "updated_at"
            case lastRead = "last_read"
            case simState = "sim_state"
            case simHotSwapUnavailable = "sim_hotswap_unavailable"
            case lastEvent = "last_event"
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(slot, forKey: .slot)
            try c.encode(recorded, forKey: .recorded)
            try c.encode(module, forKey: .module)
            try c.encode(identity, forKey: .identity)
            try c.encode(simPresent, forKey: .simPresent)
            try c.encode(enrolled, forKey: .enrolled)
            try c.encode(sequence, forKey: .sequence)
            try c.encode(updatedAt, forKey: .updatedAt)
            try c.encode(present, forKey: .present)
            try c.encode(port, forKey: .port)
            try c.encode(lastRead, forKey: .lastRead)
            try c.encode(simState, forKey: .simState)
            try c.encode(simHotSwapUnavailable, forKey: .simHotSwapUnavailable)
            try c.encode(lastEvent, forKey: .lastEvent)
        }

        init(_ s: StatusView.Slot) {
            slot = s.slot
            recorded = s.record != nil
            module = s.record?.module ?? ModuleInfo()
            identity = s.record?.identity ?? IdentitySnapshot()
            simPresent = s.record?.simPresent
            enrolled = s.record?.enrolled ?? false
            sequence = s.record?.sequence ?? 0
            updatedAt = s.record?.updatedAt
            present = s.live?.present
            port = s.live?.port
            if let live = s.live, let at = live.lastReadAt {
                lastRead = LastRead(
                    at: at, status: s.readStatus.rawValue, problems: live.problems.map { .init(code: $0) })
            }
            simState = s.simState.rawValue
            simHotSwapUnavailable = s.simHotSwapUnavailable
            lastEvent = s.lastEvent.map { e in
                LastEvent(
                    id: e.event.id.uuidString.lowercased(), type: e.event.type.rawValue, sequence: e.event.sequence,
                    occurredAt: e.event.occurredAt, severity: e.event.severity.rawValue, delivery: .init(e))
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case version, outbox, slots
        case stateDirectory = "state_directory"
        case stateLoss = "state_loss"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version, forKey: .version)
        try c.encode(stateDirectory, forKey: .stateDirectory)
        try c.encode(outbox, forKey: .outbox)
        try c.encode(stateLoss, forKey: .stateLoss)
        try c.encode(slots, forKey: .slots)
    }

    init(_ view: StatusView, stateDirectory: String) {
        self.stateDirectory = stateDirectory
        outbox = Outbox(
            pending: view.outboxPending, oldestPendingOccurredAt: view.oldestPending?.event.occurredAt,
            lastDeliveryError: view.lastDeliveryError, credentialsRefused: view.credentialsRefused)
        stateLoss = view.stateLoss.map {
            StateLoss(
                reason: $0.reason.rawValue, detectedAt: $0.detectedAt, eventsSalvaged: $0.eventsSalvaged,
                eventsLost: $0.eventsLost)
        }
        slots = view.slots.map(Slot.init)
    }

    /// The document as one line of JSON (sorted keys, ISO 8601 times as in `cellprov events --json`).
    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
