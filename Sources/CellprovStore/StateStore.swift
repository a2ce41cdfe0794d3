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
    static func open(path: String, readOnly: Bool) throws -> SQLiteDatabase {
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

    // MARK: - Helpers

    func read<T: Sendable>(_ body: (SQLiteConnection) throws -> T) throws(StoreError) -> T {
        do { return try database.read(body) } catch {
            throw StoreError("\(path): cannot read the state database (\(Self.reason(error)))")
        }
    }

    func write(_ body: (SQLiteConnection) throws -> Void) throws(StoreError) {
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
