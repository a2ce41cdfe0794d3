import CellprovCore
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The state database's damage and loss: detecting a file SQLite cannot use, salvaging what is readable and setting it
// aside, a database missing or older than its marker says, and the loss each slot's next event announces.
extension StateStore {
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
}
