import CellprovCore
import CellprovRegistryCore
import Foundation
import Testing

/// Carrier reconciliation against generated exports: every planted finding is reported, and nothing else (the
/// decoys: formatting, F padding, 19-digit exports, multi-IMSI SIMs, inactive stock, other carriers' SIMs).
@Suite struct ReconciliationTests {
    /// A deterministic generator (SplitMix64), so a failure reproduces.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func digits(_ count: Int) -> String {
            String((0..<count).map { _ in Character(String(next() % 10)) })
        }
    }

    /// A 20-digit ICCID of issuer prefix `issuer` (6 digits) with its Luhn check digit.
    static func iccid(_ issuer: String, _ g: inout Generator) -> String {
        let body = issuer + g.digits(13)
        return body + String(Luhn.checkDigit(for: body)!)
    }

    struct Expected: Hashable {
        var kind: FlagKind
        var iccid: String
        var serial: String?
    }

    /// Quotes a CSV field.
    static func quoted(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    @Test func tenThousandSIMsWithPlantedFindings() throws {
        var g = Generator(state: 0x5EED)
        let issuer = "894920"
        var rows: [String] = []
        var assignments: [SIMAssignment] = []
        var expected = Set<Expected>()
        var serialNumber = 0
        /// Serials without digits ("GW-BCD"), so that a digit in a summary can only be an identifier's.
        func nextSerial() -> String {
            serialNumber += 1
            var n = serialNumber
            var letters = ""
            while n > 0 {
                letters = String(UnicodeScalar(UInt8(65 + n % 26))) + letters
                n /= 26
            }
            return "GW-" + letters
        }
        let inactiveStatuses = ["DEACTIVATED", "Inventory", "TEST_READY", "Suspended", "Factory Test", "PAUSED-USER",
            "retired", "ACTIVATION_READY", "ready"]
        let activeStatuses = ["ACTIVATED", "Active", " live ", "Enabled", "activated"]
        var seen = Set<String>()
        func freshICCID(_ issuer: String) -> String {
            while true {
                let value = Self.iccid(issuer, &g)
                if seen.insert(String(value.prefix(19))).inserted { return value }
            }
        }
        func imsi() -> String { "26201" + g.digits(10) }
        /// One export row: ICCID as written, IMSI, IMSI 2, status, a label with the delimiter inside quotes.
        func row(_ iccid: String, _ imsi: String, _ imsi2: String = "", _ status: String) -> String {
            [Self.quoted(iccid), imsi, imsi2, status, Self.quoted("pump; north \(rows.count)")].joined(separator: ";")
        }

        // 1. 9 000 SIMs held by units, active at the carrier, written in assorted but equivalent forms.
        for i in 0..<9000 {
            let value = freshICCID(issuer)
            let sim = imsi()
            let written: String
            let reported: String
            switch i % 9 {
            case 0: (written, reported) = (value, value)
            case 1: (written, reported) = (String(value.prefix(19)), value)  // emnify: no check digit
            case 2: (written, reported) = (value, String(value.prefix(19)))  // unit read 19 digits
            case 3: (written, reported) = (String(value.prefix(19)) + "F", value)  // F padding
            case 4: (written, reported) = (value + "f", value + "F")  // lower-case padding both sides
            case 5: (written, reported) = ("'" + value, value)  // spreadsheet text prefix
            case 6: (written, reported) = ("=\"\(value)\"", value)  // spreadsheet formula wrapper
            case 7:
                let spaced = stride(from: 0, to: 20, by: 4).map { start -> String in
                    let a = value.index(value.startIndex, offsetBy: start)
                    return String(value[a..<value.index(a, offsetBy: 4)])
                }.joined(separator: " ")
                (written, reported) = (spaced, value)
            default:
                let dashed = stride(from: 0, to: 20, by: 5).map { start -> String in
                    let a = value.index(value.startIndex, offsetBy: start)
                    return String(value[a..<value.index(a, offsetBy: 5)])
                }.joined(separator: "-")
                (written, reported) = (dashed, value)
            }
            let serial = nextSerial()
            let status = activeStatuses[i % activeStatuses.count]
            if i % 50 == 0 {
                // A multi-IMSI SIM: the unit reports the second IMSI.
                let second = imsi()
                rows.append(row(written, "'" + sim, second, status))
                assignments.append(SIMAssignment(serial: serial, slot: "usb-1", iccid: reported, imsi: second))
            } else if i % 77 == 0 {
                // The unit reports no IMSI: nothing to compare.
                rows.append(row(written, sim, "", status))
                assignments.append(SIMAssignment(serial: serial, slot: "usb-1", iccid: reported, imsi: nil))
            } else if i % 101 == 0 {
                // Listed twice: an old deactivated row, then the active one.
                rows.append(row(written, sim, "", "DEACTIVATED"))
                rows.append(row(written, sim, "", status))
                assignments.append(SIMAssignment(serial: serial, slot: "usb-1", iccid: reported, imsi: sim))
            } else if i % 131 == 0 {
                // Assigned but suspended at the carrier: counted, not flagged.
                rows.append(row(written, sim, "", "Suspended"))
                assignments.append(SIMAssignment(serial: serial, slot: "usb-1", iccid: reported, imsi: sim))
            } else if i % 600 == 7 {
                // Planted: the carrier pairs the ICCID with another IMSI.
                let other = imsi()
                rows.append(row(written, sim, "", status))
                assignments.append(SIMAssignment(serial: serial, slot: "usb-2", iccid: reported, imsi: other))
                expected.insert(Expected(kind: .imsiICCIDMismatch, iccid: ICCIDKey.normalise(reported), serial: serial))
            } else {
                rows.append(row(written, sim, "", status))
                assignments.append(SIMAssignment(serial: serial, slot: "usb-1", iccid: reported, imsi: sim))
            }
        }
        // 2. Hex ICCIDs (China Mobile style), written in lower case, held by units.
        for _ in 0..<20 {
            let value = "898602F9" + g.digits(12)
            let sim = "46000" + g.digits(10)
            rows.append(row(value.lowercased(), sim, "", "Active"))
            assignments.append(SIMAssignment(serial: nextSerial(), slot: "usb-1", iccid: value, imsi: sim))
        }
        // 3. Stock in no unit, not active (decoys), plus unrecognised statuses (counted, not flagged).
        for i in 0..<940 {
            let status = i < 10 ? "Zombie" : inactiveStatuses[i % inactiveStatuses.count]
            rows.append(row(freshICCID(issuer), imsi(), "", status))
        }
        // 4. Planted: active at the carrier, in no unit.
        for i in 0..<25 {
            let value = freshICCID(issuer)
            rows.append(row(i.isMultiple(of: 2) ? String(value.prefix(19)) : value, imsi(), "",
                activeStatuses[i % activeStatuses.count]))
            expected.insert(
                Expected(kind: .simActiveUnassigned, iccid: i.isMultiple(of: 2) ? String(value.prefix(19)) : value,
                    serial: nil))
        }
        // 5. Planted: in a unit, absent from the export (same issuer).
        for _ in 0..<20 {
            let value = freshICCID(issuer)
            let serial = nextSerial()
            assignments.append(SIMAssignment(serial: serial, slot: "usb-1", iccid: value, imsi: imsi()))
            expected.insert(Expected(kind: .simUnknownToCarrier, iccid: value, serial: serial))
        }
        // 6. Decoys: SIMs of another carrier in units (another issuer: out of the export's scope).
        for _ in 0..<30 {
            assignments.append(
                SIMAssignment(serial: nextSerial(), slot: "usb-1", iccid: freshICCID("891004"), imsi: imsi()))
        }
        // 7. Rows that are skipped: a spreadsheet-rounded ICCID, a bad prefix, an empty ICCID; blank lines.
        rows.append(row("8.94920E+18", imsi(), "", "Active"))
        rows.append(row("1234567890123456789", imsi(), "", "Active"))
        rows.append(row("", imsi(), "", "Active"))
        rows.append("")
        rows.shuffle(using: &g)

        let header = "ICCID;IMSI;IMSI 2;SIM Status;Label"
        let text = "\u{FEFF}" + ([header] + rows).joined(separator: "\r\n") + "\r\n"
        let bytes = Array(text.utf8)

        let clock = ContinuousClock()
        var report: ReconciliationReport?
        let elapsed = try clock.measure {
            report = try Reconciliation.reconcile(csv: bytes, mapping: nil, assignments: assignments)
        }
        let r = try #require(report)
        print("reconciliation of \(r.rows) rows, \(assignments.count) assignments, \(bytes.count) bytes: \(elapsed)")
        #expect(elapsed < .seconds(10))

        let found = Set(
            r.findings.map { Expected(kind: $0.kind, iccid: $0.flag.evidence.iccid ?? "", serial: $0.flag.serial) })
        // Counts, not the sets themselves: a failing #expect over thousands of elements would print them all.
        let unexpected = found.subtracting(expected).count
        let missed = expected.subtracting(found).count
        #expect(unexpected == 0)
        #expect(missed == 0)
        #expect(r.findings.count == expected.count)
        #expect(r.count(.imsiICCIDMismatch) == expected.count { $0.kind == .imsiICCIDMismatch })
        #expect(r.count(.simActiveUnassigned) == 25)
        #expect(r.count(.simUnknownToCarrier) == 20)

        #expect(r.iccidColumn == "ICCID")
        #expect(r.imsiColumn == "IMSI")
        #expect(r.statusColumn == "SIM Status")
        #expect(r.delimiter == ";")
        #expect(r.skippedRowCount == 3)
        #expect(r.skippedRows.map(\.reason).contains { $0.contains("scientific notation") })
        #expect(r.unrecognisedStatuses == ["zombie": 10])
        #expect(r.assignmentsOutOfScope == 30)
        #expect(r.matched == 9020)
        #expect(r.matchedByCheckDigit > 0)
        let suspended = (0..<9000).count { $0 % 131 == 0 && $0 % 50 != 0 && $0 % 77 != 0 && $0 % 101 != 0 }
        #expect(r.assignedButInactive == suspended)
        #expect(r.carrierSIMs == 9000 + 20 + 940 + 25)

        // Flags: severities, dedupe keys unique, summaries without identifier digits, evidence with identifiers.
        let distinctKeys = Set(r.flags.map(\.dedupeKey)).count
        #expect(distinctKeys == r.flags.count)
        for finding in r.findings {
            let flag = finding.flag
            switch flag.kind {
            case .imsiICCIDMismatch: #expect(flag.severity == .critical)
            default: #expect(flag.severity == .warning)
            }
            var summary = flag.summary
            if let serial = flag.serial { summary = summary.replacingOccurrences(of: serial, with: "") }
            summary = summary.replacingOccurrences(of: "usb-1", with: "").replacingOccurrences(of: "usb-2", with: "")
            let summaryDigits = summary.contains { $0.isNumber }
            #expect(!summaryDigits, "digits in summary: \(flag.summary)")
            let noteDigits = flag.evidence.note?.contains { $0.isNumber } ?? false
            #expect(!noteDigits)
            #expect(flag.evidence.iccid != nil)
            #expect(flag.dedupeKey.hasPrefix(flag.kind.rawValue + ":"))
        }
        let mismatch = try #require(r.findings.first { $0.kind == .imsiICCIDMismatch })
        #expect(mismatch.carrierIMSIs.count == 1 && mismatch.carrierIMSIs[0] != mismatch.flag.evidence.imsi)

        // A second run gives the same flags in the same order (dedupe keys stable across uploads).
        let again = try Reconciliation.reconcile(csv: bytes, mapping: nil, assignments: assignments.reversed())
        let sameFlags = again.flags == r.flags
        #expect(sameFlags)

        // The report's lines for the page: no identifier digits, the counts as computed.
        let lines = r.summaryLines
        for (label, value) in lines {
            #expect(!(label + value).contains(/[0-9]{6}/), "\(label): \(value)")
        }
        let byLabel = Dictionary(lines.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        #expect(byLabel["rows read"] == "\(r.rows)")
        #expect(byLabel["imsi_iccid_mismatch"] == "\(r.count(.imsiICCIDMismatch))")
        #expect(byLabel["unrecognised statuses (taken as not active)"] == "zombie (10)")
        #expect(byLabel["delimiter"] == "semicolon")
    }

    @Test func nineteenDigitExportMatchesOnlyTheLuhnValidTwentyDigitRead() throws {
        let body = "8949200000000000001"
        let check = Luhn.checkDigit(for: body)!
        let valid = body + String(check)
        let invalid = body + String((check + 1) % 10)
        let csv = Array("ICCID,Status\n\(body),active\n".utf8)
        let good = try Reconciliation.reconcile(
            csv: csv, mapping: nil, assignments: [SIMAssignment(serial: "A", slot: "s", iccid: valid, imsi: nil)])
        #expect(good.findings.isEmpty)
        #expect(good.matchedByCheckDigit == 1)
        let bad = try Reconciliation.reconcile(
            csv: csv, mapping: nil, assignments: [SIMAssignment(serial: "A", slot: "s", iccid: invalid, imsi: nil)])
        #expect(Set(bad.findings.map(\.kind)) == [.simActiveUnassigned, .simUnknownToCarrier])
    }

    @Test func configuredMappingDetectsTheRolesLeftOut() throws {
        #expect(ColumnMapping.configured(iccid: nil, imsi: " ", status: nil) == nil)
        let mapping = try #require(ColumnMapping.configured(iccid: nil, imsi: nil, status: "Zustand"))
        let csv = Array("ICCID,IMSI,Zustand\n89492000000000000018,262011234567890,Activated\n".utf8)
        let r = try Reconciliation.reconcile(csv: csv, mapping: mapping, assignments: [])
        #expect(r.iccidColumn == "ICCID")
        #expect(r.imsiColumn == "IMSI")
        #expect(r.statusColumn == "Zustand")
        #expect(r.activeCarrierSIMs == 1)
    }

    @Test func exportWithoutStatusTakesListedSIMsAsActive() throws {
        let csv = Array("iccid\n89492000000000000018\n".utf8)
        let r = try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: [])
        #expect(r.statusAssumedActive)
        #expect(r.findings.map(\.kind) == [.simActiveUnassigned])
        #expect(r.findings[0].flag.summary == "a SIM active at the carrier (listed, no status column) is in no unit")
    }

    // MARK: Header detection

    struct HeaderCase: Sendable, CustomTestStringConvertible {
        var portal: String
        var header: [String]
        var iccid: String?
        var imsi: String?
        var status: String?
        var testDescription: String { portal }
    }

    static let headerCases: [HeaderCase] = [
        HeaderCase(portal: "Jasper Control Center",
            header: ["ICCID", "IMSI", "MSISDN", "SIM Status", "Rate Plan", "Communication Plan", "Date Activated"],
            iccid: "ICCID", imsi: "IMSI", status: "SIM Status"),
        HeaderCase(portal: "Jasper, Status", header: ["Device ID", "ICCID", "IMSI", "Status", "Modem ID"],
            iccid: "ICCID", imsi: "IMSI", status: "Status"),
        HeaderCase(
            portal: "1NCE", header: ["ICCID", "IMSI", "IMSI 2", "MSISDN", "IMEI", "IMEI Lock", "Status", "Label"],
            iccid: "ICCID", imsi: "IMSI", status: "Status"),
        HeaderCase(portal: "1NCE API names", header: ["iccid", "imsi", "imsi_2", "msisdn", "status", "label"],
            iccid: "iccid", imsi: "imsi", status: "status"),
        HeaderCase(portal: "Twilio", header: ["Sid", "UniqueName", "Iccid", "Status", "RatePlanSid", "DateCreated"],
            iccid: "Iccid", imsi: nil, status: "Status"),
        HeaderCase(portal: "Hologram", header: ["Device ID", "Device Name", "SIM Number", "Link ID", "State", "Plan"],
            iccid: "SIM Number", imsi: nil, status: "State"),
        HeaderCase(portal: "Hologram ICCID", header: ["ICCID", "IMSI", "State"],
            iccid: "ICCID", imsi: "IMSI", status: "State"),
        HeaderCase(portal: "emnify", header: ["ID", "ICCID", "ICCID with Luhn", "IMSI", "MSISDN", "Status", "Endpoint"],
            iccid: "ICCID with Luhn", imsi: "IMSI", status: "Status"),
        HeaderCase(portal: "Soracom", header: ["simId", "iccid", "imsi", "status", "groupId"],
            iccid: "iccid", imsi: "imsi", status: "status"),
        HeaderCase(portal: "snake case", header: ["sim_iccid", "sim_imsi", "sim_state"],
            iccid: "sim_iccid", imsi: "sim_imsi", status: "sim_state"),
        HeaderCase(portal: "BOM and blanks", header: ["\u{FEFF}Sim-Iccid ", "IMSI number"],
            iccid: "\u{FEFF}Sim-Iccid", imsi: "IMSI number", status: nil),
        HeaderCase(portal: "SIM status over status", header: ["ICCID", "Status", "SIM Status"],
            iccid: "ICCID", imsi: nil, status: "SIM Status"),
        HeaderCase(portal: "no ICCID", header: ["Name", "Serial", "State"], iccid: nil, imsi: nil, status: nil),
    ]

    @Test(arguments: headerCases) func detectsPortalHeaders(_ c: HeaderCase) throws {
        let header = c.header.map { $0.trimmingCharacters(in: .whitespaces) }
        guard let wanted = c.iccid else {
            #expect(throws: ReconciliationError.self) { try CarrierColumns.detect(header: header) }
            return
        }
        let found = try CarrierColumns.detect(header: header)
        #expect(found.iccid == wanted)
        #expect(found.imsi == c.imsi)
        #expect(found.status == c.status)
        // And through the whole parse, with a data row.
        var fields = Array(repeating: "x", count: c.header.count)
        fields[header.firstIndex(of: wanted)!] = "89492000000000000018"
        let csv = Array((c.header.joined(separator: ",") + "\n" + fields.joined(separator: ",") + "\n").utf8)
        let report = try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: [])
        #expect(CarrierColumns.fold(report.iccidColumn) == CarrierColumns.fold(wanted))
        #expect(report.carrierSIMs == 1)
    }

    @Test func ambiguousHeaderNeedsAMapping() throws {
        let csv = Array("ICCID,SIM ICCID,Status\n89492000000000000018,89492000000000000026,active\n".utf8)
        #expect(throws: ReconciliationError.ambiguousColumn(role: "ICCID", headers: ["ICCID", "SIM ICCID"])) {
            try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: [])
        }
        let r = try Reconciliation.reconcile(
            csv: csv, mapping: ColumnMapping(iccid: "sim iccid", status: "STATUS"), assignments: [])
        #expect(r.iccidColumn == "SIM ICCID")
        #expect(r.findings.first?.flag.evidence.iccid == "89492000000000000026")
    }

    @Test func explicitMappingForAnUnknownPortal() throws {
        let csv = Array("Karten-Nr;Teilnehmerkennung;Zustand\n89492000000000000018;262011234567890;aktiv\n".utf8)
        #expect(throws: ReconciliationError.self) {
            try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: [])
        }
        let mapping = ColumnMapping(iccid: "karten-nr", imsi: "Teilnehmerkennung", status: "Zustand")
        let r = try Reconciliation.reconcile(
            csv: csv, mapping: mapping,
            assignments: [
                SIMAssignment(serial: "A", slot: "s", iccid: "89492000000000000018", imsi: "262011234567891")
            ])
        #expect(r.findings.map(\.kind) == [.imsiICCIDMismatch])
        #expect(r.unrecognisedStatuses == ["aktiv": 1])
        #expect(throws: ReconciliationError.mappedColumnMissing(role: "status", name: "State")) {
            try Reconciliation.reconcile(
                csv: csv, mapping: ColumnMapping(iccid: "Karten-Nr", status: "State"), assignments: [])
        }
    }

    // MARK: The record reader (issue 19 row 7: SwiftCSV's grammar, read from the bytes)

    @Test func recordsAreReadAsSwiftCSVReadThem() throws {
        // Line numbers count blank lines and CR LF once; a quoted field keeps its line break and `""`; blanks before
        // a field and after a closing quote are dropped; a quoted blank-only row is a blank line; the last row
        // needs no line break.
        let lines: [String] = [
            "ICCID;Label;Status\r\n",
            "  89492000000000000018 ; \"two\r\nlines\" ;Active\r\n",
            "\r\n",
            " \" \" ;  ;\t\n",
            "\"89492000000000000029\"  ;x\"\"y;Inventory\n",
            "12345;;active\n",
            "89492000000000000045;;\"Activated\"",
        ]
        let csv = Array(lines.joined().utf8)
        let r = try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: [])
        #expect(r.delimiter == ";")
        #expect(r.rows == 4)
        #expect(r.skippedRows.map(\.line) == [6])
        #expect(r.carrierSIMs == 3)
        #expect(r.activeCarrierSIMs == 2)
        let text = String(decoding: csv, as: UTF8.self)
        let stray = Array(text.replacingOccurrences(of: "x\"\"y", with: "\"x\"y").utf8)
        #expect(throws: ReconciliationError.malformed(
            "a field has a stray quote (text after a closing quote, or an unescaped quote)")) {
            try Reconciliation.reconcile(csv: stray, mapping: nil, assignments: [])
        }
    }

    /// The documented limit (32 MiB) is the parser's default and the HTTP body's bound: an export past the old
    /// 16 MiB is read, one past 32 MiB is refused as too large.
    @Test func exportsUpTo32MiBAreRead() throws {
        #expect(ReconciliationLimits.default.maxBytes == 32 * 1024 * 1024)
        #expect(ReconciliationLimits.maxExportBytes == 32 * 1024 * 1024)
        let filler = String(repeating: "x", count: 4 * 1024 * 1024)
        var text = "ICCID,Note,Status\n"
        for i in 0..<5 { text += "8949200000000000\(String(format: "%03d", i))9,\"\(filler)\",active\n" }
        let big = Array(text.utf8)
        #expect(big.count > 16 * 1024 * 1024 && big.count < 32 * 1024 * 1024)
        let r = try Reconciliation.reconcile(csv: big, mapping: nil, assignments: [])
        #expect(r.rows == 5)
        let over = big + Array(repeating: UInt8(ascii: "\n"), count: 32 * 1024 * 1024 - big.count + 1)
        #expect(throws: ReconciliationError.tooLarge(bytes: over.count, limit: 32 * 1024 * 1024)) {
            try Reconciliation.reconcile(csv: over, mapping: nil, assignments: [])
        }
    }

    // MARK: Malformed files

    struct MalformedCase: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var limits: ReconciliationLimits = .default
        var error: ReconciliationError
        var testDescription: String { name }
    }

    static let malformedCases: [MalformedCase] = [
        MalformedCase(name: "empty", bytes: [], error: .empty),
        MalformedCase(name: "blank lines", bytes: Array("\n\r\n  \n".utf8), error: .empty),
        MalformedCase(name: "header only", bytes: Array("ICCID,IMSI,Status\n".utf8), error: .empty),
        MalformedCase(
            name: "too large", bytes: Array(repeating: UInt8(ascii: "a"), count: 2048),
            limits: ReconciliationLimits(maxBytes: 1024), error: .tooLarge(bytes: 2048, limit: 1024)),
        MalformedCase(
            name: "too many rows",
            bytes: Array(("ICCID\n" + String(repeating: "89492000000000000018\n", count: 11)).utf8),
            limits: ReconciliationLimits(maxRows: 10), error: .tooManyRows(limit: 10)),
        MalformedCase(
            name: "too many columns", bytes: Array(("ICCID\n1" + String(repeating: ",", count: 300) + "\n").utf8),
            error: .tooManyColumns(line: 2, limit: 256)),
        MalformedCase(
            name: "unbalanced quote", bytes: Array("ICCID,Status\n\"89492000000000000018,active\n".utf8),
            error: .malformed("a quoted field is not closed (unbalanced quotes)")),
        MalformedCase(
            name: "text after closing quote", bytes: Array("ICCID,Status\n\"8949\"x,active\n".utf8),
            error: .malformed("a field has a stray quote (text after a closing quote, or an unescaped quote)")),
        MalformedCase(
            name: "xlsx", bytes: [0x50, 0x4B, 0x03, 0x04, 0x14, 0x00, 0x06, 0x00, 0x08, 0x00], error: .notText),
        MalformedCase(
            name: "header-less export", bytes: Array("89492000000000000018,262011234567890,active\n".utf8),
            error: .noICCIDColumn(headers: ["####################", "###############", "active"])),
        MalformedCase(
            name: "only spreadsheet-rounded ICCIDs",
            bytes: Array("ICCID,Status\n8.94920E+18,active\n8.94920E+18,active\n".utf8),
            error: .noValidRows(skipped: 2)),
    ]

    @Test(arguments: malformedCases) func refusesMalformedFiles(_ c: MalformedCase) throws {
        do {
            _ = try Reconciliation.reconcile(csv: c.bytes, mapping: nil, assignments: [], limits: c.limits)
            Issue.record("accepted")
        } catch let error as ReconciliationError {
            #expect(error == c.error)
            // No identifier digits in what the operator is shown (counts and limits are fine: no run of 6).
            #expect(!error.description.contains(/[0-9]{6}/), "\(error.description)")
        }
    }

    @Test func otherEncodingsAndDelimiters() throws {
        // Excel "Unicode text": UTF-16LE with BOM, tab delimited.
        let text = "ICCID\tIMSI\tStatus\r\n89492000000000000018\t262011234567890\tActivated\r\n"
        var utf16: [UInt8] = [0xFF, 0xFE]
        for unit in text.utf16 { utf16 += [UInt8(unit & 0xFF), UInt8(unit >> 8)] }
        let a = try Reconciliation.reconcile(csv: utf16, mapping: nil, assignments: [])
        #expect(a.delimiter == "\t")
        #expect(a.activeCarrierSIMs == 1)
        // Windows-1252 ("Libellé" with 0xE9), comma delimited, a quoted label with a comma and a quote.
        var latin = Array("ICCID,Libell".utf8) + [0xE9] + Array(",Status\n".utf8)
        latin += Array("89492000000000000018,\"Pompe, \"\"nord\"\"\",Deactivated\n".utf8)
        let b = try Reconciliation.reconcile(csv: latin, mapping: nil, assignments: [])
        #expect(b.delimiter == ",")
        #expect(b.activeCarrierSIMs == 0)
        #expect(b.findings.isEmpty)
    }

    @Test func skippedRowsAreListedWithoutDigits() throws {
        let csv = Array("ICCID,Status\n12345678901234567890,active\n8949,active\n89492000000000000018,active\n".utf8)
        let r = try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: [])
        #expect(r.rows == 3)
        #expect(r.skippedRows.map(\.line) == [2, 3])
        #expect(
            r.skippedRows.map(\.reason) == [
                "the ICCID is not valid (iccid_prefix)", "the ICCID is not valid (iccid_length)",
            ])
        #expect(r.carrierSIMs == 1)
    }

    /// Hostile input: random bytes and random mutations of a valid export never crash; each gives a report or a
    /// `ReconciliationError`, and no message carries identifier digits.
    @Test func randomInputNeverCrashes() throws {
        var g = Generator(state: 0xF022)
        let valid = Array(
            ("ICCID;IMSI;Status;Label\r\n" + (0..<50).map { i in
                let n = String(format: "%03d", i)
                return "\"8949200000000000\(n)9\";26201123456\(String(format: "%04d", i));Active;\"a;b\""
            }.joined(separator: "\r\n")).utf8)
        let alphabet = Array("\",;\t\r\n 89FfE+.='ab\u{FF}".utf8)
        var outcomes = [0, 0]
        for round in 0..<400 {
            var bytes: [UInt8]
            if round % 4 == 0 {
                bytes = (0..<Int(g.next() % 300)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            } else {
                bytes = valid
                for _ in 0..<(1 + Int(g.next() % 8)) {
                    let at = Int(g.next() % UInt64(bytes.count))
                    let byte = alphabet[Int(g.next() % UInt64(alphabet.count))]
                    switch g.next() % 3 {
                    case 0: bytes[at] = byte
                    case 1: bytes.insert(byte, at: at)
                    default: bytes.remove(at: at)
                    }
                }
            }
            let assignments = [
                SIMAssignment(serial: "A", slot: "s", iccid: "89492000000000000019", imsi: "262011234560000")
            ]
            do {
                let report = try Reconciliation.reconcile(
                    csv: bytes, mapping: nil, assignments: assignments,
                    limits: ReconciliationLimits(maxBytes: 64 * 1024, maxRows: 1000, maxColumns: 64))
                outcomes[0] += 1
                for (label, value) in report.summaryLines {
                    #expect(!(label + value).contains(/[0-9]{10}/), "\(label): \(value)")
                }
            } catch let error as ReconciliationError {
                outcomes[1] += 1
                #expect(!error.description.contains(/[0-9]{10}/), "\(error.description)")
            }
        }
        // Both paths exercised.
        #expect(outcomes[0] > 50 && outcomes[1] > 50, "\(outcomes)")
    }
}
