import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import Testing

// A `firmware_changed` event in the registry, on each backend (SQLite; PostgreSQL under scripts/with-postgres.sh):
// stored without a flag, the slot's revision follows it (so the affected-units list does), and the timeline entry
// carries the revision before and after.

@Suite struct StoreFirmwareChangeTests {
    static func time(_ text: String) -> Date { EnrollmentTimestamp.parse(text)! }
    static let nov1 = time("2026-11-01T08:00:00Z")
    static let nov5 = time("2026-11-05T08:00:00Z")
    static let old = "EC25EFAR06A06M4G"
    static let new = "EC25EFAR06A08M4G"

    static func report(_ type: String, sequence: Int, revision: String, at: Date) -> EnrollmentRequest {
        var e = event(
            type, serial: "GW-FW", imei: TestID.imei(41), imsi: TestID.imsi(41), iccid: TestID.iccid(41),
            sequence: sequence, at: at)
        e.module.manufacturer = "Quectel"
        e.module.model = "EC25"
        e.module.revision = revision
        return e
    }

    @Test(arguments: StoreBackend.available)
    func storedWithoutFlagAndShownWithBothRevisions(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            #expect(try await store.field(Self.report("enrolled", sequence: 1, revision: Self.old, at: Self.nov1), "GW-FW", at: Self.nov1).isEmpty)
            #expect(try await store.affectedUnits(ModuleFilter(revision: .exact(Self.old)), limit: 10, offset: 0).map(\.serial) == ["GW-FW"])

            var update = Self.report("firmware_changed", sequence: 2, revision: Self.new, at: Self.nov5)
            update.previousRevision = Self.old
            #expect(try await store.field(update, "GW-FW", at: Self.nov5).isEmpty, "a firmware update raises no flag")

            #expect(try await store.affectedUnits(ModuleFilter(revision: .exact(Self.new)), limit: 10, offset: 0).map(\.serial) == ["GW-FW"])
            #expect(try await store.affectedUnits(ModuleFilter(revision: .exact(Self.old)), limit: 10, offset: 0).isEmpty)

            let unit = try #require(try await store.unit(serial: "GW-FW"))
            #expect(unit.summary.slots.first?.revision == Self.new)
            #expect(unit.timeline.map(\.type) == ["enrolled", "firmware_changed"])
            #expect(unit.timeline[0].firmware == nil, "only firmware_changed entries carry revisions")
            #expect(unit.timeline[1].firmware == FirmwareChange(previous: Self.old, current: Self.new))
            #expect(unit.timeline[1].identity.imei == TestID.imei(41))

            // The paged timeline reads the same.
            let page = try await store.timeline(serial: "GW-FW", cursor: nil, limit: 10)
            #expect(page.map(\.entry.firmware) == [FirmwareChange(previous: Self.old, current: Self.new), nil])

            // As of a moment between the two events: the old revision, no firmware entry yet.
            let then = try #require(try await store.unit(serial: "GW-FW", at: Self.time("2026-11-03T00:00:00Z")))
            #expect(then.summary.slots.first?.revision == Self.old)
            #expect(then.timeline.map(\.type) == ["enrolled"])
        }
    }

    @Test(arguments: StoreBackend.available)
    func anEventWithoutPreviousRevisionShowsOnlyTheNewOne(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            _ = try await store.field(Self.report("enrolled", sequence: 1, revision: Self.old, at: Self.nov1), "GW-FW", at: Self.nov1)
            _ = try await store.field(Self.report("firmware_changed", sequence: 2, revision: Self.new, at: Self.nov5), "GW-FW", at: Self.nov5)
            let unit = try #require(try await store.unit(serial: "GW-FW"))
            #expect(unit.timeline.last?.firmware == FirmwareChange(previous: nil, current: Self.new))
        }
    }
}
