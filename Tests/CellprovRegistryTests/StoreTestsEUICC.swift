import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import Testing

extension TestID {
    /// A valid EID (GSMA SGP.29): "89", country 049, issuer 032, version 00000, 17 digits from `n`, and the two
    /// check digits that make the 32-digit number equal 1 mod 97.
    static func eid(_ n: Int) -> String {
        let body = "89049032" + "00000" + String(format: "%017d", n)
        var r = 0
        for b in (body + "00").utf8 { r = (r * 10 + Int(b - 48)) % 97 }
        return body + String(format: "%02d", 98 - r)
    }
}

/// The eUICC in the store (issue 15, "The registry"): EID and active slot stored per slot and event, search by
/// EID, `euicc_moved`, no `iccid_moved` for a profile switch, one profile on two cards, the factory record's EID.
/// Run against SQLite and PostgreSQL (whose ingest takes the server-side function's fast path or falls back to the
/// Swift rules: both are exercised here).
@Suite struct StoreTestsEUICC {
    static func eUICCEvent(
        _ type: String = "enrolled", slot: String = "usb-1", imei: String, imsi: String? = nil, iccid: String?,
        eid: String?, simSlot: Int? = nil, previous: EnrollmentRequest.Identity? = nil, severity: String = "info",
        at: Date = t0
    ) -> EnrollmentRequest {
        var r = event(type, slot: slot, imei: imei, imsi: imsi, iccid: iccid, previous: previous, severity: severity, at: at)
        r.identity.eid = eid
        r.identity.simSlot = simSlot
        return r
    }

    @Test func eidMakerIsValid() {
        for n in [0, 1, 42, 99_999] {
            let eid = TestID.eid(n)
            #expect(eid.count == 32 && EID.validate(eid).value != nil, "\(n)")
        }
        #expect(SearchTerms(parsing: TestID.eid(1)).eid == TestID.eid(1))
        #expect(SearchTerms(parsing: TestID.eid(1)).iccid == nil)
    }

    @Test(arguments: StoreBackend.available)
    func storesEIDAndSlotAndFindsTheUnitByEID(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let eid = TestID.eid(1)
            #expect(
                try await store.field(
                    Self.eUICCEvent(imei: TestID.imei(100), imsi: TestID.imsi(100), iccid: TestID.iccid(100), eid: eid,
                        simSlot: 1), "GW-E1") == [])
            try await store.field(event(imei: TestID.imei(101), iccid: TestID.iccid(101)), "GW-E2")
            let found = try await store.searchUnits(SearchTerms(parsing: eid), limit: 10)
            #expect(found.map(\.serial) == ["GW-E1"])
            #expect(found.first?.slots.first?.identity.eid == eid)
            #expect(found.first?.slots.first?.identity.simSlot == 1)
            // The registry's own reference of the EID (what a masked answer shows) finds it too.
            let key = try await store.pseudonymKey()
            let ref = Pseudonymizer(key: key).reference(kind: "eid", value: eid)
            #expect(try await store.searchUnits(SearchTerms(parsing: ref), limit: 10).map(\.serial) == ["GW-E1"])
            // An EID no unit has finds nothing.
            #expect(try await store.searchUnits(SearchTerms(parsing: TestID.eid(2)), limit: 10).isEmpty)
            // A profile switch keeps the card: the timeline has both events with their EID and slot.
            let switched = Self.eUICCEvent(
                "profile_switched", imei: TestID.imei(100), imsi: TestID.imsi(102), iccid: TestID.iccid(102), eid: eid,
                simSlot: 1, previous: .init(imsi: TestID.imsi(100), iccid: TestID.iccid(100), eid: eid),
                at: t0.addingTimeInterval(60))
            #expect(try await store.field(switched, "GW-E1") == [])
            let unit = try #require(try await store.unit(serial: "GW-E1"))
            #expect(unit.timeline.map(\.type) == ["enrolled", "profile_switched"])
            #expect(unit.timeline.last?.identity.eid == eid && unit.timeline.last?.identity.simSlot == 1)
            #expect(unit.timeline.last?.previous?.eid == eid)
            #expect(unit.summary.slots.first?.identity.iccid == TestID.iccid(102))
            #expect(try await store.simAssignments().first { $0.serial == "GW-E1" }?.eid == eid)
            #expect(try await store.exportUnits().first { $0.serial == "GW-E1" }?.identity.eid == eid)
        }
    }

    @Test(arguments: StoreBackend.available)
    func euiccMovedAndNoICCIDMovedForTheCard(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let eid = TestID.eid(10)
            let iccid = TestID.iccid(110)
            try await store.field(
                Self.eUICCEvent(imei: TestID.imei(110), imsi: TestID.imsi(110), iccid: iccid, eid: eid), "GW-A")
            // The card (with its enabled profile) now in B: euicc_moved, and not iccid_moved as well.
            let moved = Self.eUICCEvent(
                "sim_changed", imei: TestID.imei(111), imsi: TestID.imsi(110), iccid: iccid, eid: eid, severity: "warning")
            #expect(try await store.field(moved, "GW-B") == [.euiccMoved])
            let flag = try #require(try await store.flags(openOnly: true, limit: 10).first)
            #expect(flag.flag.dedupeKey == "euicc_moved:\(eid):GW-B" && flag.flag.severity == .warning)
            #expect(flag.flag.evidence.otherSerials == ["GW-A"] && flag.flag.evidence.eid == eid)
            #expect(!flag.flag.summary.contains(eid) && identifierDigitRuns(flag.flag.summary).isEmpty)
            // A no longer holds the card nor its profile.
            let a = try #require(try await store.unit(serial: "GW-A"))
            #expect(a.summary.slots.first?.identity.eid == nil && a.summary.slots.first?.identity.iccid == nil)
            // Taken out of B (sim_removed keeps the card as B's last) and into C, on another profile: C names B.
            try await store.field(
                event("sim_removed", imei: TestID.imei(111), previous: .init(imsi: TestID.imsi(110), iccid: iccid, eid: eid)),
                "GW-B")
            let inC = Self.eUICCEvent(imei: TestID.imei(112), iccid: TestID.iccid(113), eid: eid)
            #expect(try await store.field(inC, "GW-C") == [.euiccMoved])
            let c = try #require(try await store.flags(openOnly: true, limit: 10).first)
            #expect(c.flag.evidence.otherSerials == ["GW-B"])
            // C reporting its card again raises nothing.
            #expect(try await store.field(Self.eUICCEvent(imei: TestID.imei(112), iccid: TestID.iccid(113), eid: eid), "GW-C")
                == [])
        }
    }

    @Test(arguments: StoreBackend.available)
    func profileSwitchIsNoICCIDMove(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let mine = TestID.eid(20)
            let other = TestID.eid(21)
            let shared = TestID.iccid(120)
            try await store.field(
                Self.eUICCEvent(imei: TestID.imei(120), iccid: TestID.iccid(121), eid: mine), "GW-P")
            // Another unit's card holds ICCID `shared`.
            try await store.field(Self.eUICCEvent(imei: TestID.imei(121), iccid: shared, eid: other), "GW-Q")
            // A plain profile switch on P's card: nothing.
            let first = Self.eUICCEvent(
                "profile_switched", imei: TestID.imei(120), iccid: TestID.iccid(122), eid: mine,
                previous: .init(iccid: TestID.iccid(121), eid: mine), at: t0.addingTimeInterval(60))
            #expect(try await store.field(first, "GW-P") == [])
            // P's card switches to the profile Q's card holds: not iccid_moved (the card did not move), but one
            // profile on two cards (critical); Q keeps its SIM.
            let second = Self.eUICCEvent(
                "profile_switched", imei: TestID.imei(120), iccid: shared, eid: mine,
                previous: .init(iccid: TestID.iccid(122), eid: mine), at: t0.addingTimeInterval(120))
            #expect(try await store.field(second, "GW-P") == [.profileCloneSuspected])
            let flag = try #require(try await store.flags(openOnly: true, limit: 10).first)
            #expect(flag.flag.severity == .critical && flag.flag.evidence.otherSerials == ["GW-Q"])
            #expect(try await store.unit(serial: "GW-Q")?.summary.slots.first?.identity.iccid == shared)
            // A third unit reads that ICCID from yet another card (a sim_changed, EIDs differ): the same finding
            // (open), no iccid_moved.
            let third = Self.eUICCEvent(imei: TestID.imei(123), iccid: shared, eid: TestID.eid(22))
            #expect(try await store.field(third, "GW-R") == [])
            // Without EIDs, a SIM moving is still iccid_moved.
            try await store.field(event(imei: TestID.imei(124), iccid: TestID.iccid(125)), "GW-S")
            #expect(try await store.field(event(imei: TestID.imei(126), iccid: TestID.iccid(125)), "GW-T") == [.iccidMoved])
        }
    }

    @Test(arguments: StoreBackend.available)
    func reportedProfileCloneRaisesACriticalFlag(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let iccid = TestID.iccid(130)
            try await store.field(Self.eUICCEvent(imei: TestID.imei(130), iccid: iccid, eid: TestID.eid(30)), "GW-K")
            let clone = Self.eUICCEvent(
                "profile_clone_suspected", imei: TestID.imei(130), iccid: iccid, eid: TestID.eid(31),
                previous: .init(iccid: iccid, eid: TestID.eid(30)), severity: "critical", at: t0.addingTimeInterval(60))
            #expect(try await store.field(clone, "GW-K") == [.profileCloneSuspected])
            let flag = try #require(try await store.flags(openOnly: true, limit: 10).first)
            #expect(flag.flag.severity == .critical && flag.flag.evidence.eid == TestID.eid(31))
            #expect(flag.flag.evidence.expectedEID == TestID.eid(30))
            #expect(identifierDigitRuns(flag.flag.summary).isEmpty)
        }
    }

    @Test(arguments: StoreBackend.available)
    func moduleSwapSeenByTheFactoryRecordsEID(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let imei = TestID.imei(140)
            let made = TestID.eid(40)
            let manufactured = Self.eUICCEvent("manufactured", slot: "probe", imei: imei, iccid: TestID.iccid(140), eid: made)
            #expect(try await store.factory(manufactured, "GW-F") == [])
            // The same card in the field: nothing; a profile switch on it: nothing.
            #expect(try await store.field(Self.eUICCEvent(imei: imei, iccid: TestID.iccid(140), eid: made), "GW-F") == [])
            // Same module (IMEI), another card: the card was replaced since manufacturing.
            let swapped = Self.eUICCEvent(
                "sim_changed", imei: imei, iccid: TestID.iccid(141), eid: TestID.eid(41), severity: "warning",
                at: t0.addingTimeInterval(60))
            #expect(try await store.field(swapped, "GW-F") == [.moduleSwappedSinceManufacturing])
            let flag = try #require(try await store.flags(openOnly: true, limit: 10).first)
            #expect(flag.flag.evidence.eid == TestID.eid(41) && flag.flag.evidence.expectedEID == made)
            #expect(flag.flag.dedupeKey == "module_swapped:GW-F:eid:\(TestID.eid(41))")
            // A field card without EID (a plain SIM) is no comparison.
            let plain = event(imei: imei, iccid: TestID.iccid(142), at: t0.addingTimeInterval(120))
            #expect(try await store.field(plain, "GW-F") == [])
            // A unit whose factory record has no EID: nothing to compare.
            try await store.factory(event("manufactured", slot: "probe", imei: TestID.imei(143)), "GW-G")
            #expect(
                try await store.field(Self.eUICCEvent(imei: TestID.imei(143), iccid: TestID.iccid(143), eid: TestID.eid(43)),
                    "GW-G") == [])
            // A manufacturing record arriving after the field card differs: raised from the factory side.
            try await store.field(Self.eUICCEvent(imei: TestID.imei(144), iccid: TestID.iccid(144), eid: TestID.eid(44)), "GW-H")
            let late = Self.eUICCEvent("manufactured", slot: "probe", imei: TestID.imei(144), iccid: nil, eid: TestID.eid(45))
            #expect(try await store.factory(late, "GW-H") == [.moduleSwappedSinceManufacturing])
        }
    }
}
