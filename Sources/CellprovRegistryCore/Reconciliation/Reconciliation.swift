import CellprovCore

/// Carrier reconciliation: compares an IoT-connectivity portal's SIM export (CSV) with the SIMs the fleet's units
/// report, and finds the three disagreements worth a person's time. Pure: bytes and assignments in, a report out.
///
/// - `sim_active_unassigned` (warning): the carrier lists the SIM as active (it is billed and may attach) and no
///   unit holds it: a spare SIM someone is using elsewhere, or a unit that never enrolled.
/// - `sim_unknown_to_carrier` (warning): a unit holds a SIM the export does not list, though the export lists other
///   SIMs of the same issuer (first six ICCID characters): a SIM from outside the fleet's account in a unit.
///   Assignments of issuers absent from the export are not compared (an export covers one carrier account; the
///   fleet may have several) and are counted in ``ReconciliationReport/assignmentsOutOfScope``.
/// - `imsi_iccid_mismatch` (critical): the carrier pairs the ICCID with IMSIs among which the unit's reported IMSI
///   is not: a cloned SIM, or a unit reporting an identity it does not have.
/// - `eid_unknown_to_fleet` (warning), when the export has an EID column: an eUICC the export lists with an active
///   profile, which no unit reports (no unit slot holds the EID, and none of its profiles' ICCIDs is in a unit
///   that reported no EID): a card outside the fleet using the account, or a unit that never enrolled. One flag
///   per EID. An active profile in no unit whose EID is in a unit is another profile of a fleet card (a fallback
///   or not yet enabled profile): counted in ``ReconciliationReport/profilesOnFleetCards``, not
///   `sim_active_unassigned`.
///
/// ICCID matching: both sides are normalised (blanks, dashes, quotes, a spreadsheet's leading `'` or `="…"`
/// dropped, upper-cased, trailing `F` padding removed, as `ICCID.validate`). Then a 20-digit all-decimal ICCID whose
/// last digit is its Luhn check digit is keyed by its first 19 digits, and every other ICCID by itself. So an
/// export listing ICCIDs without the check digit (emnify's `iccid`, 19 digits) matches the unit's 20-digit read,
/// and the reverse; a 20-digit ICCID that fails Luhn only matches itself exactly (the check digit is what proves
/// the 19 digits are the same SIM: only one of the ten 20-digit extensions of a 19-digit body passes Luhn).
public enum Reconciliation {
    /// Parses `csv` (a portal export: UTF-8 with or without BOM, UTF-16 with BOM, or Windows-1252; `,` `;` or tab
    /// delimited; quoted fields) and compares it with `assignments` (``RegistryStore/simAssignments()``).
    /// `mapping` names the columns; nil detects them (``CarrierColumns``). Throws ``ReconciliationError`` for a
    /// file that cannot be used as a whole; rows that cannot be used are skipped and listed in the report.
    public static func reconcile(
        csv: [UInt8], mapping: ColumnMapping?, assignments: [SIMAssignment],
        limits: ReconciliationLimits = .default
    ) throws -> ReconciliationReport {
        let export = try CarrierExport.parse(csv, mapping: mapping, limits: limits)
        return compare(export, assignments: assignments)
    }

    /// The comparison alone, for an export already parsed.
    public static func compare(_ export: CarrierExport, assignments: [SIMAssignment]) -> ReconciliationReport {
        var findings: [ReconciliationFinding] = []
        let issuers = Set(export.sims.values.map(\.issuerPrefix))
        var assignedKeys = Set<String>()
        var compared = 0
        var outOfScope = 0
        var matched = 0
        var matchedByCheckDigit = 0
        var assignedButInactive = 0
        let fleetEIDs = Set(assignments.compactMap(\.eid))
        // ICCIDs of unit slots that reported no EID: their card's EID is unknown, not absent from the fleet.
        let assignedWithoutEID = Set(
            assignments.filter { $0.eid == nil }.map { ICCIDKey.key(ICCIDKey.normalise($0.iccid)) })
        var profilesOnFleetCards = 0

        for assignment in assignments {
            let iccid = ICCIDKey.normalise(assignment.iccid)
            let key = ICCIDKey.key(iccid)
            assignedKeys.insert(key)
            let reportedIMSI = assignment.imsi.map(IMSIText.normalise).flatMap { $0.isEmpty ? nil : $0 }
            guard let sim = export.sims[key] else {
                guard issuers.contains(String(iccid.prefix(6))) else {
                    outOfScope += 1
                    continue
                }
                compared += 1
                findings.append(
                    ReconciliationFinding(
                        flag: NewFlag(
                            kind: .simUnknownToCarrier, severity: .warning, serial: assignment.serial,
                            slot: assignment.slot,
                            summary: "the SIM in \(assignment.serial) slot \(assignment.slot) is absent from the "
                                + "carrier export",
                            evidence: FlagEvidence(
                                imsi: reportedIMSI, iccid: iccid, note: "not listed in the carrier export"),
                            dedupeKey: "sim_unknown_to_carrier:\(key):\(assignment.serial)"),
                        line: nil, carrierStatus: nil, carrierIMSIs: []))
                continue
            }
            compared += 1
            matched += 1
            if sim.iccid != iccid { matchedByCheckDigit += 1 }
            if !sim.active { assignedButInactive += 1 }
            if let reportedIMSI, !sim.imsis.isEmpty, !sim.imsis.contains(reportedIMSI) {
                findings.append(
                    ReconciliationFinding(
                        flag: NewFlag(
                            kind: .imsiICCIDMismatch, severity: .critical, serial: assignment.serial,
                            slot: assignment.slot,
                            summary: "the carrier pairs the SIM in \(assignment.serial) slot \(assignment.slot) "
                                + "with another IMSI than the unit reports",
                            evidence: FlagEvidence(
                                imsi: reportedIMSI, iccid: iccid,
                                note: sim.imsis.count == 1
                                    ? "carrier lists another IMSI" : "carrier lists \(sim.imsis.count) other IMSIs"),
                            dedupeKey: "imsi_iccid_mismatch:\(key):\(reportedIMSI)"),
                        line: sim.line, carrierStatus: sim.status, carrierIMSIs: sim.imsis))
            }
        }

        // eUICCs of the export: active if any of their profiles is, in a unit if any profile's ICCID is in a unit
        // that did not report its EID.
        var cards: [String: (active: Bool, explained: Bool, line: Int, status: String?, iccid: String)] = [:]
        for (key, sim) in export.sims {
            guard let eid = sim.eid else { continue }
            var card = cards[eid] ?? (false, false, sim.line, sim.status, sim.iccid)
            if sim.active && !card.active { (card.line, card.status, card.iccid) = (sim.line, sim.status, sim.iccid) }
            card.active = card.active || sim.active
            card.explained = card.explained || assignedWithoutEID.contains(key)
            cards[eid] = card
        }
        for (eid, card) in cards where card.active && !card.explained && !fleetEIDs.contains(eid) {
            let status = card.status.flatMap { CarrierStatus.isKnown($0) ? $0 : nil }
            let statusText = export.statusColumn == nil ? "listed, no status column" : "status \(status ?? "active")"
            findings.append(
                ReconciliationFinding(
                    flag: NewFlag(
                        kind: .eidUnknownToFleet, severity: .warning, serial: nil,
                        summary: "an eUICC with a profile active at the carrier (\(statusText)) is in no unit",
                        evidence: FlagEvidence(iccid: card.iccid, eid: eid, note: "carrier \(statusText)"),
                        dedupeKey: "eid_unknown_to_fleet:\(eid)"),
                    line: card.line, carrierStatus: card.status, carrierIMSIs: []))
        }

        for (key, sim) in export.sims where sim.active && !assignedKeys.contains(key) {
            if let eid = sim.eid, fleetEIDs.contains(eid) {
                profilesOnFleetCards += 1
                continue
            }
            let status = sim.status.flatMap { CarrierStatus.isKnown($0) ? $0 : nil }
            let statusText = export.statusColumn == nil ? "listed, no status column" : "status \(status ?? "active")"
            findings.append(
                ReconciliationFinding(
                    flag: NewFlag(
                        kind: .simActiveUnassigned, severity: .warning, serial: nil,
                        summary: "a SIM active at the carrier (\(statusText)) is in no unit",
                        evidence: FlagEvidence(imsi: sim.imsis.first, iccid: sim.iccid, note: "carrier \(statusText)"),
                        dedupeKey: "sim_active_unassigned:\(key)"),
                    line: sim.line, carrierStatus: sim.status, carrierIMSIs: sim.imsis))
        }

        let order = Dictionary(uniqueKeysWithValues: FlagKind.allCases.enumerated().map { ($1, $0) })
        findings.sort {
            let a = (order[$0.kind] ?? 0, $0.flag.evidence.iccid ?? "", $0.flag.serial ?? "")
            let b = (order[$1.kind] ?? 0, $1.flag.evidence.iccid ?? "", $1.flag.serial ?? "")
            return a < b || a == b && ($0.flag.evidence.eid ?? "") < ($1.flag.evidence.eid ?? "")
        }
        var report = ReconciliationReport(
            iccidColumn: export.iccidColumn, imsiColumn: export.imsiColumn, statusColumn: export.statusColumn,
            delimiter: String(export.delimiter), rows: export.rows, skippedRowCount: export.skippedRowCount,
            skippedRows: export.skippedRows, carrierSIMs: export.sims.count,
            activeCarrierSIMs: export.sims.values.count(where: \.active),
            statusAssumedActive: export.statusColumn == nil, unrecognisedStatuses: export.unrecognisedStatuses,
            assignmentsCompared: compared, assignmentsOutOfScope: outOfScope, matched: matched,
            matchedByCheckDigit: matchedByCheckDigit, assignedButInactive: assignedButInactive, findings: findings)
        report.eidColumn = export.eidColumn
        report.carrierEIDs = cards.count
        report.invalidEIDs = export.invalidEIDs
        report.eidsUnknownToFleet = report.count(.eidUnknownToFleet)
        report.profilesOnFleetCards = profilesOnFleetCards
        return report
    }
}

/// The ICCID normalisation and matching key of ``Reconciliation``.
public enum ICCIDKey {
    /// Upper-cased, blanks, dashes, dots and quotes dropped, a spreadsheet's `'` prefix or `="…"` wrapper removed,
    /// trailing `F` padding removed.
    public static func normalise(_ raw: some StringProtocol) -> String {
        var out = String.UnicodeScalarView()
        for scalar in raw.unicodeScalars {
            switch scalar {
            case " ", "\t", "-", ".", "\"", "'", "=", "\u{A0}":
                continue
            case "a"..."z":
                out.append(Unicode.Scalar(scalar.value - 0x20)!)
            default:
                out.append(scalar)
            }
        }
        var text = String(out)
        while text.hasSuffix("F") { text.removeLast() }
        return text
    }

    /// The matching key of a normalised ICCID: the first 19 digits of a Luhn-valid 20-digit ICCID, else itself.
    public static func key(_ normalised: String) -> String {
        if normalised.utf8.count == 20, normalised.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            Luhn.isValid(normalised)
        {
            return String(normalised.prefix(19))
        }
        return normalised
    }
}

enum IMSIText {
    /// The digits of an IMSI cell (blanks, quotes and a spreadsheet's `'` dropped).
    static func normalise(_ raw: String) -> String {
        String(decoding: raw.utf8.filter { $0 >= 0x30 && $0 <= 0x39 }, as: UTF8.self)
    }

    /// The IMSIs of a cell: each run of 6 to 15 digits (a multi-IMSI SIM's cell may list several, separated by
    /// anything but digits). A spreadsheet-mangled `2.6201E+14` yields none.
    static func values(_ raw: String) -> [String] {
        var out: [String] = []
        var run: [UInt8] = []
        for byte in raw.utf8 {
            if byte >= 0x30 && byte <= 0x39 {
                run.append(byte)
                continue
            }
            if (6...15).contains(run.count) { out.append(String(decoding: run, as: UTF8.self)) }
            run.removeAll(keepingCapacity: true)
        }
        if (6...15).contains(run.count) { out.append(String(decoding: run, as: UTF8.self)) }
        return out
    }
}
