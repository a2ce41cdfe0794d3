import CellprovCore
import Foundation
import Testing

/// hawkBit's DDI `configData` rules as tables: the characters and lengths hawkBit stores, the URL, the body, and
/// what each answer means.
@Suite struct HawkBitDDITests {
    struct ValueCase: Sendable, CustomStringConvertible {
        var input: String
        var expected: String
        var description: String { input.debugDescription }
    }

    static let values: [ValueCase] = [
        .init(input: "Quectel EC25 EC25EFAR06A06M4G", expected: "Quectel EC25 EC25EFAR06A06M4G"),
        .init(input: "IMEI(TAC 35693803, ref 705cbca51a)", expected: "IMEI(TAC 35693803, ref 705cbca51a)"),
        .init(input: "pci-0000:00:14.0-usb-0:1:1.0", expected: "pci-0000:00:14.0-usb-0:1:1.0"),
        .init(input: "/dev/ttyS1", expected: "/dev/ttyS1"),
        .init(input: "2026-12-07T08:11:51Z", expected: "2026-12-07T08:11:51Z"),
        .init(input: "", expected: ""),
        // Characters hawkBit's pattern refuses become '?'; other white space a space.
        .init(input: "Télit~LE910`", expected: "T?lit?LE910?"),
        .init(input: "a\tb\nc\rd", expected: "a b c d"),
        .init(input: "x\u{0}y\u{7F}z", expected: "x?y?z"),
        .init(input: "📶", expected: "?"),
        // Cut to 128 characters.
        .init(input: String(repeating: "a", count: 200), expected: String(repeating: "a", count: 128)),
        .init(input: String(repeating: "é", count: 130), expected: String(repeating: "?", count: 128)),
    ]

    @Test(arguments: values)
    func valueCleaning(_ c: ValueCase) {
        let out = HawkBitDDI.value(c.input)
        #expect(out == c.expected)
        #expect(HawkBitDDI.isValidValue(out))
    }

    struct KeyCase: Sendable, CustomStringConvertible {
        var key: String
        var valid: Bool
        var description: String { "\(key.prefix(20))… \(valid)" }
    }

    static let keys: [KeyCase] = [
        .init(key: "cellprov_modem1_imei", valid: true),
        .init(key: String(repeating: "k", count: 128), valid: true),
        .init(key: String(repeating: "k", count: 129), valid: false),
        .init(key: "", valid: false),
        .init(key: "naïve", valid: false),
        .init(key: "a~b", valid: false),
        .init(key: "hw.revision [2]", valid: true),
    ]

    @Test(arguments: keys)
    func keyValidity(_ c: KeyCase) {
        #expect(HawkBitDDI.isValidKey(c.key) == c.valid)
    }

    @Test func valueLimitIsHawkBits128() {
        #expect(HawkBitDDI.isValidValue(String(repeating: "v", count: 128)))
        #expect(!HawkBitDDI.isValidValue(String(repeating: "v", count: 129)))
        #expect(HawkBitDDI.keyLimit == 128 && HawkBitDDI.valueLimit == 128)
    }

    struct IDCase: Sendable, CustomStringConvertible {
        var id: String
        var problem: String?
        var description: String { id.debugDescription }
    }

    static let controllerIDs: [IDCase] = [
        .init(id: "GW-000123", problem: nil),
        .init(id: "gw_7.site:a@b", problem: nil),
        .init(id: "", problem: "is empty"),
        .init(id: "GW 1", problem: "holds U+0020"),
        .init(id: "a/b", problem: "holds '/'"),
        .init(id: "a;b", problem: "holds ';'"),
        .init(id: "a%2Fb", problem: "holds '%'"),
        .init(id: "a?b", problem: "holds '?'"),
        .init(id: "..", problem: "cannot be .."),
        .init(id: String(repeating: "x", count: 257), problem: "longer than hawkBit's 256"),
        .init(id: String(repeating: "x", count: 256), problem: nil),
    ]

    @Test(arguments: controllerIDs)
    func controllerIDRules(_ c: IDCase) {
        let problem = HawkBitDDI.controllerIDProblem(c.id)
        if let expected = c.problem {
            #expect(problem?.contains(expected) == true, "\(problem ?? "nil")")
        } else {
            #expect(problem == nil)
        }
    }

    @Test func tenantRules() {
        #expect(HawkBitDDI.tenantProblem("DEFAULT") == nil)
        #expect(HawkBitDDI.tenantProblem("")?.contains("empty") == true)
        #expect(HawkBitDDI.tenantProblem("a/b") != nil)
        #expect(HawkBitDDI.tenantProblem(String(repeating: "t", count: 41))?.contains("40") == true)
    }

    @Test func url() {
        #expect(
            HawkBitDDI.configDataURL(base: "https://hawkbit.example.com", tenant: "DEFAULT", controllerID: "GW-1")
                == "https://hawkbit.example.com/DEFAULT/controller/v1/GW-1/configData")
        #expect(
            HawkBitDDI.configDataURL(base: "https://example.com/hawkbit//", tenant: "t1", controllerID: "x:y")
                == "https://example.com/hawkbit/t1/controller/v1/x:y/configData")
        #expect(HawkBitDDI.authorization(targetToken: "bH7XXAprK1") == "TargetToken bH7XXAprK1")
    }

    @Test func bodyIsModeAndDataOnly() throws {
        let body = try HawkBitDDI.body(["b": "2", "a": "x/y", "e": ""])
        #expect(String(decoding: body, as: UTF8.self) == #"{"data":{"a":"x/y","b":"2","e":""},"mode":"merge"}"#)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(Set(object.keys) == ["data", "mode"], "no id, time or status: hawkBit dropped them in 0.3.0M7")
    }

    @Test func bodyRefusesWhatHawkBitWould() {
        #expect(throws: HawkBitDDI.InvalidAttributes.self) { try HawkBitDDI.body([:]) }
        #expect(throws: HawkBitDDI.InvalidAttributes.self) {
            try HawkBitDDI.body([String(repeating: "k", count: 129): "v"])
        }
        #expect(throws: HawkBitDDI.InvalidAttributes.self) {
            try HawkBitDDI.body(["k": String(repeating: "v", count: 129)])
        }
        #expect(throws: HawkBitDDI.InvalidAttributes.self) { try HawkBitDDI.body(["k": "é"]) }
        do {
            _ = try HawkBitDDI.body(["cellprov_modem1_imei": "35693803564380é"])
            Issue.record("accepted")
        } catch {
            #expect(!error.description.contains("3569380"), "an error names the key, never the value")
        }
    }

    struct AnswerCase: Sendable, CustomStringConvertible {
        var status: Int
        var body: String
        var expected: HawkBitDDI.Outcome
        var description: String { "\(status)" }
    }

    static let answers: [AnswerCase] = [
        .init(status: 200, body: "", expected: .accepted(status: 200)),
        .init(status: 204, body: "", expected: .accepted(status: 204)),
        .init(
            status: 400, body: #"{"errorCode":"hawkbit.server.error.target.attributes.invalid"}"#,
            expected: .rejected(reason: #"HTTP 400: {"errorCode":"hawkbit.server.error.target.attributes.invalid"}"#)),
        .init(status: 415, body: "", expected: .rejected(reason: "HTTP 415")),
        .init(status: 401, body: "", expected: .refused(reason: "HTTP 401")),
        .init(status: 403, body: "", expected: .refused(reason: "HTTP 403")),
        .init(status: 404, body: "", expected: .unknownTarget(reason: "HTTP 404")),
        .init(status: 429, body: "", expected: .retry(reason: "HTTP 429")),
        .init(status: 409, body: "", expected: .retry(reason: "HTTP 409")),
        .init(status: 500, body: "", expected: .retry(reason: "HTTP 500")),
        .init(status: 503, body: "", expected: .retry(reason: "HTTP 503")),
        .init(status: 302, body: "", expected: .retry(reason: "HTTP 302")),
    ]

    @Test(arguments: answers)
    func answerMeaning(_ c: AnswerCase) {
        #expect(HawkBitDDI.outcome(status: c.status, body: Array(c.body.utf8)) == c.expected)
    }

    /// A body echoing an identifier is scrubbed before it becomes a reason; a long one is cut.
    @Test func answersAreScrubbedAndCut() throws {
        let echo = HawkBitDDI.outcome(status: 400, body: Array(#"{"value":"356938035643809"}"#.utf8))
        let reason = try #require(echo.reason)
        #expect(!reason.contains("356938035643809"))
        let long = HawkBitDDI.outcome(status: 503, body: Array(String(repeating: "x", count: 5000).utf8))
        #expect((long.reason?.count ?? 0) <= "HTTP 503: ".count + HTTPAnswer.reasonLimit)
    }
}
