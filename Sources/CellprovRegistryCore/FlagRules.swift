import CellprovCore
import CellprovEnrollmentAPI
import Foundation

/// What the flag rules need to know about one incoming event, gathered by the store inside the ingest transaction
/// (after the event's own slot is updated). Pure data: the rules do no I/O.
public struct IngestContext: Sendable, Equatable {
    public var request: EnrollmentRequest
    /// The unit the event is stored for (already authorised).
    public var serial: String
    public var origin: EventOrigin
    /// The unit is marked lost.
    public var unitLost: Bool
    /// Other serials one of whose field slots currently holds the event's IMEI.
    public var imeiHolders: [String]
    /// Other serials one of whose field slots holds (or, before a `sim_removed`, last held) the event's ICCID.
    public var iccidHolders: [String]
    /// The IMEIs of the unit's manufacturing records, not counting this event.
    public var manufacturingIMEIs: [String]
    /// For a manufacturing record: the IMEIs the unit's field slots currently hold.
    public var fieldIMEIs: [String]
    /// Other serials one of whose field slots holds (or, before a `sim_removed`, last held) the event's EID.
    public var eidHolders: [String]
    /// Of ``iccidHolders``, those whose slot holds the ICCID on the event's eUICC (same EID: the card moved), and
    /// those holding it on another eUICC (both EIDs known, different: one profile on two cards). Empty when the
    /// event has no EID.
    public var iccidHoldersSameEID: [String]
    public var iccidHoldersOtherEID: [String]
    /// The EIDs of the unit's manufacturing records, not counting this event.
    public var manufacturingEIDs: [String]
    /// For a manufacturing record: the EIDs the unit's field slots currently hold.
    public var fieldEIDs: [String]
    /// For a field event: the event id of an earlier stored event of the same unit and slot with this event's
    /// sequence (and another event id), nil when there is none. A re-sent event (the same event id) never gets
    /// here: it is a duplicate.
    public var sequenceReusedFrom: String?

    public init(
        request: EnrollmentRequest, serial: String, origin: EventOrigin, unitLost: Bool = false,
        imeiHolders: [String] = [], iccidHolders: [String] = [], manufacturingIMEIs: [String] = [],
        fieldIMEIs: [String] = [], eidHolders: [String] = [], iccidHoldersSameEID: [String] = [],
        iccidHoldersOtherEID: [String] = [], manufacturingEIDs: [String] = [], fieldEIDs: [String] = [],
        sequenceReusedFrom: String? = nil
    ) {
        self.sequenceReusedFrom = sequenceReusedFrom
        self.request = request
        self.serial = serial
        self.origin = origin
        self.unitLost = unitLost
        self.imeiHolders = imeiHolders
        self.iccidHolders = iccidHolders
        self.manufacturingIMEIs = manufacturingIMEIs
        self.fieldIMEIs = fieldIMEIs
        self.eidHolders = eidHolders
        self.iccidHoldersSameEID = iccidHoldersSameEID
        self.iccidHoldersOtherEID = iccidHoldersOtherEID
        self.manufacturingEIDs = manufacturingEIDs
        self.fieldEIDs = fieldEIDs
    }
}

/// The registry's ingest-time red-flag rules (docs/registry.md, "Flags"). Each rule is a pure function of an
/// ``IngestContext``; ``evaluate(_:)`` runs them all. Summaries never carry identifier digits; evidence does.
public enum FlagRules {
    /// Every flag the event raises, in a fixed order (the store deduplicates by key against open flags).
    public static func evaluate(_ context: IngestContext) -> [NewFlag] {
        var flags = [NewFlag]()
        flags += reported(context)
        flags += imeiOnTwoUnits(context)
        flags += iccidMoved(context)
        flags += euiccMoved(context)
        flags += profileOnTwoCards(context)
        flags += moduleSwapped(context)
        flags += cardSwapped(context)
        flags += lostUnitSeen(context)
        flags += stateRolledBack(context)
        return flags
    }

    /// A trustworthy IMEI: 15 digits, valid check digit, not a placeholder. Cross-unit rules use only these, so
    /// that a fleet of modules all answering `000000000000000` raises `identity_invalid` on each unit rather than
    /// one giant `imei_on_two_units`.
    public static func isTrustedIMEI(_ value: String?) -> Bool {
        guard let value, value.utf8.count == 15 else { return false }
        let validated = IMEI.validate(value)
        return validated.value != nil && validated.problems.isEmpty
    }

    /// A trustworthy EID: 32 digits, starting 89, mod 97 equal to 1 (SGP.29). Only these decide whether a card
    /// moved or a profile is on two cards.
    public static func isTrustedEID(_ value: String?) -> Bool {
        guard let value, value.utf8.count == EID.length else { return false }
        return EID.validate(value).value != nil
    }

    /// `imei_changed`, `duplicate_imei` and `profile_clone_suspected` as the device reported them, with its
    /// severity.
    public static func reported(_ c: IngestContext) -> [NewFlag] {
        guard c.origin == .device else { return [] }
        let r = c.request
        let severity = EventSeverity(rawValue: r.severity) ?? .critical
        let imei = r.identity.imei ?? "-"
        switch r.type {
        case IdentityEventType.imeiChanged.rawValue:
            return [
                NewFlag(
                    kind: .imeiChanged, severity: severity, serial: c.serial, slot: r.module.slot,
                    summary: "the device reports a new IMEI in slot \(r.module.slot)",
                    evidence: FlagEvidence(
                        imei: r.identity.imei, imsi: r.identity.imsi, iccid: r.identity.iccid,
                        expectedIMEI: r.previous?.imei, eventIDs: [r.eventID]),
                    dedupeKey: "imei_changed:\(c.serial):\(r.module.slot):\(imei)")
            ]
        case IdentityEventType.duplicateIMEI.rawValue:
            return [
                NewFlag(
                    kind: .duplicateIMEI, severity: severity, serial: c.serial, slot: r.module.slot,
                    summary: "the device reports one IMEI in two of its slots",
                    evidence: FlagEvidence(imei: r.identity.imei, otherSerials: [], eventIDs: [r.eventID]),
                    dedupeKey: "duplicate_imei:\(c.serial):\(imei)")
            ]
        case IdentityEventType.profileCloneSuspected.rawValue:
            let iccid = r.identity.iccid ?? "-"
            return [
                NewFlag(
                    kind: .profileCloneSuspected, severity: severity, serial: c.serial, slot: r.module.slot,
                    summary: "the device reads the same SIM profile from another eUICC in slot \(r.module.slot)",
                    evidence: FlagEvidence(
                        imsi: r.identity.imsi, iccid: r.identity.iccid, eid: r.identity.eid,
                        expectedEID: r.previous?.eid, eventIDs: [r.eventID]),
                    dedupeKey: "profile_clone_suspected:\(c.serial):\(r.module.slot):\(iccid)")
            ]
        default:
            return []
        }
    }

    /// The event's IMEI is also the current IMEI of another serial's field slot.
    public static func imeiOnTwoUnits(_ c: IngestContext) -> [NewFlag] {
        let r = c.request
        guard c.origin == .device, let imei = r.identity.imei, isTrustedIMEI(imei) else { return [] }
        let others = sortedUnique(c.imeiHolders.filter { $0 != c.serial })
        guard !others.isEmpty else { return [] }
        return [
            NewFlag(
                kind: .imeiOnTwoUnits, severity: .critical, serial: c.serial, slot: r.module.slot,
                summary: "IMEI also enrolled by \(others.joined(separator: ", "))",
                evidence: FlagEvidence(imei: imei, otherSerials: others, eventIDs: [r.eventID]),
                dedupeKey: "imei_on_two_units:\(imei)")
        ]
    }

    /// The event is a profile switch on the unit's own eUICC: the card did not move, so neither did its profile.
    static func isProfileSwitch(_ c: IngestContext) -> Bool {
        c.request.type == IdentityEventType.profileSwitched.rawValue && isTrustedEID(c.request.identity.eid)
    }

    /// The other serials the event's SIM moved from: the ICCID's former holders, less those the card explains
    /// (the same EID: ``euiccMoved`` says it) and those it contradicts (another EID, or a profile switch on this
    /// unit's own card: ``profileOnTwoCards`` says it). The store clears the ICCID from these holders' slots.
    public static func iccidMovedFrom(_ c: IngestContext) -> [String] {
        guard c.origin == .device, let iccid = c.request.identity.iccid, !iccid.isEmpty, !isProfileSwitch(c) else {
            return []
        }
        let explained = isTrustedEID(c.request.identity.eid)
            ? Set(c.iccidHoldersSameEID + c.iccidHoldersOtherEID) : []
        return sortedUnique(c.iccidHolders.filter { $0 != c.serial && !explained.contains($0) })
    }

    /// The other serials the event's eUICC moved from (the store clears the card from their slots).
    public static func euiccMovedFrom(_ c: IngestContext) -> [String] {
        guard c.origin == .device, isTrustedEID(c.request.identity.eid) else { return [] }
        return sortedUnique(c.eidHolders.filter { $0 != c.serial })
    }

    /// The event's ICCID was held by another serial's slot: the SIM moved to this unit. Not for a profile switch
    /// on the same eUICC, nor when the EIDs say the whole card moved (``euiccMoved``) or that the profile is on two
    /// cards (``profileOnTwoCards``).
    public static func iccidMoved(_ c: IngestContext) -> [NewFlag] {
        let r = c.request
        guard let iccid = r.identity.iccid else { return [] }
        let others = iccidMovedFrom(c)
        guard !others.isEmpty else { return [] }
        return [
            NewFlag(
                kind: .iccidMoved, severity: .warning, serial: c.serial, slot: r.module.slot,
                summary: "SIM last seen in \(others.joined(separator: ", "))",
                evidence: FlagEvidence(imsi: r.identity.imsi, iccid: iccid, otherSerials: others, eventIDs: [r.eventID]),
                dedupeKey: "iccid_moved:\(iccid):\(c.serial)")
        ]
    }

    /// The event's EID was held by another serial's slot: the eUICC moved to this unit.
    public static func euiccMoved(_ c: IngestContext) -> [NewFlag] {
        let r = c.request
        guard let eid = r.identity.eid else { return [] }
        let others = euiccMovedFrom(c)
        guard !others.isEmpty else { return [] }
        return [
            NewFlag(
                kind: .euiccMoved, severity: .warning, serial: c.serial, slot: r.module.slot,
                summary: "eUICC last seen in \(others.joined(separator: ", "))",
                evidence: FlagEvidence(
                    imsi: r.identity.imsi, iccid: r.identity.iccid, eid: eid, otherSerials: others,
                    eventIDs: [r.eventID]),
                dedupeKey: "euicc_moved:\(eid):\(c.serial)")
        ]
    }

    /// The event's ICCID is held by another unit on another eUICC (both EIDs known), or this unit switched profile
    /// on its own card to an ICCID another unit holds: one profile on two cards.
    public static func profileOnTwoCards(_ c: IngestContext) -> [NewFlag] {
        let r = c.request
        guard c.origin == .device, let iccid = r.identity.iccid, !iccid.isEmpty, isTrustedEID(r.identity.eid) else {
            return []
        }
        let candidates = isProfileSwitch(c) ? c.iccidHolders : c.iccidHoldersOtherEID
        let others = sortedUnique(candidates.filter { $0 != c.serial })
        guard !others.isEmpty else { return [] }
        return [
            NewFlag(
                kind: .profileCloneSuspected, severity: .critical, serial: c.serial, slot: r.module.slot,
                summary: "SIM profile also held on another eUICC by \(others.joined(separator: ", "))",
                evidence: FlagEvidence(
                    imsi: r.identity.imsi, iccid: iccid, eid: r.identity.eid, otherSerials: others,
                    eventIDs: [r.eventID]),
                dedupeKey: "profile_on_two_cards:\(iccid)")
        ]
    }

    /// Field EID not among the manufacturing records' EIDs (compared only when both sides have one): the eUICC,
    /// or the module or board carrying it, was replaced since the factory. Checked like ``moduleSwapped(_:)``.
    public static func cardSwapped(_ c: IngestContext) -> [NewFlag] {
        let r = c.request
        func flag(_ eid: String, slot: String?, expected: [String]) -> NewFlag {
            let expected = sortedUnique(expected)
            return NewFlag(
                kind: .moduleSwappedSinceManufacturing, severity: .critical, serial: c.serial, slot: slot,
                summary: "field eUICC (EID) differs from the manufacturing record",
                evidence: FlagEvidence(
                    eid: eid, expectedEID: expected.first, eventIDs: [r.eventID],
                    note: expected.count > 1 ? "the unit has \(expected.count) manufacturing EIDs" : nil),
                dedupeKey: "module_swapped:\(c.serial):eid:\(eid)")
        }
        switch c.origin {
        case .device:
            guard r.type != IdentityEventType.identityInvalid.rawValue, r.type != APIEventType.manufactured.rawValue,
                let eid = r.identity.eid, isTrustedEID(eid)
            else { return [] }
            let made = c.manufacturingEIDs.filter { isTrustedEID($0) }
            guard !made.isEmpty, !made.contains(eid) else { return [] }
            return [flag(eid, slot: r.module.slot, expected: made)]
        case .factory:
            var known = Set(c.manufacturingEIDs)
            if let eid = r.identity.eid { known.insert(eid) }
            guard known.contains(where: { isTrustedEID($0) }) else { return [] }
            return sortedUnique(c.fieldEIDs.filter { isTrustedEID($0) && !known.contains($0) }).map {
                flag($0, slot: nil, expected: Array(known))
            }
        }
    }

    /// Field IMEI not among the manufacturing records' IMEIs: checked on a field event (its IMEI) and on a
    /// manufacturing record (every current field IMEI of the unit). No manufacturing record: nothing to compare.
    public static func moduleSwapped(_ c: IngestContext) -> [NewFlag] {
        let r = c.request
        switch c.origin {
        case .device:
            guard r.type != IdentityEventType.identityInvalid.rawValue, r.type != APIEventType.manufactured.rawValue,
                let imei = r.identity.imei, isTrustedIMEI(imei), !c.manufacturingIMEIs.isEmpty,
                !c.manufacturingIMEIs.contains(imei)
            else { return [] }
            return [swapped(serial: c.serial, slot: r.module.slot, imei: imei, expected: c.manufacturingIMEIs, r.eventID)]
        case .factory:
            var known = Set(c.manufacturingIMEIs)
            if let imei = r.identity.imei { known.insert(imei) }
            return sortedUnique(c.fieldIMEIs.filter { isTrustedIMEI($0) && !known.contains($0) }).map {
                swapped(serial: c.serial, slot: nil, imei: $0, expected: sortedUnique(Array(known)), r.eventID)
            }
        }
    }

    static func swapped(serial: String, slot: String?, imei: String, expected: [String], _ eventID: String) -> NewFlag {
        let expected = sortedUnique(expected)
        return NewFlag(
            kind: .moduleSwappedSinceManufacturing, severity: .critical, serial: serial, slot: slot,
            summary: "field IMEI differs from the manufacturing record",
            evidence: FlagEvidence(
                imei: imei, expectedIMEI: expected.first, eventIDs: [eventID],
                note: expected.count > 1 ? "the unit has \(expected.count) manufacturing IMEIs" : nil),
            dedupeKey: "module_swapped:\(serial):\(imei)")
    }

    /// Any event from a unit marked lost (one still holding a valid credential, e.g. a client certificate).
    public static func lostUnitSeen(_ c: IngestContext) -> [NewFlag] {
        guard c.unitLost, c.origin == .device else { return [] }
        return [lostUnitSeen(serial: c.serial, how: "reported an event", eventIDs: [c.request.eventID])]
    }

    /// A field event whose sequence an earlier stored event of the same slot already has: the device's numbering
    /// went back. A sequence never repeats otherwise (docs/enrollment-api.yaml, "Sequence": after a state loss the
    /// daemon continues after the last sequence it knew), so this is its state directory put back from a backup
    /// (database and marker together, which the daemon cannot notice), or wiped, or two devices under one serial.
    /// A lower sequence that repeats none (an operator's requeue of a rejected event filling its gap) is not.
    /// One open flag per unit.
    public static func stateRolledBack(_ c: IngestContext) -> [NewFlag] {
        guard c.origin == .device, let earlier = c.sequenceReusedFrom else { return [] }
        let r = c.request
        return [
            NewFlag(
                kind: .stateRolledBack, severity: .warning, serial: c.serial, slot: r.module.slot,
                summary: "sequence \(r.sequence) of slot \(r.module.slot) reported again by another event: the "
                    + "device's state went back (a backup put back, or wiped) or two devices share this serial",
                evidence: FlagEvidence(
                    eventIDs: [earlier, r.eventID], note: "sequence \(r.sequence) reused in slot \(r.module.slot)"),
                dedupeKey: "state_rolled_back:\(c.serial)")
        ]
    }

    /// `lost_unit_seen` for a unit marked lost that reported an event or tried to (``RegistryStore/recordRefusal``).
    public static func lostUnitSeen(serial: String, how: String, eventIDs: [String] = []) -> NewFlag {
        NewFlag(
            kind: .lostUnitSeen, severity: .critical, serial: serial,
            summary: "unit marked lost \(how)", evidence: FlagEvidence(eventIDs: eventIDs, note: how),
            dedupeKey: "lost_unit_seen:\(serial)")
    }

    /// `unit_silent` for a unit with no event since `days` days (CellprovRegistryAlerts' periodic check).
    public static func unitSilent(serial: String, days: Int) -> NewFlag {
        NewFlag(
            kind: .unitSilent, severity: .warning, serial: serial,
            summary: "no event for more than \(days) days", evidence: FlagEvidence(note: "silent for \(days) days"),
            dedupeKey: "unit_silent:\(serial)")
    }

    static func sortedUnique(_ values: [String]) -> [String] { Array(Set(values)).sorted() }
}
