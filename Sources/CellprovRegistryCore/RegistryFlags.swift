import CellprovCore
import CellprovEnrollmentAPI
import Foundation

/// The kinds of red flag the registry raises. Raw values are the API's `kind` names.
public enum FlagKind: String, Sendable, Codable, CaseIterable, CodingKeyRepresentable {
    /// A device reported `imei_changed` (a module reporting a new IMEI, or a swapped module).
    case imeiChanged = "imei_changed"
    /// A device reported `duplicate_imei` (two of its own slots with one IMEI).
    case duplicateIMEI = "duplicate_imei"
    /// One IMEI is the current IMEI of slots of two (or more) device serials: a cloned or mis-flashed module.
    case imeiOnTwoUnits = "imei_on_two_units"
    /// A SIM (ICCID) last seen in one unit is now reported by another. Not raised when the card's EID explains
    /// it: a profile switch on the same eUICC, or the whole eUICC moving (``euiccMoved``).
    case iccidMoved = "iccid_moved"
    /// An eUICC (EID) last seen in one unit is now reported by another: the card (or the module or board holding
    /// it) moved.
    case euiccMoved = "euicc_moved"
    /// One profile (ICCID) on two eUICCs: a device reported `profile_clone_suspected` (the same ICCID from another
    /// EID in one slot), or another unit holds the ICCID on another card (or this unit switched profile to an
    /// ICCID another unit holds). Genuine cards cannot do that: a cloned profile or a misread.
    case profileCloneSuspected = "profile_clone_suspected"
    /// A unit's field IMEI is not the one its manufacturing record holds.
    case moduleSwappedSinceManufacturing = "module_swapped_since_manufacturing"
    /// An event, or a refused attempt, from a unit marked lost.
    case lostUnitSeen = "lost_unit_seen"
    /// No event from the unit for the configured number of days.
    case unitSilent = "unit_silent"
    /// Carrier reconciliation: active at the carrier, in no unit.
    case simActiveUnassigned = "sim_active_unassigned"
    /// Carrier reconciliation: in a unit, absent from the carrier's export.
    case simUnknownToCarrier = "sim_unknown_to_carrier"
    /// Carrier reconciliation: the carrier pairs this ICCID with another IMSI than the unit reports.
    case imsiICCIDMismatch = "imsi_iccid_mismatch"
    /// Carrier reconciliation: the export lists an active profile on an eUICC (EID) that no unit reports.
    case eidUnknownToFleet = "eid_unknown_to_fleet"
    /// A device numbered an event of a slot with a sequence an earlier stored event of that slot already has
    /// (another event id): its state went back (its state directory restored from a backup, or wiped), or two
    /// devices report under one serial. The event is stored; the timeline marks it.
    case stateRolledBack = "state_rolled_back"
}

/// A flag to raise: what a rule found. The store gives it an id and a time, and does not raise it again while a
/// flag with the same ``dedupeKey`` is open.
public struct NewFlag: Sendable, Equatable {
    public var kind: FlagKind
    public var severity: EventSeverity
    /// The unit the flag is about (nil for a carrier finding about a SIM in no unit).
    public var serial: String?
    public var slot: String?
    /// One line for people, without identifier digits ("IMEI also enrolled by GW-000200").
    public var summary: String
    /// The identifiers and units behind the flag. Holds raw digits: the HTTP layer masks it like any identity.
    public var evidence: FlagEvidence
    /// Flags with the same key are one finding: while one is open, another is not raised.
    public var dedupeKey: String

    public init(
        kind: FlagKind, severity: EventSeverity, serial: String?, slot: String? = nil, summary: String,
        evidence: FlagEvidence, dedupeKey: String
    ) {
        self.kind = kind
        self.severity = severity
        self.serial = serial
        self.slot = slot
        self.summary = summary
        self.evidence = evidence
        self.dedupeKey = dedupeKey
    }
}

/// The evidence of a flag: the identifiers involved (raw digits: a data channel, masked when shown), the other
/// units involved and the events behind it.
public struct FlagEvidence: Sendable, Codable, Equatable {
    public var imei: String?
    public var imsi: String?
    public var iccid: String?
    /// The eUICC's EID (32 digits), when the flag is about a card.
    public var eid: String?
    /// For comparisons (manufacturing record, previous holder): the other value.
    public var expectedIMEI: String?
    /// For the manufacturing comparison of the card: the factory record's EID.
    public var expectedEID: String?
    public var otherSerials: [String]
    public var eventIDs: [String]
    /// Anything else, without identifier digits (e.g. "carrier status: active").
    public var note: String?

    public init(
        imei: String? = nil, imsi: String? = nil, iccid: String? = nil, eid: String? = nil,
        expectedIMEI: String? = nil, expectedEID: String? = nil, otherSerials: [String] = [],
        eventIDs: [String] = [], note: String? = nil
    ) {
        self.imei = imei
        self.imsi = imsi
        self.iccid = iccid
        self.eid = eid
        self.expectedIMEI = expectedIMEI
        self.expectedEID = expectedEID
        self.otherSerials = otherSerials
        self.eventIDs = eventIDs
        self.note = note
    }
}

/// A raised flag as stored.
public struct RegistryFlag: Sendable, Equatable {
    public var id: Int64
    public var flag: NewFlag
    public var raisedAt: Date
    public var resolvedAt: Date?
    public var resolvedBy: String?
    public var resolutionNote: String?

    public init(
        id: Int64, flag: NewFlag, raisedAt: Date, resolvedAt: Date? = nil, resolvedBy: String? = nil,
        resolutionNote: String? = nil
    ) {
        self.id = id
        self.flag = flag
        self.raisedAt = raisedAt
        self.resolvedAt = resolvedAt
        self.resolvedBy = resolvedBy
        self.resolutionNote = resolutionNote
    }

    public var isOpen: Bool { resolvedAt == nil }
}
