/// The header names of IoT-connectivity portal exports, and how a header row is mapped to the ICCID, IMSI and
/// status columns.
///
/// Names are compared folded (``fold(_:)``: lower case, without blanks, `_`, `-`, `.`, `#`, `/`, brackets), so
/// `SIM ICCID`, `sim_iccid` and `SimIccid` are one name. Sources of the names: Cisco Jasper Control Center's SIM
/// export (`ICCID`, `IMSI`, `SIM Status` / `Status`), 1NCE (`ICCID`, `IMSI`, `IMSI 2`, `Status`), Twilio (`Iccid`,
/// `Status`), Hologram (`ICCID` or `SIM Number`, `State`), emnify (`ICCID` without the check digit and
/// `ICCID with Luhn`, `IMSI`, `Status`), Soracom (`iccid`, `imsi`, `status`).
public enum CarrierColumns {
    /// Candidate names per role, most specific first: among several matching columns the higher rank wins, two at
    /// one rank are ambiguous (the operator names one with a ``ColumnMapping``).
    static let iccidNames: [[String]] = [
        ["iccidwithluhn", "fulliccid", "iccid20"],
        ["iccid", "simiccid", "iccidnumber", "iccidno", "icc", "iccidid", "simcardiccid"],
        ["simnumber", "simcardnumber", "simserialnumber", "sim"],
    ]
    static let imsiNames: [[String]] = [
        ["imsi", "simimsi", "imsinumber", "currentimsi", "activeimsi", "imsi1", "primaryimsi"],
    ]
    /// The eUICC's EID, beside ICCID and IMSI in the SIM exports of IoT portals that manage eSIM profiles. The
    /// names are the usual spellings (`EID`, `eUICC ID`, `EUICC EID`, `SIM EID`), not checked against each
    /// portal's export: a portal spelling it otherwise is configured with `[reconciliation] eid_column`.
    static let eidNames: [[String]] = [
        ["eid", "euiccid", "euicceid", "simeid", "eidnumber", "euiccidentifier", "euicc"],
    ]
    static let statusNames: [[String]] = [
        ["simstatus", "simstate", "lifecyclestatus", "simlifecyclestatus"],
        ["status", "state", "linkstate", "simcardstatus", "statusdescription"],
    ]

    /// Column indexes chosen.
    struct Resolved: Equatable {
        var iccid: Int
        /// The main IMSI column, first in ``imsis``.
        var imsi: Int?
        /// Every IMSI column: the main one plus `IMSI 2`, `IMSI_3`, `secondary IMSI` … of multi-IMSI SIMs.
        var imsis: [Int]
        var status: Int?
        /// The EID column, when the export has one.
        var eid: Int? = nil
    }

    /// Folds a header name for comparison.
    public static func fold(_ name: String) -> String {
        String(
            name.lowercased().unicodeScalars.filter {
                !" \t_-.#/()[]:\"'\u{FEFF}".unicodeScalars.contains($0)
            }.map(Character.init))
    }

    /// The columns detected in a header: `(iccid, imsi, status)` names as in the header (nil when absent), or the
    /// error a reconciliation would report. For the upload page to show what it will use.
    public static func detect(header: [String]) throws -> (iccid: String, imsi: String?, status: String?) {
        let resolved = try resolve(header: header, mapping: nil)
        return (header[resolved.iccid], resolved.imsi.map { header[$0] }, resolved.status.map { header[$0] })
    }

    static func resolve(header: [String], mapping: ColumnMapping?) throws -> Resolved {
        let folded = header.map(fold)
        func named(_ name: String, role: String) throws -> Int {
            let wanted = fold(name)
            guard let index = folded.firstIndex(of: wanted), !wanted.isEmpty else {
                throw ReconciliationError.mappedColumnMissing(role: role, name: maskedName(name))
            }
            return index
        }
        func detect(_ ranks: [[String]], role: String, excluding: Set<Int>) throws -> Int? {
            for names in ranks {
                let hits = folded.indices.filter { !excluding.contains($0) && names.contains(folded[$0]) }
                if hits.count == 1 { return hits[0] }
                if hits.count > 1 {
                    throw ReconciliationError.ambiguousColumn(role: role, headers: hits.map { maskedName(header[$0]) })
                }
            }
            return nil
        }

        let iccid: Int
        if let name = mapping?.iccid, !name.isEmpty {
            iccid = try named(name, role: "ICCID")
        } else {
            guard let found = try detect(iccidNames, role: "ICCID", excluding: []) else {
                throw ReconciliationError.noICCIDColumn(headers: header.prefix(20).map(maskedName))
            }
            iccid = found
        }
        // With emnify's two ICCID columns, the one not chosen is no other role's.
        var used: Set<Int> = [iccid]
        for (index, name) in folded.enumerated() where iccidNames.joined().contains(name) { used.insert(index) }

        let imsi: Int?
        if let name = mapping?.imsi {
            imsi = try named(name, role: "IMSI")
        } else {
            imsi = try detect(imsiNames, role: "IMSI", excluding: used)
        }
        var imsis: [Int] = imsi.map { [$0] } ?? []
        if imsi != nil {
            // Further IMSI columns of multi-IMSI SIMs: "IMSI 2", "imsi_3", "secondary IMSI", "fallback IMSI".
            for (index, name) in folded.enumerated() where index != imsi && !used.contains(index) {
                let isNumbered = name.hasPrefix("imsi") && name.count > 4 && name.dropFirst(4).allSatisfy(\.isNumber)
                if isNumbered || name == "secondaryimsi" || name == "fallbackimsi" || name == "imsi2" {
                    imsis.append(index)
                }
            }
        }
        if let imsi { used.insert(imsi) }

        let status: Int?
        if let name = mapping?.status {
            status = try named(name, role: "status")
        } else {
            status = try detect(statusNames, role: "status", excluding: used)
        }
        if let status { used.insert(status) }

        let eid: Int?
        if let name = mapping?.eid {
            eid = try named(name, role: "EID")
        } else {
            eid = try detect(eidNames, role: "EID", excluding: used)
        }
        return Resolved(iccid: iccid, imsi: imsi, imsis: imsis, status: status, eid: eid)
    }

    /// A header name fit for an error message: digits as `#` (a header-less file's first row is data), at most 40
    /// characters.
    static func maskedName(_ name: String) -> String {
        String(name.prefix(40).map { $0.isNumber ? "#" : $0 })
    }
}
