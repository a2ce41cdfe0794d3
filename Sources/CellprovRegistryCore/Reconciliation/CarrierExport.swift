import CellprovCore
import Foundation

/// One SIM of a carrier export (rows with the same ICCID merged).
public struct CarrierSIM: Sendable, Equatable {
    /// The normalised ICCID as the export writes it (``ICCIDKey/normalise(_:)``).
    public var iccid: String
    /// The IMSIs the carrier lists for it (several for a multi-IMSI SIM, from several columns or rows).
    public var imsis: [String]
    /// The normalised status text (lower case, `_` for blanks and dashes); nil without a status column.
    public var status: String?
    /// Active at the carrier (``CarrierStatus``); true for every SIM of an export without a status column.
    public var active: Bool
    /// The record number of the SIM's first row (the header is record 1).
    public var line: Int
    /// The eUICC the profile is on (a valid EID), when the export has an EID column.
    public var eid: String? = nil

    var issuerPrefix: String { String(iccid.prefix(6)) }
}

/// A parsed carrier export: its SIMs by matching key (``ICCIDKey/key(_:)``) and what was skipped.
public struct CarrierExport: Sendable, Equatable {
    public var iccidColumn: String
    public var imsiColumn: String?
    public var statusColumn: String?
    public var eidColumn: String? = nil
    public var delimiter: Character
    public var rows: Int
    public var sims: [String: CarrierSIM]
    public var skippedRowCount: Int
    public var skippedRows: [SkippedRow]
    public var unrecognisedStatuses: [String: Int]
    /// Non-empty cells of the EID column that are not a valid EID (SGP.29): left out, the row is used.
    public var invalidEIDs: Int = 0

    /// How many skipped rows the report lists (all are counted).
    static let skippedRowsListed = 100

    /// Parses a carrier export. Bounds are checked on the bytes before any parsing (size), then in one pass over
    /// the bytes (records, columns, balanced quotes), so a hostile upload costs one linear scan at most. The rows
    /// are then read one at a time from the same bytes (``CSVRecordReader``): memory is the export's bytes (a
    /// UTF-8 copy only for UTF-16 and Windows-1252 files), one record, and the SIMs found (issue 19 row 7).
    public static func parse(
        _ bytes: [UInt8], mapping: ColumnMapping?, limits: ReconciliationLimits = .default
    ) throws -> CarrierExport {
        guard bytes.count <= limits.maxBytes else {
            throw ReconciliationError.tooLarge(bytes: bytes.count, limit: limits.maxBytes)
        }
        return try withUTF8(bytes) { text in try parse(utf8: text, mapping: mapping, limits: limits) }
    }

    static func parse(
        utf8 text: UnsafeBufferPointer<UInt8>, mapping: ColumnMapping?, limits: ReconciliationLimits
    ) throws -> CarrierExport {
        let shape = try scan(text, limits: limits)
        var reader = CSVRecordReader(text, delimiter: shape.delimiter.asciiValue ?? UInt8(ascii: ","))
        var record = CSVRecordReader.Record()
        do {
            _ = try reader.next(into: &record) { _ in true }
        } catch {
            throw ReconciliationError.malformed("the header row cannot be read")
        }
        let header = record.fields.map { $0.trimmingCharacters(in: .whitespaces) }
        guard header.contains(where: { !$0.isEmpty }) else { throw ReconciliationError.empty }
        let columns = try CarrierColumns.resolve(header: header, mapping: mapping)

        // Only the cells of the columns used become strings.
        var wanted = [Bool](repeating: false, count: header.count)
        for index in [columns.iccid] + columns.imsis + [columns.status, columns.eid].compactMap({ $0 })
        where index < wanted.count {
            wanted[index] = true
        }
        var builder = Builder(columns: columns, header: header)
        do {
            while try reader.next(into: &record, wanted: { $0 < wanted.count && wanted[$0] }) {
                builder.add(record)
            }
        } catch {
            throw ReconciliationError.malformed(
                "a field has a stray quote (text after a closing quote, or an unescaped quote)")
        }
        guard builder.rows > 0 else { throw ReconciliationError.empty }
        guard !builder.sims.isEmpty else { throw ReconciliationError.noValidRows(skipped: builder.skippedCount) }
        return CarrierExport(
            iccidColumn: header[columns.iccid], imsiColumn: columns.imsi.map { header[$0] },
            statusColumn: columns.status.map { header[$0] }, eidColumn: columns.eid.map { header[$0] },
            delimiter: shape.delimiter, rows: builder.rows, sims: builder.sims, skippedRowCount: builder.skippedCount,
            skippedRows: builder.skipped, unrecognisedStatuses: builder.unrecognised, invalidEIDs: builder.invalidEIDs)
    }

    /// Accumulates the data rows.
    private struct Builder {
        let columns: CarrierColumns.Resolved
        let header: [String]
        var rows = 0
        var record = 1
        var sims: [String: CarrierSIM] = [:]
        var skipped: [SkippedRow] = []
        var skippedCount = 0
        var unrecognised: [String: Int] = [:]
        var invalidEIDs = 0

        init(columns: CarrierColumns.Resolved, header: [String]) {
            self.columns = columns
            self.header = header
        }

        mutating func skip(_ reason: String) {
            skippedCount += 1
            if skipped.count < CarrierExport.skippedRowsListed {
                skipped.append(SkippedRow(line: record, reason: reason))
            }
        }

        mutating func add(_ row: CSVRecordReader.Record) {
            record += 1
            // A blank line is no row.
            if row.blank { return }
            let fields = row.fields
            rows += 1
            let rawICCID = columns.iccid < fields.count ? fields[columns.iccid] : ""
            let trimmed = rawICCID.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { return skip("no ICCID") }
            if trimmed.contains(where: \.isNewline) { return skip("the ICCID field spans lines") }
            let upper = trimmed.uppercased()
            if upper.contains("E+") || upper.contains("E1") && upper.contains(".") {
                return skip("the ICCID is in scientific notation (rounded by a spreadsheet): re-export as text")
            }
            let normalised = ICCIDKey.normalise(trimmed)
            let validated = ICCID.validate(normalised)
            guard let iccid = validated.value else {
                let code = validated.problems.first?.code.rawValue ?? "iccid_format"
                return skip("the ICCID is not valid (\(code))")
            }
            let text = iccid.unredacted
            let key = ICCIDKey.key(text)

            var imsis: [String] = []
            for index in columns.imsis where index < fields.count {
                for value in IMSIText.values(fields[index]) where !imsis.contains(value) { imsis.append(value) }
            }
            var eid: String?
            if let index = columns.eid, index < fields.count {
                let cell = String(fields[index].unicodeScalars.filter { !" \t-'\"=\u{A0}".unicodeScalars.contains($0) })
                if !cell.isEmpty {
                    if let valid = EID.validate(cell).value { eid = valid.unredacted } else { invalidEIDs += 1 }
                }
            }
            var status: String?
            var active = true
            if let index = columns.status {
                let normalisedStatus = CarrierStatus.normalise(index < fields.count ? fields[index] : "")
                status = normalisedStatus
                switch CarrierStatus.classify(normalisedStatus) {
                case .active: active = true
                case .inactive: active = false
                case .unknown:
                    active = false
                    let label = CarrierStatus.label(normalisedStatus)
                    if unrecognised[label] != nil || unrecognised.count < 20 { unrecognised[label, default: 0] += 1 }
                }
            }
            if var existing = sims[key] {
                for imsi in imsis where !existing.imsis.contains(imsi) { existing.imsis.append(imsi) }
                if active && !existing.active {
                    existing.active = true
                    existing.status = status
                }
                if existing.eid == nil { existing.eid = eid }
                sims[key] = existing
            } else {
                sims[key] = CarrierSIM(
                    iccid: text, imsis: imsis, status: status, active: active, line: record, eid: eid)
            }
        }
    }

    /// Calls `body` with the export as UTF-8: UTF-8 (BOM dropped) in place, without a copy; UTF-16 with a BOM
    /// (Excel's "Unicode text") and, when not valid UTF-8, Windows-1252 transcoded. NUL bytes mean a binary file
    /// (an .xlsx is a zip archive).
    static func withUTF8<R>(_ bytes: [UInt8], _ body: (UnsafeBufferPointer<UInt8>) throws -> R) throws -> R {
        if bytes.count >= 2, bytes[0] == 0xFF && bytes[1] == 0xFE || bytes[0] == 0xFE && bytes[1] == 0xFF {
            let encoding: String.Encoding = bytes[0] == 0xFF ? .utf16LittleEndian : .utf16BigEndian
            guard var text = String(data: Data(bytes[2...]), encoding: encoding), !text.contains("\u{0}") else {
                throw ReconciliationError.notText
            }
            if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
            return try Array(text.utf8).withUnsafeBufferPointer(body)
        }
        return try bytes.withUnsafeBufferPointer { all in
            if all.contains(0) { throw ReconciliationError.notText }
            var start = 0
            if all.starts(with: [0xEF, 0xBB, 0xBF]) { start = 3 }
            let utf8 = UnsafeBufferPointer(rebasing: all[start...])
            if isValidUTF8(utf8) { return try body(utf8) }
            guard let text = String(data: Data(utf8), encoding: .windowsCP1252) else {
                throw ReconciliationError.notText
            }
            return try Array(text.utf8).withUnsafeBufferPointer(body)
        }
    }

    /// Whether `bytes` are well-formed UTF-8 (checked in place).
    static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }

    struct Shape {
        var delimiter: Character
    }

    /// One pass over the text: the delimiter (the most frequent of `,` `;` tab outside quotes on the first
    /// non-blank line), the record count and the widest record against the limits, and balanced quotes.
    static func scan(_ buffer: UnsafeBufferPointer<UInt8>, limits: ReconciliationLimits) throws -> Shape {
        // Plain counters, not arrays: this loop runs once per byte of a file of up to 32 MiB.
        let comma = UInt8(ascii: ","), semicolon = UInt8(ascii: ";"), tab = UInt8(ascii: "\t")
        var (firstCommas, firstSemicolons, firstTabs) = (0, 0, 0)
        var (commas, semicolons, tabs) = (0, 0, 0)
        var (widestCommas, widestSemicolons, widestTabs) = (0, 0, 0)
        var (widestCommasAt, widestSemicolonsAt, widestTabsAt) = (0, 0, 0)
        var inQuotes = false
        var firstLineDone = false
        var records = 0
        var recordHasContent = false

        func endRecord() throws {
            records += 1
            firstLineDone = true
            if commas > widestCommas { (widestCommas, widestCommasAt) = (commas, records) }
            if semicolons > widestSemicolons { (widestSemicolons, widestSemicolonsAt) = (semicolons, records) }
            if tabs > widestTabs { (widestTabs, widestTabsAt) = (tabs, records) }
            if records > limits.maxRows + 1 { throw ReconciliationError.tooManyRows(limit: limits.maxRows) }
        }

        for byte in buffer {
            if byte == UInt8(ascii: "\"") {
                inQuotes.toggle()
                recordHasContent = true
                continue
            }
            if inQuotes { continue }
            switch byte {
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                if recordHasContent { try endRecord() }
                recordHasContent = false
                (commas, semicolons, tabs) = (0, 0, 0)
            case comma:
                commas += 1
                if !firstLineDone { firstCommas += 1 }
            case semicolon:
                semicolons += 1
                if !firstLineDone { firstSemicolons += 1 }
            case tab:
                tabs += 1
                if !firstLineDone { firstTabs += 1 }
            case UInt8(ascii: " "):
                break
            default:
                recordHasContent = true
            }
        }
        guard !inQuotes else {
            throw ReconciliationError.malformed("a quoted field is not closed (unbalanced quotes)")
        }
        if recordHasContent { try endRecord() }
        guard records > 0 else { throw ReconciliationError.empty }
        // Ties go to tab, then semicolon (a comma also appears inside European decimal values).
        let delimiter: Character
        let widest: Int
        let widestAt: Int
        if firstTabs > 0, firstTabs >= firstSemicolons, firstTabs >= firstCommas {
            (delimiter, widest, widestAt) = ("\t", widestTabs, widestTabsAt)
        } else if firstSemicolons > 0, firstSemicolons >= firstCommas {
            (delimiter, widest, widestAt) = (";", widestSemicolons, widestSemicolonsAt)
        } else {
            (delimiter, widest, widestAt) = (",", widestCommas, widestCommasAt)
        }
        if widest + 1 > limits.maxColumns {
            throw ReconciliationError.tooManyColumns(line: widestAt, limit: limits.maxColumns)
        }
        return Shape(delimiter: delimiter)
    }
}

/// Which statuses count as active. Active means the carrier lets the SIM attach and pass traffic in production
/// (and bills it): Cisco Jasper Control Center and emnify `Activated`, Twilio and Soracom `active`, 1NCE and
/// Telnyx `Enabled`, Hologram `LIVE`. Test states (Jasper `TEST_READY`, emnify `Factory Test`), inventory and
/// ready-to-activate states, suspended, paused, deactivated, retired and deleted SIMs are not active: a SIM in no
/// unit in those states is expected (stock, factory test) and is not flagged. An unrecognised status is taken as
/// not active (no flag) and counted in the report, so the operator sees a status column that was not understood
/// instead of a flood of findings.
public enum CarrierStatus {
    public enum Class: Sendable, Equatable { case active, inactive, unknown }

    static let active: Set<String> = [
        "active", "activated", "enabled", "live", "online", "attached", "in_use", "inuse", "connected",
        "in_service", "billable",
    ]
    static let inactive: Set<String> = [
        "inactive", "deactivated", "inventory", "activation_ready", "ready", "test_ready", "test", "factory_test",
        "new", "issued", "retired", "purged", "replaced", "suspended", "disabled", "standby", "canceled", "cancelled",
        "deleted", "terminated", "dead", "paused", "blocked", "offline", "pending", "scheduled", "updating",
        "pre_activation", "preactivation", "shutdown", "not_activated", "deactivation_pending",
    ]

    /// Lower case, blanks and dashes as `_`, trimmed.
    public static func normalise(_ raw: String) -> String {
        var out = ""
        var pendingSeparator = false
        for character in raw.lowercased() {
            if character == " " || character == "-" || character == "_" || character == "\t" {
                pendingSeparator = !out.isEmpty
                continue
            }
            if pendingSeparator { out.append("_") }
            pendingSeparator = false
            out.append(character)
        }
        return out
    }

    public static func classify(_ normalised: String) -> Class {
        if active.contains(normalised) { return .active }
        if inactive.contains(normalised) { return .inactive }
        // Hologram's PAUSED-USER / PAUSED-SYS, Telnyx's data_limit_exceeded-like system states.
        if normalised.hasPrefix("paused") || normalised.hasPrefix("deactivat") || normalised.hasPrefix("suspend") {
            return .inactive
        }
        return .unknown
    }

    static func isKnown(_ normalised: String) -> Bool { classify(normalised) != .unknown }

    /// A status text fit for a report: at most 32 characters, digits replaced by `#` (a mis-mapped column could
    /// hold identifiers).
    static func label(_ normalised: String) -> String {
        let text = normalised.isEmpty ? "(empty)" : String(normalised.prefix(32))
        return String(text.map { $0.isNumber ? "#" : $0 })
    }
}
