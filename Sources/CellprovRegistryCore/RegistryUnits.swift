import CellprovCore
import CellprovEnrollmentAPI
import Foundation

/// One slot of a unit as last reported.
public struct SlotState: Sendable, Equatable {
    public var slot: String
    /// `device` for the unit's field slots (cellprovd), `factory` for the slots its manufacturing records describe.
    public var origin: EventOrigin
    public var identity: IdentitySnapshot
    public var manufacturer: String?
    public var model: String?
    public var revision: String?
    /// "at" or "modemmanager".
    public var source: String
    /// The type of the slot's last event.
    public var lastEventType: String
    public var updatedAt: Date

    public init(
        slot: String, identity: IdentitySnapshot, manufacturer: String? = nil, model: String? = nil,
        revision: String? = nil, source: String = "at", lastEventType: String, updatedAt: Date,
        origin: EventOrigin = .device
    ) {
        self.slot = slot
        self.origin = origin
        self.identity = identity
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision
        self.source = source
        self.lastEventType = lastEventType
        self.updatedAt = updatedAt
    }
}

/// A unit (one device serial) as search results list it.
public struct UnitSummary: Sendable, Equatable {
    public var serial: String
    public var slots: [SlotState]
    public var lost: Bool
    public var firstSeen: Date?
    public var lastSeen: Date?
    public var openFlags: Int

    public init(
        serial: String, slots: [SlotState], lost: Bool, firstSeen: Date?, lastSeen: Date?, openFlags: Int
    ) {
        self.serial = serial
        self.slots = slots
        self.lost = lost
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.openFlags = openFlags
    }
}

/// One entry of a unit's timeline: a stored event (field or factory).
public struct TimelineEntry: Sendable, Equatable {
    public var eventID: String
    public var origin: EventOrigin
    public var type: String
    public var slot: String
    public var sequence: Int
    public var severity: String
    public var occurredAt: Date
    public var receivedAt: Date
    public var identity: IdentitySnapshot
    public var previous: IdentitySnapshot?
    /// The event's `state_lost.reason`: the device announced that its state was lost (or put back) before it.
    public var stateLost: String?
    /// The event id of the earlier stored event of the same slot with this event's sequence: the device's
    /// numbering went back (``FlagKind/stateRolledBack``).
    public var reusesSequenceOf: String?
    /// `firmware_changed` only: the module's revision before (`previous_revision`) and after (`module.revision`),
    /// as the event carried them; nil on other events.
    public var firmware: FirmwareChange?

    public init(
        eventID: String, origin: EventOrigin, type: String, slot: String, sequence: Int, severity: String,
        occurredAt: Date, receivedAt: Date, identity: IdentitySnapshot, previous: IdentitySnapshot? = nil,
        stateLost: String? = nil, reusesSequenceOf: String? = nil, firmware: FirmwareChange? = nil
    ) {
        self.firmware = firmware
        self.stateLost = stateLost
        self.reusesSequenceOf = reusesSequenceOf
        self.eventID = eventID
        self.origin = origin
        self.type = type
        self.slot = slot
        self.sequence = sequence
        self.severity = severity
        self.occurredAt = occurredAt
        self.receivedAt = receivedAt
        self.identity = identity
        self.previous = previous
    }
}

/// The lost/stolen state of a unit.
public struct LostState: Sendable, Equatable {
    public var markedAt: Date
    public var markedBy: String
    public var note: String?

    public init(markedAt: Date, markedBy: String, note: String? = nil) {
        self.markedAt = markedAt
        self.markedBy = markedBy
        self.note = note
    }
}

/// Everything the unit page shows.
public struct UnitDetail: Sendable, Equatable {
    public var summary: UnitSummary
    /// The `manufactured` records, oldest first (also in ``timeline``).
    public var manufacturing: [TimelineEntry]
    /// Every event, oldest first.
    public var timeline: [TimelineEntry]
    /// The unit's flags, open and resolved, newest first.
    public var flags: [RegistryFlag]
    public var lost: LostState?

    public init(
        summary: UnitSummary, manufacturing: [TimelineEntry], timeline: [TimelineEntry], flags: [RegistryFlag],
        lost: LostState?
    ) {
        self.summary = summary
        self.manufacturing = manufacturing
        self.timeline = timeline
        self.flags = flags
        self.lost = lost
    }
}

/// What a search text is taken to mean (``SearchTerms/init(parsing:)``): each non-nil term is matched, a unit
/// matching any of them is found.
public struct SearchTerms: Sendable, Equatable {
    public var imei: String?
    public var imsi: String?
    public var iccid: String?
    /// 32 digits: the eUICC's EID (the card, whichever profile is enabled).
    public var eid: String?
    /// 8 digits: every unit with a module of this Type Allocation Code.
    public var tac: String?
    /// 10 lowercase hex digits: a pseudonym reference from cellprovd's log.
    public var reference: String?
    /// A device serial (exact, case-sensitive).
    public var serial: String?

    public init(
        imei: String? = nil, imsi: String? = nil, iccid: String? = nil, eid: String? = nil, tac: String? = nil,
        reference: String? = nil, serial: String? = nil
    ) {
        self.imei = imei
        self.imsi = imsi
        self.iccid = iccid
        self.eid = eid
        self.tac = tac
        self.reference = reference
        self.serial = serial
    }

    /// Reads a search box: blanks and dashes are dropped from digit strings; 15 digits may be an IMEI or an
    /// IMSI (both are tried); 14 digits an IMSI; 18 to 20 digits (with an optional trailing F) an ICCID; 32 digits an
    /// EID; 8 digits a TAC; 10 hex digits a reference (and a serial); anything else a serial.
    public init(parsing text: String) {
        self.init()
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty, trimmed.utf8.count <= 64 else { return }
        let compact = String(trimmed.unicodeScalars.filter { $0 != " " && $0 != "-" })
        let isDecimal = !compact.isEmpty && compact.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        if isDecimal {
            switch compact.utf8.count {
            case 15:
                imei = compact
                imsi = compact
            case 14:
                imsi = compact
            case 18...20:
                iccid = compact
            case EID.length:
                eid = compact
            case 8:
                tac = compact
            default:
                break
            }
        } else if compact.utf8.count >= 19, compact.utf8.count <= 20, compact.uppercased().hasSuffix("F"),
            compact.dropLast().utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
        {
            iccid = String(compact.dropLast())
        }
        let lower = trimmed.lowercased()
        if PseudonymReference.isWellFormed(lower) {
            reference = lower
        }
        serial = trimmed
    }

    public var isEmpty: Bool {
        imei == nil && imsi == nil && iccid == nil && eid == nil && tac == nil && reference == nil && serial == nil
    }
}

/// An entry of the append-only audit log: reveals of identifiers, lost/found, flag resolutions, exports, refused
/// device attempts.
public struct AuditEntry: Sendable, Equatable {
    public var id: Int64?
    public var at: Date
    /// The operator's name, or `device:SERIAL` / `station:NAME`.
    public var actor: String
    /// e.g. `reveal`, `mark_lost`, `mark_found`, `resolve_flag`, `export`, `reconcile`, `device_refused`.
    public var action: String
    public var serial: String?
    /// The client address the request came from.
    public var remote: String?
    /// Free text, without identifier digits.
    public var detail: String?

    public init(
        id: Int64? = nil, at: Date, actor: String, action: String, serial: String? = nil, remote: String? = nil,
        detail: String? = nil
    ) {
        self.id = id
        self.at = at
        self.actor = actor
        self.action = action
        self.serial = serial
        self.remote = remote
        self.detail = detail
    }
}
