import CellprovCore
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The outbox: the events waiting for delivery and how each attempt ended (the reporter's ``Outbox``).
extension StateStore {
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
