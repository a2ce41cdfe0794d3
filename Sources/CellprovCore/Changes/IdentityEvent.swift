import FoundationEssentials

// The change detector's data types. They are the data channel: they hold raw digits (IMEI, IMSI, ICCID) and
// go only to the store, `cellprov events --json` and the backend payload, never to a log. Their JSON form is fixed
// here with snake_case keys and the enrollment API's null rule (docs/enrollment-api.yaml, "Absent and null";
// docs/decisions.md, "Wire rules"): `previous` is always written (null when there is none; IdentityEvent's
// encoder), every other optional property is left out when it has no value (what Swift's synthesized encoders
// do with an optional); decoding takes an absent property and a null one alike. Encode and decode them with the
// default key strategies (`.convertFromSnakeCase` would not match these keys).

/// A slot's identity as digit strings: the IMEI of its module, the IMSI and ICCID of its SIM (the enabled
/// profile, on an eUICC), the EID of the card when it is an eUICC and it was read, and the module's active SIM
/// slot when the module says.
///
/// Printing a snapshot (or a record or event holding one) shows only keyed pseudonyms, the same references as
/// the identifier types print: `IdentitySnapshot(imei ref 1a2b3c4d5e, imsi ref -, iccid ref 9f8e7d6c5b)`. The
/// digits leave only through the properties (the store and the backend payload).
public struct IdentitySnapshot: Sendable, Codable, Equatable, Hashable, CustomStringConvertible,
    CustomDebugStringConvertible, CustomReflectable
{
    public var imei: String?
    public var imsi: String?
    public var iccid: String?
    /// The eUICC's EID (32 digits): the card, as opposed to its enabled profile (ICCID, IMSI). nil: not an eUICC,
    /// or not read.
    public var eid: String?
    /// The module's active SIM slot, 1-based; nil when unknown.
    public var simSlot: Int?

    public init(
        imei: String? = nil, imsi: String? = nil, iccid: String? = nil, eid: String? = nil, simSlot: Int? = nil
    ) {
        self.imei = imei
        self.imsi = imsi
        self.iccid = iccid
        self.eid = eid
        self.simSlot = simSlot
    }

    /// The values a report holds, as read. Values a validator refused outright (wrong length, wrong characters)
    /// are not in a report and so are nil here; values kept with an error (an IMEI with a bad check digit, a
    /// placeholder IMEI) are here.
    public init(_ report: IdentityReport) {
        self.init(
            imei: report.imei?.unredacted, imsi: report.imsi?.unredacted, iccid: report.iccid?.unredacted,
            eid: report.eid?.unredacted, simSlot: report.simSlot)
    }

    /// True when a SIM identity (IMSI or ICCID) is known.
    public var hasSIM: Bool { imsi != nil || iccid != nil }

    /// IMEI, IMSI and ICCID are all known.
    public var isComplete: Bool { imei != nil && imsi != nil && iccid != nil }

    /// Redacted, as the identity types print: `IMEI(TAC …, ref …) IMSI(MCC-MNC, ref …) ICCID(issuer, ref …)`; a
    /// value that does not validate prints only its kind and reference.
    public var description: String {
        var parts = [redactedIMEI, redactedIMSI, redactedICCID]
        if eid != nil { parts.append(redactedEID) }
        if let simSlot { parts.append("slot \(simSlot)") }
        return parts.joined(separator: " ")
    }

    /// Each value as its type prints it (`IMEI(TAC …, ref …)`), `IMEI -` when absent.
    public var redactedIMEI: String { Self.redacted("IMEI", imei) { IMEI.validate($0).value } }
    public var redactedIMSI: String { Self.redacted("IMSI", imsi) { IMSI.validate($0).value } }
    public var redactedICCID: String { Self.redacted("ICCID", iccid) { ICCID.validate($0).value } }
    public var redactedEID: String { Self.redacted("EID", eid) { EID.validate($0).value } }

    static func redacted<T: CustomStringConvertible>(_ kind: String, _ value: String?, _ validate: (String) -> T?)
        -> String
    {
        guard let value else { return "\(kind) -" }
        if let typed = validate(value) { return typed.description }
        return "\(kind)(ref \(Redaction.pseudonymizer.reference(kind: kind.lowercased(), value: value)))"
    }

    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description], displayStyle: .struct) }

    enum CodingKeys: String, CodingKey {
        case imei, imsi, iccid, eid
        case simSlot = "sim_slot"
    }
}

/// What is known of the module in a slot: its USB serial number (nil on a static UART port or a module without
/// one) and what it answers to AT+CGMI, AT+CGMM and AT+CGMR.
public struct ModuleInfo: Sendable, Codable, Equatable {
    public var usbSerial: String?
    public var manufacturer: String?
    public var model: String?
    public var revision: String?
    /// The channel the read came through when it was not cellprov's own AT session: `modemmanager`. nil means
    /// an AT read (and is what records stored before this field decode to), so AT-read records and events are
    /// unchanged; the backend payload writes `source` always ("at" for nil).
    public var source: ObservationSource?

    public init(
        usbSerial: String? = nil, manufacturer: String? = nil, model: String? = nil, revision: String? = nil,
        source: ObservationSource? = nil
    ) {
        self.usbSerial = usbSerial
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision
        self.source = source
    }

    /// The module as one read saw it.
    public init(slot: ModuleSlot, report: IdentityReport) {
        self.init(
            usbSerial: slot.usbSerial, manufacturer: report.manufacturer, model: report.model,
            revision: report.revision, source: slot.source == .modemmanager ? .modemmanager : nil)
    }

    enum CodingKeys: String, CodingKey {
        case usbSerial = "usb_serial"
        case manufacturer, model, revision, source
    }
}

/// A slot's remembered state, stored per slot: what the next observation of the slot is compared with.
public struct SlotRecord: Sendable, Codable, Equatable {
    /// The slot key (``ModuleSlot/key``).
    public var slot: String
    /// The module last seen in the slot.
    public var module: ModuleInfo
    /// The last known good identity (IMEI and SIM): what events compare against. After a SIM removal it keeps
    /// the removed SIM's IMSI and ICCID (``simPresent`` is false), so that a SIM put back can be recognised.
    /// Before enrollment it holds what has been read so far (an IMEI, maybe part of a SIM identity).
    public var identity: IdentitySnapshot
    /// Whether a SIM was in the slot at the last read that could tell.
    public var simPresent: Bool
    /// A full valid identity has been seen on this slot (and the `enrolled` event sent). Stays true.
    public var enrolled: Bool
    /// The sequence number of the slot's last event (0: none yet).
    public var sequence: Int
    /// The invalid identity last reported, so that it is not reported again while it is read again. Cleared by
    /// a read with a valid IMEI and no invalid value.
    public var lastInvalid: IdentitySnapshot?
    /// When the record last changed (not when the slot was last read: re-reading an unchanged slot stores
    /// nothing).
    public var updatedAt: Date

    public init(
        slot: String, module: ModuleInfo = ModuleInfo(), identity: IdentitySnapshot = IdentitySnapshot(),
        simPresent: Bool = false, enrolled: Bool = false, sequence: Int = 0, lastInvalid: IdentitySnapshot? = nil,
        updatedAt: Date
    ) {
        self.slot = slot
        self.module = module
        self.identity = identity
        self.simPresent = simPresent
        self.enrolled = enrolled
        self.sequence = sequence
        self.lastInvalid = lastInvalid
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case slot, module, identity, enrolled, sequence
        case simPresent = "sim_present"
        case lastInvalid = "last_invalid"
        case updatedAt = "updated_at"
    }
}

/// What happened to a slot's identity. The raw values are the backend's event type names.
public enum IdentityEventType: String, Sendable, Codable, CaseIterable {
    /// The first full valid identity (IMEI, IMSI, ICCID) seen on the slot.
    case enrolled
    /// Same IMEI, another SIM (ICCID or IMSI differs) that is not a profile switch on the same eUICC nor a change
    /// of active slot: another card (another EID, or no EID on one side), or a card that left and another came.
    /// The slot must be re-enrolled.
    case simChanged = "sim_changed"
    /// Same IMEI and the same eUICC (EID read on both sides, equal), another ICCID and/or IMSI: the connectivity
    /// provider switched the card's enabled profile. Expected; not a swap.
    case profileSwitched = "profile_switched"
    /// The module's active SIM slot changed (dual-SIM failover, or an operator's choice): the identity is now
    /// that slot's card. Expected and logged, not tampering.
    case simSlotSwitched = "sim_slot_switched"
    /// The same ICCID read from another eUICC (both EIDs read, different) in the same slot. Genuine cards cannot do
    /// this (an ICCID names one profile on one card): a misread or a cloned profile.
    case profileCloneSuspected = "profile_clone_suspected"
    /// Another IMEI in the slot: a module swap (USB serial changed) or a module reporting a new IMEI.
    case imeiChanged = "imei_changed"
    /// The SIM was taken out.
    case simRemoved = "sim_removed"
    /// The SIM taken out was put back (same ICCID).
    case simInserted = "sim_inserted"
    /// The module or SIM reports an identity that cannot be right (bad check digit, placeholder, malformed).
    case identityInvalid = "identity_invalid"
    /// The slot's IMEI is also another slot's current IMEI.
    case duplicateIMEI = "duplicate_imei"
    /// The same module (same IMEI) reports another firmware revision than the one recorded: a firmware update (or
    /// a downgrade). The recorded revision is in `previousRevision`.
    case firmwareChanged = "firmware_changed"
}

/// How urgently a human must look at an event.
public enum EventSeverity: String, Sendable, Codable, CodingKeyRepresentable {
    /// Expected lifecycle (enrollment, a SIM put back, a remote profile switch).
    case info
    /// Expected, but worth a line in the timeline: the active SIM slot changed.
    case notice
    /// Needs follow-up (re-enrollment after a SIM change, a service swap, a bad identity read).
    case warning
    /// Possible tampering or an identity the fleet cannot trust (a module reporting a new IMEI, duplicates).
    case critical
}

/// One identity change of one slot, as sent to the backend.
public struct IdentityEvent: Sendable, Codable, Equatable {
    public var id: UUID
    public var type: IdentityEventType
    public var slot: String
    /// The slot's event counter: 1 for its first event, +1 for each next one.
    public var sequence: Int
    public var occurredAt: Date
    public var severity: EventSeverity
    /// The module in the slot at this read.
    public var module: ModuleInfo
    /// The slot's identity after the change (for `identity_invalid`: the values read, as read).
    public var identity: IdentitySnapshot
    /// The identity compared against (the slot's last known good identity); nil for `enrolled`,
    /// `duplicate_imei`, and `identity_invalid` on a slot never enrolled.
    public var previous: IdentitySnapshot?
    /// `imei_changed` only: false = the same module reports a new IMEI (tampering, critical); true = a different
    /// module (service swap, warning); nil = neither read had a USB serial (static port: cannot tell, critical).
    public var usbSerialChanged: Bool?
    /// `duplicate_imei` only: the other slots reporting the same IMEI, sorted.
    public var otherSlots: [String]?
    /// `firmware_changed` only: the module's revision before the change (the new one is `module.revision`).
    public var previousRevision: String?
    /// All problems of the read that produced the event.
    public var problems: [Problem]
    /// Set on a slot's first event after the daemon found its state lost or damaged (the store sets it, not the
    /// change detector): the backend must not read a new `enrolled` as a new module, nor a gap as a bug.
    public var stateLost: StateLoss?

    public init(
        id: UUID, type: IdentityEventType, slot: String, sequence: Int, occurredAt: Date, severity: EventSeverity,
        module: ModuleInfo, identity: IdentitySnapshot, previous: IdentitySnapshot? = nil,
        usbSerialChanged: Bool? = nil, otherSlots: [String]? = nil, previousRevision: String? = nil,
        problems: [Problem] = [], stateLost: StateLoss? = nil
    ) {
        self.id = id
        self.type = type
        self.slot = slot
        self.sequence = sequence
        self.occurredAt = occurredAt
        self.severity = severity
        self.module = module
        self.identity = identity
        self.previous = previous
        self.usbSerialChanged = usbSerialChanged
        self.otherSlots = otherSlots
        self.previousRevision = previousRevision
        self.problems = problems
        self.stateLost = stateLost
    }

    enum CodingKeys: String, CodingKey {
        case id, type, slot, sequence, severity, module, identity, previous, problems
        case occurredAt = "occurred_at"
        case usbSerialChanged = "usb_serial_changed"
        case otherSlots = "other_slots"
        case previousRevision = "previous_revision"
        case stateLost = "state_lost"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        // Lower case, as in the payload, the Idempotency-Key and the journal (`uuidString` is upper case).
        try c.encode(id.uuidString.lowercased(), forKey: .id)
        try c.encode(type, forKey: .type)
        try c.encode(slot, forKey: .slot)
        try c.encode(sequence, forKey: .sequence)
        try c.encode(occurredAt, forKey: .occurredAt)
        try c.encode(severity, forKey: .severity)
        try c.encode(module, forKey: .module)
        try c.encode(identity, forKey: .identity)
        try c.encode(previous, forKey: .previous)  // null when there is none
        try c.encodeIfPresent(usbSerialChanged, forKey: .usbSerialChanged)
        try c.encodeIfPresent(otherSlots, forKey: .otherSlots)
        try c.encodeIfPresent(previousRevision, forKey: .previousRevision)
        try c.encode(problems, forKey: .problems)
        try c.encodeIfPresent(stateLost, forKey: .stateLost)
    }
}

/// Why the daemon's state was found lost when it started (the backend payload's `state_lost.reason`).
public enum StateLossReason: String, Sendable, Codable, CaseIterable {
    /// `state.db` was gone while the marker beside it said it had existed.
    case databaseMissing = "database_missing"
    /// `state.db` was an empty file.
    case databaseEmpty = "database_empty"
    /// `state.db` could not be used (truncated, overwritten, not a file); what could be read was salvaged.
    case databaseDamaged = "database_damaged"
    /// `state.db` was intact but older than the marker beside it said (a backup put back): the events committed
    /// after that copy are not in it; numbering continues after the marker's sequences.
    case databaseRestored = "database_restored"
}

/// That (and how) the daemon's memory was lost before an event: carried by each slot's first event afterwards.
public struct StateLoss: Sendable, Codable, Equatable {
    public var reason: StateLossReason
    /// When the daemon found the loss.
    public var detectedAt: Date
    /// Events of the old database copied into the new one (0 when nothing could be read).
    public var eventsSalvaged: Int
    /// Events the old database held (as far as the marker or its own counters tell) that could not be read.
    public var eventsLost: Int
    /// The slot's last event sequence known before the loss (nil: unknown); the slot's numbering continues after
    /// it.
    public var lastSequence: Int?

    public init(
        reason: StateLossReason, detectedAt: Date, eventsSalvaged: Int = 0, eventsLost: Int = 0,
        lastSequence: Int? = nil
    ) {
        self.reason = reason
        self.detectedAt = detectedAt
        self.eventsSalvaged = eventsSalvaged
        self.eventsLost = eventsLost
        self.lastSequence = lastSequence
    }

    enum CodingKeys: String, CodingKey {
        case reason
        case detectedAt = "detected_at"
        case eventsSalvaged = "events_salvaged"
        case eventsLost = "events_lost"
        case lastSequence = "last_sequence"
    }
}

/// What one observation changes: the events to send, in order, and the record to store.
public struct ChangeResult: Sendable, Equatable {
    /// The events, numbered in order after the previous record's sequence.
    public var events: [IdentityEvent]
    /// The slot's new record, or nil when there is nothing to store: the stored record (or its absence) is
    /// still right. Never nil when ``events`` is not empty. Returning nil for unchanged slots keeps periodic
    /// re-reads from rewriting the store (flash wear on gateways).
    public var record: SlotRecord?

    public init(events: [IdentityEvent] = [], record: SlotRecord? = nil) {
        self.events = events
        self.record = record
    }
}
