import CellprovCore
import Foundation
import Testing

// Table-driven tests of the identity model. Every case names its source. Cases marked "constructed" were
// built here to exercise one rule (their check digits computed, not copied).

// MARK: - Shared vectors (Fixtures/vectors.jsonl, a copy of shared/vectors/*.jsonl)

struct FixtureMissing: Error {}

struct Vector: Decodable, Sendable, CustomTestStringConvertible {
    var id: String
    var kind: String
    var command: String?
    var vendor: String?
    var response: String
    var expect: String?
    var error: String?
    var source: String

    var testDescription: String { "\(id) (\(source))" }

    static func load() throws -> [Vector] {
        guard let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw FixtureMissing()
        }
        let text = try String(contentsOf: folder.appendingPathComponent("vectors.jsonl"), encoding: .utf8)
        let decoder = JSONDecoder()
        return try text.split(whereSeparator: \.isNewline)
            .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            .map { try decoder.decode(Vector.self, from: Data($0.utf8)) }
    }

    /// Vectors that carry a bare identifier value (no transcript): the identity model's input.
    static func identityValues() throws -> [Vector] {
        try load().filter { $0.command == nil && ["imei", "imsi", "iccid"].contains($0.kind) }
    }

    /// Vectors that carry a whole answer to `command` (kinds imei, imsi, iccid): read through the framer, the line
    /// classifier and ``IdentityAnswer``, as the reader does.
    static func transcripts() throws -> [Vector] {
        try load().filter { $0.command != nil && ["imei", "imsi", "iccid"].contains($0.kind) }
    }

    /// The vectors' free-text refusal reasons, mapped to our codes.
    static let errorCodes: [String: Problem.Code] = [
        "too short": .iccidLength,
        "characters other than digits and F": .iccidFormat,
        "does not start with 89": .iccidPrefix,
    ]
}

@Suite("Shared vectors")
struct VectorTests {
    @Test("the fixture is present and holds identity values")
    func fixtureLoads() throws {
        let vectors = try Vector.load()
        #expect(vectors.count >= 11)
        #expect(Set(vectors.map(\.id)).count == vectors.count, "vector ids are unique")
        #expect(try Vector.identityValues().contains { $0.kind == "iccid" })
    }

    @Test("each identity vector validates as expected", arguments: try Vector.identityValues())
    func vector(_ v: Vector) throws {
        let problems: [Problem]
        let value: String?
        switch v.kind {
        case "imei":
            let r = IMEI.validate(v.response)
            (value, problems) = (r.value?.unredacted, r.problems)
        case "imsi":
            let r = IMSI.validate(v.response)
            (value, problems) = (r.value?.unredacted, r.problems)
        default:
            let r = ICCID.validate(v.response)
            (value, problems) = (r.value?.unredacted, r.problems)
        }
        if let expect = v.expect {
            #expect(value == expect)
            // A value the vectors accept may carry warnings (an ICCID check digit) but no error.
            #expect(!problems.contains { $0.severity == .error }, "\(problems)")
        } else {
            // Refused: no value, or one kept only for reporting (a placeholder IMEI, a bad IMEI check digit),
            // which always carries an error.
            #expect(problems.contains { $0.severity == .error }, "\(value.map { _ in "a value" } ?? "nil")")
            if let reason = v.error, let code = Vector.errorCodes[reason] {
                #expect(problems.map(\.code) == [code])
            }
        }
    }
}

extension VectorTests {
    @Test(
        "each transcript vector reads as expected (framer, classifier, IdentityAnswer)",
        arguments: try Vector.transcripts())
    func transcript(_ v: Vector) throws {
        let command = try #require(v.command)
        var framer = ATFramer()
        let lines = framer.feed(Array(v.response.utf8)).compactMap { if case .line(let l) = $0 { l } else { nil } }
        let kinds = classifyInOrder(lines, command: command, prefix: nil)
        let info = zip(lines, kinds).compactMap { line, kind in kind == .information ? line : nil }
        let succeeded = kinds.contains { if case .final(let f) = $0 { f.isSuccess } else { false } }
        var value: String?
        var problems: [Problem] = []
        if succeeded {
            switch v.kind {
            case "imei":
                let r = IdentityAnswer.imei(in: info)
                (value, problems) = (r?.value?.unredacted, r?.problems ?? [])
            case "imsi":
                let r = IdentityAnswer.imsi(answering: command, in: info)
                (value, problems) = (r?.value?.unredacted, r?.problems ?? [])
            default:
                let r = IdentityAnswer.iccid(answering: command, in: info)
                (value, problems) = (r?.value?.unredacted, r?.problems ?? [])
            }
        }
        if v.expect != nil {
            #expect(value == v.expect, "\(problems)")
            #expect(!problems.contains { $0.severity == .error }, "\(problems)")
        } else {
            // Refused: no value (a failed command, a malformed one) or one kept only with an error.
            #expect(value == nil || problems.contains { $0.severity == .error }, "\(problems)")
        }
    }
}

// MARK: - Luhn

struct LuhnCase: Sendable, CustomTestStringConvertible {
    var digits: String
    var valid: Bool
    var source: String
    var testDescription: String { source }
}

@Suite("Luhn")
struct LuhnTests {
    static let cases: [LuhnCase] = [
        LuhnCase(digits: "79927398713", valid: true, source: "Wikipedia 'Luhn algorithm' worked example"),
        LuhnCase(digits: "79927398710", valid: false, source: "Wikipedia 'Luhn algorithm' example, wrong check digit"),
        LuhnCase(digits: "490154203237518", valid: true, source: "Wikipedia 'IMEI' / 'Luhn algorithm' IMEI example"),
        LuhnCase(digits: "490154203237519", valid: false, source: "Wikipedia IMEI example with last digit changed"),
        LuhnCase(digits: "352099001761481", valid: true, source: "Wikipedia 'IMEI' example 35-209900-176148-1"),
        LuhnCase(digits: "89014103211118510720", valid: true, source: "Android emulator default ICCID (B2G tests)"),
        LuhnCase(digits: "8944200053671052499", valid: false, source: "ModemManager test-modem-helpers.c ICCID"),
        LuhnCase(digits: "0", valid: false, source: "constructed: one digit has no payload"),
        LuhnCase(digits: "", valid: false, source: "constructed: empty"),
        LuhnCase(digits: "4901542032375l8", valid: false, source: "constructed: letter l in place of a one"),
        LuhnCase(digits: "00", valid: true, source: "constructed: zeros"),
    ]

    @Test(arguments: cases)
    func isValid(_ c: LuhnCase) {
        #expect(Luhn.isValid(c.digits) == c.valid)
    }

    @Test(
        "check digits",
        arguments: [
            ("7992739871", 3, "Wikipedia 'Luhn algorithm' worked example"),
            ("49015420323751", 8, "Wikipedia 'IMEI' check digit computation"),
            ("35209900176148", 1, "Wikipedia 'IMEI' example"),
            ("8901410321111851072", 0, "Android emulator default ICCID"),
            ("0", 0, "constructed"),
        ])
    func checkDigit(_ payload: String, _ expected: Int, _ source: String) {
        #expect(Luhn.checkDigit(for: payload) == expected, "\(source)")
        #expect(Luhn.isValid(payload + String(expected)))
        #expect(Luhn.checkDigit(for: Substring(payload)) == expected, "works on any StringProtocol")
    }

    @Test("no check digit for empty or non-decimal payloads", arguments: ["", "12a4", "１２３", " 123"])
    func checkDigitRefuses(_ payload: String) {
        #expect(Luhn.checkDigit(for: payload) == nil)
    }
}

// MARK: - IMEI

struct IMEICase: Sendable, CustomTestStringConvertible {
    var raw: String
    var value: String?
    var codes: [Problem.Code]
    var source: String
    var testDescription: String { source }
}

@Suite("IMEI")
struct IMEITests {
    static let cases: [IMEICase] = [
        IMEICase(
            raw: "490154203237518", value: "490154203237518", codes: [],
            source: "Wikipedia 'IMEI' / 'Luhn algorithm' example"),
        IMEICase(
            raw: "\"490154203237518\"", value: "490154203237518", codes: [],
            source: "constructed: quoted answer (some modems quote +CGSN)"),
        IMEICase(
            raw: "  490154203237518\r\n", value: "490154203237518", codes: [],
            source: "constructed: whitespace and CRLF left by a framer"),
        IMEICase(
            raw: "490154203237519", value: "490154203237519", codes: [.imeiChecksum],
            source: "Wikipedia example, last digit changed: value kept, checksum error"),
        IMEICase(
            raw: "3520990017614823", value: nil, codes: [.imeiIsIMEISV],
            source: "Wikipedia 'IMEI' IMEISV example 35-209900-176148-23"),
        IMEICase(
            raw: "49015420323751", value: nil, codes: [.imeiLength],
            source: "Wikipedia example without its check digit (14 digits)"),
        IMEICase(raw: "49015420323751800", value: nil, codes: [.imeiLength], source: "constructed: 17 digits"),
        IMEICase(raw: "", value: nil, codes: [.imeiMissing], source: "constructed: empty answer"),
        IMEICase(raw: "\"\"", value: nil, codes: [.imeiMissing], source: "constructed: empty quoted answer"),
        IMEICase(raw: " \r\n", value: nil, codes: [.imeiMissing], source: "constructed: blank line"),
        IMEICase(raw: "49015420323751A", value: nil, codes: [.imeiFormat], source: "constructed: a letter"),
        IMEICase(
            raw: "35-209900-176148-1", value: nil, codes: [.imeiFormat],
            source: "Wikipedia's dashed presentation is not what +CGSN answers"),
        IMEICase(raw: "ERROR", value: nil, codes: [.imeiFormat], source: "constructed: final result passed as value"),
        IMEICase(
            raw: "IMEI: 490154203237518", value: "490154203237518", codes: [],
            source: "the ATI 'IMEI:' label of Sierra and SIMCom, with the Wikipedia example"),
        IMEICase(
            raw: "IMEI 490154203237518", value: "490154203237518", codes: [],
            source: "constructed: label without colon"),
        IMEICase(
            raw: "490154203237518,NL2A62Z0N5", value: "490154203237518", codes: [],
            source: "ModemManager test-modem-helpers.c 'IMEI + serial number' form, Wikipedia example IMEI"),
        IMEICase(
            raw: "490154203237518 OK", value: "490154203237518", codes: [],
            source: "constructed: trailing junk after a blank"),
        IMEICase(
            raw: "IMEISV: 3520990017614823", value: nil, codes: [.imeiIsIMEISV],
            source: "Wikipedia 'IMEI' IMEISV example behind an IMEISV label: still no IMEI"),
        IMEICase(
            raw: "IMEI SV: 20", value: nil, codes: [.imeiLength],
            source: "Sierra ATI 'IMEI SV:' line (forum.sierrawireless.com t/19208) is not an IMEI"),
        IMEICase(
            raw: "000000000000000", value: "000000000000000", codes: [.imeiPlaceholder],
            source: "Android emulator android_modem.c (+CGSN all zeros), mozilla-central B2G tests"),
        IMEICase(
            raw: "358240051111110", value: "358240051111110", codes: [.imeiPlaceholder],
            source: "Android Studio emulator default IMEI"),
        IMEICase(
            raw: "004999010640000", value: "004999010640000", codes: [.imeiPlaceholder],
            source: "3GPP test IMEI; CyanogenMod aries Sanity.java BAD_IMEI"),
        IMEICase(
            raw: "352099001761481", value: "352099001761481", codes: [.imeiPlaceholder],
            source: "Wikipedia IMEI example, Genymotion emulator default"),
        IMEICase(
            raw: "111111111111111", value: "111111111111111", codes: [.imeiChecksum, .imeiPlaceholder],
            source: "constructed: all ones (fails Luhn too)"),
        IMEICase(
            raw: "123456789012347", value: "123456789012347", codes: [.imeiPlaceholder],
            source: "constructed: ascending digits with a valid check digit"),
        IMEICase(
            raw: "012345678901237", value: "012345678901237", codes: [.imeiPlaceholder],
            source: "Android apps' invalid-IMEI lists: ascending from zero"),
        IMEICase(
            raw: "001013001234568", value: "001013001234568", codes: [.imeiPlaceholder],
            source: "Alvearie/de-identification IMEIIdentifierTest (TAC 00 test range)"),
        IMEICase(
            raw: "001013001234567", value: "001013001234567", codes: [.imeiChecksum, .imeiPlaceholder],
            source: "Alvearie/de-identification IMEIIdentifierTest 'invalid check digit'"),
    ]

    @Test(arguments: cases)
    func validate(_ c: IMEICase) {
        let r = IMEI.validate(c.raw)
        #expect(r.value?.unredacted == c.value)
        #expect(r.problems.map(\.code) == c.codes)
        #expect(r.problems.allSatisfy { $0.field == .imei && $0.severity == .error })
        if let v = r.value {
            #expect(v.tac == String(c.value!.prefix(8)))
        }
    }

    @Test("equal digits are equal IMEIs")
    func equality() throws {
        let a = try #require(IMEI.validate("490154203237518").value)
        let b = try #require(IMEI.validate(" \"490154203237518\" ").value)
        let c = try #require(IMEI.validate("352099001761481").value)
        #expect(a == b)
        #expect(a != c)
        #expect(Set([a, b, c]).count == 2)
    }
}

// MARK: - IMSI

struct IMSICase: Sendable, CustomTestStringConvertible {
    var raw: String
    var value: String?
    var mcc: String?
    var mnc: String?
    var codes: [Problem.Code]
    var source: String
    var testDescription: String { source }
}

@Suite("IMSI")
struct IMSITests {
    static let cases: [IMSICase] = [
        IMSICase(
            raw: "310150123456789", value: "310150123456789", mcc: "310", mnc: "150", codes: [],
            source: "Wikipedia 'IMSI' example (AT&T, MNC 150)"),
        IMSICase(
            raw: "460001357924680", value: "460001357924680", mcc: "460", mnc: "00", codes: [],
            source: "Wikipedia 'IMSI' example (China Mobile, MNC 00)"),
        IMSICase(
            raw: "\"310260000000000\"\r\n", value: "310260000000000", mcc: "310", mnc: "260", codes: [],
            source: "Android emulator (goldfish) IMSI, quoted"),
        IMSICase(
            raw: "001010123456063", value: "001010123456063", mcc: "001", mnc: "01",
            codes: [.imsiTestNetwork], source: "R&S CMW default test USIM IMSI (3GPP test network 001-01)"),
        IMSICase(
            raw: "999990123456789", value: "999990123456789", mcc: "999", mnc: "99",
            codes: [.imsiTestNetwork], source: "constructed: E.212 MCC 999 private network"),
        IMSICase(
            raw: "405025123456789", value: "405025123456789", mcc: "405", mnc: "025", codes: [],
            source: "Android SIMRecords MCCMNC_CODES_HAVING_3DIGITS_MNC (India 405 025)"),
        IMSICase(
            raw: "405854123456789", value: "405854123456789", mcc: "405", mnc: "854", codes: [],
            source: "Android SIMRecords MCCMNC_CODES_HAVING_3DIGITS_MNC (India 405 854, Jio)"),
        IMSICase(
            raw: "405011234567890", value: "405011234567890", mcc: "405", mnc: "01", codes: [],
            source: "E.212 list: India 405 01 is 2-digit"),
        IMSICase(
            raw: "404451234567890", value: "404451234567890", mcc: "404", mnc: "45", codes: [],
            source: "E.212 list: India 404 45 (2-digit)"),
        IMSICase(
            raw: "502142123456789", value: "502142123456789", mcc: "502", mnc: "142", codes: [],
            source: "Android SIMRecords MCCMNC_CODES_HAVING_3DIGITS_MNC (Malaysia 502 142)"),
        IMSICase(
            raw: "502121234567890", value: "502121234567890", mcc: "502", mnc: "12", codes: [],
            source: "E.212 list: Malaysia 502 12 (2-digit)"),
        IMSICase(
            raw: "302720123456789", value: "302720123456789", mcc: "302", mnc: "720", codes: [],
            source: "Android MccTable/SIMRecords: Canada 302 720 (Rogers)"),
        IMSICase(
            raw: "334020123456789", value: "334020123456789", mcc: "334", mnc: "020", codes: [],
            source: "E.212 list: Mexico 334 020 (Telcel)"),
        IMSICase(
            raw: "338050123456789", value: "338050123456789", mcc: "338", mnc: "050", codes: [],
            source: "Android MccTable (338 three digits): Jamaica Digicel"),
        IMSICase(
            raw: "374130123456789", value: "374130123456789", mcc: "374", mnc: "130", codes: [],
            source: "E.212 list: Trinidad and Tobago 374 130 (Digicel)"),
        IMSICase(
            raw: "374121234567890", value: "374121234567890", mcc: "374", mnc: "12", codes: [],
            source: "E.212 list: Trinidad and Tobago 374 12 (bmobile)"),
        IMSICase(
            raw: "262011234567890", value: "262011234567890", mcc: "262", mnc: "01", codes: [],
            source: "E.212 list: Germany 262 01"),
        IMSICase(
            raw: "234150123456789", value: "234150123456789", mcc: "234", mnc: "15", codes: [],
            source: "E.212 list: United Kingdom 234 15 (Vodafone)"),
        IMSICase(
            raw: "310150", value: "310150", mcc: "310", mnc: "150", codes: [],
            source: "constructed: shortest accepted (6 digits)"),
        IMSICase(raw: "31015", value: nil, mcc: nil, mnc: nil, codes: [.imsiLength], source: "constructed: 5 digits"),
        IMSICase(
            raw: "3101501234567890", value: nil, mcc: nil, mnc: nil, codes: [.imsiLength],
            source: "constructed: 16 digits"),
        IMSICase(raw: "", value: nil, mcc: nil, mnc: nil, codes: [.imsiMissing], source: "constructed: empty"),
        IMSICase(
            raw: "IMSI: 310150123456789", value: "310150123456789", mcc: "310", mnc: "150", codes: [],
            source: "constructed: labelled answer"),
        IMSICase(
            raw: "310150123456789,1", value: "310150123456789", mcc: "310", mnc: "150", codes: [],
            source: "constructed: a further field after the IMSI"),
        IMSICase(
            raw: "310150123456789 OK", value: "310150123456789", mcc: "310", mnc: "150", codes: [],
            source: "constructed: trailing junk after a blank"),
        IMSICase(
            raw: "31015012345678X", value: nil, mcc: nil, mnc: nil, codes: [.imsiFormat],
            source: "constructed: a letter"),
        IMSICase(
            raw: "+CME ERROR: 10", value: nil, mcc: nil, mnc: nil, codes: [.imsiFormat],
            source: "3GPP TS 27.007 'SIM not inserted' passed as a value"),
    ]

    @Test(arguments: cases)
    func validate(_ c: IMSICase) {
        let r = IMSI.validate(c.raw)
        #expect(r.value?.unredacted == c.value)
        #expect(r.value?.mcc == c.mcc)
        #expect(r.value?.mnc == c.mnc)
        #expect(r.problems.map(\.code) == c.codes)
        #expect(r.problems.allSatisfy { $0.field == .imsi })
        if c.codes == [.imsiTestNetwork] {
            #expect(r.problems.allSatisfy { $0.severity == .warning })
        } else if !c.codes.isEmpty {
            #expect(r.problems.allSatisfy { $0.severity == .error })
        }
    }

    @Test("the MNC length read from EF_AD overrides the table")
    func efADOverride() throws {
        let two = try #require(IMSI.validate("310150123456789", mncLength: 2).value)
        #expect(two.mnc == "15")
        let three = try #require(IMSI.validate("262011234567890", mncLength: 3).value)
        #expect(three.mnc == "011")
        let ignored = try #require(IMSI.validate("310150123456789", mncLength: 7).value)
        #expect(ignored.mnc == "150")
    }
}

// MARK: - ICCID

struct ICCIDCase: Sendable, CustomTestStringConvertible {
    var raw: String
    var value: String?
    var hex: Bool = false
    var codes: [Problem.Code]
    var source: String
    var testDescription: String { source }
}

@Suite("ICCID")
struct ICCIDTests {
    static let cases: [ICCIDCase] = [
        ICCIDCase(
            raw: "89014103211118510720", value: "89014103211118510720", codes: [],
            source: "Android emulator default ICCID (mozilla-central B2G icc tests), Luhn valid over 20"),
        ICCIDCase(
            raw: "98101430121181157002", value: "89014103211118510720", codes: [],
            source: "constructed: the emulator ICCID as EF_ICCID BCD (nibble-swapped)"),
        ICCIDCase(
            raw: "89000123456789012341", value: "89000123456789012341", codes: [],
            source: "pySim / sysmocom test profile ICCID, Luhn valid over 20"),
        ICCIDCase(
            raw: "8944100000000000000", value: "8944100000000000000", codes: [],
            source: "constructed: 19 digits, Luhn valid"),
        ICCIDCase(
            raw: "894410000000000000", value: "894410000000000000", codes: [],
            source: "constructed: 18 digits, Luhn valid"),
        ICCIDCase(
            raw: "8944100000000000000FF", value: "8944100000000000000", codes: [],
            source: "constructed: two F padding characters"),
        ICCIDCase(
            raw: "8944 1000 0000 0000 000", value: "8944100000000000000", codes: [],
            source: "constructed: printed in groups"),
        ICCIDCase(
            raw: "8944100000000000001", value: "8944100000000000001", codes: [.iccidChecksum],
            source: "constructed: wrong check digit → warning, value kept"),
        ICCIDCase(
            raw: "\"898602c0123456789012\"", value: "898602C0123456789012", hex: true, codes: [],
            source: "ModemManager hex-account vector, lower-cased"),
        ICCIDCase(
            raw: "9868200C214365870921", value: "898602C0123456789012", hex: true, codes: [],
            source: "constructed: ModemManager hex-account vector nibble-swapped"),
        ICCIDCase(raw: "", value: nil, codes: [.iccidMissing], source: "constructed: empty"),
        ICCIDCase(
            raw: "ICCID: 8944100000000000000", value: "8944100000000000000", codes: [],
            source: "the 'ICCID:' label of Sierra's AT+ICCID (networkmanager-list 2013-07)"),
        ICCIDCase(
            raw: "\"8944100000000000000\",\"\"", value: "8944100000000000000", codes: [],
            source: "Sequans +SQNCCID two-field layout (Monarch notes on GitHub)"),
        ICCIDCase(
            raw: "8944100000000000000F OK", value: "8944100000000000000", codes: [],
            source: "constructed: F fill and trailing junk after a blank"),
        ICCIDCase(
            raw: "984401000000000000f0", value: "8944100000000000000", codes: [],
            source: "constructed: lower-case swapped BCD as some +CRSM answers print it"),
        ICCIDCase(raw: "\"\"", value: nil, codes: [.iccidMissing], source: "constructed: empty quoted"),
        ICCIDCase(raw: "894410000000000000000", value: nil, codes: [.iccidLength], source: "constructed: 21 digits"),
        ICCIDCase(raw: "89441000000000000", value: nil, codes: [.iccidLength], source: "constructed: 17 digits"),
        ICCIDCase(raw: "8944G00000000000000", value: nil, codes: [.iccidFormat], source: "constructed: a G"),
        ICCIDCase(
            raw: "89A410000000000000", value: nil, codes: [.iccidFormat],
            source: "constructed: hex digit inside the issuer prefix"),
        ICCIDCase(
            raw: "1944100000000000000", value: nil, codes: [.iccidPrefix],
            source: "constructed: major industry identifier 19"),
        ICCIDCase(
            raw: "+CME ERROR: 10", value: nil, codes: [.iccidFormat],
            source: "3GPP TS 27.007 'SIM not inserted' passed as a value"),
    ]

    @Test(arguments: cases)
    func validate(_ c: ICCIDCase) {
        let r = ICCID.validate(c.raw)
        #expect(r.value?.unredacted == c.value)
        #expect(r.problems.map(\.code) == c.codes)
        #expect(r.problems.allSatisfy { $0.field == .iccid })
        if let v = r.value {
            #expect(v.hasHexDigits == c.hex)
            #expect(v.issuerPrefix == String(c.value!.prefix(6)))
            #expect(r.problems.allSatisfy { $0.severity == .warning })
        } else {
            #expect(r.problems.allSatisfy { $0.severity == .error })
        }
    }
}

// MARK: - Redaction

/// Every value the tables above accept, for the leak checks.
enum Samples {
    static var imeis: [IMEI] { IMEITests.cases.compactMap { IMEI.validate($0.raw).value } }
    static var imsis: [IMSI] { IMSITests.cases.compactMap { IMSI.validate($0.raw).value } }
    static var iccids: [ICCID] {
        ICCIDTests.cases.compactMap { ICCID.validate($0.raw).value }
            + ((try? Vector.identityValues()) ?? []).compactMap { ICCID.validate($0.response).value }
    }
    static var allProblems: [Problem] {
        IMEITests.cases.flatMap { IMEI.validate($0.raw).problems }
            + IMSITests.cases.flatMap { IMSI.validate($0.raw).problems }
            + ICCIDTests.cases.flatMap { ICCID.validate($0.raw).problems }
            + ((try? Vector.identityValues()) ?? []).flatMap { ICCID.validate($0.response).problems }
    }
}

/// Every way a value can end up as text in a log line.
func renderings(_ value: some Any) -> [String] {
    var dumped = ""
    dump(value, to: &dumped)
    var dumpedInArray = ""
    dump([value], to: &dumpedInArray)
    let mirror = Mirror(reflecting: value)
    return [
        "\(value)",
        String(describing: value),
        String(reflecting: value),
        "\([value])",
        "\(Optional(value) as Any)",
        dumped,
        dumpedInArray,
        mirror.children.map { "\($0.label ?? ""): \($0.value)" }.joined(separator: ", "),
    ]
}

func longestDigitRun(_ s: String) -> Int {
    var best = 0
    var current = 0
    for c in s.unicodeScalars {
        if c.value >= 0x30, c.value <= 0x39 {
            current += 1
            best = max(best, current)
        } else {
            current = 0
        }
    }
    return best
}

// Serialized: these tests read references made with the process-wide pseudonymizer, which `configure`
// changes.
@Suite("Redaction", .serialized)
struct RedactionTests {
    @Test("configure sets the process-wide pseudonymizer used by descriptions")
    func configure() throws {
        let previous = Redaction.pseudonymizer
        defer { Redaction.configure(previous) }
        let p = Pseudonymizer(key: PseudonymizerTests.keyA)
        Redaction.configure(p)
        let imei = try #require(IMEI.validate("490154203237518").value)
        #expect(imei.reference == "268b291a9b")
        #expect(imei.description == "IMEI(TAC 49015420, ref 268b291a9b)")
    }

    @Test("IMEI text never shows the digits or the serial")
    func imeiRenderings() throws {
        let imeis = Samples.imeis
        #expect(imeis.count >= 10)
        for imei in imeis {
            let digits = imei.unredacted
            let serial = String(digits.dropFirst(8).prefix(6))
            for text in renderings(imei) {
                #expect(!text.contains(digits), "\(text)")
                // The TAC is shown on purpose; the serial must not appear anywhere else.
                #expect(!text.replacingOccurrences(of: "TAC \(imei.tac)", with: "").contains(serial), "\(text)")
                #expect(text.contains("TAC \(imei.tac)"))
                #expect(text.contains(imei.reference))
            }
        }
    }

    @Test("IMSI text never shows the digits or the MSIN")
    func imsiRenderings() throws {
        let imsis = Samples.imsis
        #expect(imsis.count >= 10)
        for imsi in imsis {
            let msin = String(imsi.unredacted.dropFirst(imsi.mcc.count + imsi.mnc.count))
            for text in renderings(imsi) {
                #expect(!text.contains(imsi.unredacted), "\(text)")
                if msin.count >= 4 { #expect(!text.contains(msin), "\(text)") }
                #expect(text.contains("IMSI(\(imsi.mcc)-\(imsi.mnc), ref \(imsi.reference))"))
            }
        }
    }

    @Test("ICCID text never shows the characters or the account number")
    func iccidRenderings() throws {
        let iccids = Samples.iccids
        #expect(iccids.count >= 10)
        for iccid in iccids {
            let account = String(iccid.unredacted.dropFirst(6))
            for text in renderings(iccid) {
                #expect(!text.contains(iccid.unredacted), "\(text)")
                #expect(!text.contains(account), "\(text)")
                #expect(text.contains("ICCID(\(iccid.issuerPrefix), ref \(iccid.reference))"))
            }
        }
    }

    @Test("the identifier types are not Codable")
    func notCodable() {
        #expect(!(IMEI.self is any Encodable.Type))
        #expect(!(IMSI.self is any Encodable.Type))
        #expect(!(ICCID.self is any Encodable.Type))
        #expect(!(IMEI.self is any Decodable.Type))
    }

    @Test("problem messages and descriptions carry no identifier digits")
    func problemMessages() {
        let problems = Samples.allProblems
        #expect(problems.count >= 20)
        for p in problems {
            #expect(longestDigitRun(p.message) < 6, "\(p.code): \(p.message)")
            #expect(longestDigitRun(p.description) < 6, "\(p.code)")
            #expect(Redaction.scrub(p.message) == p.message, "\(p.code)")
        }
    }

    @Test("the pseudonymizer never prints its key")
    func pseudonymizerHidesKey() {
        let p = Pseudonymizer(key: Array(repeating: 0xAB, count: Pseudonymizer.keyLength))
        for text in renderings(p) {
            #expect(!text.lowercased().contains("ab, "))
            #expect(!text.contains("171"))
        }
    }
}

@Suite("Pseudonymizer")
struct PseudonymizerTests {
    static let keyA = Array(UInt8(0)..<UInt8(32))
    static let keyB = Array(UInt8(1)...UInt8(32))

    // Expected values computed independently with Python's hmac/hashlib:
    // hmac.new(bytes(range(32)), b"imei:490154203237518", hashlib.sha256).hexdigest()[:10]
    @Test(
        "known answers: HMAC-SHA256(key, kind:value), first 10 hex",
        arguments: [
            ("imei", "490154203237518", "268b291a9b"),
            ("iccid", "8944200053671052499", "9d7e2c5c08"),
            ("imsi", "310150123456789", "48badffc94"),
        ])
    func knownAnswers(_ kind: String, _ value: String, _ expected: String) {
        #expect(Pseudonymizer(key: Self.keyA).reference(kind: kind, value: value) == expected)
    }

    @Test("stable for one key, different between keys and kinds")
    func stability() {
        let a1 = Pseudonymizer(key: Self.keyA)
        let a2 = Pseudonymizer(key: Self.keyA)
        let b = Pseudonymizer(key: Self.keyB)
        let value = "490154203237518"
        #expect(a1.reference(kind: "imei", value: value) == a2.reference(kind: "imei", value: value))
        #expect(a1.reference(kind: "imei", value: value) != b.reference(kind: "imei", value: value))
        #expect(a1.reference(kind: "imei", value: value) != a1.reference(kind: "imsi", value: value))
        #expect(a1.reference(kind: "imei", value: value) != a1.reference(kind: "imei", value: "490154203237526"))
        let r1 = Pseudonymizer.random()
        let r2 = Pseudonymizer.random()
        #expect(r1.reference(kind: "imei", value: value) != r2.reference(kind: "imei", value: value))
    }

    @Test(
        "references are 10 lowercase hex characters", arguments: ["", "1", "490154203237518", "898602F9091830030220"])
    func shape(_ value: String) {
        let ref = Pseudonymizer.random().reference(kind: "imei", value: value)
        #expect(ref.count == 10)
        #expect(ref.allSatisfy { "0123456789abcdef".contains($0) })
    }
}

// MARK: - Scrub

@Suite("Redaction.scrub")
struct ScrubTests {
    @Test(arguments: [
        ("+CGSN: 490154203237518", "+CGSN: <redacted>", "Quectel EC25 AT manual +CGSN answer shape"),
        ("490154203237518\r\nOK", "<redacted>\r\nOK", "bare ITU V.250 information text"),
        ("+CIMI: 310150123456789", "+CIMI: <redacted>", "IMSI in an answer"),
        ("+QCCID: 898602F9091830030220", "+QCCID: <redacted>", "hex-account ICCID (ModemManager vector)"),
        ("+CRSM: 144,0,\"984402003576012594F9\"", "+CRSM: 144,0,\"<redacted>\"", "EF_ICCID read, swapped BCD"),
        ("IMEI 35-209900-176148-1", "IMEI <redacted>", "Wikipedia dashed IMEI presentation"),
        ("ICCID 8944 2000 5367 1052 499 read", "ICCID <redacted> read", "ICCID printed in groups"),
        ("serial 176148 seen", "serial <redacted> seen", "constructed: a six-digit serial alone"),
        ("imei=490154203237518;imsi=310150123456789", "imei=<redacted>;imsi=<redacted>", "constructed: key=value"),
        ("ATI0490154203237518", "ATI<redacted>", "constructed: digits glued to letters"),
        ("+CME ERROR: 10", "+CME ERROR: 10", "3GPP TS 27.007 error code stays"),
        ("Revision: EC25EFAR06A06M4G", "Revision: EC25EFAR06A06M4G", "Quectel ATI firmware revision stays"),
        ("Model: EC25, 12345", "Model: EC25, 12345", "constructed: five digits stay"),
        ("deadbeefcafe", "deadbeefcafe", "constructed: hex word without a digit stays"),
        ("at 2024-01-15 12:30:00", "at 2024-01-15 12:30:00", "constructed: a timestamp stays"),
        ("", "", "constructed: empty"),
        ("näive 490154203237518 ✓", "näive <redacted> ✓", "constructed: non-ASCII around"),
    ])
    func scrub(_ input: String, _ expected: String, _ source: String) {
        let out = Redaction.scrub(input)
        #expect(out == expected, "\(source)")
        #expect(Redaction.scrub(out) == out, "idempotent")
        #expect(longestDigitRun(out) < 6)
    }

    @Test("every identifier in the tables is scrubbed out of free text")
    func scrubsAllSamples() {
        let texts =
            Samples.imeis.map(\.unredacted) + Samples.imsis.map(\.unredacted)
            + Samples.iccids.map(\.unredacted)
        for value in texts {
            let out = Redaction.scrub("value: \(value) end")
            #expect(!out.contains(value))
            #expect(longestDigitRun(out) < 6)
        }
    }
}
