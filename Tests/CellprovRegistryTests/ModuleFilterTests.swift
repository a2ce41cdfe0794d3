import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Testing

// The affected-units filter's rules as tables (issue 20): which query parameters make which filter, which are
// refused and for which parameter, and which slots match.

@Suite struct ModuleFilterTests {
    static func parse(_ pairs: [(String, String)]) -> Result<ModuleFilter, ModuleFilterError> {
        ModuleFilter.parse { name in pairs.filter { $0.0 == name }.map(\.1) }
    }

    static let accepted: [([(String, String)], ModuleFilter)] = [
        ([("revision", "EC25EFAR06A06M4G")], ModuleFilter(revision: .exact("EC25EFAR06A06M4G"))),
        ([("revision_prefix", "EC2")], ModuleFilter(revision: .prefix("EC2"))),
        ([("model", "EC25"), ("manufacturer", "Quectel")], ModuleFilter(manufacturer: .exact("Quectel"), model: .exact("EC25"))),
        ([("manufacturer_prefix", "Sierra W")], ModuleFilter(manufacturer: .prefix("Sierra W"))),
        ([("model_prefix", " EG2 ")], ModuleFilter(model: .prefix("EG2"))),
        ([("tac", "86425104")], ModuleFilter(tac: "86425104")),
        (
            [("tac", "86425104"), ("seen_since", "2026-11-03T01:00:00+01:00")],
            ModuleFilter(tac: "86425104", seenSince: EnrollmentTimestamp.parse("2026-11-03T00:00:00Z"))
        ),
        // Empty fields are absent (a form sends every field).
        ([("revision", "EC25EFAR06A06M4G"), ("model", ""), ("seen_since", " ")], ModuleFilter(revision: .exact("EC25EFAR06A06M4G"))),
        // A model starting with = is a name like any other here (the CSV neutralises it).
        ([("model", "=1+1")], ModuleFilter(model: .exact("=1+1"))),
    ]

    @Test func acceptedQueries() {
        for (pairs, expected) in Self.accepted {
            #expect((try? Self.parse(pairs).get()) == expected, "\(pairs)")
        }
    }

    static let refused: [([(String, String)], String)] = [
        ([], "manufacturer"),
        ([("seen_since", "2026-11-03T00:00:00Z")], "manufacturer"),
        ([("revision", "")], "manufacturer"),
        ([("revision_prefix", "EC")], "revision_prefix"),
        ([("model_prefix", "E")], "model_prefix"),
        ([("manufacturer_prefix", "Qu")], "manufacturer_prefix"),
        ([("revision", "A"), ("revision_prefix", "ABC")], "revision_prefix"),
        ([("revision", "A"), ("revision", "B")], "revision"),
        ([("revision", String(repeating: "A", count: 65))], "revision"),
        ([("model", "EC25\u{0}")], "model"),
        ([("model", "EC25\n")], "model"),
        ([("model", "Modèle")], "model"),
        ([("tac", "8642510")], "tac"),
        ([("tac", "864251040")], "tac"),
        ([("tac", "8642510a")], "tac"),
        ([("revision", "X"), ("seen_since", "yesterday")], "seen_since"),
        ([("revision", "X"), ("seen_since", "2026-11-03")], "seen_since"),
    ]

    @Test func refusedQueriesNameTheParameter() {
        for (pairs, parameter) in Self.refused {
            switch Self.parse(pairs) {
            case .success(let f): Issue.record("accepted \(pairs) as \(f)")
            case .failure(let e):
                #expect(e.parameter == parameter, "\(pairs): \(e)")
                #expect(e.description.hasPrefix(parameter + ": "))
            }
        }
    }

    static func slot(
        _ manufacturer: String?, _ model: String?, _ revision: String?, imei: String? = "864251040000015",
        origin: EventOrigin = .device
    ) -> SlotState {
        SlotState(
            slot: "usb-1", identity: IdentitySnapshot(imei: imei), manufacturer: manufacturer, model: model,
            revision: revision, lastEventType: "enrolled", updatedAt: Date(timeIntervalSince1970: 0), origin: origin)
    }

    static let matching: [(ModuleFilter, SlotState, Bool)] = [
        (ModuleFilter(revision: .exact("EC25EFAR06A06M4G")), slot("Quectel", "EC25", "EC25EFAR06A06M4G"), true),
        (ModuleFilter(revision: .exact("EC25EFAR06A06M4G")), slot("Quectel", "EC25", "EC25EFAR06A06M4G1"), false),
        (ModuleFilter(revision: .exact("EC25EFAR06A06M4G")), slot("Quectel", "EC25", "ec25efar06a06m4g"), false),
        (ModuleFilter(revision: .prefix("EC25EFAR06")), slot("Quectel", "EC25", "EC25EFAR06A07M4G"), true),
        (ModuleFilter(revision: .prefix("EC25EFAR06")), slot("Quectel", "EC25", "EC25EFAR07A01M4G"), false),
        (ModuleFilter(revision: .prefix("EC25EFAR06")), slot("Quectel", "EC25", "EC25EFAR0"), false),
        (ModuleFilter(revision: .prefix("EC25EFAR06")), slot("Quectel", "EC25", nil), false),
        (ModuleFilter(manufacturer: .exact("Quectel"), model: .exact("EG25")), slot("Quectel", "EC25", "X"), false),
        (ModuleFilter(manufacturer: .exact("Quectel"), model: .exact("EC25")), slot("Quectel", "EC25", "X"), true),
        (ModuleFilter(tac: "86425104"), slot(nil, nil, nil), true),
        (ModuleFilter(tac: "86425104"), slot(nil, nil, nil, imei: "352099000000015"), false),
        (ModuleFilter(tac: "86425104"), slot(nil, nil, nil, imei: nil), false),
        (ModuleFilter(tac: "86425104"), slot(nil, nil, nil, imei: "86425104"), false),
        // Manufacturing records are not the field.
        (ModuleFilter(model: .exact("EC25")), slot("Quectel", "EC25", "X", origin: .factory), false),
        // No module criterion: nothing.
        (ModuleFilter(seenSince: Date(timeIntervalSince1970: 0)), slot("Quectel", "EC25", "X"), false),
    ]

    @Test func whichSlotsMatch() {
        for (filter, slot, expected) in Self.matching {
            #expect(filter.matches(slot) == expected, "\(filter) \(slot)")
        }
    }

    @Test func aPrefixIsAByteRange() {
        #expect(ModuleMatch.prefixRange("EC25") == ("EC25", "EC26"))
        #expect(ModuleMatch.prefixRange("AB~") == ("AB~", "AB\u{7F}"))
        #expect(ModuleMatch.prefixRange("A0Z") == ("A0Z", "A0["))
    }

    @Test func theFilterGoesBackToTheQueryItSaid() {
        for (pairs, filter) in Self.accepted {
            let items = filter.queryItems.map { ($0.name, $0.value) }
            #expect((try? Self.parse(items).get()) == filter, "\(pairs)")
        }
    }
}
