import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import PostgresNIO
import Testing

/// PostgreSQL only: migration 2 (ingest as one server-side function) on a database that already holds data.
@Suite struct StorePostgresIngestTests {
    static var backends: [StoreBackend] { StoreBackend.available.filter { $0 == .postgres } }

    /// Every overload of the ingest functions plans its statements generically (migration 9): a custom plan per
    /// call is what made migration 4's function a third slower than migration 2's. A new overload created without
    /// `SET plan_cache_mode = force_generic_plan` fails here.
    @Test(arguments: backends)
    func everyIngestFunctionPlansItsStatementsOnce(_ backend: StoreBackend) async throws {
        try await withStore(backend) { _, url in
            guard case .postgres(let location) = try RegistryDatabase.parse(url) else { return }
            let functions = try await PostgresTestDatabases.withClient(location) { client in
                var out = [String: String]()
                for try await (name, config) in try await client.query(
                    """
                    SELECT oid::regprocedure::text, coalesce(array_to_string(proconfig, ','), '') FROM pg_proc
                    WHERE proname IN ('cellprov_ingest', 'cellprov_ingest_device')
                    """, logger: TestStore.logger
                ).decode((String, String).self) {
                    out[name] = config
                }
                return out
            }
            #expect(functions.count == 4)
            for (name, config) in functions {
                #expect(config == "plan_cache_mode=force_generic_plan", "\(name)")
            }
        }
    }

    /// A database written at schema version 1, with units, events, a manufacturing record and references in it,
    /// is upgraded in place by the next start; afterwards the function sees what was stored before it existed:
    /// a repeated event is a duplicate, the cross-unit rules find the old holders, the manufacturing rule the old
    /// record, and the timeline and search are intact.
    @Test(arguments: backends)
    func upgradeOfAVersion1DatabaseWithData(_ backend: StoreBackend) async throws {
        let (url, cleanup) = try await TestStore.emptyDatabase(backend)
        do {
            let imei = TestID.imei(70)
            let iccid = TestID.iccid(70)
            let first = event(imei: imei, imsi: TestID.imsi(70), iccid: iccid)
            let made = TestID.imei(71)
            do {
                let old = try await RegistryDatabase.open(url: url, logger: TestStore.logger)
                try await old.field(first, "GW-OLD")
                try await old.factory(event("manufactured", serial: "GW-M", slot: "probe", imei: made), "GW-M")
                await old.close()
            }
            // Back to exactly what version 1 created (its rows are the same in both versions; version 3's tables
            // stay), undoing migration 5 (the sequence columns and the third overload), migration 4 (the EID
            // columns and the function's second overload) and migration 2.
            for sql in [
                """
                DO $$ DECLARE f regprocedure; BEGIN
                    FOR f IN SELECT oid::regprocedure FROM pg_proc WHERE proname = 'cellprov_ingest' LOOP
                        EXECUTE 'DROP FUNCTION ' || f;
                    END LOOP;
                END $$
                """,
                "ALTER TABLE slots DROP COLUMN max_sequence",
                "ALTER TABLE events DROP COLUMN state_lost, DROP COLUMN reuses_sequence_of",
                "DELETE FROM schema_migrations WHERE version = 5",
                "ALTER TABLE slots DROP COLUMN eid, DROP COLUMN last_eid, DROP COLUMN sim_slot",
                "ALTER TABLE events DROP COLUMN eid, DROP COLUMN prev_eid, DROP COLUMN sim_slot",
                "DELETE FROM schema_migrations WHERE version = 4",
                "DROP INDEX events_factory",
                "CREATE INDEX units_last_seen ON units (last_seen) WHERE lost_at IS NULL",
                "ALTER TABLE units RESET (fillfactor)", "ALTER TABLE slots RESET (fillfactor)",
                "DELETE FROM schema_migrations WHERE version = 2",
            ] {
                try await StoreTestSQL.execute(url, sql)
            }
            let store = try await RegistryDatabase.open(url: url, logger: TestStore.logger)
            do {
                try await store.checkReady()
                #expect(
                    try await store.ingest(first, serial: "GW-OLD", origin: .device, references: [], receivedAt: t0)
                        == .duplicate)
                #expect(try await store.field(event(imei: imei, iccid: TestID.iccid(72)), "GW-NEW") == [.imeiOnTwoUnits])
                #expect(try await store.field(event(imei: TestID.imei(73), iccid: iccid), "GW-NEW2") == [.iccidMoved])
                #expect(try await store.field(event(imei: TestID.imei(74)), "GW-M") == [.moduleSwappedSinceManufacturing])
                #expect(try await store.unit(serial: "GW-OLD")?.timeline.map(\.eventID) == [first.eventID])
                #expect(try await store.searchUnits(SearchTerms(imsi: TestID.imsi(70)), limit: 10).isEmpty)
                #expect(try await store.searchUnits(SearchTerms(imei: imei), limit: 10).map(\.serial).sorted()
                    == ["GW-NEW", "GW-OLD"])
                #expect(try await store.silentUnits(lastSeenBefore: t0.addingTimeInterval(1)).contains("GW-OLD"))
                // The upgraded database stores and finds an EID.
                let eid = TestID.eid(75)
                try await store.field(
                    StoreTestsEUICC.eUICCEvent(imei: TestID.imei(75), iccid: TestID.iccid(75), eid: eid), "GW-EID")
                #expect(try await store.searchUnits(SearchTerms(eid: eid), limit: 10).map(\.serial) == ["GW-EID"])
                // Migration 5 filled the old slot's highest sequence: a new event repeating it is a rollback.
                #expect(try await store.field(
                    event(imei: TestID.imei(76), iccid: TestID.iccid(76), sequence: first.sequence), "GW-OLD")
                    == [.stateRolledBack])
            } catch {
                await store.close()
                throw error
            }
            await store.close()
        } catch {
            await cleanup()
            throw error
        }
        await cleanup()
    }
}
