import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import Testing

// The fleet overview's counts (issue 17 item 6, issue 20's firmware inventory) on each backend (SQLite; PostgreSQL
// under scripts/with-postgres.sh), and their assembly with zeros (pure).

@Suite struct StoreOverviewTests {
    static func time(_ text: String) -> Date { EnrollmentTimestamp.parse(text)! }
    /// A Monday (ISO 2026-W50): the day window starts on 8 November, the week window on Monday 21 September (W39).
    static let now = time("2026-12-07T12:00:00Z")
    static let query = OverviewQuery(now: now, silenceThreshold: 7 * 86_400)

    static func ago(days: Double) -> Date { now.addingTimeInterval(-days * 86_400) }

    /// A field (or factory) event with its module's names; `n` numbers the identity.
    static func report(
        _ serial: String, type: String = "enrolled", slot: String = "usb-1", n: Int, manufacturer: String = "Quectel",
        model: String, revision: String?, at: Date
    ) -> EnrollmentRequest {
        var e = event(
            type, serial: serial, slot: slot, imei: TestID.imei(n), imsi: TestID.imsi(n), iccid: TestID.iccid(n), at: at)
        e.module.manufacturer = manufacturer
        e.module.model = model
        e.module.revision = revision
        return e
    }

    /// GW-1 seen an hour ago (two slots with the same module, a profile switch); GW-2 silent (a SIM swap on 27
    /// November); GW-3 lost (a SIM swap on 5 December); GW-4 a manufacturing record only; GW-5 silent, all its
    /// events before both windows; GW-6 one event a millisecond before the day window and a swap at its first
    /// instant; GW-7 one event a millisecond before the week window and a swap at its first instant.
    static func fleet(_ store: any RegistryStore) async throws {
        let dayStart = Date(timeIntervalSince1970: TimeInterval(query.daysStartMilliseconds) / 1000)
        let weekStart = Date(timeIntervalSince1970: TimeInterval(query.weeksStartMilliseconds) / 1000)
        let a06 = "EC25EFAR06A06M4G"
        let t1 = now.addingTimeInterval(-3600)
        try await store.field(report("GW-1", n: 1, model: "EC25", revision: a06, at: t1), "GW-1", at: t1)
        try await store.field(report("GW-1", slot: "usb-2", n: 2, model: "EC25", revision: a06, at: t1), "GW-1", at: t1)
        let t2 = now.addingTimeInterval(-1800)
        try await store.field(
            report("GW-1", type: "profile_switched", n: 3, model: "EC25", revision: a06, at: t2), "GW-1", at: t2)
        try await store.field(report("GW-2", n: 4, model: "EC25", revision: a06, at: ago(days: 20)), "GW-2",
            at: ago(days: 20))
        try await store.field(
            report("GW-2", type: "sim_changed", n: 5, model: "EC25", revision: a06, at: ago(days: 10)), "GW-2",
            at: ago(days: 10))
        try await store.field(report("GW-3", n: 6, model: "EG25", revision: "B", at: ago(days: 3)), "GW-3",
            at: ago(days: 3))
        try await store.field(
            report("GW-3", type: "sim_changed", n: 7, model: "EG25", revision: "B", at: ago(days: 2)), "GW-3",
            at: ago(days: 2))
        #expect(try await store.markLost(serial: "GW-3", by: "alice", note: nil, at: ago(days: 1)))
        try await store.factory(
            report("GW-4", slot: "probe", n: 8, model: "EC25", revision: a06, at: ago(days: 5)), "GW-4",
            at: ago(days: 5))
        try await store.field(report("GW-5", n: 9, model: "EG25", revision: nil, at: ago(days: 100)), "GW-5",
            at: ago(days: 100))
        try await store.field(
            report("GW-5", type: "sim_changed", n: 10, model: "EG25", revision: nil, at: ago(days: 95)), "GW-5",
            at: ago(days: 95))
        let sierra = "Sierra Wireless"
        let beforeDays = dayStart.addingTimeInterval(-0.001)
        try await store.field(
            report("GW-6", n: 11, manufacturer: sierra, model: "EM7455", revision: "X", at: beforeDays), "GW-6",
            at: beforeDays)
        try await store.field(
            report("GW-6", type: "sim_changed", n: 12, manufacturer: sierra, model: "EM7455", revision: "X", at: dayStart),
            "GW-6", at: dayStart)
        let beforeWeeks = weekStart.addingTimeInterval(-0.001)
        try await store.field(
            report("GW-7", n: 13, manufacturer: sierra, model: "EM7455", revision: "X", at: beforeWeeks), "GW-7",
            at: beforeWeeks)
        try await store.field(
            report("GW-7", type: "sim_changed", n: 14, manufacturer: sierra, model: "EM7455", revision: "X", at: weekStart),
            "GW-7", at: weekStart)
    }

    @Test(arguments: StoreBackend.available)
    func countsOnBothBackends(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let empty = FleetOverview.assemble(try await store.overviewCounts(Self.query), Self.query)
            #expect(empty.units.total == 0 && empty.firmware.isEmpty && empty.eventsPerDay.allSatisfy { $0.events == 0 })
            #expect(empty.openFlags.count == FlagKind.allCases.count && empty.openFlags.values.allSatisfy { $0 == 0 })

            try await Self.fleet(store)
            _ = try await store.raise(
                [
                    NewFlag(
                        kind: .simActiveUnassigned, severity: .critical, serial: nil, summary: "carrier",
                        evidence: FlagEvidence(), dedupeKey: "overview-test-1"),
                    NewFlag(
                        kind: .unitSilent, severity: .warning, serial: "GW-2", summary: "silent",
                        evidence: FlagEvidence(), dedupeKey: "overview-test-2"),
                    NewFlag(
                        kind: .unitSilent, severity: .critical, serial: "GW-5", summary: "silent",
                        evidence: FlagEvidence(), dedupeKey: "overview-test-3"),
                ], at: Self.now)
            let resolved = try await store.raise(
                [
                    NewFlag(
                        kind: .unitSilent, severity: .warning, serial: "GW-6", summary: "silent",
                        evidence: FlagEvidence(), dedupeKey: "overview-test-4")
                ], at: Self.now)
            #expect(try await store.resolveFlag(id: resolved[0].id, by: "alice", note: "checked", at: Self.now))

            let o = FleetOverview.assemble(try await store.overviewCounts(Self.query), Self.query)
            #expect(o.units.total == 7)
            #expect(o.units.seen24h == 1)
            // The unit_silent check's own answer: not lost, seen, last seen before the threshold.
            let silent = try await store.silentUnits(lastSeenBefore: Self.query.silentBefore)
            #expect(silent == ["GW-2", "GW-5", "GW-6", "GW-7"])
            #expect(o.units.silent == silent.count)
            #expect(o.units.lost == 1)

            // Open flags: the same as the flags list, by kind and by severity; the resolved one is not counted.
            let open = try await store.flags(openOnly: true, limit: 1000)
            var byKind = [FlagKind: Int]()
            for f in open { byKind[f.flag.kind, default: 0] += 1 }
            for kind in FlagKind.allCases { #expect(o.openFlags[kind] == byKind[kind] ?? 0, "\(kind)") }
            #expect((o.openFlags[.unitSilent] ?? 0) == 2)
            #expect(o.openFlagsBySeverity[.unitSilent] == [.critical: 1, .warning: 1])
            #expect(o.openFlagsBySeverity.values.flatMap(\.values).reduce(0, +) == open.count)

            // Events per day: 30 days, 8 November to 7 December, zeros included; the first instant counts, the
            // millisecond before does not; the manufacturing record counts on its day.
            #expect(o.eventsPerDay.count == 30)
            #expect(o.eventsPerDay.first?.start == Self.time("2026-11-08T00:00:00Z"))
            #expect(o.eventsPerDay.last?.start == Self.time("2026-12-07T00:00:00Z"))
            let perDay = Dictionary(
                uniqueKeysWithValues: o.eventsPerDay.filter { $0.events > 0 }.map {
                    (String(EnrollmentTimestamp.format($0.start).prefix(10)), $0.events)
                })
            #expect(
                perDay == [
                    "2026-11-08": 1, "2026-11-17": 1, "2026-11-27": 1, "2026-12-02": 1, "2026-12-04": 1,
                    "2026-12-05": 1, "2026-12-07": 3,
                ])

            // Weeks: 12 ISO weeks, W39 to W50.
            #expect(o.weeks.map(\.week) == (39...50).map { "2026-W\($0)" })
            let swaps = Dictionary(uniqueKeysWithValues: o.weeks.map { ($0.week, $0.simSwaps) })
            #expect(swaps.filter { $0.value > 0 } == ["2026-W39": 1, "2026-W45": 1, "2026-W48": 1, "2026-W49": 1])
            #expect(o.weeks.filter { $0.profileSwitches > 0 }.map(\.week) == ["2026-W50"])
            #expect(o.weeks.last?.profileSwitches == 1)

            // Firmware: current field slots only (not GW-4's manufacturing record), a unit counted once however
            // many of its slots carry the module, most units first, a missing revision last among equals.
            #expect(
                o.firmware == [
                    FirmwareCount(manufacturer: "Quectel", model: "EC25", revision: "EC25EFAR06A06M4G", units: 2),
                    FirmwareCount(manufacturer: "Sierra Wireless", model: "EM7455", revision: "X", units: 2),
                    FirmwareCount(manufacturer: "Quectel", model: "EG25", revision: "B", units: 1),
                    FirmwareCount(manufacturer: "Quectel", model: "EG25", revision: nil, units: 1),
                ])
            #expect(!o.firmwareTruncated)
        }
    }

    @Test func assembleFillsZerosAndTruncates() {
        let q = OverviewQuery(now: Self.time("2027-01-02T23:59:59Z"), silenceThreshold: 86_400)
        var c = OverviewCounts(total: 3)
        c.eventsByDay[q.firstDay + 29] = 5
        c.eventsByDay[q.firstDay - 1] = 99  // outside the window: not shown
        c.simSwapsByWeek[q.firstWeek + 11] = 2
        c.firmware = (0...OverviewQuery.firmwareLimit).map {
            FirmwareCount(manufacturer: "M", model: "X", revision: "\($0)", units: 1)
        }
        let o = FleetOverview.assemble(c, q)
        #expect(o.eventsPerDay.map(\.events) == Array(repeating: 0, count: 29) + [5])
        #expect(o.eventsPerDay.last?.start == Self.time("2027-01-02T00:00:00Z"))
        // 2 January 2027 is in ISO week 53 of 2026.
        #expect(o.weeks.last?.week == "2026-W53")
        #expect(o.weeks.last?.start == Self.time("2026-12-28T00:00:00Z"))
        #expect(o.weeks.last?.simSwaps == 2)
        #expect(o.weeks.first?.week == "2026-W42")
        #expect(o.firmware.count == OverviewQuery.firmwareLimit && o.firmwareTruncated)
        #expect(OverviewQuery.day(-1) == -1 && OverviewQuery.week(0) == -1)
    }
}
