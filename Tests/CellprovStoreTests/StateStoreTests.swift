import CellprovCore
import CellprovStore
import CellprovTestKit
import CellprovTestSupport
import Foundation
import GRDB
import Testing

#if canImport(Glibc)
import Glibc
#endif

// The state store: commits, the outbox and its views (Store), and its own salvage of a damaged database and detection
// of a lost one (Damage). Everything runs against real SQLite files in temporary directories; GRDB, another
// SQLite library, writes the files the salvage must read.

@Suite struct StateStoreTests {
    // MARK: Store

    @Suite struct Store {
        @Test func enrolmentThenSameReadThenSIMSwap() throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)

            let first = try store.commit(fixtureObservation())
            #expect(first.map(\.type) == [.enrolled])
            #expect(try store.outboxDepth() == 1)
            let pending = try store.pendingEvents()
            #expect(pending.count == 1)
            #expect(pending.first?.state == .pending)
            #expect(pending.first?.attempts == 0)
            // The stored event is the committed one (its time kept to the second, as in the payload).
            let stored = try #require(pending.first?.event)
            let committed = try #require(first.first)
            #expect(stored.id == committed.id)
            #expect(stored.sequence == 1)
            #expect(stored.module == committed.module)
            #expect(abs(stored.occurredAt.timeIntervalSince(committed.occurredAt)) < 1)
            #expect(pending.first?.event.identity == IdentitySnapshot(imei: FixtureValues.imeiA, imsi: FixtureValues.imsi1, iccid: FixtureValues.iccid1))

            // The same read again: nothing new.
            #expect(try store.commit(fixtureObservation()).isEmpty)
            #expect(try store.outboxDepth() == 1)
            #expect(try store.events().count == 1)

            // Another SIM in the same module.
            let swap = try store.commit(fixtureObservation(imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2))
            #expect(swap.map(\.type) == [.simChanged])
            let changed = try #require(swap.first)
            #expect(changed.previous == IdentitySnapshot(imei: FixtureValues.imeiA, imsi: FixtureValues.imsi1, iccid: FixtureValues.iccid1))
            #expect(changed.identity == IdentitySnapshot(imei: FixtureValues.imeiA, imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2))
            #expect(try store.outboxDepth() == 2)

            // Outbox oldest first, history newest first, sequences in order.
            let outbox = try store.pendingEvents()
            #expect(outbox.map(\.event.type) == [.enrolled, .simChanged])
            #expect(outbox.map(\.event.sequence) == [1, 2])
            #expect(outbox[0].position < outbox[1].position)
            #expect(try store.events().map(\.event.type) == [.simChanged, .enrolled])
            #expect(try store.events(limit: 1).map(\.event.id) == [changed.id])
            #expect(try store.slotRecords().map(\.sequence) == [2])
        }

        @Test func deliveryBookkeeping() throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let a = try #require(try store.commit(fixtureObservation(slot: FixtureValues.slotA)).first)
            let b = try #require(
                try store.commit(fixtureObservation(slot: FixtureValues.slotB, usbSerial: "SER-2", imei: FixtureValues.imeiB)).first)
            let c = try #require(try store.commit(fixtureObservation(slot: FixtureValues.slotA, imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2)).first)
            #expect(try store.outboxDepth() == 3)
            #expect(try store.lastDeliveryError() == nil)

            try store.markAttemptFailed(a.id, error: "HTTP 503")
            try store.markAttemptFailed(a.id, error: "connection refused")
            #expect(try store.outboxDepth() == 3)
            var stored = try #require(try store.pendingEvents().first)
            #expect(stored.event.id == a.id)
            #expect(stored.state == .pending)
            #expect(stored.attempts == 2)
            #expect(stored.lastError == "connection refused")
            #expect(try store.lastDeliveryError() == "connection refused")

            let deliveredAt = Date(timeIntervalSince1970: 1_750_000_000)
            try store.markDelivered(a.id, at: deliveredAt)
            #expect(try store.outboxDepth() == 2)
            #expect(try store.lastDeliveryError() == nil)
            stored = try #require(try store.events().first { $0.event.id == a.id })
            #expect(stored.state == .delivered)
            #expect(stored.attempts == 3)
            #expect(stored.lastError == nil)
            #expect(stored.deliveredAt == deliveredAt)

            try store.markRejected(b.id, reason: "HTTP 400: bad slot")
            #expect(try store.outboxDepth() == 1)
            stored = try #require(try store.events().first { $0.event.id == b.id })
            #expect(stored.state == .rejected)
            #expect(stored.lastError == "HTTP 400: bad slot")
            #expect(stored.deliveredAt == nil)
            #expect(try store.lastDeliveryError() == "HTTP 400: bad slot")
            #expect(try store.pendingEvents().map(\.event.id) == [c.id])
        }

        @Test func reopenKeepsEverything() throws {
            let dir = try TemporaryDirectory()
            var ids: [UUID] = []
            do {
                let store = try StateStore(directory: dir.path)
                ids += try store.commit(fixtureObservation()).map(\.id)
                ids += try store.commit(fixtureObservation(imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2)).map(\.id)
                try store.markDelivered(ids[0])
                try store.markAttemptFailed(ids[1], error: "HTTP 502")
            }
            #expect(ids.count == 2)
            let store = try StateStore(directory: dir.path)
            let events = try store.events()
            #expect(events.map(\.event.id) == ids.reversed())
            #expect(events.map(\.state) == [.pending, .delivered])
            #expect(events.first?.attempts == 1)
            #expect(events.first?.lastError == "HTTP 502")
            #expect(try store.outboxDepth() == 1)
            #expect(try store.lastDeliveryError() == "HTTP 502")
            let record = try #require(try store.slotRecords().first)
            #expect(record.identity == IdentitySnapshot(imei: FixtureValues.imeiA, imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2))
            #expect(record.sequence == 2)
            // The record is remembered: the same read produces nothing; the next change continues the sequence.
            #expect(try store.commit(fixtureObservation(imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2)).isEmpty)
            let back = try store.commit(fixtureObservation())
            #expect(back.map(\.sequence) == [3])
        }

        @Test func corruptDatabaseIsMovedAside() throws {
            let dir = try TemporaryDirectory()
            do {
                let store = try StateStore(directory: dir.path)
                try store.commit(fixtureObservation())
            }
            // Garbage over the database (and no WAL to recover from).
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: dir.file("state.db" + suffix)) }
            var garbage = [UInt8](repeating: 0, count: 8192)
            for i in garbage.indices { garbage[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
            try Data(garbage).write(to: URL(fileURLWithPath: dir.file("state.db")))

            var reports: [String] = []
            let store = try StateStore(directory: dir.path, onIncident: { reports.append($0.message) })
            #expect(reports.count == 1)
            let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            let aside = files.filter { $0.hasPrefix("state.db.corrupt-") && !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") }
            #expect(aside.count == 1)
            if let name = aside.first {
                #expect(reports.first?.contains(name) == true)
                #expect(FileManager.default.contents(atPath: dir.file(name)) == Data(garbage))
            }
            // The new store is empty and works.
            #expect(try store.events().isEmpty)
            #expect(try store.commit(fixtureObservation()).map(\.type) == [.enrolled])
            #expect(try store.outboxDepth() == 1)
        }

        @Test func healthyDatabaseIsNotReportedCorrupt() throws {
            let dir = try TemporaryDirectory()
            do { _ = try StateStore(directory: dir.path) }
            var reports: [String] = []
            _ = try StateStore(directory: dir.path, onIncident: { reports.append($0.message) })
            #expect(reports.isEmpty)
            let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(!files.contains { $0.contains("corrupt") })
        }

        @Test func readOnlySeesWhatTheWriterCommitted() throws {
            let dir = try TemporaryDirectory()
            #expect(throws: StoreError.self) { try StateStore(readOnlyDirectory: dir.path) }
            let writer = try StateStore(directory: dir.path)
            let first = try writer.commit(fixtureObservation())
            let reader = try StateStore(readOnlyDirectory: dir.path)
            #expect(try reader.events().map(\.event.id) == first.map(\.id))
            #expect(try reader.outboxDepth() == 1)
            // Later commits and outbox changes are seen by the open reader.
            let second = try writer.commit(fixtureObservation(imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2))
            try writer.markDelivered(first[0].id)
            #expect(try reader.events().map(\.event.id) == (second + first).map(\.id))
            #expect(try reader.outboxDepth() == 1)
            #expect(try reader.slotRecords().first?.sequence == 2)
        }
    }
}

// MARK: - Damaged and lost state (the damages: DatabaseDamage, CellprovTestKit)

extension StateStoreTests {
    /// The store's own salvage of a damaged database (``SQLiteSalvage``) and its detection of a lost one
    /// (``StateMarker``), on real SQLite files.
    @Suite struct Damage {
        /// Two slots and five events: delivered, rejected, and three waiting (one with a payload long enough to
        /// need overflow pages). Returns the history oldest first.
        static func populate(_ store: StateStore) throws -> [StoredEvent] {
            let a = try store.commit(fixtureObservation(slot: FixtureValues.slotA))
            var long = fixtureObservation(slot: FixtureValues.slotB, usbSerial: "SER-2", imei: FixtureValues.imeiB)
            long.report.model = String(repeating: "M", count: 6000)  // more than a page: an overflow chain
            let b = try store.commit(long)
            let c = try store.commit(fixtureObservation(slot: FixtureValues.slotA, imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2))
            let d = try store.commit(fixtureObservation(slot: FixtureValues.slotA))
            let e = try store.commit(
                fixtureObservation(
                    slot: FixtureValues.slotB, usbSerial: "SER-2", imei: FixtureValues.imeiB, imsi: FixtureValues.imsi2,
                    iccid: FixtureValues.iccid2))
            let all = a + b + c + d + e
            #expect(all.map(\.type) == [.enrolled, .enrolled, .simChanged, .simChanged, .simChanged])
            try store.markDelivered(all[0].id)
            try store.markRejected(all[1].id, reason: "HTTP 422: bad")
            try store.markAttemptFailed(all[2].id, error: "HTTP 503")
            // The live view, written at every read, grows after the events: what a truncation cuts first.
            for i in 0..<80 {
                try store.recordRead(
                    slot: "platform-slot-\(i)", port: "/dev/ttyUSB\(i)", valid: false,
                    problems: Array(repeating: "no_response", count: 20), at: Date())
            }
            return try store.events().reversed()
        }

        /// Populates a store in `dir`, closes it (or, for `.directory`, copies its WAL first, as a kill -9 would
        /// leave it) and damages it.
        fileprivate static func populateAndDamage(_ dir: TemporaryDirectory, _ damage: DatabaseDamage) throws
            -> ([StoredEvent], [SlotRecord])
        {
            let db = dir.file("state.db")
            var walCopy: String?
            let events: [StoredEvent]
            let records: [SlotRecord]
            do {
                let store = try StateStore(directory: dir.path)
                events = try populate(store)
                records = try store.slotRecords()
                if damage == .directory {
                    walCopy = dir.file("wal-copy")
                    try FileManager.default.copyItem(atPath: db + "-wal", toPath: walCopy!)
                }
            }
            try damage.apply(to: db, walCopy: walCopy)
            return (events, records)
        }

        @Test(arguments: DatabaseDamage.allCases)
        func damagedDatabaseIsSalvagedWithItsWaitingEvents(damage: DatabaseDamage) throws {
            let dir = try TemporaryDirectory()
            let (before, records) = try Self.populateAndDamage(dir, damage)
            var incidents: [StoreIncident] = []
            let store = try StateStore(directory: dir.path, onIncident: { incidents.append($0) })

            // One critical report with the counts; the damaged files kept aside.
            #expect(incidents.count == 1)
            let incident = try #require(incidents.first)
            #expect(incident.kind == .damaged)
            #expect(incident.eventsSalvaged == 5, "\(incident.message)")
            #expect(incident.pendingSalvaged == 3)
            #expect(incident.slotsSalvaged == 2)
            #expect(incident.eventsLost == 0)
            #expect(incident.message.contains("salvaged 5 event(s) (3 waiting"), "\(incident.message)")
            #expect(incident.message.contains("0 event(s) lost"))
            let kept = try #require(incident.keptAs)
            #expect(FileManager.default.fileExists(atPath: kept))
            for id in [FixtureValues.imeiA, FixtureValues.imeiB, FixtureValues.imsi1, FixtureValues.imsi2, FixtureValues.iccid1, FixtureValues.iccid2] {
                #expect(!incident.message.contains(id))
            }

            // Every row back, as it was: ids, sequences, positions, delivery states, attempts, payloads.
            let after = try store.events().reversed().map { $0 }
            #expect(after.map(\.event.id) == before.map(\.event.id))
            #expect(after.map(\.event.sequence) == before.map(\.event.sequence))
            #expect(after.map(\.position) == before.map(\.position))
            #expect(after.map(\.state) == before.map(\.state))
            #expect(after.map(\.attempts) == before.map(\.attempts))
            #expect(after.map(\.event) == before.map(\.event))
            #expect(try store.pendingEvents().map(\.event.id) == before.filter { $0.state == .pending }.map(\.event.id))
            #expect(try store.slotRecords() == records)

            // The modules are not enrolled again; the next change continues the slot's numbering and tells the
            // backend, once per slot.
            #expect(try store.commit(fixtureObservation(slot: FixtureValues.slotA)).isEmpty)
            let next = try store.commit(fixtureObservation(slot: FixtureValues.slotA, imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2))
            #expect(next.map(\.type) == [.simChanged])
            #expect(next.first?.sequence == 4)
            let loss = try #require(next.first?.stateLost)
            #expect(loss.reason == .databaseDamaged)
            #expect(loss.eventsSalvaged == 5)
            #expect(loss.eventsLost == 0)
            #expect(loss.lastSequence == 3)
            #expect(try store.pendingEvents().last?.position == 6)
            let again = try store.commit(fixtureObservation(slot: FixtureValues.slotA))
            #expect(again.first?.stateLost == nil)
            // The flag is stored with the event (and so reaches the payload even after a restart).
            let stored = try #require(try store.events().first { $0.event.id == next.first?.id }?.event.stateLost)
            #expect(stored.reason == loss.reason && stored.lastSequence == 3 && stored.eventsSalvaged == 5)
        }

        /// Truncated inside the event table: nothing of it is readable; the marker says how much was lost, and
        /// the numbering continues after the last known sequence.
        @Test func truncatedThroughTheEventsCountsThemLost() throws {
            let dir = try TemporaryDirectory()
            do {
                let store = try StateStore(directory: dir.path)
                _ = try Self.populate(store)
            }
            #expect(truncate(dir.file("state.db"), 4096 + 2048) == 0)
            var incidents: [StoreIncident] = []
            let store = try StateStore(directory: dir.path, onIncident: { incidents.append($0) })
            let incident = try #require(incidents.first)
            #expect(incident.kind == .damaged)
            #expect(incident.eventsSalvaged == 0)
            #expect(incident.eventsLost == 5)
            let enrolled = try store.commit(fixtureObservation(slot: FixtureValues.slotA))
            #expect(enrolled.map(\.type) == [.enrolled])
            #expect(enrolled.first?.sequence == 4, "slot A's numbering continues after #3")
            #expect(enrolled.first?.stateLost?.lastSequence == 3)
            #expect(enrolled.first?.stateLost?.eventsLost == 5)
        }

        enum Loss: String, CaseIterable, Sendable { case zeroLength, missing }

        @Test(arguments: Loss.allCases)
        func emptiedOrMissingDatabaseIsAStateLoss(loss: Loss) throws {
            let dir = try TemporaryDirectory()
            do {
                let store = try StateStore(directory: dir.path)
                _ = try Self.populate(store)
            }
            let db = dir.file("state.db")
            switch loss {
            case .zeroLength: #expect(truncate(db, 0) == 0)
            case .missing: try FileManager.default.removeItem(atPath: db)
            }
            var incidents: [StoreIncident] = []
            let store = try StateStore(directory: dir.path, onIncident: { incidents.append($0) })
            let incident = try #require(incidents.first)
            #expect(incident.kind == .lost)
            #expect(incident.reason == (loss == .zeroLength ? .databaseEmpty : .databaseMissing))
            #expect(incident.eventsLost == 5)
            #expect(incident.message.contains("lost"))
            #expect(try store.events().isEmpty)

            let a = try store.commit(fixtureObservation(slot: FixtureValues.slotA))
            #expect(a.map(\.type) == [.enrolled])
            #expect(a.first?.sequence == 4)
            #expect(a.first?.stateLost?.reason == incident.reason)
            #expect(a.first?.stateLost?.lastSequence == 3)
            let b = try store.commit(fixtureObservation(slot: FixtureValues.slotB, usbSerial: "SER-2", imei: FixtureValues.imeiB))
            #expect(b.first?.sequence == 3)
            #expect(b.first?.stateLost?.lastSequence == 2)
            #expect(try store.lastStateLoss()?.reason == incident.reason)

            // Reopened: no second incident, the loss is not announced again.
            var later: [StoreIncident] = []
            let reopened = try StateStore(directory: dir.path, onIncident: { later.append($0) })
            #expect(later.isEmpty)
            let c = try reopened.commit(fixtureObservation(slot: FixtureValues.slotA, imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2))
            #expect(c.first?.sequence == 5)
            #expect(c.first?.stateLost == nil)
        }

        /// A first start (no database, no marker) is not a loss; the marker then holds numbers, no identifiers.
        @Test func firstStartIsNotALossAndTheMarkerHoldsNoIdentifiers() throws {
            let dir = try TemporaryDirectory()
            var incidents: [StoreIncident] = []
            let store = try StateStore(directory: dir.path, onIncident: { incidents.append($0) })
            #expect(incidents.isEmpty)
            let events = try Self.populate(store)
            let marker = try String(contentsOfFile: dir.file("state.marker"), encoding: .utf8)
            #expect(marker.contains("\"last_position\":5"), "\(marker)")
            #expect(marker.contains(FixtureValues.slotA))
            for id in [FixtureValues.imeiA, FixtureValues.imeiB, FixtureValues.imsi1, FixtureValues.imsi2, FixtureValues.iccid1, FixtureValues.iccid2] {
                #expect(!marker.contains(id))
            }
            #expect(events.first?.event.stateLost == nil)
        }

        /// The reader decodes SQLite's record formats as SQLite wrote them.
        @Test func salvageReadsEveryValueKind() throws {
            let dir = try TemporaryDirectory()
            let path = dir.file("values.db")
            do {
                let queue = try DatabaseQueue(path: path)
                try queue.write { db in
                    try db.execute(sql: "CREATE TABLE t (a, b, c, d, e, f)")
                    try db.execute(
                        sql: "INSERT INTO t VALUES (NULL, -5, 1099511627776, 2.5, 'héllo', x'00ff')")
                    try db.execute(sql: "INSERT INTO t VALUES (0, 1, -129, -0.25, '', ?)", arguments: [
                        String(repeating: "x", count: 10000)
                    ])
                }
            }
            let rows = SQLiteSalvage.read(databasePath: path, walPath: path + "-wal").rows
                .filter { $0.values.count == 6 }
            #expect(rows.count == 2)
            #expect(
                rows.first?.values == [
                    .null, .integer(-5), .integer(1_099_511_627_776), .real(2.5), .text("héllo"), .blob([0, 255]),
                ])
            #expect(
                rows.last?.values == [
                    .integer(0), .integer(1), .integer(-129), .real(-0.25), .text(""),
                    .text(String(repeating: "x", count: 10000)),
                ])
        }

        /// A damaged file is untrusted input: random byte damage and cuts never crash the reader, and whatever it
        /// returns as an event is one of the events committed (never a half-parsed row).
        @Test func randomDamageNeverCrashesTheReader() throws {
            let dir = try TemporaryDirectory()
            var committed: Set<UUID> = []
            do {
                let store = try StateStore(directory: dir.path)
                committed = Set(try Self.populate(store).map(\.event.id))
            }
            let original = try Data(contentsOf: URL(fileURLWithPath: dir.file("state.db")))
            var generator = SystemRandomNumberGenerator()
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            var recognised = 0
            for round in 0..<60 {
                var bytes = [UInt8](original)
                for _ in 0..<Int.random(in: 1...200, using: &generator) {
                    let at = Int.random(in: 0..<bytes.count, using: &generator)
                    bytes[at] = UInt8.random(in: 0...255, using: &generator)
                }
                if round % 3 == 0 { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))) }
                let path = dir.file("fuzz-\(round).db")
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                let rows = SQLiteSalvage.read(databasePath: path, walPath: path + "-wal").rows
                for row in rows where row.values.count == 11 {
                    // What the store would take: a payload that decodes and agrees with the row's id.
                    if let id = row.values[1].text.flatMap(UUID.init(uuidString:)),
                        let payload = row.values[6].text,
                        let event = try? decoder.decode(IdentityEvent.self, from: Data(payload.utf8)), event.id == id
                    {
                        recognised += 1
                        #expect(committed.contains(id), "an event that was never committed")
                    }
                }
                try FileManager.default.removeItem(atPath: path)
            }
            #expect(recognised > 0, "the check never ran")
        }

        /// The WAL is taken only up to its last valid commit: a frame whose checksum does not match ends it, so
        /// the transactions after it (and a half-written one) are not taken for data.
        @Test func walFramesAfterABadChecksumAreIgnored() throws {
            let dir = try TemporaryDirectory()
            let db = dir.file("state.db")
            let copy = dir.file("wal-copy")
            do {
                let store = try StateStore(directory: dir.path)
                _ = try Self.populate(store)
                try FileManager.default.copyItem(atPath: db + "-wal", toPath: copy)
            }
            func live(_ wal: String) -> (events: Int, live: Int) {
                let rows = SQLiteSalvage.read(databasePath: dir.file("nothing"), walPath: wal).rows
                let events = Set(rows.filter { $0.values.count == 11 }.map(\.rowid)).count
                let live = Set(
                    rows.filter { $0.values.count == 6 }.compactMap { $0.values[0].text }
                        .filter { $0.hasPrefix("platform-slot-") }
                ).count
                return (events, live)
            }
            let intact = live(copy)
            #expect(intact.events == 5)
            #expect(intact.live == 80)
            // One byte of the last frame's page changed: the last commit (the 80th live row) is no longer valid.
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: copy)))
            bytes[bytes.count - 100] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: copy))
            let tampered = live(copy)
            #expect(tampered.events == 5)
            #expect(tampered.live < 80, "frames after a bad checksum were taken")
        }

        @Test func requeuePutsARejectedEventBack() throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let event = try #require(try store.commit(fixtureObservation()).first)
            #expect(try StateStore.requeue(directory: dir.path, id: event.id) == false, "not rejected")
            try store.markRejected(event.id, reason: "HTTP 400: bad")
            #expect(try StateStore.requeue(directory: dir.path, id: event.id))
            #expect(try store.pendingEvents().map(\.event.id) == [event.id])
            #expect(try StateStore.requeue(directory: dir.path, id: UUID()) == false)
        }
    }
}

extension DatabaseDamage: CustomTestStringConvertible {
    public var testDescription: String { rawValue }
}
