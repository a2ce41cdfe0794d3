import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import Testing

// The units carrying an affected module (issue 20), on each backend (SQLite; PostgreSQL under
// scripts/with-postgres.sh): a small fleet of EC25, EG25 and EM7455 modules on several firmware revisions.

@Suite struct StoreAffectedTests {
    static func time(_ text: String) -> Date { EnrollmentTimestamp.parse(text)! }
    static let nov1 = time("2026-11-01T08:00:00Z")
    static let nov5 = time("2026-11-05T08:00:00Z")
    static let advisory = "EC25EFAR06A06M4G"

    /// A field event of one slot with its module's names.
    static func report(
        _ serial: String, slot: String = "usb-1", n: Int, tac: String = "86425104", manufacturer: String = "Quectel",
        model: String, revision: String?, at: Date
    ) -> EnrollmentRequest {
        var e = event(
            serial: serial, slot: slot, imei: TestID.imei(n, tac: tac), imsi: TestID.imsi(n), iccid: TestID.iccid(n),
            at: at)
        e.module.manufacturer = manufacturer
        e.module.model = model
        e.module.revision = revision
        return e
    }

    /// GW-1 (EC25 A06, seen 1 Nov), GW-2 (EC25 A07, seen 5 Nov), GW-3 (EG25, TAC 35209900, seen 5 Nov), GW-4 (an
    /// EM7455 in usb-1 and an EC25 A06 of TAC 35209900 in usb-2, seen 5 Nov), GW-5 (EC25 A06 in its manufacturing
    /// record only), GW-6 (a lower-case revision), GW-7 (an EC25 of revision A05, updated to A06 on 5 Nov).
    static func fleet(_ store: any RegistryStore) async throws {
        try await store.field(report("GW-1", n: 1, model: "EC25", revision: advisory, at: nov1), "GW-1", at: nov1)
        try await store.field(
            report("GW-2", n: 2, model: "EC25", revision: "EC25EFAR06A07M4G", at: nov5), "GW-2", at: nov5)
        try await store.field(
            report("GW-3", n: 3, tac: "35209900", model: "EG25", revision: "EG25GGBR07A08M2G", at: nov5), "GW-3", at: nov5)
        try await store.field(
            report(
                "GW-4", n: 4, manufacturer: "Sierra Wireless", model: "EM7455", revision: "SWI9X30C_02.33.03.00",
                at: nov5), "GW-4", at: nov5)
        try await store.field(
            report("GW-4", slot: "usb-2", n: 5, tac: "35209900", model: "EC25", revision: advisory, at: nov5), "GW-4",
            at: nov5)
        try await store.factory(
            report("GW-5", slot: "probe", n: 6, model: "EC25", revision: advisory, at: nov1), "GW-5", at: nov1)
        try await store.field(
            report("GW-6", n: 7, model: "EC25", revision: advisory.lowercased(), at: nov1), "GW-6", at: nov1)
        try await store.field(
            report("GW-7", n: 8, model: "EC25", revision: "EC25EFAR06A05M4G", at: nov1), "GW-7", at: nov1)
        try await store.field(report("GW-7", n: 8, model: "EC25", revision: advisory, at: nov5), "GW-7", at: nov5)
    }

    static func serials(_ store: any RegistryStore, _ filter: ModuleFilter, limit: Int = 100, offset: Int = 0)
        async throws -> [String]
    {
        try await store.affectedUnits(filter, limit: limit, offset: offset).map(\.serial)
    }

    @Test(arguments: StoreBackend.available)
    func exactPrefixTACSinceAndCombined(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            try await Self.fleet(store)
            // Exact revision: the field slots carrying it now (not the manufacturing record, not another case, and
            // GW-7 since its update).
            #expect(try await Self.serials(store, ModuleFilter(revision: .exact(Self.advisory))) == ["GW-1", "GW-4", "GW-7"])
            // By prefix: every A0x of that family, not the lower-case one.
            #expect(
                try await Self.serials(store, ModuleFilter(revision: .prefix("EC25EFAR06")))
                    == ["GW-1", "GW-2", "GW-4", "GW-7"])
            #expect(try await Self.serials(store, ModuleFilter(revision: .prefix("EC25EFAR06A07"))) == ["GW-2"])
            #expect(try await Self.serials(store, ModuleFilter(revision: .prefix("EC25EFAR07"))).isEmpty)
            #expect(try await Self.serials(store, ModuleFilter(revision: .prefix("ec25"))) == ["GW-6"])
            #expect(try await Self.serials(store, ModuleFilter(model: .exact("EG25"))) == ["GW-3"])
            #expect(try await Self.serials(store, ModuleFilter(model: .prefix("EM7"))) == ["GW-4"])
            #expect(
                try await Self.serials(store, ModuleFilter(manufacturer: .prefix("Sierra"))) == ["GW-4"])
            #expect(
                try await Self.serials(store, ModuleFilter(manufacturer: .exact("Quectel"), model: .exact("EC25")))
                    == ["GW-1", "GW-2", "GW-4", "GW-6", "GW-7"])
            // TAC: the module's, from its IMEI.
            #expect(try await Self.serials(store, ModuleFilter(tac: "35209900")) == ["GW-3", "GW-4"])
            #expect(
                try await Self.serials(store, ModuleFilter(revision: .exact(Self.advisory), tac: "86425104"))
                    == ["GW-1", "GW-7"])
            // Every criterion on one and the same slot: GW-4's Sierra module is not the one on the advisory.
            #expect(
                try await Self.serials(
                    store, ModuleFilter(manufacturer: .exact("Sierra Wireless"), revision: .exact(Self.advisory)))
                    .isEmpty)
            // Seen since: the unit's last field event received at or after the moment.
            #expect(
                try await Self.serials(
                    store, ModuleFilter(revision: .prefix("EC25EFAR06"), seenSince: Self.time("2026-11-03T00:00:00Z")))
                    == ["GW-2", "GW-4", "GW-7"])
            #expect(
                try await Self.serials(store, ModuleFilter(revision: .exact(Self.advisory), seenSince: Self.nov5))
                    == ["GW-4", "GW-7"])
            // No module criterion: nothing (the API refuses it before).
            #expect(try await Self.serials(store, ModuleFilter(seenSince: Self.nov1)).isEmpty)
        }
    }

    @Test(arguments: StoreBackend.available)
    func pagesAndTheUnitsAsToday(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            try await Self.fleet(store)
            let filter = ModuleFilter(revision: .prefix("EC25EFAR06"))
            #expect(try await Self.serials(store, filter, limit: 2) == ["GW-1", "GW-2"])
            #expect(try await Self.serials(store, filter, limit: 2, offset: 2) == ["GW-4", "GW-7"])
            #expect(try await Self.serials(store, filter, limit: 2, offset: 4).isEmpty)
            #expect(try await Self.serials(store, filter, limit: 0).isEmpty)
            // A unit with two slots is one unit; its summary has today's slots with their identities, and the
            // filter picks the matching one.
            let units = try await store.affectedUnits(ModuleFilter(revision: .exact(Self.advisory)), limit: 10, offset: 0)
            let gw4 = try #require(units.first { $0.serial == "GW-4" })
            #expect(gw4.slots.map(\.slot) == ["usb-1", "usb-2"])
            let matching = ModuleFilter(revision: .exact(Self.advisory)).matchingSlots(gw4)
            #expect(matching.map(\.slot) == ["usb-2"])
            #expect(matching.first?.identity.imsi == TestID.imsi(5))
            #expect(matching.first?.identity.iccid == TestID.iccid(5))
            #expect(gw4.lastSeen == Self.nov5)
            // A lost unit stays on the list, marked.
            #expect(try await store.markLost(serial: "GW-1", by: "ops", note: nil, at: Self.nov5))
            let again = try await store.affectedUnits(ModuleFilter(revision: .exact(Self.advisory)), limit: 10, offset: 0)
            #expect(again.first { $0.serial == "GW-1" }?.lost == true)
        }
    }
}
