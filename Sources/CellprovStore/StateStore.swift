import CellprovCore
import Foundation
import GRDB

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
    /// The backend refused it for good (4xx other than 409); kept with the reason, not retried.
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

/// The daemon's memory, in `<state_directory>/state.db` (SQLite in WAL mode, synchronous=FULL, through GRDB).
///
/// One write transaction takes an observation, runs the pure change detector against the slot's last record and
/// the other slots' records, and stores the new record together with the events it produced. A crash or a power
/// cut at any moment leaves either the old state or the new one, never a record without its events or the
/// reverse. The events table is both the slots' history and the outbox (state `pending`).
public final class StateStore: Sendable {
    public static let fileName = "state.db"

    public let path: String
    private let pool: DatabasePool

    /// Opens (creating if needed) the store in `directory`. A file SQLite cannot read is moved aside
    /// (`state.db.corrupt-<time>`) and reported through `onCorrupt`; never silently replaced.
    public init(directory: String, onCorrupt: (String) -> Void = { _ in }) throws(StoreError) {
        path = directory + "/" + Self.fileName
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw StoreError("\(directory): cannot create the state directory (\(error.localizedDescription))")
        }
        do {
            pool = try Self.open(path: path, readOnly: false)
        } catch {
            let aside = path + ".corrupt-" + Self.stamp()
            for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                try? FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
            }
            onCorrupt(
                "\(path): unreadable state database (\(Self.reason(error))); kept aside as \(aside), starting a new one")
            do {
                pool = try Self.open(path: path, readOnly: false)
            } catch {
                throw StoreError("\(path): cannot create the state database (\(Self.reason(error)))")
            }
        }
    }

    /// Opens an existing store read-only, safely beside a running daemon (`cellprov status`, `cellprov events`).
    public init(readOnlyDirectory directory: String) throws(StoreError) {
        path = directory + "/" + Self.fileName
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
        return m
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
                let result = ChangeDetector.evaluate(
                    previous: previous, observation: observation, others: others, now: now, makeID: { UUID() })
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
            try db.execute(sql: "DELETE FROM meta WHERE key = 'last_delivery_error'")
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
