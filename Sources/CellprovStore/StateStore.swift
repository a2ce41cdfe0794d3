import CellprovCore
import FoundationEssentials
import NIOConcurrencyHelpers

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
        /// The database is intact but older than the marker says it got (a backup put back while the marker
        /// stayed): the events committed after the copy was made are not in it. Numbering continues after the
        /// marker's sequences, so no sequence number is used twice.
        case restored
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

/// The daemon's memory, in `<state_directory>/state.db` (SQLite in WAL mode, synchronous=FULL, through the CSQLite shim: SQLite.swift).
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
    /// The one connection to state.db (``SQLiteDatabase``: a lock around it, write transactions IMMEDIATE).
    private let database: SQLiteDatabase
    private let marker: NIOLockedValueBox<StateMarker>

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
            throw StoreError("\(directory): cannot create the state directory (\(Self.reason(error)))")
        }
        let found = StateMarker.read(directory: directory)
        let known: StateMarker? = if case .marker(let m) = found { m } else { nil }
        let wal = Self.regularFileSize(path + "-wal") ?? 0 > 0

        var damage: String?
        var lost: StateLossReason?
        var opened: SQLiteDatabase?
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
            let (database, report) = try Self.salvageAndReplace(path: path, why: damage, marker: known, now: now)
            opened = database
            incident = report
        } else if let lost {
            let database: SQLiteDatabase
            do { database = try Self.open(path: path, readOnly: false) } catch {
                throw StoreError("\(path): cannot create the state database (\(Self.reason(error)))")
            }
            let total = Int(known?.lastPosition ?? 0)
            do {
                try Self.recordLoss(database, reason: lost, salvaged: 0, lost: total, floors: known?.slots ?? [:], at: now)
            } catch {
                throw StoreError("\(path): cannot record the state loss (\(Self.reason(error)))")
            }
            opened = database
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
        } else if let database = opened, let known {
            do {
                incident = try Self.checkRolledBack(database, path: path, marker: known, now: now)
            } catch {
                throw StoreError("\(path): cannot record the restored database (\(Self.reason(error)))")
            }
        }
        guard let database = opened else { throw StoreError("\(path): cannot open the state database") }
        self.database = database
        // The marker is an aid to detection, not a condition to run: a full disk must not keep the daemon from
        // starting (the next event commit writes it again).
        let current = (try? Self.currentMarker(database, now: now)) ?? StateMarker(databaseID: "?", updatedAt: now)
        marker = NIOLockedValueBox(current)
        // A restart of an intact store finds the marker saying what it would write (every event commit keeps it
        // current): no rewrite then, so the start path pays no fsyncs (about 13 ms here, most of the start time
        // to the first identities).
        var onDisk = known
        onDisk?.updatedAt = current.updatedAt
        if onDisk != current { try? marker.withLockedValue { try $0.write(directory: directory) } }
        if let incident { onIncident(incident) }
    }

    /// Opens an existing store read-only, safely beside a running daemon (`cellprov status`, `cellprov events`).
    public init(readOnlyDirectory directory: String) throws(StoreError) {
        path = directory + "/" + Self.fileName
        self.directory = directory
        marker = NIOLockedValueBox(StateMarker(databaseID: "", updatedAt: Date()))  // never written by a reader
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
            database = try Self.open(path: path, readOnly: true)
        } catch {
            throw StoreError("\(path): cannot read the state database (\(Self.reason(error)))")
        }
    }

    /// How long a statement waits for a lock another process holds (`cellprov events --requeue` beside the daemon).
    static let busyTimeoutMilliseconds: Int32 = 5000

    /// Opens the database: WAL (readers beside the writer), synchronous=FULL (a commit is on disk when it
    /// returns), a quick integrity check and the migrations when writing.
    private static func open(path: String, readOnly: Bool) throws -> SQLiteDatabase {
        let connection = try SQLiteConnection(
            path: path, readOnly: readOnly, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        if !readOnly {
            // Outside a transaction (SQLite cannot change the journal mode inside one).
            let mode = try connection.scalar(String.self, "PRAGMA journal_mode = WAL")
            guard mode == "wal" else { throw StoreError("cannot use write-ahead logging (journal mode \(mode ?? "?"))") }
            try connection.execute("PRAGMA synchronous = FULL")
        }
        let database = SQLiteDatabase(connection)
        if !readOnly {
            try database.write { db in
                let check = try db.scalar(String.self, "PRAGMA quick_check") ?? "?"
                guard check == "ok" else { throw StoreError("integrity check failed: \(check)") }
            }
            try migrate(database)
        }
        return database
    }

    /// Applies the migrations the database has not had, each in its own transaction, recording each in
    /// `grdb_migrations`: the table (name and shape) GRDB's migrator kept, so that the state.db of an installed
    /// gateway opens unchanged and a new one has exactly the same schema.
    static func migrate(_ database: SQLiteDatabase) throws {
        try database.write { db in
            try db.execute("CREATE TABLE IF NOT EXISTS grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)")
        }
        for (identifier, apply) in migrations {
            try database.write { db in
                let applied = try db.scalar(
                    Int.self, "SELECT COUNT(*) FROM grdb_migrations WHERE identifier = ?", [identifier])
                guard applied == 0 else { return }
                try apply(db)
                try db.execute("INSERT INTO grdb_migrations (identifier) VALUES (?)", [identifier])
            }
        }
    }

    /// The schema's migrations, in order (identifiers as first recorded: never rename one).
    static let migrations: [(String, @Sendable (SQLiteConnection) throws -> Void)] = [
        ("v1", { db in
            try db.execute("""
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
        }),
        ("v2-live", { db in
            // What the daemon sees now (presence, last read): for `cellprov status`; not part of the history.
            try db.execute("""
                CREATE TABLE live (
                    slot TEXT PRIMARY KEY NOT NULL,
                    port TEXT NOT NULL,
                    present INTEGER NOT NULL,
                    last_read_at DOUBLE,
                    valid INTEGER,
                    problems TEXT
                );
                """)
        }),
        ("v3-state-loss", { db in
            // A database identity (the marker names it), state losses found at start, which slots' next event
            // already told the backend, and where each slot's numbering continues after a loss.
            try db.execute("""
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
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('database_id', ?)",
                [UUID().uuidString.lowercased()])
        }),
    ]

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
        -> (SQLiteDatabase, StoreIncident)
    {
        let found = Salvaged(SQLiteSalvage.read(databasePath: path, walPath: path + "-wal").rows)
        let aside = path + ".corrupt-" + Self.stamp()
        var kept: String?
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            do {
                try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
                if suffix.isEmpty || kept == nil { kept = aside + suffix }
            } catch {
                throw StoreError("\(path)\(suffix): damaged, and cannot be moved aside (\(Self.reason(error)))")
            }
        }
        let database: SQLiteDatabase
        do { database = try Self.open(path: path, readOnly: false) } catch {
            throw StoreError("\(path): cannot create the state database (\(Self.reason(error)))")
        }
        let ordered = found.events.values.sorted { $0.position < $1.position }
        let pending = ordered.filter { $0.state == .pending }
        let history = ordered.filter { $0.state != .pending }
        var saved = 0
        func insert(_ db: SQLiteConnection, _ e: Salvaged.Event) throws {
            try db.execute(
                """
                    INSERT OR IGNORE INTO event
                        (position, id, slot, sequence, type, occurred_at, payload, state, attempts, last_error,
                         delivered_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                [
                    e.position, e.event.id.uuidString.lowercased(), e.event.slot, e.event.sequence,
                    e.event.type.rawValue, e.event.occurredAt.timeIntervalSince1970, e.payload, e.state.rawValue,
                    e.attempts, e.lastError, e.deliveredAt,
                ])
            saved += db.changes
        }
        var floors = marker?.slots ?? [:]
        for e in ordered { floors[e.event.slot] = max(floors[e.event.slot] ?? 0, e.event.sequence) }
        for (key, r) in found.records { floors[key] = max(floors[key] ?? 0, r.record.sequence) }
        let known = max(Int(marker?.lastPosition ?? 0), Int(found.maxPosition))
        do {
            try database.write { db in
                for e in pending { try insert(db, e) }
                for (key, r) in found.records {
                    try db.execute(
                        "INSERT OR REPLACE INTO slot (key, record, updated_at) VALUES (?, ?, ?)",
                        [key, r.json, r.updatedAt])
                }
            }
            try database.write { db in
                for e in history { try insert(db, e) }
                // New events continue after the last position the old database gave, lost ones included.
                try db.execute(
                    "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'event'", [known])
                if db.changes == 0 {
                    try db.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES ('event', ?)", [known])
                }
            }
        } catch {
            throw StoreError("\(path): cannot store the salvaged rows (\(Self.reason(error)))")
        }
        let lost = max(0, known - saved)
        do {
            try recordLoss(database, reason: .databaseDamaged, salvaged: saved, lost: lost, floors: floors, at: now)
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
            database,
            StoreIncident(
                kind: .damaged, reason: .databaseDamaged, message: message, eventsSalvaged: saved,
                pendingSalvaged: waiting, slotsSalvaged: found.records.count, eventsLost: lost, keptAs: kept)
        )
    }

    static func recordLoss(
        _ database: SQLiteDatabase, reason: StateLossReason, salvaged: Int, lost: Int, floors: [String: Int], at: Date
    ) throws {
        try database.write { db in
            try db.execute(
                "INSERT INTO state_loss (reason, detected_at, events_salvaged, events_lost) VALUES (?, ?, ?, ?)",
                [reason.rawValue, at.timeIntervalSince1970, salvaged, lost])
            for (slot, sequence) in floors where sequence > 0 {
                try db.execute(
                    """
                        INSERT INTO sequence_floor (slot, sequence) VALUES (?, ?)
                        ON CONFLICT(slot) DO UPDATE SET sequence = max(sequence, excluded.sequence)
                        """,
                    [slot, sequence])
            }
        }
    }

    /// An intact database older than its marker: an earlier copy of it put back (a backup restored) while the
    /// marker stayed, or another database put in its place. The same database (its `database_id`) is older when
    /// its last event position is below the marker's ``StateMarker/committedPosition`` (a transaction that failed
    /// after the marker's pre-commit update leaves the marker ahead only in ``StateMarker/lastPosition``, which is
    /// not a restore); another database is older when a slot's sequence is behind the marker's. Then the marker's
    /// sequences become the slots' floors (numbering continues after them, no number is used twice), the event
    /// positions continue after the marker's, and the restore is recorded as a state loss (`database_restored`),
    /// which each slot's next event announces. Nil when the database is not behind.
    static func checkRolledBack(_ database: SQLiteDatabase, path: String, marker: StateMarker, now: Date) throws
        -> StoreIncident?
    {
        let current = try currentMarker(database, now: now)
        let behindSlots = marker.slots.filter { $0.value > (current.slots[$0.key] ?? 0) }
        let lost: Int
        if current.databaseID == marker.databaseID {
            guard let committed = marker.committedPosition, current.lastPosition < committed else { return nil }
            lost = Int(committed - current.lastPosition)
        } else {
            guard marker.databaseID != "?", !behindSlots.isEmpty else { return nil }
            lost = behindSlots.reduce(0) { $0 + ($1.value - (current.slots[$1.key] ?? 0)) }
        }
        try recordLoss(database, reason: .databaseRestored, salvaged: 0, lost: lost, floors: marker.slots, at: now)
        try database.write { db in
            try db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'event'", [marker.lastPosition])
            if db.changes == 0 {
                try db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('event', ?)", [marker.lastPosition])
            }
        }
        let which = current.databaseID == marker.databaseID
            ? "is an older copy of itself"
            : "is another database than the one"
        return StoreIncident(
            kind: .restored, reason: .databaseRestored,
            message: "\(path) \(which) \(StateMarker.fileName) describes (a backup put back?): \(lost) event(s) "
                + "committed after that copy are not in it (the backend has those that were delivered), "
                + "\(behindSlots.count) slot(s) are behind; slot numbering continues after the last sequence the "
                + "marker knew, so no sequence number is used twice, and each slot's next event tells the backend "
                + "(state_lost, reason database_restored)",
            eventsLost: lost)
    }

    /// The marker describing the database as it is now.
    static func currentMarker(_ database: SQLiteDatabase, now: Date) throws -> StateMarker {
        try database.read { db in
            let id = try db.scalar(String.self, "SELECT value FROM meta WHERE key = 'database_id'") ?? "?"
            var m = StateMarker(databaseID: id, updatedAt: now)
            for row in try db.rows("SELECT slot, MAX(sequence) AS s FROM event GROUP BY slot") {
                m.slots[try row.value("slot")] = try row.value("s")
            }
            for row in try db.rows("SELECT slot, sequence FROM sequence_floor") {
                let slot: String = try row.value("slot")
                m.slots[slot] = max(m.slots[slot] ?? 0, try row.value("sequence"))
            }
            let last = try db.scalar(Int64.self, "SELECT seq FROM sqlite_sequence WHERE name = 'event'") ?? 0
            m.lastPosition = max(last, try db.scalar(Int64.self, "SELECT MAX(position) FROM event") ?? 0)
            m.committedPosition = m.lastPosition
            return m
        }
    }

    /// The loss the slot's next event must announce (nil when there is none, or the slot was told).
    static func unannouncedLoss(_ db: SQLiteConnection, slot: String, floor: Int) throws -> (Int64, StateLoss)? {
        guard
            let row = try db.rows("SELECT * FROM state_loss ORDER BY id DESC LIMIT 1").first
        else { return nil }
        let id: Int64 = try row.value("id")
        let told = try db.scalar(Int64.self, "SELECT loss FROM state_loss_notice WHERE slot = ?", [slot])
        guard told != id else { return nil }
        let loss = StateLoss(
            reason: StateLossReason(rawValue: try row.value("reason")) ?? .databaseDamaged,
            detectedAt: Date(timeIntervalSince1970: try row.value("detected_at")),
            eventsSalvaged: try row.value("events_salvaged"), eventsLost: try row.value("events_lost"),
            lastSequence: floor > 0 ? floor : nil)
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
            let (events, position) = try database.write { db -> ([IdentityEvent], Int64?) in
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
                    let floor = try db.scalar(
                        Int.self, "SELECT sequence FROM sequence_floor WHERE slot = ?", [key]) ?? 0
                    let base = previous?.sequence ?? 0
                    if floor > base {
                        for i in result.events.indices { result.events[i].sequence += floor - base }
                        result.record?.sequence += floor - base
                    }
                    if let (id, loss) = try Self.unannouncedLoss(db, slot: key, floor: floor) {
                        result.events[0].stateLost = loss
                        try db.execute(
                            "INSERT OR REPLACE INTO state_loss_notice (slot, loss) VALUES (?, ?)",
                            [key, id])
                    }
                }
                if let record = result.record, record != previous {
                    try db.execute(
                        """
                            INSERT INTO slot (key, record, updated_at) VALUES (?, ?, ?)
                            ON CONFLICT(key) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at
                            """,
                        [record.slot, try Self.encode(record), now.timeIntervalSince1970])
                }
                for event in result.events {
                    try db.execute(
                        """
                            INSERT INTO event (id, slot, sequence, type, occurred_at, payload)
                            VALUES (?, ?, ?, ?, ?, ?)
                            """,
                        [
                            event.id.uuidString.lowercased(), event.slot, event.sequence, event.type.rawValue,
                            event.occurredAt.timeIntervalSince1970, try Self.encode(event),
                        ])
                }
                guard let last = result.events.last else { return (result.events, nil) }
                // Before the commit: the marker may get ahead of the database, never behind it.
                let position = db.lastInsertedRowID
                try? marker.withLockedValue { m in
                    m.slots[last.slot] = max(m.slots[last.slot] ?? 0, last.sequence)
                    m.lastPosition = max(m.lastPosition, position)
                    m.updatedAt = now
                    try m.update(directory: directory)
                }
                return (result.events, position)
            }
            if let position {
                // After the commit: what is now durable in the database (the restore check's reference).
                try? marker.withLockedValue { m in
                    m.committedPosition = max(m.committedPosition ?? 0, position)
                    try m.update(directory: directory, sync: false)
                }
            }
            return events
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
                "UPDATE event SET state = 'delivered', delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                [date.timeIntervalSince1970, id.uuidString.lowercased()])
            try db.execute("DELETE FROM meta WHERE key IN ('last_delivery_error', 'credentials_refused')")
        }
    }

    /// The backend refused our credentials (401, 403): the event stays pending (retried with backoff) and the
    /// refusal is remembered for `cellprov status` until an event is delivered.
    public func markRefused(_ id: UUID, reason: String, at date: Date = Date()) throws(StoreError) {
        try write { db in
            try db.execute(
                "UPDATE event SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                [reason, id.uuidString.lowercased()])
            try Self.setMeta(db, "last_delivery_error", reason)
            try Self.setMeta(db, "credentials_refused", reason)
        }
    }

    /// The last credentials refusal not yet followed by a delivery (`HTTP 401`), or nil.
    public func credentialsRefused() throws(StoreError) -> String? {
        try read { db in try db.scalar(String.self, "SELECT value FROM meta WHERE key = 'credentials_refused'") }
    }

    /// Puts a rejected event back in the outbox (`cellprov events --requeue ID`), writing beside a running daemon
    /// (WAL). Opens the database without migrating it. Returns false when no rejected event has this id.
    public static func requeue(directory: String, id: UUID) throws(StoreError) -> Bool {
        let path = directory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError("\(path): no state database (has cellprovd run with this state directory?)")
        }
        do {
            let queue = SQLiteDatabase(
                try SQLiteConnection(path: path, readOnly: false, busyTimeoutMilliseconds: busyTimeoutMilliseconds))
            return try queue.write { db in
                try db.execute(
                    """
                        UPDATE event SET state = 'pending', last_error = 'requeued by the operator'
                        WHERE id = ? AND state = 'rejected'
                        """,
                    [id.uuidString.lowercased()])
                return db.changes == 1
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
                let row = try db.rows("SELECT * FROM state_loss ORDER BY id DESC LIMIT 1").first
            else { return nil }
            return LossRecord(
                reason: StateLossReason(rawValue: try row.value("reason")) ?? .databaseDamaged,
                detectedAt: Date(timeIntervalSince1970: try row.value("detected_at")),
                eventsSalvaged: try row.value("events_salvaged"), eventsLost: try row.value("events_lost"))
        }
    }

    public func markRejected(_ id: UUID, reason: String) throws(StoreError) {
        try write { db in
            try db.execute(
                "UPDATE event SET state = 'rejected', attempts = attempts + 1, last_error = ? WHERE id = ?",
                [reason, id.uuidString.lowercased()])
            try Self.setMeta(db, "last_delivery_error", reason)
        }
    }

    public func markAttemptFailed(_ id: UUID, error: String) throws(StoreError) {
        try write { db in
            try db.execute(
                "UPDATE event SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                [error, id.uuidString.lowercased()])
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
                """
                    INSERT INTO live (slot, port, present) VALUES (?, ?, ?)
                    ON CONFLICT(slot) DO UPDATE SET port = excluded.port, present = excluded.present
                    """,
                [slot, port, present])
        }
    }

    /// Marks every slot absent (daemon start: presence is rebuilt by discovery).
    public func clearPresence() throws(StoreError) {
        try write { db in try db.execute("UPDATE live SET present = 0") }
    }

    /// Records the outcome of a read (problem codes only: no identifiers).
    public func recordRead(slot: String, port: String, valid: Bool, problems: [String], at date: Date) throws(StoreError) {
        try write { db in
            try db.execute(
                """
                    INSERT INTO live (slot, port, present, last_read_at, valid, problems) VALUES (?, ?, 1, ?, ?, ?)
                    ON CONFLICT(slot) DO UPDATE SET port = excluded.port, present = 1,
                        last_read_at = excluded.last_read_at, valid = excluded.valid, problems = excluded.problems
                    """,
                [slot, port, date.timeIntervalSince1970, valid, problems.joined(separator: ",")])
        }
    }

    public func liveSlots() throws(StoreError) -> [LiveSlot] {
        try read { db in
            try db.rows("SELECT * FROM live ORDER BY slot").map { row in
                let problems: String? = try row.optional("problems")
                return LiveSlot(
                    slot: try row.value("slot"), port: try row.value("port"), present: try row.value("present"),
                    lastReadAt: try row.optional("last_read_at", as: Double.self).map(Date.init(timeIntervalSince1970:)),
                    valid: try row.optional("valid"),
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
        try read { db in try db.scalar(Int.self, "SELECT COUNT(*) FROM event WHERE state = 'pending'") ?? 0 }
    }

    public func lastDeliveryError() throws(StoreError) -> String? {
        try read { db in try db.scalar(String.self, "SELECT value FROM meta WHERE key = 'last_delivery_error'") }
    }
    // MARK: - Helpers

    private func read<T: Sendable>(_ body: (SQLiteConnection) throws -> T) throws(StoreError) -> T {
        do { return try database.read(body) } catch {
            throw StoreError("\(path): cannot read the state database (\(Self.reason(error)))")
        }
    }

    private func write(_ body: (SQLiteConnection) throws -> Void) throws(StoreError) {
        do { try database.write(body) } catch {
            throw StoreError("\(path): cannot write the state database (\(Self.reason(error)))")
        }
    }

    static func record(_ db: SQLiteConnection, slot: String) throws -> SlotRecord? {
        guard let json = try db.scalar(String.self, "SELECT record FROM slot WHERE key = ?", [slot]) else {
            return nil
        }
        return try decode(SlotRecord.self, json)
    }

    static func records(_ db: SQLiteConnection) throws -> [SlotRecord] {
        try db.rows("SELECT record FROM slot ORDER BY key").map { try decode(SlotRecord.self, try $0.value("record")) }
    }

    static func storedEvents(_ db: SQLiteConnection, where condition: String, order: String, limit: Int?) throws
        -> [StoredEvent]
    {
        var sql = """
            SELECT position, payload, state, attempts, last_error, delivered_at FROM event
            WHERE \(condition) ORDER BY \(order)
            """
        if let limit { sql += " LIMIT \(limit)" }
        return try db.rows(sql).map { row in
            StoredEvent(
                position: try row.value("position"),
                event: try decode(IdentityEvent.self, try row.value("payload")),
                state: DeliveryState(rawValue: try row.value("state")) ?? .pending,
                attempts: try row.value("attempts"),
                lastError: try row.optional("last_error"),
                deliveredAt: try row.optional("delivered_at", as: Double.self).map(Date.init(timeIntervalSince1970:)))
        }
    }

    static func setMeta(_ db: SQLiteConnection, _ key: String, _ value: String) throws {
        try db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value])
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
        if let e = error as? SQLiteError { return e.message }
        return "\(error)"
    }

    /// The time in UTC as `20261130T065408Z` (the suffix of a damaged database kept aside).
    static func stamp() -> String {
        var now = time(nil)
        var t = tm()
        gmtime_r(&now, &t)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(t.tm_year + 1900)\(two(t.tm_mon + 1))\(two(t.tm_mday))T\(two(t.tm_hour))\(two(t.tm_min))\(two(t.tm_sec))Z"
    }
}

/// The reporter's view of the outbox (``Outbox``, CellprovCore).
extension StateStore: Outbox {
    public func pending(limit: Int) throws -> [IdentityEvent] {
        try pendingEvents(limit: limit).map(\.event)
    }
    public func delivered(_ id: UUID) throws { try markDelivered(id, at: Date()) }
    public func rejected(_ id: UUID, reason: String) throws { try markRejected(id, reason: reason) }
    public func refused(_ id: UUID, reason: String) throws { try markRefused(id, reason: reason, at: Date()) }
    public func attemptFailed(_ id: UUID, error: String) throws { try markAttemptFailed(id, error: error) }
}
