import CellprovCore
import Foundation
import Testing

// Table-driven tests of the AT layer (framer, line classifier, response parsers, CME errors, vendor catalog).
// Every transcript case names its public source. The modem's bytes are the ones the source shows; where a source
// printed a session without its line ends, the V.250 verbose framing (<CR><LF>text<CR><LF>, echo "cmd<CR>") was
// restored around the lines it shows. Values redacted by the source (x, WXYZ) are kept as the source printed them:
// the parsers return raw values, validation is the identity types' job. Cases marked "constructed" exercise one
// framing rule with bytes no source prints (binary garbage, an endless line).

// MARK: - Fixture: Fixtures/at-transcripts.jsonl

struct ATFixtureMissing: Error {}

struct ATTranscript: Decodable, Sendable, CustomTestStringConvertible {
    var id: String
    /// The command line waiting for its answer (nil: the port is idle).
    var command: String?
    /// The information prefix the command answers with.
    var prefix: String?
    /// The raw bytes from the modem, as text with its CR/LF.
    var response: String
    /// The lines the framer must return, in order.
    var lines: [String]
    /// The kind of each line: echo, info, urc, final.
    var kinds: [String]
    /// The final result: OK, ERROR, CME:<n|text>, or nil when the transcript holds none.
    var final: String?
    /// Which extractor applies to the answer's information lines: imei, imsi, iccid, crsm, efimsi (the IMSI
    /// digits decoded from a +CRSM read of EF_IMSI), pin, text.
    var extract: String?
    /// The tags for the `text` extractor.
    var tags: [String]?
    /// The raw value the extractor returns (nil: it must return nil).
    var expect: String?
    /// The SIM condition of the final +CME ERROR, if any.
    var simCondition: String?
    var source: String

    var testDescription: String { "\(id) (\(source))" }
    var bytes: [UInt8] { Array(response.utf8) }

    static func load() throws -> [ATTranscript] {
        guard let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw ATFixtureMissing()
        }
        let text = try String(contentsOf: folder.appendingPathComponent("at-transcripts.jsonl"), encoding: .utf8)
        let decoder = JSONDecoder()
        return try text.split(whereSeparator: \.isNewline)
            .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            .map { try decoder.decode(ATTranscript.self, from: Data($0.utf8)) }
    }

    /// Loaded once for the `arguments:` of the parameterised tests.
    static let all: [ATTranscript] = (try? load()) ?? []
}

// MARK: - Helpers

/// A small seeded generator, so the random chunkings are the same on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum Frame {
    static func all(_ bytes: [UInt8], maxLineLength: Int = 1024) -> [ATFramer.Output] {
        var framer = ATFramer(maxLineLength: maxLineLength)
        return framer.feed(bytes)
    }

    static func chunked(_ bytes: [UInt8], sizes: [Int]) -> [ATFramer.Output] {
        var framer = ATFramer()
        var out: [ATFramer.Output] = []
        var index = 0
        var k = 0
        while index < bytes.count {
            let size = max(1, sizes[k % sizes.count])
            let end = min(bytes.count, index + size)
            out += framer.feed(bytes[index..<end])
            index = end
            k += 1
        }
        return out
    }

    static func lines(_ outputs: [ATFramer.Output]) -> [String] {
        outputs.compactMap { if case .line(let l) = $0 { l } else { nil } }
    }
}

func kindName(_ kind: ATLineKind) -> String {
    switch kind {
    case .echo: "echo"
    case .foreignEcho: "foreign-echo"
    case .final: "final"
    case .information: "info"
    case .implausible: "implausible"
    case .unsolicited: "urc"
    }
}

func expectedFinal(_ spec: String) -> ATFinalResult? {
    if spec == "OK" { return .ok }
    if spec == "ERROR" { return .error }
    if spec.hasPrefix("CME:") {
        let rest = String(spec.dropFirst(4))
        if let n = Int(rest) { return .cmeError(CMEError(code: n, text: nil)) }
        return .cmeError(CMEError(code: nil, text: rest))
    }
    return nil
}

func simCondition(named name: String?) -> CMEError.SIMCondition? {
    switch name {
    case "notInserted": .notInserted
    case "pinRequired": .pinRequired
    case "pukRequired": .pukRequired
    case "failure": .failure
    case "busy": .busy
    case "wrong": .wrong
    default: nil
    }
}

/// Classifies the lines in order, as the engine would: the pending command ends with its final result.
func classifyInOrder(_ lines: [String], command: String?, prefix: String?) -> [ATLineKind] {
    let classifier = ATLineClassifier()
    var pending = command
    var kinds: [ATLineKind] = []
    for line in lines {
        let kind = classifier.classify(line, pendingCommand: pending, expectedPrefix: pending == nil ? nil : prefix)
        kinds.append(kind)
        if case .final = kind { pending = nil }
    }
    return kinds
}

/// The suite every AT-layer test belongs to (`swift test --filter ATParsingTests`).
@Suite("AT parsing")
struct ATParsingTests {}

extension ATParsingTests {
    // MARK: - Transcripts: framing

    @Suite("AT transcripts: framing")
    struct ATTranscriptFramingTests {
        @Test("the fixture is present and well formed")
        func fixture() throws {
            let all = try ATTranscript.load()
            #expect(all.count >= 40)
            #expect(Set(all.map(\.id)).count == all.count, "ids are unique")
            for t in all {
                #expect(t.lines.count == t.kinds.count, "\(t.id)")
                #expect(!t.source.isEmpty, "\(t.id)")
            }
        }

        @Test("fed at once, the bytes give the expected lines and nothing else", arguments: ATTranscript.all)
        func atOnce(_ t: ATTranscript) {
            let outputs = Frame.all(t.bytes)
            #expect(outputs == t.lines.map { .line($0) })
        }

        @Test("fed one byte at a time, the bytes give the same lines", arguments: ATTranscript.all)
        func byteByByte(_ t: ATTranscript) {
            #expect(Frame.chunked(t.bytes, sizes: [1]) == t.lines.map { .line($0) })
        }

        @Test("split at every position, the bytes give the same lines", arguments: ATTranscript.all)
        func everySplit(_ t: ATTranscript) {
            let bytes = t.bytes
            let expected: [ATFramer.Output] = t.lines.map { .line($0) }
            for cut in 0...bytes.count {
                var framer = ATFramer()
                let out = framer.feed(bytes[0..<cut]) + framer.feed(bytes[cut...])
                #expect(out == expected, "cut at \(cut)")
                #expect(framer.bufferedByteCount == 0)
            }
        }

        @Test("fed in random chunk sizes, the bytes give the same lines", arguments: ATTranscript.all)
        func randomChunks(_ t: ATTranscript) {
            let expected: [ATFramer.Output] = t.lines.map { .line($0) }
            for seed in UInt64(1)...25 {
                var rng = SplitMix64(seed: seed &* 0x5851_F42D_4C95_7F2D)
                let sizes = (0..<64).map { _ in Int.random(in: 1...17, using: &rng) }
                #expect(Frame.chunked(t.bytes, sizes: sizes) == expected, "seed \(seed)")
            }
        }

        @Test("bare CR and bare LF endings give the same lines as CR LF", arguments: ATTranscript.all)
        func lineEndings(_ t: ATTranscript) {
            let expected: [ATFramer.Output] = t.lines.map { .line($0) }
            let crOnly = t.response.replacingOccurrences(of: "\r\n", with: "\r")
            let lfOnly = t.response.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            #expect(Frame.all(Array(crOnly.utf8)) == expected)
            #expect(Frame.all(Array(lfOnly.utf8)) == expected)
        }
    }

    // MARK: - Transcripts: classification, final result and extraction

    @Suite("AT transcripts: answers")
    struct ATTranscriptAnswerTests {
        @Test("each line is classified as echo, information, URC or final", arguments: ATTranscript.all)
        func classification(_ t: ATTranscript) {
            let kinds = classifyInOrder(t.lines, command: t.command, prefix: t.prefix)
            #expect(kinds.map(kindName) == t.kinds)
        }

        @Test("the final result code is parsed", arguments: ATTranscript.all)
        func finalResult(_ t: ATTranscript) {
            let finals = t.lines.compactMap { ATFinalResult(line: $0) }
            if let spec = t.final {
                #expect(finals == [expectedFinal(spec)].compactMap { $0 })
            } else {
                #expect(finals.isEmpty)
            }
            let condition: CMEError.SIMCondition? = finals.lazy.compactMap {
                if case .cmeError(let e) = $0 { e.simCondition } else { nil }
            }.first
            #expect(condition == simCondition(named: t.simCondition))
        }

        @Test(
            "the value is extracted from the answer's information lines",
            arguments: ATTranscript.all.filter { $0.extract != nil })
        func extraction(_ t: ATTranscript) {
            let kinds = classifyInOrder(t.lines, command: t.command, prefix: t.prefix)
            let info = zip(t.lines, kinds).compactMap { line, kind in kind == .information ? line : nil }
            let value: String?
            switch t.extract {
            case "imei": value = ATResponse.imei(in: info)
            case "imsi": value = ATResponse.imsi(in: info)
            case "iccid": value = ATResponse.iccid(in: info)
            case "crsm": value = ATResponse.crsmData(in: info)
            case "efimsi": value = ATResponse.crsmData(in: info).flatMap { IMSI.digits(fromEFIMSI: $0).value }
            case "pin": value = ATResponse.pinState(in: info)
            case "text": value = ATResponse.text(in: info, tags: t.tags ?? [])
            default:
                Issue.record("unknown extractor \(t.extract ?? "")")
                return
            }
            #expect(value == t.expect)
        }
    }

    // MARK: - Framer: garbage and bounded memory

    @Suite("ATFramer: garbage and bounds")
    struct ATFramerBoundsTests {
        struct GarbageCase: Sendable, CustomTestStringConvertible {
            var name: String
            var bytes: [UInt8]
            var expected: [ATFramer.Output]
            var testDescription: String { name }
        }

        static let garbage: [GarbageCase] = [
            // constructed: noise of a wrong baud rate before the answer
            GarbageCase(
                name: "binary before OK", bytes: [0x00, 0xFF, 0xFE, 0x80, 0x1B, 0x7F] + Array("\r\nOK\r\n".utf8),
                expected: [.garbage(droppedBytes: 6), .line("OK")]),
            // constructed: a NUL inside a line drops that line only
            GarbageCase(
                name: "NUL inside a line", bytes: Array("\r\nO".utf8) + [0x00] + Array("K\r\n+CPIN: READY\r\n".utf8),
                expected: [.garbage(droppedBytes: 3), .line("+CPIN: READY")]),
            // constructed: high bytes between two good lines
            GarbageCase(
                name: "high bytes between lines",
                bytes: Array("RDY\r\n".utf8) + [0xC3, 0x28, 0xA0, 0xA1] + Array("\r\n+QUSIM: 1\r\n".utf8),
                expected: [.line("RDY"), .garbage(droppedBytes: 4), .line("+QUSIM: 1")]),
            // constructed: tab is allowed, surrounding blanks trimmed
            GarbageCase(
                name: "tab and blanks are text", bytes: Array(" \t+CPIN: READY \t\r\n".utf8),
                expected: [.line("+CPIN: READY")]),
            // the SMS prompt of 3GPP TS 27.005 §3.5.1 has no line end
            GarbageCase(
                name: "SMS prompt", bytes: Array("AT+CMGS=29\r\r\n> ".utf8),
                expected: [.line("AT+CMGS=29"), .prompt]),
        ]

        @Test("binary bytes make one garbage output per line", arguments: garbage)
        func binary(_ c: GarbageCase) {
            #expect(Frame.all(c.bytes) == c.expected)
            #expect(Frame.chunked(c.bytes, sizes: [1]) == c.expected)
        }

        @Test("a line of exactly maxLineLength bytes is kept; one more byte makes it garbage")
        func boundary() {
            let max = 64
            let exact = Array(repeating: UInt8(ascii: "7"), count: max)
            #expect(Frame.all(exact + [0x0D, 0x0A], maxLineLength: max) == [.line(String(repeating: "7", count: max))])
            let over = exact + [UInt8(ascii: "7")]
            #expect(Frame.all(over + [0x0D, 0x0A], maxLineLength: max) == [.garbage(droppedBytes: max + 1)])
        }

        @Test("a 1 MB line without end stays bounded, gives one garbage, and the next line is read")
        func megabyteLine() {
            let total = 1 << 20
            var framer = ATFramer()
            var outputs: [ATFramer.Output] = []
            let chunk = [UInt8](repeating: UInt8(ascii: "A"), count: 4096)
            var fed = 0
            var peak = 0
            // The first bytes one at a time, then 4 KiB reads as a serial port gives them.
            while fed < 3000 {
                outputs += framer.feed(CollectionOfOne(UInt8(ascii: "A")))
                peak = Swift.max(peak, framer.bufferedByteCount)
                fed += 1
            }
            while fed < total {
                let n = Swift.min(chunk.count, total - fed)
                outputs += framer.feed(chunk[0..<n])
                peak = Swift.max(peak, framer.bufferedByteCount)
                #expect(framer.bufferedByteCount <= framer.maxLineLength)
                fed += n
            }
            #expect(peak <= framer.maxLineLength)
            #expect(outputs.isEmpty, "nothing is reported before the line ends")
            outputs += framer.feed(Array("\r\n+CPIN: READY\r\n\r\nOK\r\n".utf8))
            #expect(outputs == [.garbage(droppedBytes: total), .line("+CPIN: READY"), .line("OK")])
            #expect(framer.bufferedByteCount == 0)
        }

        @Test("a 1 MB line in a single feed also gives one garbage output")
        func megabyteSingleFeed() {
            var framer = ATFramer()
            var bytes = [UInt8](repeating: 0x41, count: 1 << 20)
            bytes += Array("\rOK\r".utf8)
            #expect(framer.feed(bytes) == [.garbage(droppedBytes: 1 << 20), .line("OK")])
            #expect(framer.bufferedByteCount == 0)
        }

        @Test("reset drops a partial line")
        func reset() {
            var framer = ATFramer()
            #expect(framer.feed(Array("+CGSN: 35".utf8)).isEmpty)
            #expect(framer.bufferedByteCount == 9)
            framer.reset()
            #expect(framer.bufferedByteCount == 0)
            #expect(framer.feed(Array("OK\r\n".utf8)) == [.line("OK")])
        }
    }

    // MARK: - URCs

    @Suite("Unsolicited result codes")
    struct URCTests {
        struct URCCase: Sendable, CustomTestStringConvertible {
            var line: String
            var simEvent: Bool
            var source: String
            var testDescription: String { "\(line) (\(source))" }
        }

        static let urcs: [URCCase] = [
            URCCase(line: "RDY", simEvent: false, source: "Quectel forum t/34559, EG21-G boot"),
            URCCase(line: "+CPIN: READY", simEvent: true, source: "Quectel forum t/34559, EG21-G boot"),
            URCCase(line: "+CPIN: SIM PIN", simEvent: true, source: "Quectel EC20 AT manual (Chinese), AT+CFUN example"),
            URCCase(line: "+QUSIM: 1", simEvent: true, source: "Quectel forum t/34559, EG21-G boot"),
            URCCase(line: "+QIND: SMS DONE", simEvent: true, source: "lupyuen NuttX PinePhone LTE article (EG25-G)"),
            URCCase(line: "+QIND: PB DONE", simEvent: false, source: "lupyuen NuttX PinePhone LTE article (EG25-G)"),
            URCCase(line: "+CFUN: 1", simEvent: false, source: "lupyuen NuttX PinePhone LTE article (EG25-G)"),
            URCCase(line: "^SIMST: 1", simEvent: true, source: "garronej at-messages-parser tests (Huawei)"),
            URCCase(line: "^SIMST: 255,1", simEvent: true, source: "garronej at-messages-parser tests (Huawei)"),
            URCCase(line: "^SIMST: 0", simEvent: true, source: "ASR module AT log (public GitHub markdown)"),
            URCCase(line: "^SRVST: 0", simEvent: false, source: "garronej at-messages-parser tests (Huawei)"),
            URCCase(line: "+CREG: 1", simEvent: false, source: "ASR module AT log (public GitHub markdown)"),
            URCCase(line: "+CEREG: 2", simEvent: false, source: "ASR module AT log (public GitHub markdown)"),
            URCCase(line: "SMS DONE", simEvent: false, source: "SIM7600 boot sequence in public driver code"),
            URCCase(line: "PB DONE", simEvent: false, source: "SIM7600 boot sequence in public driver code"),
            URCCase(line: "^SYSSTART", simEvent: false, source: "garronej at-messages-parser tests (Cinterion)"),
            URCCase(line: "+PACSP0", simEvent: false, source: "garronej at-messages-parser tests (Cinterion)"),
            URCCase(line: "#QSS: 1", simEvent: true, source: "pmoerenhout atcommander QuerySimStatusUnsolicitedTest (Telit)"),
            URCCase(line: "#QSS: 2", simEvent: true, source: "pmoerenhout atcommander QuerySimStatusResponseTest (Telit)"),
            URCCase(line: "#QSS: 0", simEvent: true, source: "Telit ME910/ML865 AT Reference Guide §3.3.9 (#QSS status 0)"),
        ]

        @Test("a URC is unsolicited while idle and while another command waits", arguments: urcs)
        func classified(_ c: URCCase) {
            let classifier = ATLineClassifier()
            #expect(ATLineClassifier.isURC(c.line))
            #expect(classifier.classify(c.line, pendingCommand: nil, expectedPrefix: nil) == .unsolicited)
            #expect(classifier.classify(c.line, pendingCommand: "AT+CGSN", expectedPrefix: "+CGSN:") == .unsolicited)
            #expect(classifier.classify(c.line, pendingCommand: "AT+CIMI", expectedPrefix: nil) == .unsolicited)
        }

        @Test("VendorCatalog.isSIMEvent tells SIM state changes from other URCs", arguments: urcs)
        func simEvent(_ c: URCCase) {
            #expect(VendorCatalog.isSIMEvent(c.line) == c.simEvent)
        }

        @Test("+CPIN: is an answer while AT+CPIN? waits, a URC otherwise")
        func cpinAnswerOrURC() {
            let classifier = ATLineClassifier()
            #expect(classifier.classify("+CPIN: READY", pendingCommand: "AT+CPIN?", expectedPrefix: "+CPIN:") == .information)
            #expect(classifier.classify("+CPIN: READY", pendingCommand: "AT+CIMI", expectedPrefix: nil) == .unsolicited)
        }

        @Test("+CPINR: (remaining attempts) is not a SIM event of +CPIN:")
        func cpinr() {
            // constructed in the +CPINR answer form of 3GPP TS 27.007 §8.65
            #expect(VendorCatalog.isSIMEvent("+CPINR: SIM PIN,3,10") == false)
        }
    }

    // MARK: - +CME ERROR and SIM conditions (3GPP TS 27.007 §9.2.1)

    @Suite("+CME ERROR")
    struct CMEErrorTests {
        struct CMECase: Sendable, CustomTestStringConvertible {
            var code: Int
            var text: String
            var condition: CMEError.SIMCondition?
            var testDescription: String { "\(code) / \(text)" }
        }

        /// Numeric and verbose forms of 3GPP TS 27.007 §9.2.1; the SIM texts as modems print them with AT+CMEE=2.
        static let table: [CMECase] = [
            CMECase(code: 10, text: "SIM not inserted", condition: .notInserted),
            CMECase(code: 11, text: "SIM PIN required", condition: .pinRequired),
            CMECase(code: 12, text: "SIM PUK required", condition: .pukRequired),
            CMECase(code: 13, text: "SIM failure", condition: .failure),
            CMECase(code: 14, text: "SIM busy", condition: .busy),
            CMECase(code: 15, text: "SIM wrong", condition: .wrong),
            CMECase(code: 17, text: "SIM PIN2 required", condition: .pinRequired),
            CMECase(code: 18, text: "SIM PUK2 required", condition: .pukRequired),
            CMECase(code: 0, text: "phone failure", condition: nil),
            CMECase(code: 3, text: "operation not allowed", condition: nil),
            CMECase(code: 4, text: "operation not supported", condition: nil),
            CMECase(code: 16, text: "incorrect password", condition: nil),
            CMECase(code: 30, text: "no network service", condition: nil),
            CMECase(code: 100, text: "unknown", condition: nil),
        ]

        @Test("the numeric form (AT+CMEE=1) parses and gives the SIM condition", arguments: table)
        func numeric(_ c: CMECase) {
            let result = ATFinalResult(line: "+CME ERROR: \(c.code)")
            #expect(result == .cmeError(CMEError(code: c.code, text: nil)))
            guard case .cmeError(let error)? = result else { return }
            #expect(error.simCondition == c.condition)
            #expect(result?.isSuccess == false)
        }

        @Test("the verbose form (AT+CMEE=2) parses and gives the same SIM condition", arguments: table)
        func verbose(_ c: CMECase) {
            let result = ATFinalResult(line: "+CME ERROR: \(c.text)")
            #expect(result == .cmeError(CMEError(code: nil, text: c.text)))
            guard case .cmeError(let error)? = result else { return }
            #expect(error.simCondition == c.condition)
        }

        struct Seen: Sendable, CustomTestStringConvertible {
            var line: String
            var condition: CMEError.SIMCondition?
            var source: String
            var testDescription: String { "\(line) (\(source))" }
        }

        /// Lines as they were seen on real ports.
        static let seen: [Seen] = [
            Seen(line: "+CME ERROR: SIM not inserted", condition: .notInserted, source: "LilyGo-T-Call-SIM800 issue #33"),
            Seen(line: "+CME ERROR: SIM not inserted", condition: .notInserted, source: "T-Internet-COM issue #24 (A7670E)"),
            Seen(line: "+CME ERROR: SIM PIN required", condition: .pinRequired, source: "modemmanager-devel 2013-09 (Huawei)"),
            Seen(line: "+CME ERROR: SIM failure", condition: .failure, source: "M95 driver log comment 2014-12-02"),
            Seen(line: "+CME ERROR: SIM busy", condition: .busy, source: "M95 driver log comment 2014-12-02"),
            Seen(line: "+CME ERROR: SIM busy", condition: .busy, source: "ModemManager debug log, Huawei AT+GCAP"),
            Seen(line: "+CME ERROR: 13", condition: .failure, source: "Quectel EC20 AT manual (Chinese), AT+CPIN? example"),
            Seen(line: "+CME ERROR: 3", condition: nil, source: "Quectel forum t/34559, EG916Q-GL AT+CRSM"),
            Seen(line: "+CME ERROR: 10", condition: .notInserted, source: "3GPP TS 27.007 §9.2.1 with AT+CMEE=1"),
        ]

        @Test("real +CME ERROR lines", arguments: seen)
        func realLines(_ c: Seen) {
            guard case .cmeError(let error)? = ATFinalResult(line: c.line) else {
                Issue.record("not parsed as +CME ERROR")
                return
            }
            #expect(error.simCondition == c.condition)
        }

        @Test("other final result codes (ITU-T V.250 verbose and numeric)")
        func otherFinals() {
            #expect(ATFinalResult(line: "OK") == .ok)
            #expect(ATFinalResult(line: "ERROR") == .error)
            #expect(ATFinalResult(line: "0") == .ok)
            #expect(ATFinalResult(line: "4") == .error)
            #expect(ATFinalResult(line: "NO CARRIER") == .noCarrier)
            #expect(ATFinalResult(line: "+CMS ERROR: 500") == .cmsError("500"))
            #expect(ATFinalResult(line: "CONNECT 150000000") == .connect("150000000"))
            #expect(ATFinalResult(line: "+CPIN: READY") == nil)
            #expect(ATFinalResult(line: "OKAY") == nil)
        }

        @Test("a digits-only final counts only while a command waits")
        func digitsOnlyFinal() {
            let classifier = ATLineClassifier()
            #expect(classifier.classify("0", pendingCommand: "AT", expectedPrefix: nil) == .final(.ok))
            #expect(classifier.classify("0", pendingCommand: nil, expectedPrefix: nil) == .unsolicited)
        }
    }

    // MARK: - VendorCatalog

    @Suite("VendorCatalog")
    struct VendorCatalogTests {
        struct Maker: Sendable, CustomTestStringConvertible {
            var cgmi: String
            var dialect: String
            var iccidCommand: String?
            var source: String
            var testDescription: String { "\(cgmi) (\(source))" }
        }

        static let makers: [Maker] = [
            Maker(cgmi: "Quectel", dialect: "quectel", iccidCommand: "AT+QCCID",
                  source: "Quectel forum t/34559, AT+CGMI on EG21-G and EG916Q-GL"),
            Maker(cgmi: "Sierra Wireless, Incorporated", dialect: "sierra", iccidCommand: "AT!ICCID?",
                  source: "Sierra Wireless forum t/19208, MC7455 ATI"),
            Maker(cgmi: "Telit", dialect: "telit", iccidCommand: "AT#CCID",
                  source: "Telit AT library README, AT+GMI"),
            Maker(cgmi: "u-blox", dialect: "ublox", iccidCommand: nil,
                  source: "u-blox +CGMI string as named in the brief (SARA-R4 manual example not re-read here)"),
            Maker(cgmi: "SIMCOM INCORPORATED", dialect: "simcom", iccidCommand: "AT+CICCID",
                  source: "SIMCom frame parser comment (AT+CGMI); LilyGo-T-A76XX SIM7600 AT+SIMCOMATI note"),
            Maker(cgmi: "Huawei Technologies Co., Ltd.", dialect: "huawei", iccidCommand: "AT^ICCID?",
                  source: "Huawei +CGMI string as named in the brief (ME909s manual example not re-read here)"),
            Maker(cgmi: "Cinterion", dialect: "cinterion", iccidCommand: "AT^SCID",
                  source: "Cinterion +CGMI string as named in the brief (PLS8 manual example not re-read here)"),
            Maker(cgmi: "Fibocom", dialect: "fibocom", iccidCommand: "AT+ICCID",
                  source: "Fibocom +CGMI string as named in the brief (L860 manual example not re-read here)"),
            Maker(cgmi: "Nordic Semiconductor ASA", dialect: "nordic", iccidCommand: "AT%XICCID",
                  source: "sdk-nrf at_parser test (AT+CGMI -> 'Nordic Semiconductor ASA'); AT%XICCID: nRF91 AT reference"),
            Maker(cgmi: "SEQUANS Communications", dialect: "sequans", iccidCommand: "AT+SQNCCID",
                  source: "Sequans' company name (the module's exact +CGMI text not verified); AT+SQNCCID: module notes"),
            Maker(cgmi: "ZTE CORPORATION", dialect: "zte", iccidCommand: "AT+ZGETICCID",
                  source: "ZTE's company name (exact +CGMI text not verified); AT+ZGETICCID: SparkFun MG2639 library"),
        ]

        @Test("dialect(forManufacturer:) recognises real +CGMI answers", arguments: makers)
        func dialect(_ m: Maker) {
            let d = VendorCatalog.dialect(forManufacturer: m.cgmi)
            #expect(d?.name == m.dialect)
            #expect(d?.iccidCommand == m.iccidCommand)
            // Case does not matter: some firmware prints the name in capitals.
            #expect(VendorCatalog.dialect(forManufacturer: m.cgmi.uppercased())?.name == m.dialect)
        }

        @Test("dialect(forManufacturer:) returns nil without a known name (constructed)")
        func unknown() {
            #expect(VendorCatalog.dialect(forManufacturer: nil) == nil)
            #expect(VendorCatalog.dialect(forManufacturer: "") == nil)
            #expect(VendorCatalog.dialect(forManufacturer: "Generic") == nil)
        }

        @Test("the +CGMI answer a transcript gives feeds dialect(forManufacturer:)")
        func fromTranscript() throws {
            let all = try ATTranscript.load()
            let cgmi = try #require(all.first { $0.id == "simcom-cgmi-echo" })
            let kinds = classifyInOrder(cgmi.lines, command: cgmi.command, prefix: cgmi.prefix)
            let info = zip(cgmi.lines, kinds).compactMap { $1 == .information ? $0 : nil }
            let text = ATResponse.text(in: info, tags: ["+CGMI:", "+GMI:"])
            #expect(VendorCatalog.dialect(forManufacturer: text)?.name == "simcom")
        }

        @Test("the generic EF_ICCID read is the one of 3GPP TS 27.007 §8.18 (fileid 0x2FE2, 10 bytes)")
        func crsmCommand() {
            #expect(crsmReadICCIDCommand == "AT+CRSM=176,\(0x2FE2),0,0,10")
        }
    }
}

// MARK: - Answer forms: EF_IMSI, +CRSM status words, CRSM file ids

extension ATParsingTests {
    @Suite("Answer forms")
    struct AnswerFormTests {
        struct EFIMSICase: Sendable, CustomTestStringConvertible {
            var hex: String
            var digits: String?
            var code: Problem.Code?
            var source: String
            var testDescription: String { "\(hex) (\(source))" }
        }

        static let efIMSI: [EFIMSICase] = [
            EFIMSICase(
                hex: "084906202811908074", digits: "460028211090847", code: nil,
                source: "Huawei balong AT table, AT+CRSM read of EF_IMSI"),
            EFIMSICase(
                hex: "081932547698103254", digits: "123456789012345", code: nil,
                source: "public Rust modem-simulator scenario ('123456789012345 encoded')"),
            EFIMSICase(
                hex: "084906202811908074".lowercased(), digits: "460028211090847", code: nil,
                source: "constructed: the Huawei value in lower case"),
            EFIMSICase(
                hex: "0831016210325476F8", digits: "31026012345678", code: nil,
                source: "constructed per TS 31.102 §4.2.2 (pySim enc_imsi layout): 14 digits, parity clear, F filler"),
            EFIMSICase(
                hex: "08 49 06 20 28 11 90 80 74", digits: "460028211090847", code: nil,
                source: "constructed: the Huawei value printed in bytes"),
            EFIMSICase(
                hex: "084906202811908074FFFF", digits: "460028211090847", code: nil,
                source: "constructed: bytes beyond the length byte are ignored"),
            EFIMSICase(
                hex: "FFFFFFFFFFFFFFFFFF", digits: nil, code: .imsiMissing,
                source: "constructed: an erased EF_IMSI"),
            EFIMSICase(hex: "", digits: nil, code: .imsiMissing, source: "constructed: no data"),
            EFIMSICase(
                hex: "0849062028", digits: nil, code: .imsiLength,
                source: "constructed: length byte 8 with 4 bytes following"),
            EFIMSICase(hex: "08490620281190807", digits: nil, code: .imsiFormat, source: "constructed: odd hex"),
            EFIMSICase(
                hex: "084A06202811908074", digits: nil, code: .imsiFormat,
                source: "constructed: identity type 010 (not IMSI)"),
            EFIMSICase(
                hex: "0849062028119080A4", digits: nil, code: .imsiFormat,
                source: "constructed: a nibble A among the digits"),
        ]

        @Test("EF_IMSI contents decode to the IMSI digits, or to a clear refusal", arguments: efIMSI)
        func decodesEFIMSI(_ c: EFIMSICase) {
            let r = IMSI.digits(fromEFIMSI: c.hex)
            #expect(r.value == c.digits)
            #expect(r.problems.map(\.code) == (c.code.map { [$0] } ?? []))
            for p in r.problems { #expect(!p.message.contains { $0.isNumber }, "no digits in \(p.message)") }
            if let digits = c.digits { #expect(IMSI.validate(efIMSI: c.hex).value?.unredacted == digits) }
        }

        struct CRSMCase: Sendable, CustomTestStringConvertible {
            var line: String
            var sw1: Int
            var sw2: Int
            var data: String?
            var success: Bool
            var source: String
            var testDescription: String { "\(line) (\(source))" }
        }

        static let crsm: [CRSMCase] = [
            CRSMCase(
                line: "+CRSM: 144,0,\"98942000008036496082\"", sw1: 0x90, sw2: 0, data: "98942000008036496082",
                success: true, source: "Sierra module CRSM transcript (fixture sierra-crsm-echo)"),
            CRSMCase(
                line: "+CRSM: 144, 0, 0054485552415941FFFFFFFFFFFFFFFFFF", sw1: 0x90, sw2: 0,
                data: "0054485552415941FFFFFFFFFFFFFFFFFF", success: true, source: "ModemManager crsm_tests"),
            CRSMCase(
                line: "+CRSM: 90,0,\"084906202811908074\"", sw1: 0x90, sw2: 0, data: "084906202811908074",
                success: true, source: "Huawei balong AT table (status byte printed as hex digits)"),
            CRSMCase(
                line: "+CRSM: 145,12,\"984401000000000000f0\"", sw1: 0x91, sw2: 12, data: "984401000000000000f0",
                success: true, source: "constructed: 0x91 (proactive command pending) with lower-case data"),
            CRSMCase(
                line: "+CRSM: 106,130", sw1: 0x6A, sw2: 0x82, data: nil, success: false,
                source: "public USIM lab test ('+CRSM: 106,130', file not found)"),
            CRSMCase(
                line: "+CRSM: 148,4,\"\"", sw1: 0x94, sw2: 4, data: nil, success: false,
                source: "GSM SIM 'file not found' (TS 51.011 §9.4.4), as the simulator answers"),
            CRSMCase(
                line: "+CRSM: 144,0", sw1: 0x90, sw2: 0, data: nil, success: true,
                source: "garronej at-messages-parser tests (no data)"),
        ]

        @Test("+CRSM answers give their status words and data", arguments: crsm)
        func crsmAnswers(_ c: CRSMCase) throws {
            let a = try #require(ATResponse.crsm(in: [c.line]))
            #expect(a.sw1 == c.sw1)
            #expect(a.sw2 == c.sw2)
            #expect(a.data == c.data)
            #expect(a.isSuccess == c.success)
            #expect(ATResponse.crsmData(in: [c.line]) == (c.success ? c.data : nil))
        }

        @Test("a failed +CRSM read is a clear problem naming the status words, not a value")
        func crsmRefusal() throws {
            let v = try #require(IdentityAnswer.iccid(answering: crsmReadICCIDCommand, in: ["+CRSM: 106,130"]))
            #expect(v.value == nil)
            #expect(v.problems.map(\.code) == [.iccidMissing])
            #expect(v.problems.first?.message.contains("6A82") == true)
            let i = try #require(IdentityAnswer.imsi(answering: crsmReadIMSICommand, in: ["+CRSM: 105,130"]))
            #expect(i.value == nil)
            #expect(i.problems.first?.message.contains("6982") == true)
        }

        @Test("the file a +CRSM command reads", arguments: [
            (crsmReadIMSICommand, 0x6F07), (crsmReadICCIDCommand, 0x2FE2),
            ("AT+CRSM=176,28423,0,0,9,,\"3F007FFF\"", 0x6F07), ("at+crsm=176,0x6F07,0,0,9", 0x6F07),
        ])
        func crsmFile(_ command: String, _ file: Int) {
            #expect(ATResponse.crsmFileID(ofCommand: command) == file)
        }

        @Test("commands other than +CRSM read no file")
        func notCRSM() {
            #expect(ATResponse.crsmFileID(ofCommand: "AT+CIMI") == nil)
            #expect(ATResponse.crsmFileID(ofCommand: "AT+CRSM=?") == nil)
        }

        @Test("tags match without regard to case and with blanks before the colon")
        func tags() {
            #expect(ATResponse.iccid(in: ["+CCID : 89014104279461713562"]) == "89014104279461713562")
            #expect(ATResponse.imsi(in: ["+cimi: 460040180727133"]) == "460040180727133")
            #expect(ATResponse.imei(in: ["IMEI SV: 20", "IMEI: 490154203237518"]) == "490154203237518")
        }
    }
}

// MARK: - Hostile input

extension ATParsingTests {
    /// A faulty, counterfeit or tampered module can send anything: noise without pause, echoes of commands we did
    /// not send, lines no answer has. Bounds are asserted structurally (counts, bytes held), never by timing.
    @Suite("Hostile input")
    struct HostileInputTests {
        static let start = ContinuousClock.now

        @Test("an hour of noise, a chunk every 10 ms: the first occurrence, then one summary a minute, nothing lost")
        func anomalyLogIsBounded() {
            var log = InputAnomalyLog()
            var reports: [InputAnomalyLog.Report] = []
            var fedBytes = 0
            var fedLines = 0
            let chunks = 360_000  // one hour at 100 chunks a second
            for i in 0..<chunks {
                let now = Self.start.advanced(by: .milliseconds(10 * i))
                if let r = log.record(.unreadable, bytes: 4096, lines: 32, at: now) { reports.append(r) }
                // a foreign echo now and then, counted on its own
                if i % 1000 == 0, let r = log.record(.foreignEcho, bytes: 0, lines: 1, at: now) { reports.append(r) }
                fedBytes += 4096
                fedLines += 32
            }
            reports += log.flush(at: Self.start.advanced(by: .seconds(3600)))
            let unreadable = reports.filter { $0.kind == .unreadable }
            print("anomaly log: \(chunks) chunks of noise in 1 h -> \(unreadable.count) log lines (unreadable), "
                + "\(reports.count - unreadable.count) (foreign echo)")
            #expect(unreadable.first?.isFirst == true)
            #expect(unreadable.dropFirst().allSatisfy { !$0.isFirst })
            #expect(unreadable.count <= 1 + 60 + 1, "first + one a minute + the flush")
            #expect(unreadable.count >= 60)
            #expect(unreadable.map(\.bytes).reduce(0, +) == fedBytes, "every dropped byte is counted once")
            #expect(unreadable.map(\.lines).reduce(0, +) == fedLines)
            #expect(reports.filter { $0.kind == .foreignEcho }.map(\.lines).reduce(0, +) == 360)
            for r in unreadable.dropFirst() { #expect(r.span <= .seconds(61)) }
            #expect(unreadable[1].description.contains("dropped"))
            #expect(log.flush(at: Self.start.advanced(by: .seconds(3601))).isEmpty, "flush resets the counts")
        }

        @Test("the rate limit holds any flood to its budget (100 MB offered in 4 KiB reads)")
        func rateLimitBoundsParsing() {
            var limit = InputRateLimit(bytesPerSecond: 32 * 1024, burst: 128 * 1024)
            var now = Self.start
            var total = 0
            let offered = 100 << 20
            while total < offered {
                total += 4096
                now = now.advanced(by: limit.delay(after: 4096, at: now))  // the reader sleeps, then reads again
            }
            let elapsed = now - Self.start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            let rate = Double(total - limit.burst) / seconds
            print("rate limit: \(offered >> 20) MB offered, parsed at \(Int(rate)) B/s after the burst")
            #expect(rate <= Double(limit.bytesPerSecond) * 1.001)
            var idle = InputRateLimit()
            #expect(idle.delay(after: 200, at: Self.start) == .zero, "a real answer is never delayed")
        }

        @Test("a megabyte of random bytes: bounded buffer, only garbage or short printable lines")
        func randomBytes() {
            var rng = SplitMix64(seed: 10)
            var framer = ATFramer()
            var garbageBytes = 0
            var lines: [String] = []
            for _ in 0..<256 {
                let chunk = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
                for output in framer.feed(chunk) {
                    switch output {
                    case .garbage(let n): garbageBytes += n
                    case .line(let l): lines.append(l)
                    case .prompt: break
                    }
                }
                #expect(framer.bufferedByteCount <= framer.maxLineLength)
            }
            print("framer: 1 MiB random -> \(garbageBytes) bytes dropped, \(lines.count) printable fragments")
            #expect(garbageBytes > 900_000)
            #expect(lines.allSatisfy { $0.utf8.allSatisfy { (0x20...0x7E).contains($0) || $0 == 0x09 } })
        }

        struct EchoCase: Sendable, CustomTestStringConvertible {
            var line: String
            var isCommand: Bool
            var testDescription: String { "\(line) -> \(isCommand ? "command" : "text")" }
        }

        static let echoCases: [EchoCase] = [
            EchoCase(line: "AT+CFUN=0", isCommand: true), EchoCase(line: "AT", isCommand: true),
            EchoCase(line: "ATE0", isCommand: true), EchoCase(line: "at+cgsn", isCommand: true),
            EchoCase(line: "AT&F", isCommand: true), EchoCase(line: "ATS0=0", isCommand: true),
            EchoCase(line: "ATI", isCommand: true), EchoCase(line: "AT^SYSINFO", isCommand: true),
            EchoCase(line: "AT#CCID", isCommand: true), EchoCase(line: "AT+CPIN?", isCommand: true),
            EchoCase(line: "ATD+4912345;", isCommand: false),  // a dial string is no identity answer either way
            EchoCase(line: "ATMEL", isCommand: false), EchoCase(line: "AT&T Inc", isCommand: false),
            EchoCase(line: "ATX Networks", isCommand: false), EchoCase(line: "Quectel", isCommand: false),
            EchoCase(line: "AT+", isCommand: false), EchoCase(line: "AT12", isCommand: false),
        ]

        @Test("any command line is an echo, never an answer line", arguments: echoCases)
        func commandEcho(_ c: EchoCase) {
            #expect(ATLineClassifier.isCommandLine(c.line) == c.isCommand)
            let kind = ATLineClassifier().classify(c.line, pendingCommand: "AT+CGMI", expectedPrefix: nil)
            #expect(kind == (c.isCommand ? .foreignEcho : .information))
        }

        @Test("a foreign echo before the answer is not part of it")
        func foreignEchoBeforeAnswer() {
            let kinds = classifyInOrder(["AT+CFUN=0", "Quectel", "OK"], command: "AT+CGMI", prefix: nil)
            #expect(kinds == [.foreignEcho, .information, .final(.ok)])
            #expect(classifyInOrder(["AT+CFUN=0"], command: nil, prefix: nil) == [.foreignEcho])
        }

        @Test("an overlong or control-character line is implausible for any answer")
        func implausibleLines() {
            let c = ATLineClassifier(maxInformationLength: 64)
            #expect(c.classify(String(repeating: "7", count: 64), pendingCommand: "AT+CGSN", expectedPrefix: nil)
                == .information)
            #expect(c.classify(String(repeating: "7", count: 65), pendingCommand: "AT+CGSN", expectedPrefix: nil)
                == .implausible)
            #expect(c.classify("+CPIN: \u{7}READY", pendingCommand: "AT+CPIN?", expectedPrefix: "+CPIN:")
                == .implausible)
            #expect(c.classify("Quectel\u{1B}[2J", pendingCommand: "AT+CGMI", expectedPrefix: nil) == .implausible)
        }
    }
}
