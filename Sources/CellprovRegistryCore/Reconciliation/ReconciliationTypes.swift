import CellprovCore
import Foundation

/// Which columns of a carrier export hold what. Given by the operator when the portal's header names are not
/// among the ones ``Reconciliation`` detects (``CarrierColumns``); names are matched case-insensitively, ignoring
/// blanks, `_`, `-` and `.` (so `SIM ICCID`, `sim_iccid` and `Sim-Iccid` are one name). A role left nil (or an
/// empty ICCID name) is detected as without a mapping.
public struct ColumnMapping: Sendable, Equatable, Codable {
    /// The ICCID column (required).
    public var iccid: String
    /// The IMSI column, when the export has one.
    public var imsi: String?
    /// The status column, when the export has one.
    public var status: String?
    /// The eUICC's EID column, when the export has one.
    public var eid: String?

    public init(iccid: String, imsi: String? = nil, status: String? = nil, eid: String? = nil) {
        self.iccid = iccid
        self.imsi = imsi
        self.status = status
        self.eid = eid
    }

    /// A mapping from optional configuration (`[reconciliation] iccid_column`, …): nil when nothing is configured;
    /// an unconfigured ICCID column is then detected.
    public static func configured(iccid: String?, imsi: String?, status: String?, eid: String? = nil)
        -> ColumnMapping?
    {
        func clean(_ s: String?) -> String? {
            s.flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 }
        }
        guard clean(iccid) != nil || clean(imsi) != nil || clean(status) != nil || clean(eid) != nil else {
            return nil
        }
        return ColumnMapping(iccid: clean(iccid) ?? "", imsi: clean(imsi), status: clean(status), eid: clean(eid))
    }
}

/// The bounds of one reconciliation. A carrier export is operator input from a browser upload: it is bounded
/// before it is parsed, and a file beyond the bounds is refused as a whole (never silently truncated, which
/// would turn every SIM past the cut into a false `sim_unknown_to_carrier`).
public struct ReconciliationLimits: Sendable, Equatable {
    /// The largest carrier export accepted: 32 MiB (a 200 000-SIM export with a dozen columns is about 31 MB). The
    /// one rule for the size: the HTTP layer bounds the upload's body by it (413 past it) and the parser refuses a
    /// file past it (docs/reconciliation.md).
    public static let maxExportBytes = 32 * 1024 * 1024
    /// Largest accepted file, in bytes.
    public var maxBytes: Int
    /// Most data rows accepted (the header not counted).
    public var maxRows: Int
    /// Most columns in a row.
    public var maxColumns: Int

    public init(maxBytes: Int = maxExportBytes, maxRows: Int = 200_000, maxColumns: Int = 256) {
        self.maxBytes = maxBytes
        self.maxRows = maxRows
        self.maxColumns = maxColumns
    }

    public static let `default` = ReconciliationLimits()
}

/// Why a carrier export was refused as a whole. Descriptions carry no identifier digits (a header-less file's
/// "header" is a data row: header names are shown with digits replaced by `#`).
public enum ReconciliationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file is larger than ``ReconciliationLimits/maxBytes``.
    case tooLarge(bytes: Int, limit: Int)
    /// More data rows than ``ReconciliationLimits/maxRows``.
    case tooManyRows(limit: Int)
    /// A row with more columns than ``ReconciliationLimits/maxColumns``.
    case tooManyColumns(line: Int, limit: Int)
    /// Nothing but blanks, or only a header.
    case empty
    /// Not UTF-8, UTF-16 (with its byte-order mark) or Windows-1252 text: e.g. an .xlsx uploaded as is.
    case notText
    /// The CSV structure is broken (an unterminated quoted field, text after a closing quote).
    case malformed(String)
    /// No column could be taken for the ICCID; `headers` are the file's header names (digits masked).
    case noICCIDColumn(headers: [String])
    /// A column named in the ``ColumnMapping`` is not in the header.
    case mappedColumnMissing(role: String, name: String)
    /// Two columns of the header both match one role and the mapping does not say which (e.g. `ICCID` and
    /// `SIM ICCID` holding different things).
    case ambiguousColumn(role: String, headers: [String])
    /// No row holds a usable ICCID.
    case noValidRows(skipped: Int)

    public var description: String {
        switch self {
        case .tooLarge(let bytes, let limit):
            return "the export is \(bytes) bytes, more than the limit of \(limit)"
        case .tooManyRows(let limit):
            return "the export has more than \(limit) rows; split it"
        case .tooManyColumns(let line, let limit):
            return "line \(line) has more than \(limit) columns"
        case .empty:
            return "the export holds no data rows"
        case .notText:
            return "the export is not a text CSV file (UTF-8, UTF-16 or Windows-1252); export it as CSV"
        case .malformed(let why):
            return "the export is not well-formed CSV: \(why)"
        case .noICCIDColumn(let headers):
            return "no ICCID column found among the headers [\(headers.joined(separator: ", "))]; "
                + "name it with the column mapping"
        case .mappedColumnMissing(let role, let name):
            return "the \(role) column \"\(name)\" is not in the export's header"
        case .ambiguousColumn(let role, let headers):
            return "several columns could be the \(role) [\(headers.joined(separator: ", "))]; "
                + "name one with the column mapping"
        case .noValidRows(let skipped):
            return "no row holds a usable ICCID (\(skipped) rows skipped)"
        }
    }
}

/// A data row that was not used, and why (the line number is the file's, 1-based, header included). No digits of
/// the row's identifiers.
public struct SkippedRow: Sendable, Equatable {
    public var line: Int
    public var reason: String

    public init(line: Int, reason: String) {
        self.line = line
        self.reason = reason
    }
}

/// One finding of a reconciliation: the flag to raise plus what the report shows about it.
public struct ReconciliationFinding: Sendable, Equatable {
    public var flag: NewFlag
    /// The export's line of the SIM (nil for `sim_unknown_to_carrier`: the SIM is not in the export).
    public var line: Int?
    /// The carrier's status text, normalised (lower case), when the export has a status column.
    public var carrierStatus: String?
    /// The IMSIs the carrier lists for the ICCID (raw digits: a data channel, masked when shown).
    public var carrierIMSIs: [String]

    public init(flag: NewFlag, line: Int?, carrierStatus: String?, carrierIMSIs: [String]) {
        self.flag = flag
        self.line = line
        self.carrierStatus = carrierStatus
        self.carrierIMSIs = carrierIMSIs
    }

    public var kind: FlagKind { flag.kind }
}

/// What a reconciliation found. The counts let the operator judge the export before the findings: a file whose
/// status column was not understood shows it in ``unrecognisedStatuses``, one from another carrier in
/// ``assignmentsOutOfScope``.
public struct ReconciliationReport: Sendable, Equatable {
    /// The columns used (header names as in the file) and the delimiter.
    public var iccidColumn: String
    public var imsiColumn: String?
    public var statusColumn: String?
    /// The EID column, when the export has one (nil: no EID compared).
    public var eidColumn: String? = nil
    /// Distinct eUICCs (valid EIDs) in the export, cells of the EID column that are not a valid EID (left out; the
    /// row's SIM is still used), eUICCs the export lists with an active profile that no unit reports
    /// (`eid_unknown_to_fleet`), and active profiles in no unit whose eUICC is in a unit (another profile of that
    /// card is enabled: not `sim_active_unassigned`).
    public var carrierEIDs: Int = 0
    public var invalidEIDs: Int = 0
    public var eidsUnknownToFleet: Int = 0
    public var profilesOnFleetCards: Int = 0
    /// "," ";" or "\t".
    public var delimiter: String
    /// Data rows read (the header not counted), rows skipped and why (the first 100; ``skippedRowCount`` counts all).
    public var rows: Int
    public var skippedRowCount: Int
    public var skippedRows: [SkippedRow]
    /// Distinct SIMs (ICCIDs) in the export, and how many of them count as active.
    public var carrierSIMs: Int
    public var activeCarrierSIMs: Int
    /// True when the export has no status column: every listed SIM is then taken as active.
    public var statusAssumedActive: Bool
    /// Status texts that are neither known active nor known inactive (taken as not active), with their counts.
    public var unrecognisedStatuses: [String: Int]
    /// Assignments (unit slots holding a SIM) compared, and those left out because their ICCID's issuer prefix
    /// does not occur in the export (SIMs of another carrier: not "unknown to this carrier").
    public var assignmentsCompared: Int
    public var assignmentsOutOfScope: Int
    /// Assigned SIMs found in the export.
    public var matched: Int
    /// Of them, matched only through the 19/20-digit check-digit rule (``Reconciliation`` explains it).
    public var matchedByCheckDigit: Int
    /// Assigned SIMs the carrier lists as not active (a unit using a SIM the carrier has suspended or retired):
    /// counted, not flagged (the unit's own events will show whether it still attaches).
    public var assignedButInactive: Int
    /// Every finding, in a stable order (kind, then ICCID, then serial).
    public var findings: [ReconciliationFinding]

    public init(
        iccidColumn: String, imsiColumn: String?, statusColumn: String?, delimiter: String, rows: Int,
        skippedRowCount: Int, skippedRows: [SkippedRow], carrierSIMs: Int, activeCarrierSIMs: Int,
        statusAssumedActive: Bool, unrecognisedStatuses: [String: Int], assignmentsCompared: Int,
        assignmentsOutOfScope: Int, matched: Int, matchedByCheckDigit: Int, assignedButInactive: Int,
        findings: [ReconciliationFinding]
    ) {
        self.iccidColumn = iccidColumn
        self.imsiColumn = imsiColumn
        self.statusColumn = statusColumn
        self.delimiter = delimiter
        self.rows = rows
        self.skippedRowCount = skippedRowCount
        self.skippedRows = skippedRows
        self.carrierSIMs = carrierSIMs
        self.activeCarrierSIMs = activeCarrierSIMs
        self.statusAssumedActive = statusAssumedActive
        self.unrecognisedStatuses = unrecognisedStatuses
        self.assignmentsCompared = assignmentsCompared
        self.assignmentsOutOfScope = assignmentsOutOfScope
        self.matched = matched
        self.matchedByCheckDigit = matchedByCheckDigit
        self.assignedButInactive = assignedButInactive
        self.findings = findings
    }

    /// The flags to raise (`RegistryStore.raise`), one per finding.
    public var flags: [NewFlag] { findings.map(\.flag) }

    /// Findings per kind.
    public func count(_ kind: FlagKind) -> Int { findings.count { $0.kind == kind } }

    /// The report as label/value lines for a page or a JSON answer, in order, without identifier digits (header
    /// names and status texts have digits masked as `#`; the first 20 skipped rows are listed by record number).
    public var summaryLines: [(String, String)] {
        func masked(_ s: String) -> String { String(s.prefix(40).map { $0.isNumber ? "#" : $0 }) }
        let delimiterName = [",": "comma", ";": "semicolon", "\t": "tab"][delimiter] ?? "comma"
        var lines: [(String, String)] = [
            ("ICCID column", masked(iccidColumn)),
            ("IMSI column", imsiColumn.map(masked) ?? "none"),
            ("status column", statusColumn.map(masked) ?? "none: every listed SIM is taken as active"),
            ("delimiter", delimiterName),
            ("rows read", "\(rows)"),
            ("rows skipped", "\(skippedRowCount)"),
            ("SIMs in the export", "\(carrierSIMs)"),
            ("active at the carrier", "\(activeCarrierSIMs)"),
        ]
        if !unrecognisedStatuses.isEmpty {
            let list = unrecognisedStatuses.sorted { $0.key < $1.key }.map { "\(masked($0.key)) (\($0.value))" }
            lines.append(("unrecognised statuses (taken as not active)", list.joined(separator: ", ")))
        }
        lines += [
            ("unit SIMs compared", "\(assignmentsCompared)"),
            ("unit SIMs of other issuers (not compared)", "\(assignmentsOutOfScope)"),
            ("unit SIMs found in the export", "\(matched)"),
            ("of them matched through the check digit", "\(matchedByCheckDigit)"),
            ("unit SIMs the carrier lists as not active", "\(assignedButInactive)"),
            (FlagKind.simActiveUnassigned.rawValue, "\(count(.simActiveUnassigned))"),
            (FlagKind.simUnknownToCarrier.rawValue, "\(count(.simUnknownToCarrier))"),
            (FlagKind.imsiICCIDMismatch.rawValue, "\(count(.imsiICCIDMismatch))"),
        ]
        if let eidColumn {
            lines += [
                ("EID column", masked(eidColumn)),
                ("eUICCs (EIDs) in the export", "\(carrierEIDs)"),
                ("EID cells not a valid EID (left out)", "\(invalidEIDs)"),
                ("active profiles on a fleet eUICC, not enabled (not flagged)", "\(profilesOnFleetCards)"),
                (FlagKind.eidUnknownToFleet.rawValue, "\(count(.eidUnknownToFleet))"),
            ]
        }
        for row in skippedRows.prefix(20) { lines.append(("skipped row \(row.line)", row.reason)) }
        return lines
    }
}
