import CellprovCore
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// What `cellprov status` and `cellprov events` read: the live view of the slots the daemon sees now, the slot
// records, the event history and the outbox's depth.
extension StateStore {
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
}
