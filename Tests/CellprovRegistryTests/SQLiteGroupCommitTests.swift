import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
@testable import CellprovRegistryStore
import Dispatch
import Foundation
import GRDB
import Testing

// Group commit on SQLite (issue 18): concurrent ingests are written in one transaction, each event in its own
// savepoint, and each answered after the commit that holds it. These tests hold the writer connection (a job on its
// queue that waits) while they submit events one after another, so that the events form one batch in a known order.

@Suite struct SQLiteGroupCommitTests {
    /// A fresh SQLite store (the concrete type: the tests look at its batches).
    static func withSQLite(_ body: (SQLiteRegistryStore, String) async throws -> Void) async throws {
        try await withStore(.sqlite) { store, url in
            try await body(try #require(store as? SQLiteRegistryStore), url)
        }
    }

    /// Submits `ingests` in this order while the writer is held (each is queued before the next starts), then lets
    /// the writer go: they are one batch. Returns each one's outcome or error, in order.
    static func oneBatch(
        _ store: SQLiteRegistryStore, _ ingests: [@Sendable () async throws -> IngestOutcome]
    ) async throws -> [Result<IngestOutcome, any Error>] {
        let gate = DispatchSemaphore(value: 0)
        store.pool.asyncWriteWithoutTransaction { _ in gate.wait() }
        var released = false
        defer { if !released { gate.signal() } }
        let queued = store.ingestQueue.pendingCount
        var tasks = [Task<IngestOutcome, any Error>]()
        for (i, ingest) in ingests.enumerated() {
            tasks.append(Task { try await ingest() })
            try await waitUntil { store.ingestQueue.pendingCount == queued + i + 1 }
        }
        gate.signal()
        released = true
        var results = [Result<IngestOutcome, any Error>]()
        for task in tasks { results.append(await task.result) }
        return results
    }

    static func waitUntil(_ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                throw RegistryStoreError("the ingests were not queued within 10 s")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    static func field(_ store: some RegistryStore, _ e: EnrollmentRequest, _ serial: String, at: Date = t0)
        -> @Sendable () async throws -> IngestOutcome
    {
        { try await store.ingest(e, serial: serial, origin: .device, references: [], receivedAt: at) }
    }

    static func isStored(_ r: Result<IngestOutcome, any Error>) -> Bool {
        if case .success(.stored) = r { return true }
        return false
    }

    @Test func failingEventFailsAloneAndTheOthersOfItsBatchAreStored() async throws {
        try await Self.withSQLite { store, url in
            // A schema guard that refuses one unit's row: the event row is written first, so its savepoint has to
            // take it back.
            try await StoreTestSQL.execute(
                url,
                """
                CREATE TRIGGER test_refuse BEFORE INSERT ON units WHEN NEW.serial = 'GW-GC-FAIL'
                BEGIN SELECT RAISE(ABORT, 'refused by the test'); END
                """)
            let a = event(imei: TestID.imei(501), iccid: TestID.iccid(501))
            let bad = event(imei: TestID.imei(502), iccid: TestID.iccid(502))
            let b = event(imei: TestID.imei(503), iccid: TestID.iccid(503))
            let before = store.ingestQueue.stats
            let results = try await Self.oneBatch(
                store,
                [
                    Self.field(store, a, "GW-GC-A"), Self.field(store, bad, "GW-GC-FAIL"),
                    Self.field(store, b, "GW-GC-B"),
                ])
            #expect(store.ingestQueue.stats.batches == before.batches + 1)
            #expect(store.ingestQueue.stats.largest >= 3)
            #expect(Self.isStored(results[0]))
            #expect(Self.isStored(results[2]))
            guard case .failure(let error) = results[1] else {
                Issue.record("the refused event was answered \(results[1])")
                return
            }
            #expect("\(error)".contains("refused by the test"))
            #expect(try await store.unit(serial: "GW-GC-A")?.timeline.map(\.eventID) == [a.eventID])
            #expect(try await store.unit(serial: "GW-GC-B")?.timeline.map(\.eventID) == [b.eventID])
            #expect(try await store.unit(serial: "GW-GC-FAIL") == nil)

            // Nothing of it was left behind: once the guard is gone, the same event is stored, not a duplicate.
            try await StoreTestSQL.execute(url, "DROP TRIGGER test_refuse")
            #expect(try await store.field(bad, "GW-GC-FAIL") == [])
            #expect(try await store.unit(serial: "GW-GC-FAIL")?.timeline.map(\.eventID) == [bad.eventID])
        }
    }

    @Test func aTransactionRolledBackFailsTheWholeBatch() async throws {
        try await Self.withSQLite { store, url in
            // RAISE(ROLLBACK) ends the transaction itself, as SQLite does on a full disk or an I/O error: the events
            // before it in the batch are gone with it, so none of the batch may be answered as stored.
            try await StoreTestSQL.execute(
                url,
                """
                CREATE TRIGGER test_rollback BEFORE INSERT ON units WHEN NEW.serial = 'GW-GC-RB'
                BEGIN SELECT RAISE(ROLLBACK, 'rolled back by the test'); END
                """)
            let events = (0..<3).map { event(imei: TestID.imei(510 + $0), iccid: TestID.iccid(510 + $0)) }
            let serials = ["GW-GC-RA", "GW-GC-RB", "GW-GC-RC"]
            let results = try await Self.oneBatch(
                store, zip(events, serials).map { Self.field(store, $0, $1) })
            for r in results {
                guard case .failure = r else {
                    Issue.record("an event of a rolled-back batch was answered \(r)")
                    continue
                }
            }
            for serial in serials { #expect(try await store.unit(serial: serial) == nil) }

            // The writer is usable again and the events can be sent again.
            try await StoreTestSQL.execute(url, "DROP TRIGGER test_rollback")
            for (e, serial) in zip(events, serials) { #expect(try await store.field(e, serial) == []) }
        }
    }

    @Test func theSameEventTwiceInOneBatchIsStoredOnce() async throws {
        try await Self.withSQLite { store, _ in
            let e = event(imei: TestID.imei(520), iccid: TestID.iccid(520))
            let other = event(imei: TestID.imei(521), iccid: TestID.iccid(521))
            let results = try await Self.oneBatch(
                store,
                [
                    Self.field(store, e, "GW-GC-DUP"), Self.field(store, other, "GW-GC-DUP2"),
                    Self.field(store, e, "GW-GC-DUP", at: t0.addingTimeInterval(1)),
                ])
            #expect(Self.isStored(results[0]))
            #expect(Self.isStored(results[1]))
            guard case .success(.duplicate) = results[2] else {
                Issue.record("the second copy was answered \(results[2])")
                return
            }
            #expect(try await store.unit(serial: "GW-GC-DUP")?.timeline.map(\.eventID) == [e.eventID])
        }
    }

    @Test func aLaterEventOfTheBatchSeesTheEarlierOnes() async throws {
        try await Self.withSQLite { store, _ in
            // Two units reporting one IMEI in the same batch: the second one's rules see the first one's slot.
            let imei = TestID.imei(530)
            let results = try await Self.oneBatch(
                store,
                [
                    Self.field(store, event(imei: imei, iccid: TestID.iccid(530)), "GW-GC-IMEI1"),
                    Self.field(store, event(imei: imei, iccid: TestID.iccid(531)), "GW-GC-IMEI2"),
                ])
            guard case .success(.stored(let first)) = results[0], case .success(.stored(let second)) = results[1] else {
                Issue.record("not both stored: \(results)")
                return
            }
            #expect(first.map(\.flag.kind) == [])
            #expect(second.map(\.flag.kind) == [.imeiOnTwoUnits])
        }
    }

    @Test func manyConcurrentIngestsAreEachStoredOnce() async throws {
        try await Self.withSQLite { store, _ in
            let units = 24
            let perUnit = 16
            struct Sent: Sendable {
                var serial: String
                var event: EnrollmentRequest
                var received: Date
            }
            var sent = [Sent]()
            for u in 0..<units {
                for k in 0..<perUnit {
                    let e = event(
                        "sim_changed", slot: "usb-1", imei: TestID.imei(600 + u), imsi: TestID.imsi(1000 * u + k),
                        iccid: TestID.iccid(1000 * u + k), sequence: k + 1, at: t0.addingTimeInterval(Double(k) * 60))
                    let received = t0.addingTimeInterval(Double(k) * 60 + 1)
                    sent.append(Sent(serial: "GW-GC-\(u)", event: e, received: received))
                }
            }
            // Every event twice (a device re-sending after a lost answer), all at once, in a shuffled order, the
            // writer held until they are all queued: several full batches.
            let gate = DispatchSemaphore(value: 0)
            store.pool.asyncWriteWithoutTransaction { _ in gate.wait() }
            let before = store.ingestQueue.stats
            let attempts = (sent + sent).shuffled()
            let outcomes = try await withThrowingTaskGroup(of: (String, Bool).self) { group in
                for s in attempts {
                    group.addTask {
                        let o = try await store.ingest(
                            s.event, serial: s.serial, origin: .device, references: [], receivedAt: s.received)
                        if case .stored = o { return (s.event.eventID, true) }
                        return (s.event.eventID, false)
                    }
                }
                do {
                    try await Self.waitUntil { store.ingestQueue.pendingCount == attempts.count }
                } catch {
                    gate.signal()
                    throw error
                }
                gate.signal()
                var stored = [String: Int]()
                var duplicates = [String: Int]()
                for try await (id, isStored) in group {
                    if isStored { stored[id, default: 0] += 1 } else { duplicates[id, default: 0] += 1 }
                }
                return (stored, duplicates)
            }
            #expect(outcomes.0.count == sent.count)
            #expect(outcomes.0.values.allSatisfy { $0 == 1 })
            #expect(outcomes.1.count == sent.count)
            #expect(outcomes.1.values.allSatisfy { $0 == 1 })
            let stats = store.ingestQueue.stats
            #expect(stats.events - before.events == attempts.count)
            #expect(stats.largest == store.ingestQueue.maxBatch)
            let maxBatch = store.ingestQueue.maxBatch
            #expect(stats.batches - before.batches == (attempts.count + maxBatch - 1) / maxBatch)

            // Each unit: its events once, and the slot as its newest event left it, whatever the order of arrival.
            for u in 0..<units {
                let serial = "GW-GC-\(u)"
                let mine = sent.filter { $0.serial == serial }
                let unit = try #require(try await store.unit(serial: serial))
                #expect(unit.timeline.map(\.eventID) == mine.map(\.event.eventID))
                #expect(unit.summary.slots.count == 1)
                #expect(unit.summary.slots.first?.identity.iccid == mine.last?.event.identity.iccid)
                #expect(unit.summary.slots.first?.identity.imei == TestID.imei(600 + u))
                #expect(unit.summary.lastSeen == mine.last?.received)
                #expect(unit.summary.firstSeen == mine.first?.received)
            }
        }
    }

    @Test func theDeviceTokenIsCheckedForEachEventOfTheBatch() async throws {
        try await Self.withSQLite { store, _ in
            try await store.putDeviceToken(serial: "GW-GC-T1", tokenHash: Tokens.hash("cpd_gc_t1"), at: t0)
            try await store.putDeviceToken(serial: "GW-GC-T2", tokenHash: Tokens.hash("cpd_gc_t2_old"), at: t0)
            try await store.putDeviceToken(serial: "GW-GC-T2", tokenHash: Tokens.hash("cpd_gc_t2"), at: t0)
            func withToken(_ e: EnrollmentRequest, _ serial: String, _ token: String?)
                -> @Sendable () async throws -> IngestOutcome
            {
                let options = IngestOptions(deviceTokenHash: token.map(Tokens.hash))
                return {
                    try await store.ingest(
                        e, serial: serial, origin: .device, references: [], receivedAt: t0, options: options)
                }
            }
            let events = (0..<5).map { event(imei: TestID.imei(540 + $0), iccid: TestID.iccid(540 + $0)) }
            let results = try await Self.oneBatch(
                store,
                [
                    withToken(events[0], "GW-GC-T1", "cpd_gc_t1"),  // its own token
                    withToken(events[1], "GW-GC-T1", "cpd_gc_t2"),  // another device's token
                    withToken(events[2], "GW-GC-T2", "cpd_gc_t2_old"),  // revoked by the new one
                    withToken(events[3], "GW-GC-T2", "cpd_gc_t2"),  // its own token
                    withToken(events[4], "GW-GC-T2", nil),  // authorised by the caller
                ])
            #expect(Self.isStored(results[0]))
            for r in [results[1], results[2]] {
                guard case .success(.credentialRefused) = r else {
                    Issue.record("a refused token was answered \(r)")
                    continue
                }
            }
            #expect(Self.isStored(results[3]))
            #expect(Self.isStored(results[4]))
            #expect(try await store.unit(serial: "GW-GC-T1")?.timeline.map(\.eventID) == [events[0].eventID])
            #expect(
                try await store.unit(serial: "GW-GC-T2")?.timeline.map(\.eventID).sorted()
                    == [events[3].eventID, events[4].eventID].sorted())
        }
    }

    @Test func aCallerCancelledWhileWaitingTakesItsEventOut() async throws {
        try await Self.withSQLite { store, _ in
            let gate = DispatchSemaphore(value: 0)
            store.pool.asyncWriteWithoutTransaction { _ in gate.wait() }
            let e = event(imei: TestID.imei(550), iccid: TestID.iccid(550))
            let kept = event(imei: TestID.imei(551), iccid: TestID.iccid(551))
            let waiting = Task { try await Self.field(store, e, "GW-GC-CANCEL")() }
            let other = Task { try await Self.field(store, kept, "GW-GC-KEPT")() }
            do {
                try await Self.waitUntil { store.ingestQueue.pendingCount == 2 }
            } catch {
                gate.signal()
                throw error
            }
            waiting.cancel()
            let out = await waiting.result
            #expect(store.ingestQueue.pendingCount == 1)
            gate.signal()
            guard case .failure(let error) = out, error is CancellationError else {
                Issue.record("a cancelled ingest was answered \(out)")
                return
            }
            #expect(Self.isStored(await other.result))
            #expect(try await store.unit(serial: "GW-GC-CANCEL") == nil)
        }
    }

    @Test func theRulesReadTheUnitsManufacturingRecordsThroughTheirIndex() async throws {
        try await Self.withSQLite { store, _ in
            // Without `events_factory` this read went through `events_serial` and read every event of the unit.
            let plan = try await store.pool.read { db in
                try Row.fetchAll(
                    db,
                    sql: """
                        EXPLAIN QUERY PLAN SELECT DISTINCT imei FROM events WHERE serial = ? AND origin = 'factory'
                            AND imei IS NOT NULL AND event_id <> ?
                        """, arguments: ["GW-1", "x"]
                ).map { $0["detail"] as String }
            }
            #expect(plan.contains { $0.contains("events_factory") }, "\(plan)")
        }
    }

    @Test func theAffectedListByRevisionReadsItsIndex() async throws {
        try await Self.withSQLite { store, _ in
            try await StoreAffectedTests.fleet(store)
            let filter = ModuleFilter(revision: .exact(StoreAffectedTests.advisory))
            let (condition, values) = StoreAffected.condition(filter, column: { "s.\($0)" }, placeholder: { _ in "?" })
            let sql = "EXPLAIN QUERY PLAN " + StoreAffected.serialsSQL(filter, condition, limit: "10", offset: "0")
            let arguments = StatementArguments(values.map { v -> (any DatabaseValueConvertible)? in
                switch v {
                case .text(let s): return s
                case .integer(let n): return n
                }
            })
            let plan = try await store.pool.read { db in
                try Row.fetchAll(db, sql: sql, arguments: arguments).map { $0["detail"] as String }
            }
            #expect(plan.contains { $0.contains("slots_revision") }, "\(plan)")
            // The module's names set apart from the upsert still follow an update, and only a current event's.
            #expect(try await StoreAffectedTests.serials(store, filter) == ["GW-1", "GW-4", "GW-7"])
        }
    }

    @Test func theSummariesOfAPageAreThreeIndexedReadsInTheAskedOrder() async throws {
        try await Self.withSQLite { store, _ in
            try await StoreAffectedTests.fleet(store)
            // Two open flags and a resolved one for GW-1: the summary counts the open ones.
            try await store.pool.write { db in
                for (key, resolved) in [("a", nil), ("b", nil), ("c", Int64(1))] as [(String, Int64?)] {
                    try db.execute(
                        sql: """
                            INSERT INTO flags (kind, severity, serial, slot, summary, evidence, dedupe_key, raised_at,
                                resolved_at) VALUES ('imei_changed', 'critical', 'GW-1', 'usb-1', '', '{}', ?, 0, ?)
                            """, arguments: [key, resolved])
                }
            }
            let asked = ["GW-4", "GW-NONE", "GW-1", "GW-7", "GW-4"]
            let page = try await store.pool.read { db in try SQLiteRegistryStore.summaries(db, serials: asked) }
            // The asked order (a repeat kept), the unknown serial left out, each as the unit's own page shows it.
            #expect(page.map(\.serial) == ["GW-4", "GW-1", "GW-7", "GW-4"])
            #expect(page.first?.slots.map(\.slot) == ["usb-1", "usb-2"])
            #expect(page.map(\.openFlags) == [0, 2, 0, 0])
            for summary in page {
                #expect(try await store.unit(serial: summary.serial)?.summary == summary)
            }
            // Each read probes its table's index by serial: none walks a whole table.
            for sql in [SQLiteRegistryStore.summarySQL.units, SQLiteRegistryStore.summarySQL.slots,
                SQLiteRegistryStore.summarySQL.openFlags]
            {
                let plan = try await store.pool.read { db in
                    try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: ["[]"]).map { $0["detail"] as String }
                }
                #expect(!plan.contains { $0.hasPrefix("SCAN units") || $0.hasPrefix("SCAN slots") || $0.hasPrefix("SCAN flags") },
                    "\(plan)")
            }
        }
    }
}
