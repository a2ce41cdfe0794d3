import CellprovCore
import Foundation
import Testing

// The EID read's pure parts (issue 15): the EID type, the logical-channel framing (AT+CCHO/CGLA/CCHC), the
// GetEUICCData APDU and its BER-TLV answer, and the status words. Transcripts are in Fixtures/euicc-transcripts.jsonl,
// each naming its public source, and are read as the reader reads them: framed, classified against the pending
// command, then parsed from the answer's information lines.

struct EUICCTranscript: Decodable, Sendable, CustomTestStringConvertible {
    var id: String
    var command: String
    var response: String
    /// OK, ERROR or CME:<n|text>.
    var final: String
    /// The channel token `openedChannel(in:)` must return (nil: none).
    var channel: String?
    var channelNumber: Int?
    /// The status word of the +CGLA answer, its data, and the step after it (done, failed, or the next APDU).
    var sw: String?
    var data: String?
    var next: String?
    var eid: String?
    var source: String

    var testDescription: String { "\(id) (\(source))" }

    static let all: [EUICCTranscript] = {
        guard let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else { return [] }
        let file = folder.appendingPathComponent("euicc-transcripts.jsonl")
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return [] }
        return text.split(whereSeparator: \.isNewline).compactMap {
            try? JSONDecoder().decode(EUICCTranscript.self, from: Data($0.utf8))
        }
    }()

    /// The answer as the reader's channel collects it: information lines and the final result code.
    func answer() -> (lines: [String], final: ATFinalResult?) {
        var framer = ATFramer(maxLineLength: 1024)
        let classifier = ATLineClassifier()
        let prefix = command.hasPrefix("AT+CCHO") ? "+CCHO:" : command.hasPrefix("AT+CGLA") ? "+CGLA:" : nil
        var info: [String] = []
        for output in framer.feed(Array(response.utf8)) {
            guard case .line(let line) = output else { continue }
            switch classifier.classify(line, pendingCommand: command, expectedPrefix: prefix) {
            case .information: info.append(line)
            case .final(let f): return (info, f)
            default: continue
            }
        }
        return (info, nil)
    }
}

@Suite("eUICC: EID, logical channels, GetEUICCData")
struct EUICCTests {
    // MARK: - EID

    struct EIDCase: Sendable, CustomTestStringConvertible {
        var raw: String
        var valid: Bool
        var why: String
        var testDescription: String { why }
    }

    static let eidCases: [EIDCase] = [
        // pySim tests/unittests/test_globalplatform.py, the EID in its GetEuiccData answer.
        EIDCase(raw: "89882119900000000000000000000005", valid: true, why: "pySim's GetEuiccData vector"),
        // pmoerenhout/validator Iso7064Test.java testIsValidEid (ISO 7064 MOD 97-10 over EIDs).
        EIDCase(raw: "89001012012341234012345678901224", valid: true, why: "pmoerenhout/validator Iso7064Test (1)"),
        EIDCase(raw: "89001567010203040506070809101152", valid: true, why: "pmoerenhout/validator Iso7064Test (2)"),
        EIDCase(raw: "89044011112233441122334411223321", valid: true, why: "pmoerenhout/validator Iso7064Test (3)"),
        EIDCase(raw: "  \"89882119900000000000000000000005\"  ", valid: true, why: "quoted, blanks around"),
        EIDCase(raw: "EID: 89882119900000000000000000000005", valid: true, why: "labelled (constructed)"),
        // Constructed refusals from the same vectors.
        EIDCase(raw: "89882119900000000000000000000006", valid: false, why: "last check digit changed"),
        EIDCase(raw: "89001012012341234012345678901242", valid: false, why: "check digits swapped"),
        EIDCase(raw: "8988211990000000000000000000000", valid: false, why: "31 digits"),
        EIDCase(raw: "898821199000000000000000000000051", valid: false, why: "33 digits"),
        EIDCase(raw: "8988211990000000000000000000000A", valid: false, why: "a hex digit"),
        EIDCase(raw: "", valid: false, why: "empty"),
        // 98 + the rest: a nibble-swapped reading of pySim's EID is not accepted as an EID.
        EIDCase(raw: "98882911090000000000000000000050", valid: false, why: "nibble-swapped"),
        // 79 + 30 digits chosen so that mod 97 == 1: the prefix rule alone refuses it.
        EIDCase(raw: prefixOnlyWrong(), valid: false, why: "mod 97 right, prefix not 89"),
    ]

    /// A 32-digit number starting "79" whose check digits make it mod 97 == 1 (ISO 7064 MOD 97-10).
    static func prefixOnlyWrong() -> String {
        let body = "790010120123412340123456789012"
        var r = 0
        for b in (body + "00").utf8 { r = (r * 10 + Int(b - 48)) % 97 }
        let check = (98 - r) % 97
        return body + (check < 10 ? "0" : "") + String(check)
    }

    @Test(arguments: eidCases)
    func eidValidation(_ c: EIDCase) {
        let v = EID.validate(c.raw)
        if c.valid {
            #expect(v.value != nil && v.problems.isEmpty, "\(v.problems)")
            #expect(v.value?.unredacted.utf8.count == 32)
        } else {
            #expect(v.value == nil)
            #expect(v.problems.map(\.code) == [.eidInvalid])
            #expect(v.problems.allSatisfy { $0.severity == .warning && $0.field == .eid })
            #expect(!v.hasErrors, "an invalid EID leaves the read valid")
        }
    }

    @Test func eidPrintsRedacted() throws {
        let eid = try #require(EID.validate("89882119900000000000000000000005").value)
        let texts = [String(describing: eid), String(reflecting: eid), "\(eid)", dumpText(eid)]
        for text in texts {
            #expect(!text.contains("89882119900000000000000000000005"), "\(text)")
            #expect(!text.contains("900000000000"), "no long run of the digits: \(text)")
            // The reference is keyed (other suites may change the process-wide key meanwhile): its shape only.
            let ref = try #require(text.firstRange(of: "EID(89882119, ref ")).upperBound
            let tail = text[ref...].prefix(11)
            #expect(tail.last == ")" && tail.dropLast().allSatisfy { $0.isHexDigit && !$0.isUppercase }, "\(text)")
        }
        let key = Pseudonymizer(key: Array("eid-test-key".utf8))
        let asICCID = key.reference(kind: "iccid", value: eid.unredacted)
        #expect(key.reference(kind: "eid", value: eid.unredacted) != asICCID)
        // Messages carry no digits of the value either.
        for raw in ["89882119900000000000000000000006", "8988211990000000000000000000000A"] {
            for p in EID.validate(raw).problems { #expect(Redaction.scrub(p.message) == p.message, "\(p.message)") }
        }
    }

    func dumpText(_ value: some Any) -> String {
        var out = ""
        dump(value, to: &out)
        return out
    }

    @Test func reportDescriptionShowsTheEIDRedacted() throws {
        var report = IdentityReport(port: "/dev/ttyUSB2")
        #expect(report.eidStatus == .notAttempted)
        report.eid = EID.validate("89001012012341234012345678901224").value
        report.eidStatus = .read
        #expect(report.description.contains("EID(89001012, ref "))
        #expect(!report.description.contains("89001012012341234012345678901224"))
        #expect(report.isValid == false, "no IMEI/IMSI/ICCID: the EID alone does not make a read valid")
    }

    // MARK: - Framing

    @Test func openAndCloseCommands() throws {
        #expect(EUICCAccess.openCommand == "AT+CCHO=\"A0000005591010FFFFFFFF8900000100\"")
        let one = try #require(LogicalChannelID(token: "1"))
        #expect(EUICCAccess.closeCommand(one) == "AT+CCHC=1")
        let handle = try #require(LogicalChannelID(token: "00000000038aa32f"))
        #expect(EUICCAccess.closeCommand(handle) == "AT+CCHC=00000000038aa32f", "written back as the modem named it")
        #expect(handle.number == nil)
        #expect(!handle.description.contains("38aa32f"), "a handle is not printed")
    }

    struct CLACase: Sendable, CustomTestStringConvertible {
        var base: UInt8
        var channel: Int?
        var cla: UInt8
        var testDescription: String { "base \(base) channel \(channel.map(String.init) ?? "handle") -> \(cla)" }
    }

    /// ETSI TS 102 221 §10.1.1 (pySim's lchan_nr_to_cla): channels 1-3 in b2-b1, 4-19 with b7 set and n-4 in b4-b1.
    static let claCases: [CLACase] = [
        CLACase(base: 0x80, channel: 1, cla: 0x81),  // lpac issue #143: "81E29100..."
        CLACase(base: 0x80, channel: 2, cla: 0x82),
        CLACase(base: 0x80, channel: 3, cla: 0x83),
        CLACase(base: 0x80, channel: 4, cla: 0xC0),
        CLACase(base: 0x80, channel: 19, cla: 0xCF),
        CLACase(base: 0x00, channel: 1, cla: 0x01),
        CLACase(base: 0x00, channel: 5, cla: 0x41),
        CLACase(base: 0x00, channel: 19, cla: 0x4F),
        CLACase(base: 0x80, channel: nil, cla: 0x80),  // a session handle: the MT sets the bits (lpac #138)
        CLACase(base: 0x80, channel: 20, cla: 0x80),
    ]

    @Test(arguments: claCases)
    func classByte(_ c: CLACase) {
        #expect(EUICCAccess.classByte(base: c.base, channel: c.channel) == c.cla)
    }

    @Test func getEUICCDataAPDU() throws {
        let one = try #require(LogicalChannelID(token: "1"))
        // ModemManager src/mm-sim-mbim.c sends 81 E2 91 00 06 BF 3E 03 5C 01 5A 00 on channel 1.
        #expect(EUICCAccess.hex(EUICCAccess.getEUICCDataAPDU(channel: one)) == "81E2910006BF3E035C015A00")
        #expect(EUICCAccess.cglaCommand(one, apdu: EUICCAccess.getEUICCDataAPDU(channel: one))
            == "AT+CGLA=1,24,\"81E2910006BF3E035C015A00\"")
        let handle = try #require(LogicalChannelID(token: "00000000038aa32f"))
        // pySim's vector (channel 0 class): 80E2910006BF3E035C015A00; a handle keeps the base class too.
        #expect(EUICCAccess.hex(EUICCAccess.getEUICCDataAPDU(channel: handle)) == "80E2910006BF3E035C015A00")
        let five = try #require(LogicalChannelID(token: "5"))
        #expect(EUICCAccess.hex(EUICCAccess.getEUICCDataAPDU(channel: five, le: 0x15)) == "C1E2910006BF3E035C015A15")
        #expect(EUICCAccess.hex(EUICCAccess.getResponseAPDU(channel: five, length: 0x1A)) == "41C000001A")
    }

    @Test func channelTokens() {
        for bad in ["", "0", "0000", "G1", "1 2", String(repeating: "1", count: 33), "-1"] {
            #expect(LogicalChannelID(token: bad) == nil, "\(bad)")
        }
        for good in ["1", "19", "3", "00000000038aa32f", "ABC"] {
            #expect(LogicalChannelID(token: good) != nil, "\(good)")
        }
        #expect(LogicalChannelID(token: "19")?.number == 19)
        #expect(LogicalChannelID(token: "20")?.number == nil)
    }

    // MARK: - Transcripts

    @Test func fixtureIsPresent() {
        #expect(EUICCTranscript.all.count >= 18)
        #expect(Set(EUICCTranscript.all.map(\.id)).count == EUICCTranscript.all.count)
        #expect(EUICCTranscript.all.allSatisfy { !$0.source.isEmpty })
    }

    @Test(arguments: EUICCTranscript.all)
    func transcript(_ t: EUICCTranscript) throws {
        let (lines, final) = t.answer()
        let f = try #require(final, "the answer ends")
        switch t.final {
        case "OK": #expect(f == .ok)
        case "ERROR": #expect(f == .error)
        default:
            let rest = String(t.final.dropFirst(4))
            if let n = Int(rest) {
                #expect(f == .cmeError(CMEError(code: n, text: nil)))
            } else {
                #expect(f == .cmeError(CMEError(code: nil, text: rest)))
            }
        }
        if t.command.hasPrefix("AT+CCHO") {
            let channel = f.isSuccess ? EUICCAccess.openedChannel(in: lines) : nil
            #expect(channel?.token == t.channel)
            #expect(channel?.number == t.channelNumber)
        }
        if let sw = t.sw {
            let response = try #require(EUICCAccess.cglaResponse(in: lines))
            #expect(response.statusText == sw)
            #expect(EUICCAccess.hex(response.data) == t.data)
            let token = try #require(t.command.dropFirst("AT+CGLA=".count).split(separator: ",").first)
            let channel = try #require(LogicalChannelID(token: String(token)))
            let sentHex = String(try #require(t.command.split(separator: "\"").dropFirst().first))
            let sent = try #require(EUICCAccess.bytes(fromHex: sentHex))
            switch EUICCAccess.next(after: response, channel: channel, sent: sent) {
            case .done: #expect(t.next == "done")
            case .failed: #expect(t.next == "failed")
            case .send(let apdu): #expect(EUICCAccess.hex(apdu) == t.next)
            }
            if let eid = t.eid {
                let digits = try #require(EUICCAccess.eidDigits(inGetEUICCData: response.data))
                #expect(digits == eid)
                #expect(EID.validate(digits).value?.unredacted == eid)
            }
        }
    }

    @Test func bareDigitsAreFinalsOnlyOutsideCCHO() {
        let c = ATLineClassifier()
        #expect(c.classify("3", pendingCommand: EUICCAccess.openCommand, expectedPrefix: "+CCHO:") == .information)
        #expect(c.classify("4", pendingCommand: EUICCAccess.openCommand, expectedPrefix: "+CCHO:") == .information)
        #expect(c.classify("3", pendingCommand: "AT+CGSN", expectedPrefix: nil) == .final(.noCarrier))
        #expect(c.classify("OK", pendingCommand: EUICCAccess.openCommand, expectedPrefix: "+CCHO:") == .final(.ok))
    }

    // MARK: - GetEUICCData answers

    struct TLVCase: Sendable, CustomTestStringConvertible {
        var hex: String
        var eid: String?
        var why: String
        var testDescription: String { why }
    }

    static let tlvCases: [TLVCase] = [
        TLVCase(hex: "BF3E125A1089882119900000000000000000000005", eid: "89882119900000000000000000000005",
            why: "pySim test_globalplatform.py get_eid_rsp_plain"),
        TLVCase(hex: "BF3E81125A1089882119900000000000000000000005", eid: "89882119900000000000000000000005",
            why: "long-form length 81 12 (BER, constructed)"),
        TLVCase(hex: "BF3E15800100" + "5A1089882119900000000000000000000005", eid: "89882119900000000000000000000005",
            why: "another element before 5A (constructed)"),
        TLVCase(hex: "BF3E125A108988211990000000000000000000", eid: nil, why: "cut: the length runs past the data"),
        TLVCase(hex: "BF2E128010FDC5A60071053ABB4C0F91BC0620BCFD", eid: nil, why: "lpac #143: another tag (BF2E)"),
        TLVCase(hex: "BF3E00", eid: nil, why: "empty BF3E (constructed)"),
        TLVCase(hex: "", eid: nil, why: "no data"),
        TLVCase(hex: "5A1089882119900000000000000000000005", eid: nil, why: "5A without BF3E (constructed)"),
    ]

    @Test(arguments: tlvCases)
    func eidInGetEUICCData(_ c: TLVCase) throws {
        let bytes = try #require(EUICCAccess.bytes(fromHex: c.hex))
        #expect(EUICCAccess.eidDigits(inGetEUICCData: bytes) == c.eid)
    }

    @Test func cglaAnswerForms() {
        // A length that matches neither the characters nor the bytes: a cut line.
        #expect(EUICCAccess.cglaResponse(in: ["+CGLA: 46,\"BF3E125A1089882119909000\""]) == nil)
        // Length in bytes instead of characters (constructed tolerance).
        #expect(EUICCAccess.cglaResponse(in: ["+CGLA: 2,\"9000\""])?.statusText == "9000")
        // Odd number of digits, no status word, not hex.
        #expect(EUICCAccess.cglaResponse(in: ["+CGLA: 3,\"900\""]) == nil)
        #expect(EUICCAccess.cglaResponse(in: ["+CGLA: 0,\"\""]) == nil)
        #expect(EUICCAccess.cglaResponse(in: ["+CGLA: 4,\"90G0\""]) == nil)
        #expect(EUICCAccess.cglaResponse(in: ["9000"]) == nil, "a bare line is not a +CGLA answer")
        // The tag in another case and a blank before the colon.
        #expect(EUICCAccess.cglaResponse(in: ["+cgla : 4,\"9000\""])?.statusText == "9000")
    }

    // MARK: - Vendor shortcut

    @Test func sequansSQNCCIDCarriesTheEID() {
        // QuickSpot/walter-arduino PR #126: +SQNCCID:"[ICCID]","[eUICCID]", the EID 32 digits.
        let lines = ["+SQNCCID: \"8901260852290270222\",\"89882119900000000000000000000005\""]
        #expect(EUICCAccess.vendorEIDDigits(answering: "AT+SQNCCID", in: lines) == "89882119900000000000000000000005")
        #expect(IdentityAnswer.iccid(answering: "AT+SQNCCID", in: lines)?.value?.unredacted == "8901260852290270222")
        // A plain SIM: an empty second field (the form the project's Sequans profile and its sources show).
        #expect(EUICCAccess.vendorEIDDigits(answering: "AT+SQNCCID", in: ["+SQNCCID: \"8901260852290270222\",\"\""])
            == nil)
        #expect(EUICCAccess.vendorEIDDigits(answering: "AT+CCID", in: lines) == nil, "only the Sequans command")
    }
}
