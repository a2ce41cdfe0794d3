import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation

// The operator API's JSON shapes (docs/registry-api.yaml), built from the store's domain values with every
// identifier masked unless `reveal` (see ``IdentifierMask``). The same values feed the pages' templates.

/// A time as the APIs write it (``EnrollmentTimestamp/format(_:)``: RFC 3339 in UTC, whole seconds); nil for nil.
enum RFC3339 {
    static func string(_ date: Date?) -> String? {
        guard let date else { return nil }
        return EnrollmentTimestamp.format(date)
    }
}

struct IdentityView: Codable, Equatable {
    var imei: String?
    var imsi: String?
    var iccid: String?
    /// The eUICC's EID (the card), masked like the others; nil for a plain SIM or when not read.
    var eid: String?
    /// The module's active SIM slot (1-based); not an identifier.
    var simSlot: Int?

    init(_ s: IdentitySnapshot, reveal: Bool) {
        imei = IdentifierMask.imei(s.imei, reveal: reveal)
        imsi = IdentifierMask.imsi(s.imsi, reveal: reveal)
        iccid = IdentifierMask.iccid(s.iccid, reveal: reveal)
        eid = IdentifierMask.eid(s.eid, reveal: reveal)
        simSlot = s.simSlot
    }

    enum CodingKeys: String, CodingKey {
        case imei, imsi, iccid, eid
        case simSlot = "sim_slot"
    }
}

struct SlotView: Codable {
    var slot: String
    /// `device` (a field slot) or `factory` (a manufacturing record's slot).
    var origin: String
    var imei: String?
    var imsi: String?
    var iccid: String?
    var eid: String?
    var simSlot: Int?
    var manufacturer: String?
    var model: String?
    var revision: String?
    var source: String
    var lastEventType: String
    var updatedAt: String?

    init(_ s: SlotState, reveal: Bool) {
        slot = s.slot
        origin = s.origin.rawValue
        let id = IdentityView(s.identity, reveal: reveal)
        imei = id.imei
        imsi = id.imsi
        iccid = id.iccid
        eid = id.eid
        simSlot = id.simSlot
        manufacturer = s.manufacturer
        model = s.model
        revision = s.revision
        source = s.source
        lastEventType = s.lastEventType
        updatedAt = RFC3339.string(s.updatedAt)
    }

    enum CodingKeys: String, CodingKey {
        case slot, origin, imei, imsi, iccid, eid, manufacturer, model, revision, source
        case simSlot = "sim_slot"
        case lastEventType = "last_event_type"
        case updatedAt = "updated_at"
    }
}

/// An interval in which a unit's slot held a searched identifier (``Holding``). Device times (`occurred_at`);
/// the registry's receive time of the same event beside each only when they disagree
/// (``Holdings/clockDisagreement``): a late delivery or a device clock that is off.
struct HoldingView: Codable {
    var kind: String
    /// The identifier, masked unless revealed.
    var identifier: String?
    var slot: String
    var from: String?
    var fromReceivedAt: String?
    var until: String?
    var untilReceivedAt: String?
    /// Open-ended: the slot holds it still.
    var current: Bool

    init(_ h: Holding, reveal: Bool) {
        kind = h.kind.rawValue
        switch h.kind {
        case .imei: identifier = IdentifierMask.imei(h.value, reveal: reveal)
        case .imsi: identifier = IdentifierMask.imsi(h.value, reveal: reveal)
        case .iccid: identifier = IdentifierMask.iccid(h.value, reveal: reveal)
        case .eid: identifier = IdentifierMask.eid(h.value, reveal: reveal)
        }
        slot = h.slot
        from = RFC3339.string(h.from)
        fromReceivedAt = Holdings.disagree(h.from, h.fromReceived) ? RFC3339.string(h.fromReceived) : nil
        until = RFC3339.string(h.until)
        if let u = h.until, let r = h.untilReceived, Holdings.disagree(u, r) { untilReceivedAt = RFC3339.string(r) }
        current = h.isCurrent
    }

    enum CodingKeys: String, CodingKey {
        case kind, identifier, slot, from, until, current
        case fromReceivedAt = "from_received_at"
        case untilReceivedAt = "until_received_at"
    }
}

struct UnitSummaryView: Codable {
    var serial: String
    var lost: Bool
    var firstSeen: String?
    var lastSeen: String?
    var openFlags: Int
    var slots: [SlotView]
    /// For a unit found as a holder of the searched identifier: the intervals it held it, newest first (absent for a
    /// unit found otherwise: by serial, TAC, reference).
    var held: [HoldingView]?

    init(_ u: UnitSummary, reveal: Bool, held: [Holding]? = nil) {
        serial = u.serial
        lost = u.lost
        firstSeen = RFC3339.string(u.firstSeen)
        lastSeen = RFC3339.string(u.lastSeen)
        openFlags = u.openFlags
        slots = u.slots.map { SlotView($0, reveal: reveal) }
        self.held = held.map { $0.map { HoldingView($0, reveal: reveal) } }
    }

    enum CodingKeys: String, CodingKey {
        case serial, lost, slots, held
        case firstSeen = "first_seen"
        case lastSeen = "last_seen"
        case openFlags = "open_flags"
    }
}

struct TimelineEntryView: Codable {
    var eventID: String
    var type: String
    var slot: String
    var origin: String
    var occurredAt: String?
    var receivedAt: String?
    var sequence: Int
    var severity: String
    var identity: IdentityView
    var previous: IdentityView?
    /// The `state_lost.reason` the event carried (the device announced a lost or restored state).
    var stateLost: String?
    /// The earlier event whose sequence this one repeats (the device's numbering went back).
    var reusesSequenceOf: String?
    /// `firmware_changed` only: the module's revision before and after.
    var previousRevision: String?
    var revision: String?

    init(_ e: TimelineEntry, reveal: Bool) {
        eventID = e.eventID
        type = e.type
        slot = e.slot
        origin = e.origin.rawValue
        occurredAt = RFC3339.string(e.occurredAt)
        receivedAt = RFC3339.string(e.receivedAt)
        sequence = e.sequence
        severity = e.severity
        identity = IdentityView(e.identity, reveal: reveal)
        previous = e.previous.map { IdentityView($0, reveal: reveal) }
        stateLost = e.stateLost
        reusesSequenceOf = e.reusesSequenceOf
        previousRevision = e.firmware?.previous
        revision = e.firmware?.current
    }

    /// What the timeline row says beside the event type, nil for an ordinary event.
    var note: String? {
        var parts: [String] = []
        if type == "firmware_changed" { parts.append("firmware \(previousRevision ?? "?") -> \(revision ?? "?")") }
        if let stateLost { parts.append("the device's state was lost before this event (\(stateLost))") }
        if let reusesSequenceOf {
            parts.append(
                "sequence \(sequence) again (first by event \(reusesSequenceOf.prefix(8))): the device's state went back")
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    enum CodingKeys: String, CodingKey {
        case type, slot, origin, sequence, severity, identity, previous
        case stateLost = "state_lost"
        case reusesSequenceOf = "reuses_sequence_of"
        case previousRevision = "previous_revision"
        case revision
        case eventID = "event_id"
        case occurredAt = "occurred_at"
        case receivedAt = "received_at"
    }
}

struct EvidenceView: Codable {
    var imei: String?
    var imsi: String?
    var iccid: String?
    var eid: String?
    var expectedIMEI: String?
    var expectedEID: String?
    var otherSerials: [String]
    var eventIDs: [String]
    var note: String?

    init(_ e: FlagEvidence, reveal: Bool) {
        imei = IdentifierMask.imei(e.imei, reveal: reveal)
        imsi = IdentifierMask.imsi(e.imsi, reveal: reveal)
        iccid = IdentifierMask.iccid(e.iccid, reveal: reveal)
        eid = IdentifierMask.eid(e.eid, reveal: reveal)
        expectedIMEI = IdentifierMask.imei(e.expectedIMEI, reveal: reveal)
        expectedEID = IdentifierMask.eid(e.expectedEID, reveal: reveal)
        otherSerials = e.otherSerials
        eventIDs = e.eventIDs
        note = e.note
    }

    enum CodingKeys: String, CodingKey {
        case imei, imsi, iccid, eid, note
        case expectedIMEI = "expected_imei"
        case expectedEID = "expected_eid"
        case otherSerials = "other_serials"
        case eventIDs = "event_ids"
    }
}

struct FlagView: Codable {
    var id: Int64
    var kind: String
    var severity: String
    var serial: String?
    var slot: String?
    var summary: String
    var evidence: EvidenceView
    var raisedAt: String?
    var open: Bool
    var resolvedAt: String?
    var resolvedBy: String?
    var resolutionNote: String?

    init(_ f: RegistryFlag, reveal: Bool) {
        id = f.id
        kind = f.flag.kind.rawValue
        severity = f.flag.severity.rawValue
        serial = f.flag.serial
        slot = f.flag.slot
        summary = f.flag.summary
        evidence = EvidenceView(f.flag.evidence, reveal: reveal)
        raisedAt = RFC3339.string(f.raisedAt)
        open = f.isOpen
        resolvedAt = RFC3339.string(f.resolvedAt)
        resolvedBy = f.resolvedBy
        resolutionNote = f.resolutionNote
    }

    enum CodingKeys: String, CodingKey {
        case id, kind, severity, serial, slot, summary, evidence, open
        case raisedAt = "raised_at"
        case resolvedAt = "resolved_at"
        case resolvedBy = "resolved_by"
        case resolutionNote = "resolution_note"
    }
}

struct LostView: Codable {
    var markedAt: String?
    var markedBy: String
    var note: String?

    init(_ l: LostState) {
        markedAt = RFC3339.string(l.markedAt)
        markedBy = l.markedBy
        note = l.note
    }

    enum CodingKeys: String, CodingKey {
        case note
        case markedAt = "marked_at"
        case markedBy = "marked_by"
    }
}

struct UnitDetailView: Codable {
    var serial: String
    var lost: Bool
    var lostState: LostView?
    var firstSeen: String?
    var lastSeen: String?
    var slots: [SlotView]
    var manufacturing: [TimelineEntryView]
    var timeline: [TimelineEntryView]
    var flags: [FlagView]
    var playbook: [String]
    var revealed: Bool
    /// The moment the answer describes (`at`); absent: now.
    var asOf: String?

    init(_ d: UnitDetail, reveal: Bool, asOf: Date? = nil) {
        self.asOf = RFC3339.string(asOf)
        serial = d.summary.serial
        lost = d.summary.lost || d.lost != nil
        lostState = d.lost.map(LostView.init)
        firstSeen = RFC3339.string(d.summary.firstSeen)
        lastSeen = RFC3339.string(d.summary.lastSeen)
        slots = d.summary.slots.map { SlotView($0, reveal: reveal) }
        manufacturing = d.manufacturing.map { TimelineEntryView($0, reveal: reveal) }
        timeline = d.timeline.map { TimelineEntryView($0, reveal: reveal) }
        flags = d.flags.map { FlagView($0, reveal: reveal) }
        playbook = Playbook.steps(for: d)
        revealed = reveal
    }

    enum CodingKeys: String, CodingKey {
        case serial, lost, slots, manufacturing, timeline, flags, playbook, revealed
        case lostState = "lost_state"
        case firstSeen = "first_seen"
        case lastSeen = "last_seen"
        case asOf = "as_of"
    }
}

struct AuditView: Codable {
    var id: Int64?
    var at: String?
    var actor: String
    var action: String
    var serial: String?
    var remote: String?
    var detail: String?

    init(_ a: AuditEntry) {
        id = a.id
        at = RFC3339.string(a.at)
        actor = a.actor
        action = a.action
        serial = a.serial
        remote = a.remote
        detail = a.detail
    }
}

/// The lost/stolen playbook: what else to do once a unit is marked lost (the registry does the first step
/// itself; the others happen at the carrier and the PKI). Shown on the unit page and in the API.
enum Playbook {
    static func steps(for d: UnitDetail) -> [String] {
        guard d.summary.lost || d.lost != nil else { return [] }
        var steps = [
            "Device token revoked by the registry: its requests now get 403 and raise lost_unit_seen.",
        ]
        let slots = d.summary.slots
        if slots.contains(where: { $0.identity.imei != nil }) {
            steps.append("Ask each carrier to block the IMEI of every slot (reveal the IMEI as an admin to file it).")
        }
        if slots.contains(where: { $0.identity.iccid != nil }) {
            steps.append("Suspend or block each SIM (ICCID) at the carrier or IoT-connectivity portal.")
        }
        if slots.contains(where: { $0.identity.eid != nil }) {
            steps.append(
                "The unit has an eUICC: suspend every profile of its EID at the connectivity provider, not only the enabled one.")
        }
        steps.append("Revoke the unit's TLS client certificate, if it has one, at your certificate authority.")
        steps.append("Watch this page and the flags list: a lost_unit_seen flag means the unit tried to report.")
        steps.append("When the unit is recovered, mark it found: it gets a new device token to install.")
        return steps
    }
}
