import CellprovCore
import CellprovRegistryCore
import Foundation
import Testing

// Holdings (CellprovRegistryCore): who held an identifier when, from a slot's events alone. Tables: each row is a
// slot's events (in the order they were stored, not necessarily lived) and the intervals expected.

@Suite struct HoldingsTests {
    static let base = Date(timeIntervalSince1970: 1_793_664_000)  // 2026-11-02T00:00:00Z
    static func at(_ hours: Double) -> Date { base.addingTimeInterval(hours * 3600) }

    /// An event of unit `serial`, slot usb-1, at hour `h` (device time), received `late` hours later, stored as row
    /// `row`, reporting `imsi` (nil: none).
    static func e(
        _ type: String, _ h: Double, imsi: String?, serial: String = "A", slot: String = "usb-1", late: Double = 0,
        row: Int64
    ) -> SlotEventRecord {
        SlotEventRecord(
            serial: serial, slot: slot, eventID: "e\(row)", type: type, rowID: row, occurredAt: at(h),
            receivedAt: at(h + late), identity: IdentitySnapshot(imei: "490154203237518", imsi: imsi))
    }

    struct Row: CustomTestStringConvertible, Sendable {
        var name: String
        var events: [SlotEventRecord]
        /// (from hour, until hour or nil for open-ended)
        var expected: [(Double, Double?)]
        var testDescription: String { name }
    }

    static let S = "262011234567890"
    static let T = "262019999999999"

    static let rows: [Row] = [
        Row(name: "never reported", events: [e("enrolled", 0, imsi: T, row: 1)], expected: []),
        Row(name: "held since the first report, still", events: [e("enrolled", 1, imsi: S, row: 1)], expected: [(1, nil)]),
        Row(
            name: "repeated reports of the same value keep one interval",
            events: [e("enrolled", 1, imsi: S, row: 1), e("sim_inserted", 3, imsi: S, row: 2)], expected: [(1, nil)]),
        Row(
            name: "ends at the event reporting another value",
            events: [e("enrolled", 1, imsi: S, row: 1), e("sim_changed", 5, imsi: T, row: 2)], expected: [(1, 5)]),
        Row(
            name: "ends at a removal; held again after a re-insert",
            events: [
                e("enrolled", 1, imsi: S, row: 1), e("sim_removed", 2, imsi: nil, row: 2),
                e("sim_inserted", 4, imsi: S, row: 3),
            ], expected: [(1, 2), (4, nil)]),
        Row(
            name: "a failed read (identity_invalid without the value) is no removal",
            events: [
                e("enrolled", 1, imsi: S, row: 1), e("identity_invalid", 2, imsi: nil, row: 2),
                e("sim_changed", 6, imsi: T, row: 3),
            ], expected: [(1, 6)]),
        Row(
            name: "a late event takes its place by device time",
            events: [
                e("enrolled", 1, imsi: S, row: 1), e("sim_changed", 8, imsi: T, row: 2),
                e("sim_removed", 3, imsi: nil, late: 20, row: 3),
            ], expected: [(1, 3)]),
        Row(
            name: "a late first report opens the interval at its device time",
            events: [e("sim_changed", 8, imsi: T, row: 1), e("enrolled", 2, imsi: S, late: 30, row: 2)],
            expected: [(2, 8)]),
        Row(
            name: "events of one moment keep the store's order",
            events: [e("sim_changed", 4, imsi: T, row: 2), e("enrolled", 4, imsi: S, row: 1)], expected: [(4, 4)]),
    ]

    @Test(arguments: rows)
    func intervalsOfOneSlot(_ row: Row) {
        let got = Holdings.intervals(of: Self.S, kind: .imsi, slotEvents: row.events)
        #expect(got.map(\.from) == row.expected.map { Self.at($0.0) })
        #expect(got.map(\.until) == row.expected.map { $0.1.map(Self.at) })
        #expect(got.allSatisfy { $0.serial == "A" && $0.slot == "usb-1" && $0.kind == .imsi && $0.value == Self.S })
    }

    @Test func intervalEndsCarryTheEventsAndTheirReceiveTimes() throws {
        let events = [
            Self.e("enrolled", 1, imsi: Self.S, late: 0.01, row: 1),
            Self.e("sim_removed", 3, imsi: nil, late: 48, row: 2),
        ]
        let h = try #require(Holdings.intervals(of: Self.S, kind: .imsi, slotEvents: events).first)
        #expect(h.fromEventID == "e1" && h.untilEventID == "e2")
        #expect(h.fromReceived == Self.at(1.01))
        #expect(h.untilReceived == Self.at(51))
        #expect(!Holdings.disagree(h.from, h.fromReceived), "36 s apart: one moment for a person")
        #expect(Holdings.disagree(h.until!, h.untilReceived!), "two days late")
        #expect(h.covers(Self.at(1)) && h.covers(Self.at(2.99)))
        #expect(!h.covers(Self.at(0.99)) && !h.covers(Self.at(3)), "from inclusive, until exclusive")
    }

    /// The case: a SIM moved from unit A to unit B on 3 November at 09:30.
    static let moved: [SlotEventRecord] = [
        e("enrolled", -24, imsi: S, serial: "A", row: 1),  // 1 November, 00:00
        e("sim_removed", 33, imsi: nil, serial: "A", row: 3),  // 3 November, 09:00
        e("enrolled", -20, imsi: T, serial: "B", slot: "usb-2", row: 2),
        e("sim_changed", 33.5, imsi: S, serial: "B", slot: "usb-2", row: 4),  // 3 November, 09:30
    ]

    @Test func holdersWithoutAMomentListEveryUnitCurrentFirst() {
        let all = Holdings.intervals(of: [(.imsi, Self.S), (.imei, Self.S)], events: Self.moved)
        let holders = Holdings.holders(all)
        #expect(holders.map(\.serial) == ["B", "A"])
        #expect(holders[0].holdings.map(\.isCurrent) == [true])
        #expect(holders[0].holdings[0].slot == "usb-2")
        #expect(holders[1].holdings.map(\.from) == [Self.at(-24)])
        #expect(holders[1].holdings.map(\.until) == [Self.at(33)])
    }

    @Test(arguments: [
        (hour: 0.0, serials: ["A"]), (hour: 33.2, serials: []), (hour: 38.37, serials: ["B"]),
        (hour: -30.0, serials: []),
    ])
    func holdersAtAMoment(hour: Double, serials: [String]) {
        let all = Holdings.intervals(of: [(.imsi, Self.S)], events: Self.moved)
        #expect(Holdings.holders(all, at: Self.at(hour)).map(\.serial) == serials)
    }

    @Test func formerHoldersByTheirEndMostRecentFirstAndIntervalsNewestFirst() {
        let events = [
            Self.e("enrolled", 0, imsi: Self.S, serial: "A", row: 1), Self.e("sim_removed", 1, imsi: nil, serial: "A", row: 2),
            Self.e("enrolled", 2, imsi: Self.S, serial: "C", row: 3), Self.e("sim_removed", 3, imsi: nil, serial: "C", row: 4),
            Self.e("sim_inserted", 4, imsi: Self.S, serial: "A", row: 5),
            Self.e("sim_removed", 5, imsi: nil, serial: "A", row: 6),
        ]
        let holders = Holdings.holders(Holdings.intervals(of: [(.imsi, Self.S)], events: events))
        #expect(holders.map(\.serial) == ["A", "C"])
        #expect(holders[0].holdings.map(\.from) == [Self.at(4), Self.at(0)])
    }

    @Test func slotsAsOfAMomentAreEachSlotsLastEventThen() {
        let events = Self.moved + [Self.e("sim_changed", 40, imsi: Self.T, serial: "A", row: 5)]
        let a = events.filter { $0.serial == "A" }
        #expect(Holdings.slotsAsOf(a, at: Self.at(-30)).isEmpty)
        #expect(Holdings.slotsAsOf(a, at: Self.at(10)).map(\.identity.imsi) == [Self.S])
        #expect(Holdings.slotsAsOf(a, at: Self.at(33)).map(\.type) == ["sim_removed"], "at the event's own time")
        #expect(Holdings.slotsAsOf(a, at: Self.at(41)).map(\.identity.imsi) == [Self.T])
        #expect(Holdings.slotsAsOf(events, at: Self.at(34)).map(\.slot) == ["usb-1", "usb-2"])
    }

    @Test func identifiersOfASearch() {
        #expect(Holdings.identifiers(of: SearchTerms(parsing: Self.S)).map(\.kind) == [.imei, .imsi])
        #expect(Holdings.identifiers(of: SearchTerms(parsing: "GW-000100")).isEmpty)
        #expect(Holdings.identifiers(of: SearchTerms(parsing: "35209900")).isEmpty, "a TAC names no module")
    }
}
