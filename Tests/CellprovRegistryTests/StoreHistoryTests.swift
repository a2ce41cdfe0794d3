import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import Testing

// Every holder of an identifier, and a unit as of a moment (issue 20), on each backend (SQLite; PostgreSQL under
// scripts/with-postgres.sh): the SIM of the issue moves from GW-A to GW-B on 3 November at 09:30.

@Suite struct StoreHistoryTests {
    static func time(_ text: String) -> Date { EnrollmentTimestamp.parse(text)! }
    static let nov1 = time("2026-11-01T08:00:00Z")
    static let removedAt = time("2026-11-03T09:00:00Z")
    static let movedAt = time("2026-11-03T09:30:00Z")
    static let incident = time("2026-11-03T14:22:00Z")
    static let imsi = TestID.imsi(2001)
    static let iccid = TestID.iccid(2001)

    /// GW-A enrolls the SIM on 1 November; its removal (09:00) is delivered `removalDelay` after it happened;
    /// GW-B reports it at 09:30 (received at once).
    static func moveTheSIM(_ store: any RegistryStore, removalDelay: TimeInterval = 5) async throws {
        let imeiA = TestID.imei(2001)
        let imeiB = TestID.imei(2002)
        try await store.field(
            event(serial: "GW-A", imei: imeiA, imsi: imsi, iccid: iccid, at: nov1), "GW-A", at: nov1.addingTimeInterval(2))
        try await store.field(
            event(serial: "GW-B", slot: "usb-2", imei: imeiB, imsi: TestID.imsi(2002), iccid: TestID.iccid(2002), at: nov1),
            "GW-B", at: nov1.addingTimeInterval(3))
        try await store.field(
            event(
                "sim_changed", serial: "GW-B", slot: "usb-2", imei: imeiB, imsi: imsi, iccid: iccid,
                previous: .init(imei: imeiB, imsi: TestID.imsi(2002), iccid: TestID.iccid(2002)), severity: "warning",
                at: movedAt), "GW-B", at: movedAt.addingTimeInterval(4))
        try await store.field(
            event(
                "sim_removed", serial: "GW-A", imei: imeiA, previous: .init(imei: imeiA, imsi: imsi, iccid: iccid),
                severity: "warning", at: removedAt), "GW-A", at: removedAt.addingTimeInterval(removalDelay))
    }

    @Test(arguments: StoreBackend.available)
    func aSearchByTheIMSIAtAMomentFindsTheUnitThatHeldItThen(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            try await Self.moveTheSIM(store)
            let terms = SearchTerms(parsing: Self.imsi)

            let before = try await store.searchHolders(terms, at: Self.time("2026-11-02T12:00:00Z"), limit: 10)
            #expect(before.map(\.unit.serial) == ["GW-A"])
            #expect(before.first?.holdings.map(\.slot) == ["usb-1"])
            #expect(before.first?.holdings.first?.from == Self.nov1)
            #expect(before.first?.holdings.first?.until == Self.removedAt)

            let after = try await store.searchHolders(terms, at: Self.incident, limit: 10)
            #expect(after.map(\.unit.serial) == ["GW-B"])
            #expect(after.first?.holdings.map(\.slot) == ["usb-2"])
            #expect(after.first?.holdings.first?.isCurrent == true)
            // The unit's summary is today's (the answer's slots are now; the interval says when).
            #expect(after.first?.unit.slots.first?.identity.imsi == Self.imsi)

            #expect(try await store.searchHolders(terms, at: Self.time("2026-11-03T09:15:00Z"), limit: 10).isEmpty)
            #expect(try await store.searchHolders(terms, at: Self.time("2026-10-31T00:00:00Z"), limit: 10).isEmpty)

            // Without a moment: both, current holder first, each with its interval.
            let all = try await store.searchHolders(terms, at: nil, limit: 10)
            #expect(all.map(\.unit.serial) == ["GW-B", "GW-A"])
            #expect(all.map { $0.holdings.map(\.isCurrent) } == [[true], [false]])
            #expect(all[0].holdings[0].from == Self.movedAt)
            #expect(all[1].holdings[0].until == Self.removedAt)
            // The ICCID finds the same holders; the limit is kept.
            #expect(try await store.searchHolders(SearchTerms(parsing: Self.iccid), at: nil, limit: 10).map(\.unit.serial)
                == ["GW-B", "GW-A"])
            #expect(try await store.searchHolders(terms, at: nil, limit: 1).map(\.unit.serial) == ["GW-B"])
            // Today's search is unchanged: only the current holder.
            #expect(try await store.searchUnits(terms, limit: 10).map(\.serial) == ["GW-B"])
            // Names that are no identifier of a card or module find no holder.
            #expect(try await store.searchHolders(SearchTerms(parsing: "GW-A"), at: nil, limit: 10).isEmpty)
            #expect(try await store.searchHolders(SearchTerms(parsing: TestID.imsi(9999)), at: nil, limit: 10).isEmpty)
        }
    }

    @Test(arguments: StoreBackend.available)
    func aLateRemovalEndsTheIntervalAtItsDeviceTimeWithItsReceiveTimeKept(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            // GW-A was offline: its removal of 09:00 arrives two days later, after GW-B's event.
            try await Self.moveTheSIM(store, removalDelay: 2 * 86_400)
            let terms = SearchTerms(parsing: Self.imsi)
            let all = try await store.searchHolders(terms, at: nil, limit: 10)
            #expect(all.map(\.unit.serial) == ["GW-B", "GW-A"])
            let a = try #require(all.last?.holdings.first)
            #expect(a.until == Self.removedAt)
            #expect(a.untilReceived == Self.removedAt.addingTimeInterval(2 * 86_400))
            #expect(Holdings.disagree(a.until!, a.untilReceived!))
            #expect(try await store.searchHolders(terms, at: Self.incident, limit: 10).map(\.unit.serial) == ["GW-B"])

            // A late event older than the slot's current one: GW-B's earlier SIM report, delivered last. It changes
            // nothing about who held the searched SIM when.
            let imeiB = TestID.imei(2002)
            try await store.field(
                event(
                    "sim_inserted", serial: "GW-B", slot: "usb-2", imei: imeiB, imsi: TestID.imsi(2002),
                    iccid: TestID.iccid(2002), at: Self.nov1.addingTimeInterval(3600)),
                "GW-B", at: Self.incident.addingTimeInterval(86_400))
            let again = try await store.searchHolders(terms, at: nil, limit: 10)
            #expect(again.map(\.unit.serial) == ["GW-B", "GW-A"])
            #expect(again[0].holdings.map(\.from) == [Self.movedAt])
        }
    }

    @Test(arguments: StoreBackend.available)
    func aUnitAsOfAMomentHasItsSlotsIdentitiesAndOpenFlagsOfThen(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            try await Self.moveTheSIM(store)
            // A flag on GW-A raised on 2 November, resolved on 4 November.
            let raised = try await store.raise(
                [
                    NewFlag(
                        kind: .unitSilent, severity: .warning, serial: "GW-A", summary: "silent",
                        evidence: FlagEvidence(), dedupeKey: "history-test")
                ], at: Self.time("2026-11-02T00:00:00Z"))
            let flagID = try #require(raised.first?.id)
            #expect(try await store.resolveFlag(id: flagID, by: "alice", note: "ok", at: Self.time("2026-11-04T00:00:00Z")))

            let then = try #require(try await store.unit(serial: "GW-A", at: Self.time("2026-11-02T12:00:00Z")))
            #expect(then.summary.slots.map(\.slot) == ["usb-1"])
            #expect(then.summary.slots.first?.identity.imsi == Self.imsi)
            #expect(then.summary.slots.first?.identity.iccid == Self.iccid)
            #expect(then.summary.slots.first?.lastEventType == "enrolled")
            #expect(then.summary.slots.first?.model == "EG25", "the module's names from the event's payload")
            #expect(then.summary.slots.first?.updatedAt == Self.nov1, "the event's device time")
            #expect(then.summary.firstSeen == Self.nov1 && then.summary.lastSeen == Self.nov1)
            #expect(then.summary.openFlags == 1)
            #expect(then.flags.map(\.isOpen) == [true], "resolved later: open then")
            #expect(then.timeline.map(\.type) == ["enrolled"], "the timeline up to then")

            let incident = try #require(try await store.unit(serial: "GW-A", at: Self.incident))
            #expect(incident.summary.slots.first?.identity.imsi == nil)
            #expect(incident.summary.slots.first?.lastEventType == "sim_removed")
            let now = try #require(try await store.unit(serial: "GW-A", at: Self.time("2026-11-05T00:00:00Z")))
            #expect(now.flags.first { $0.flag.dedupeKey == "history-test" }?.isOpen == false)
            #expect(now.summary.openFlags == now.flags.filter(\.isOpen).count)

            // Before its first event the unit had no slot and no flag; an unknown unit is nil.
            let early = try #require(try await store.unit(serial: "GW-A", at: Self.time("2026-10-01T00:00:00Z")))
            #expect(early.summary.slots.isEmpty && early.flags.isEmpty && early.timeline.isEmpty)
            #expect(try await store.unit(serial: "GW-NONE", at: Self.incident) == nil)

            // Marked lost on 4 November: not lost on the 2nd, lost on the 5th.
            #expect(try await store.markLost(serial: "GW-A", by: "alice", note: nil, at: Self.time("2026-11-04T00:00:00Z")))
            let beforeLost = try #require(try await store.unit(serial: "GW-A", at: Self.time("2026-11-02T12:00:00Z")))
            #expect(!beforeLost.summary.lost && beforeLost.lost == nil)
            let afterLost = try #require(try await store.unit(serial: "GW-A", at: Self.time("2026-11-05T00:00:00Z")))
            #expect(afterLost.summary.lost && afterLost.lost?.markedBy == "alice")

            let b = try #require(try await store.unit(serial: "GW-B", at: Self.incident))
            #expect(b.summary.slots.first?.identity.imsi == Self.imsi)
            #expect(b.summary.slots.first?.slot == "usb-2")
            let bBefore = try #require(try await store.unit(serial: "GW-B", at: Self.time("2026-11-02T12:00:00Z")))
            #expect(bBefore.summary.slots.first?.identity.imsi == TestID.imsi(2002))
        }
    }
}
