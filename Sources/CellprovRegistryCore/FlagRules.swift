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

    public init(
        request: EnrollmentRequest, serial: String, origin: EventOrigin, unitLost: Bool = false,
        imeiHolders: [String] = [], iccidHolders: [String] = [], manufacturingIMEIs: [String] = [],
        fieldIMEIs: [String] = []
    ) {
        self.request = request
        self.serial = serial
        self.origin = origin
        self.unitLost = unitLost
        self.imeiHolders = imeiHolders
        self.iccidHolders = iccidHolders
        self.manufacturingIMEIs = manufacturingIMEIs
        self.fieldIMEIs = fieldIMEIs
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
        flags += moduleSwapped(context)
        flags += lostUnitSeen(context)
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

    /// `imei_changed` and `duplicate_imei` as the device reported them, with its severity.
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

    /// The event's ICCID was held by another serial's slot: the SIM moved to this unit.
    public static func iccidMoved(_ c: IngestContext) -> [NewFlag] {
        let r = c.request
        guard c.origin == .device, let iccid = r.identity.iccid, !iccid.isEmpty else { return [] }
        let others = sortedUnique(c.iccidHolders.filter { $0 != c.serial })
        guard !others.isEmpty else { return [] }
        return [
            NewFlag(
                kind: .iccidMoved, severity: .warning, serial: c.serial, slot: r.module.slot,
                summary: "SIM last seen in \(others.joined(separator: ", "))",
                evidence: FlagEvidence(imsi: r.identity.imsi, iccid: iccid, otherSerials: others, eventIDs: [r.eventID]),
                dedupeKey: "iccid_moved:\(iccid):\(c.serial)")
        ]
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
