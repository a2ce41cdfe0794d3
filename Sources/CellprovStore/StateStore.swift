import CellprovCore
import Foundation
import GRDB
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Why the state store could not do what was asked. Descriptions carry paths and SQLite's reason, never identifiers.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Where an event stands in the outbox.
public enum DeliveryState: String, Sendable, Codable {
    /// Not yet acknowledged by the backend (or no backend configured: kept locally).
    case pending
    /// The backend answered 2xx or 409.
    case delivered
    /// The backend said the payload itself is wrong (400, 413, 422); kept with the reason, not retried unless an
    /// operator requeues it (`cellprov events --requeue ID`).
    case rejected
}

/// An event as the store keeps it: the event, and its delivery bookkeeping.
public struct StoredEvent: Sendable, Equatable {
    public var position: Int64
    public var event: IdentityEvent
    public var state: DeliveryState
    public var attempts: Int
    public var lastError: String?
    public var deliveredAt: Date?
}

/// Something the store found when it opened that the operator must hear of (logged at critical level by the
/// daemon). The message names paths and counts, never identifiers.
public struct StoreIncident: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The database could not be used: what was readable was salvaged, the file kept aside.
        case damaged
        /// The database was gone or empty while the marker said it had existed: nothing to salvage.
        case lost
    }

    public var kind: Kind
    public var reason: StateLossReason
    public var message: String
    /// Events copied into the new database, of which `pendingSalvaged` were waiting for delivery.
    public var eventsSalvaged = 0
    public var pendingSalvaged = 0
    /// Slot records copied into the new database.
    public var slotsSalvaged = 0
    /// Events the old database held (per the marker and its own counters) that could not be read.
    public var eventsLost = 0
    /// Where the damaged files were kept (nil: nothing to keep).
    public var keptAs: String?

    public var description: String { message }
}

/// The daemon's memory, in `<state_directory>/state.db` (SQLite in WAL mode, synchronous=FULL, through GRDB).
///
/// One write transaction takes an observation, runs the pure change detector against the slot's last record and
/// the other slots' records, and stores the new record together with the events it produced. A crash or a power
/// cut at any moment leaves either the old state or the new one, never a record without its events or the
/// reverse. The events table is both the slots' history and the outbox (state `pending`).
///
/// Beside it, `state.marker` (``StateMarker``) records that the database existed and how far its numbering had
/// got, so that a database that disappears or is emptied is noticed, and each slot's numbering continues.
public final class StateStore: Sendable {
    public static let fileName = "state.db"

    public let path: String
    public let directory: String
    private let pool: DatabasePool
    private let marker: Mutex<StateMarker>

    /// Opens (creating if needed) the store in `directory`.
    ///
    /// Never silently replaced: a file SQLite cannot use (truncated, overwritten, not a file) is first salvaged
    /// (every readable row, through ``SQLiteSalvage``; the events waiting for delivery first, with their
    /// event ids, sequences and positions, so the reporter delivers them oldest first), then moved aside
    /// (`state.db.corrupt-<time>`, with its -wal and -shm); a database that is missing or empty while the
    /// marker says it existed is a loss. Both are reported through `onIncident`, recorded, and announced to the
    /// backend by each slot's next event (``IdentityEvent/stateLost``); slot numbering continues after the last
    /// known sequence.
    public init(directory: String, now: Date = Date(), onIncident: (StoreIncident) -> Void = { _ in })
        throws(StoreError)
    {
        path = directory + "/" + Self.fileName
        self.directory = directory
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw StoreError("\(directory): cannot create the state directory (\(error.localizedDescription))")
        }
        let found = StateMarker.read(directory: directory)
        let known: StateMarker? = if case .marker(let m) = found { m } else { nil }
        let wal = Self.regularFileSize(path + "-wal") ?? 0 > 0

        var damage: String?
        var lost: StateLossReason?
        var opened: DatabasePool?
        switch Self.regularFileSize(path) {
        case .none where FileManager.default.fileExists(atPath: path):
            damage = "not a regular file"
        case .none where wal:
            damage = "the database file is missing, its write-ahead log is not"
        case .none:
            if found != .none {
                lost = .databaseMissing
                try? FileManager.default.removeItem(atPath: path + "-shm")  // describes a database that is gone
            }
        case .some(0) where wal:
            damage = "the database file is empty, its write-ahead log is not"
        case .some(0):
            lost = .databaseEmpty
            for suffix in ["", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        case .some:
            do { opened = try Self.open(path: path, readOnly: false) } catch { damage = Self.reason(error) }
        }

        var incident: StoreIncident?
        if damage == nil && lost == nil && opened == nil {  // a first start
            do { opened = try Self.open(path: path, readOnly: false) } catch {
                throw StoreError("\(path): cannot create the state database (\(Self.reason(error)))")
            }
        }
        if let damage {
            let (pool, report) = try Self.salvageAndReplace(path: path, why: damage, marker: known, now: now)
            opened = pool
            incident = report
        } else if let lost {
            let pool: DatabasePool
            do { pool = try Self.open(path: path, readOnly: false) } catch {
                throw StoreError("\(path): cannot create the state database (\(Self.reason(error)))")
            }
            let total = Int(known?.lastPosition ?? 0)
            do {
                try Self.recordLoss(pool, reason: lost, salvaged: 0, lost: total, floors: known?.slots ?? [:], at: now)
            } catch {
                throw StoreError("\(path): cannot record the state loss (\(Self.reason(error)))")
            }
            opened = pool
            let what = lost == .databaseMissing ? "is missing" : "is empty"
            let why = found == .none
                ? "(no \(StateMarker.fileName) beside it either: a crash while it was first created, or both lost)"
                : "although \(StateMarker.fileName) says it existed"
            let history =
                known.map { "\($0.lastPosition) event(s) of history and \($0.slots.count) slot record(s) lost" }
                ?? "how much history is lost cannot be told"
            incident = StoreIncident(
                kind: .lost, reason: lost,
                message: "\(path) \(what) \(why): the daemon's state was lost; \(history); a new database is "
                    + "started, slot numbering continues, and each slot's next event tells the backend (state_lost)",
                eventsLost: total)
        }
        guard let pool = opened else { throw StoreError("\(path): cannot open the state database") }
        self.pool = pool
        // The marker is an aid to detection, not a condition to run: a full disk must not keep the daemon from
        // starting (the next event commit writes it again).
        let current = (try? Self.currentMarker(pool, now: now)) ?? StateMarker(databaseID: "?", updatedAt: now)
        marker = Mutex(current)
        // A restart of an intact store finds the marker saying what it would write (every event commit keeps it
        // current): no rewrite then, so the start path pays no fsyncs (about 13 ms here, most of the start time
        // to the first identities).
        var onDisk = known
        onDisk?.updatedAt = current.updatedAt
        if onDisk != current { try? marker.withLock { try $0.write(directory: directory) } }
        if let incident { onIncident(incident) }
    }

    /// Opens an existing store read-only, safely beside a running daemon (`cellprov status`, `cellprov events`).
    public init(readOnlyDirectory directory: String) throws(StoreError) {
        path = directory + "/" + Self.fileName
        self.directory = directory
        marker = Mutex(StateMarker(databaseID: "", updatedAt: Date()))  // never written by a reader
        guard FileManager.default.fileExists(atPath: path) else {
            if access(directory, X_OK) != 0 && errno == EACCES {
                throw StoreError("\(directory): permission denied (run as root or as the cellprov user)")
            }
            throw StoreError("\(path): no state database (has cellprovd run with this state directory?)")
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw StoreError("\(path): permission denied (run as root or as the cellprov user)")
        }
        do {
            pool = try Self.open(path: path, readOnly: true)
        } catch {
            throw StoreError("\(path): cannot read the state database (\(Self.reason(error)))")
        }
    }

    private static func open(path: String, readOnly: Bool) throws -> DatabasePool {
        var config = Configuration()
        config.readonly = readOnly
        config.busyMode = .timeout(5)
        config.prepareDatabase { db in
            if !readOnly { try db.execute(sql: "PRAGMA synchronous = FULL") }
        }
        let pool = try DatabasePool(path: path, configuration: config)
        if !readOnly {
            try pool.write { db in
                let check = try String.fetchOne(db, sql: "PRAGMA quick_check") ?? "?"
                guard check == "ok" else { throw StoreError("integrity check failed: \(check)") }
            }
            try migrator.migrate(pool)
        }
        return pool
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE slot (
                    key TEXT PRIMARY KEY NOT NULL,
                    record TEXT NOT NULL,
                    updated_at DOUBLE NOT NULL
                );
                CREATE TABLE event (
                    position INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    slot TEXT NOT NULL,
                    sequence INTEGER NOT NULL,
                    type TEXT NOT NULL,
                    occurred_at DOUBLE NOT NULL,
                    payload TEXT NOT NULL,
                    state TEXT NOT NULL DEFAULT 'pending',
                    attempts INTEGER NOT NULL DEFAULT 0,
                    last_error TEXT,
                    delivered_at DOUBLE,
                    UNIQUE (slot, sequence)
                );
                CREATE INDEX event_pending ON event (state, position);
                CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                """)
        }
        m.registerMigration("v2-live") { db in
            // What the daemon sees now (presence, last read): for `cellprov status`; not part of the history.
            try db.execute(sql: """
                CREATE TABLE live (
                    slot TEXT PRIMARY KEY NOT NULL,
                    port TEXT NOT NULL,
                    present INTEGER NOT NULL,
                    last_read_at DOUBLE,
                    valid INTEGER,
                    problems TEXT
                );
                """)
        }
        m.registerMigration("v3-state-loss") { db in
            // A database identity (the marker names it), state losses found at start, which slots' next event
            // already told the backend, and where each slot's numbering continues after a loss.
            try db.execute(sql: """
                CREATE TABLE state_loss (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    reason TEXT NOT NULL,
                    detected_at DOUBLE NOT NULL,
                    events_salvaged INTEGER NOT NULL,
                    events_lost INTEGER NOT NULL
                );
                CREATE TABLE state_loss_notice (slot TEXT PRIMARY KEY NOT NULL, loss INTEGER NOT NULL);
                CREATE TABLE sequence_floor (slot TEXT PRIMARY KEY NOT NULL, sequence INTEGER NOT NULL);
                """)
            try db.execute(
                sql: "INSERT OR IGNORE INTO meta (key, value) VALUES ('database_id', ?)",
                arguments: [UUID().uuidString.lowercased()])
        }
        return m
    }

    // MARK: - Damage and loss

    /// The size of `path` if it is a regular file (following no symlink), nil otherwise or when absent.
    static func regularFileSize(_ path: String) -> Int? {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int(st.st_size)
    }

    /// What the salvage found, recognised by shape and content (``SQLiteSalvage`` does not know our tables).
    struct Salvaged {
        struct Event {
            var position: Int64
            var event: IdentityEvent
            var payload: String
            var state: DeliveryState
            var attempts: Int64
            var lastError: String?
            var deliveredAt: Double?
        }
        var events: [String: Event] = [:]
        var records: [String: (record: SlotRecord, json: String, updatedAt: Double)] = [:]
        var maxPosition: Int64 = 0

        init(_ rows: [SQLiteSalvage.Row]) {
            for row in rows {
                let v = row.values
                if v.count == 11, v[0].isNull, row.rowid > 0, let id = v[1].text, let slot = v[2].text,
                    let sequence = v[3].integer, let payload = v[6].text, let stateText = v[7].text,
                    let state = DeliveryState(rawValue: stateText), let attempts = v[8].integer,
                    let event = try? StateStore.decode(IdentityEvent.self, payload),
                    event.id.uuidString.lowercased() == id.lowercased(), event.slot == slot,
                    event.sequence == Int(sequence)
                {
                    let candidate = Event(
                        position: row.rowid, event: event, payload: payload, state: state, attempts: attempts,
                        lastError: v[9].text, deliveredAt: v[10].number)
                    // A stale copy (a freed page) may hold an older state of the same event: keep the most advanced.
                    func rank(_ e: Event) -> (Int, Int64) {
                        (e.state == .delivered ? 3 : e.state == .rejected ? 2 : 1, e.attempts)
                    }
                    if let existing = events[event.id.uuidString.lowercased()], rank(existing) >= rank(candidate) {
                        continue
                    }
                    events[event.id.uuidString.lowercased()] = candidate
                    maxPosition = max(maxPosition, row.rowid)
                } else if v.count == 3, let key = v[0].text, let json = v[1].text, let at = v[2].number,
                    let record = try? StateStore.decode(SlotRecord.self, json), record.slot == key
                {
                    if let existing = records[key],
                        (existing.updatedAt, existing.record.sequence) >= (at, record.sequence)
                    {
                        continue
                    }
                    records[key] = (record, json, at)
                } else if v.count == 2, v[0].text == "event", let seq = v[1].integer {
                    maxPosition = max(maxPosition, seq)  // sqlite_sequence: the last position ever given
                }
            }
        }
    }

    /// Reads what can be read of the damaged database, moves it aside, starts a new one with the salvaged rows
    /// (the events waiting for delivery and the slot records in a first transaction, the delivered history in
    /// a second), and records the loss.
    static func salvageAndReplace(path: String, why: String, marker: StateMarker?, now: Date) throws(StoreError)
        -> (DatabasePool, StoreIncident)
    {
        let found = Salvaged(SQLiteSalvage.read(databasePath: path, walPath: path + "-wal").rows)
        let aside = path + ".corrupt-" + Self.stamp()
        var kept: String?
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            do {
                try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
                if suffix.isEmpty || kept == nil { kept = aside + suffix }
            } catch {
                throw StoreError("\(path)\(suffix): damaged, and cannot be moved aside (\(error.localizedDescription))")
            }
        }
        let pool: DatabasePool
        do { pool = try Self.open(path: path, readOnly: false) } catch {
            throw StoreError("\(path): cannot create the state database (\(Self.reason(error)))")
        }
        let ordered = found.events.values.sorted { $0.position < $1.position }
        let pending = ordered.filter { $0.state == .pending }
        let history = ordered.filter { $0.state != .pending }
        var saved = 0
        func insert(_ db: Database, _ e: Salvaged.Event) throws {
            try db.execute(
                sql: """
                    INSERT OR IGNORE INTO event
                        (position, id, slot, sequence, type, occurred_at, payload, state, attempts, last_error,
                         delivered_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    e.position, e.event.id.uuidString.lowercased(), e.event.slot, e.event.sequence,
                    e.event.type.rawValue, e.event.occurredAt.timeIntervalSince1970, e.payload, e.state.rawValue,
                    e.attempts, e.lastError, e.deliveredAt,
                ])
            saved += db.changesCount
        }
        var floors = marker?.slots ?? [:]
        for e in ordered { floors[e.event.slot] = max(floors[e.event.slot] ?? 0, e.event.sequence) }
        for (key, r) in found.records { floors[key] = max(floors[key] ?? 0, r.record.sequence) }
        let known = max(Int(marker?.lastPosition ?? 0), Int(found.maxPosition))
        do {
            try pool.write { db in
                for e in pending { try insert(db, e) }
                for (key, r) in found.records {
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO slot (key, record, updated_at) VALUES (?, ?, ?)",
                        arguments: [key, r.json, r.updatedAt])
                }
            }
            try pool.write { db in
                for e in history { try insert(db, e) }
                // New events continue after the last position the old database gave, lost ones included.
                try db.execute(
                    sql: "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'event'", arguments: [known])
                if db.changesCount == 0 {
                    try db.execute(
                        sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('event', ?)", arguments: [known])
                }
            }
        } catch {
            throw StoreError("\(path): cannot store the salvaged rows (\(Self.reason(error)))")
        }
        let lost = max(0, known - saved)
        do {
            try recordLoss(pool, reason: .databaseDamaged, salvaged: saved, lost: lost, floors: floors, at: now)
        } catch {
            throw StoreError("\(path): cannot record the state loss (\(Self.reason(error)))")
        }
        let waiting = pending.count
        let message = "\(path): damaged state database (\(why)); salvaged \(saved) event(s) (\(waiting) waiting for "
            + "delivery, delivered first, oldest first, with their original event ids and sequences) and "
            + "\(found.records.count) slot record(s); \(lost) event(s) lost; "
            + (kept.map { "kept aside as \($0)" } ?? "nothing kept aside")
            + "; a new database is started and each slot's next event tells the backend (state_lost)"
        return (
            pool,
            StoreIncident(
                kind: .damaged, reason: .databaseDamaged, message: message, eventsSalvaged: saved,
                pendingSalvaged: waiting, slotsSalvaged: found.records.count, eventsLost: lost, keptAs: kept)
        )
    }

    static func recordLoss(
        _ pool: DatabasePool, reason: StateLossReason, salvaged: Int, lost: Int, floors: [String: Int], at: Date
    ) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT INTO state_loss (reason, detected_at, events_salvaged, events_lost) VALUES (?, ?, ?, ?)",
                arguments: [reason.rawValue, at.timeIntervalSince1970, salvaged, lost])
            for (slot, sequence) in floors where sequence > 0 {
                try db.execute(
                    sql: """
                        INSERT INTO sequence_floor (slot, sequence) VALUES (?, ?)
                        ON CONFLICT(slot) DO UPDATE SET sequence = max(sequence, excluded.sequence)
                        """,
                    arguments: [slot, sequence])
            }
        }
    }

    /// The marker describing the database as it is now.
    static func currentMarker(_ pool: DatabasePool, now: Date) throws -> StateMarker {
        try pool.read { db in
            let id = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'database_id'") ?? "?"
            var m = StateMarker(databaseID: id, updatedAt: now)
            for row in try Row.fetchAll(db, sql: "SELECT slot, MAX(sequence) AS s FROM event GROUP BY slot") {
                m.slots[row["slot"]] = row["s"]
            }
            for row in try Row.fetchAll(db, sql: "SELECT slot, sequence FROM sequence_floor") {
                let slot: String = row["slot"]
                m.slots[slot] = max(m.slots[slot] ?? 0, row["sequence"])
            }
            let last = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'event'") ?? 0
            m.lastPosition = max(last, try Int64.fetchOne(db, sql: "SELECT MAX(position) FROM event") ?? 0)
            return m
        }
    }

    /// The loss the slot's next event must announce (nil when there is none, or the slot was told).
    static func unannouncedLoss(_ db: Database, slot: String, floor: Int) throws -> (Int64, StateLoss)? {
        guard
            let row = try Row.fetchOne(
                db, sql: "SELECT * FROM state_loss ORDER BY id DESC LIMIT 1")
        else { return nil }
        let id: Int64 = row["id"]
        let told = try Int64.fetchOne(db, sql: "SELECT loss FROM state_loss_notice WHERE slot = ?", arguments: [slot])
        guard told != id else { return nil }
        let loss = StateLoss(
            reason: StateLossReason(rawValue: row["reason"]) ?? .databaseDamaged,
            detectedAt: Date(timeIntervalSince1970: row["detected_at"]), eventsSalvaged: row["events_salvaged"],
            eventsLost: row["events_lost"], lastSequence: floor > 0 ? floor : nil)
        return (id, loss)
    }

    // MARK: - Commit

    /// Runs the change detector on `observation` and stores the new record and its events in one transaction.
    /// Returns the events (already durable when this returns). `presentSlots`: the slots present now (records of
    /// modules that were unplugged must not count as duplicates); nil counts every stored slot.
    @discardableResult
    public func commit(_ observation: Observation, presentSlots: Set<String>? = nil, now: Date = Date())
        throws(StoreError) -> [IdentityEvent]
    {
        do {
            return try pool.write { db in
                let previous = try Self.record(db, slot: observation.slot.key)
                let others = try Self.records(db).filter {
                    $0.slot != observation.slot.key && (presentSlots?.contains($0.slot) ?? true)
                }
                var result = ChangeDetector.evaluate(
                    previous: previous, observation: observation, others: others, now: now, makeID: { UUID() })
                if !result.events.isEmpty {
                    // After a state loss: the slot's numbering continues after its last known sequence, and its
                    // first event tells the backend.
                    let key = observation.slot.key
                    let floor = try Int.fetchOne(
                        db, sql: "SELECT sequence FROM sequence_floor WHERE slot = ?", arguments: [key]) ?? 0
                    let base = previous?.sequence ?? 0
                    if floor > base {
                        for i in result.events.indices { result.events[i].sequence += floor - base }
                        result.record?.sequence += floor - base
                    }
                    if let (id, loss) = try Self.unannouncedLoss(db, slot: key, floor: floor) {
                        result.events[0].stateLost = loss
                        try db.execute(
                            sql: "INSERT OR REPLACE INTO state_loss_notice (slot, loss) VALUES (?, ?)",
                            arguments: [key, id])
                    }
                }
                if let record = result.record, record != previous {
                    try db.execute(
                        sql: """
                            INSERT INTO slot (key, record, updated_at) VALUES (?, ?, ?)
                            ON CONFLICT(key) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at
                            """,
                        arguments: [record.slot, try Self.encode(record), now.timeIntervalSince1970])
                }
                for event in result.events {
                    try db.execute(
                        sql: """
                            INSERT INTO event (id, slot, sequence, type, occurred_at, payload)
                            VALUES (?, ?, ?, ?, ?, ?)
                            """,
                        arguments: [
                            event.id.uuidString.lowercased(), event.slot, event.sequence, event.type.rawValue,
                            event.occurredAt.timeIntervalSince1970, try Self.encode(event),
                        ])
                }
                if let last = result.events.last {
                    // Before the commit: the marker may get ahead of the database, never behind it.
                    let position = db.lastInsertedRowID
                    try? marker.withLock { m in
                        m.slots[last.slot] = max(m.slots[last.slot] ?? 0, last.sequence)
                        m.lastPosition = max(m.lastPosition, position)
                        m.updatedAt = now
                        try m.update(directory: directory)
                    }
                }
                return result.events
            }
        } catch {
            throw StoreError("\(path): cannot commit the observation (\(Self.reason(error)))")
        }
    }

    // MARK: - Outbox

    /// Pending events, oldest first (global order, which is also each slot's order).
    public func pendingEvents(limit: Int = 100) throws(StoreError) -> [StoredEvent] {
        try read { db in
            try Self.storedEvents(db, where: "state = 'pending'", order: "position ASC", limit: limit)
        }
    }

    public func markDelivered(_ id: UUID, at date: Date = Date()) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: "UPDATE event SET state = 'delivered', delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                arguments: [date.timeIntervalSince1970, id.uuidString.lowercased()])
            try db.execute(sql: "DELETE FROM meta WHERE key IN ('last_delivery_error', 'credentials_refused')")
        }
    }

    /// The backend refused our credentials (401, 403): the event stays pending (retried with backoff) and the
    /// refusal is remembered for `cellprov status` until an event is delivered.
    public func markRefused(_ id: UUID, reason: String, at date: Date = Date()) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: "UPDATE event SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                arguments: [reason, id.uuidString.lowercased()])
            try Self.setMeta(db, "last_delivery_error", reason)
            try Self.setMeta(db, "credentials_refused", reason)
        }
    }

    /// The last credentials refusal not yet followed by a delivery (`HTTP 401`), or nil.
    public func credentialsRefused() throws(StoreError) -> String? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'credentials_refused'") }
    }

    /// Puts a rejected event back in the outbox (`cellprov events --requeue ID`), writing beside a running daemon
    /// (WAL). Opens the database without migrating it. Returns false when no rejected event has this id.
    public static func requeue(directory: String, id: UUID) throws(StoreError) -> Bool {
        let path = directory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError("\(path): no state database (has cellprovd run with this state directory?)")
        }
        do {
            var config = Configuration()
            config.busyMode = .timeout(5)
            let queue = try DatabaseQueue(path: path, configuration: config)
            return try queue.write { db in
                try db.execute(
                    sql: """
                        UPDATE event SET state = 'pending', last_error = 'requeued by the operator'
                        WHERE id = ? AND state = 'rejected'
                        """,
                    arguments: [id.uuidString.lowercased()])
                return db.changesCount == 1
            }
        } catch {
            throw StoreError("\(path): cannot requeue the event (\(Self.reason(error)))")
        }
    }

    /// A state loss the store found when it opened (the most recent).
    public struct LossRecord: Sendable, Equatable {
        public var reason: StateLossReason
        public var detectedAt: Date
        public var eventsSalvaged: Int
        public var eventsLost: Int
    }

    public func lastStateLoss() throws(StoreError) -> LossRecord? {
        try read { db in
            guard try db.tableExists("state_loss"),
                let row = try Row.fetchOne(db, sql: "SELECT * FROM state_loss ORDER BY id DESC LIMIT 1")
            else { return nil }
            return LossRecord(
                reason: StateLossReason(rawValue: row["reason"]) ?? .databaseDamaged,
                detectedAt: Date(timeIntervalSince1970: row["detected_at"]), eventsSalvaged: row["events_salvaged"],
                eventsLost: row["events_lost"])
        }
    }

    public func markRejected(_ id: UUID, reason: String) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: "UPDATE event SET state = 'rejected', attempts = attempts + 1, last_error = ? WHERE id = ?",
                arguments: [reason, id.uuidString.lowercased()])
            try Self.setMeta(db, "last_delivery_error", reason)
        }
    }

    public func markAttemptFailed(_ id: UUID, error: String) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: "UPDATE event SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                arguments: [error, id.uuidString.lowercased()])
            try Self.setMeta(db, "last_delivery_error", error)
        }
    }

    // MARK: - Live view

    /// What the daemon sees of a slot now, for `cellprov status`.
    public struct LiveSlot: Sendable, Equatable {
        public var slot: String
        public var port: String
        public var present: Bool
        public var lastReadAt: Date?
        public var valid: Bool?
        /// Problem codes of the last read.
        public var problems: [String]
    }

    /// Records that `slot` is present on `port` (or gone). Every slot is marked absent when the daemon starts.
    public func setPresence(slot: String, port: String, present: Bool) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: """
                    INSERT INTO live (slot, port, present) VALUES (?, ?, ?)
                    ON CONFLICT(slot) DO UPDATE SET port = excluded.port, present = excluded.present
                    """,
                arguments: [slot, port, present])
        }
    }

    /// Marks every slot absent (daemon start: presence is rebuilt by discovery).
    public func clearPresence() throws(StoreError) {
        try write { db in try db.execute(sql: "UPDATE live SET present = 0") }
    }

    /// Records the outcome of a read (problem codes only: no identifiers).
    public func recordRead(slot: String, port: String, valid: Bool, problems: [String], at date: Date) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: """
                    INSERT INTO live (slot, port, present, last_read_at, valid, problems) VALUES (?, ?, 1, ?, ?, ?)
                    ON CONFLICT(slot) DO UPDATE SET port = excluded.port, present = 1,
                        last_read_at = excluded.last_read_at, valid = excluded.valid, problems = excluded.problems
                    """,
                arguments: [slot, port, date.timeIntervalSince1970, valid, problems.joined(separator: ",")])
        }
    }

    public func liveSlots() throws(StoreError) -> [LiveSlot] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM live ORDER BY slot").map { row in
                let problems: String? = row["problems"]
                return LiveSlot(
                    slot: row["slot"], port: row["port"], present: row["present"],
                    lastReadAt: (row["last_read_at"] as Double?).map { Date(timeIntervalSince1970: $0) },
                    valid: row["valid"],
                    problems: problems.map { $0.split(separator: ",").map(String.init) } ?? [])
            }
        }
    }

    // MARK: - Views

    public func slotRecords() throws(StoreError) -> [SlotRecord] {
        try read { db in try Self.records(db) }
    }

    /// The history, newest first (`limit` nil: all).
    public func events(limit: Int? = nil) throws(StoreError) -> [StoredEvent] {
        try read { db in try Self.storedEvents(db, where: "1", order: "position DESC", limit: limit) }
    }

    public func outboxDepth() throws(StoreError) -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event WHERE state = 'pending'") ?? 0 }
    }

    public func lastDeliveryError() throws(StoreError) -> String? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'last_delivery_error'") }
    }
    // MARK: - Helpers

    private func read<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do { return try pool.read(body) } catch {
            throw StoreError("\(path): cannot read the state database (\(Self.reason(error)))")
        }
    }

    private func write(_ body: (Database) throws -> Void) throws(StoreError) {
        do { try pool.write(body) } catch {
            throw StoreError("\(path): cannot write the state database (\(Self.reason(error)))")
        }
    }

    static func record(_ db: Database, slot: String) throws -> SlotRecord? {
        guard let json = try String.fetchOne(db, sql: "SELECT record FROM slot WHERE key = ?", arguments: [slot]) else {
            return nil
        }
        return try decode(SlotRecord.self, json)
    }

    static func records(_ db: Database) throws -> [SlotRecord] {
        try String.fetchAll(db, sql: "SELECT record FROM slot ORDER BY key").map { try decode(SlotRecord.self, $0) }
    }

    static func storedEvents(_ db: Database, where condition: String, order: String, limit: Int?) throws
        -> [StoredEvent]
    {
        var sql = """
            SELECT position, payload, state, attempts, last_error, delivered_at FROM event
            WHERE \(condition) ORDER BY \(order)
            """
        if let limit { sql += " LIMIT \(limit)" }
        return try Row.fetchAll(db, sql: sql).map { row in
            StoredEvent(
                position: row["position"],
                event: try decode(IdentityEvent.self, row["payload"]),
                state: DeliveryState(rawValue: row["state"]) ?? .pending,
                attempts: row["attempts"],
                lastError: row["last_error"],
                deliveredAt: (row["delivered_at"] as Double?).map { Date(timeIntervalSince1970: $0) })
        }
    }

    static func setMeta(_ db: Database, _ key: String, _ value: String) throws {
        try db.execute(
            sql: "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            arguments: [key, value])
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    static func encode<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return try d.decode(type, from: Data(json.utf8))
    }

    static func reason(_ error: any Error) -> String {
        if let e = error as? DatabaseError { return e.message ?? "\(e.resultCode)" }
        return "\(error)"
    }

    static func stamp() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withYear, .withMonth, .withDay, .withTime, .withTimeZone]
        return f.string(from: Date()).replacingOccurrences(of: ":", with: "")
    }
}
