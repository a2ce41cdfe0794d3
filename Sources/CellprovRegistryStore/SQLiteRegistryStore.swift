import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers

/// The registry on one host: SQLite through GRDB, in WAL mode with `synchronous=FULL` (a stored event survives a
/// power cut once the API answered 201). Writes run in IMMEDIATE transactions (the write lock is taken at
/// BEGIN, so a transaction that reads and then writes never fails with SQLITE_BUSY half-way) and wait up to
/// ``busyTimeout`` for another process's transaction: `cellprov-registry device add` works while a server runs.
/// SQLite serialises writers, so the ingest rules need no further locking.
public final class SQLiteRegistryStore: RegistryStore, Sendable {
    /// How long a writer waits for another process's write transaction.
    public static let busyTimeout: TimeInterval = 10

    let pool: DatabasePool
    let logger: Logger
    /// The ingest path's group commit (SQLiteIngestQueue.swift).
    let ingestQueue: SQLiteIngestQueue
    private let keys = StoredKeys()

    /// Opens (creating it and its directory's file if needed) the database at `path`. Call ``migrate()`` next
    /// (``RegistryDatabase/open(url:logger:)`` does).
    public init(path: String, logger: Logger) throws {
        var config = Configuration()
        config.busyMode = .timeout(Self.busyTimeout)
        config.journalMode = .wal
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            pool = try Self.openPool(path: path, configuration: config)
            // GRDB's WAL set-up runs after prepareDatabase and sets `synchronous = NORMAL` on the writer (a commit
            // is then not on disk until the next checkpoint: a power cut could lose events already answered 201).
            // Set FULL again on the one connection that commits, and check it took.
            let level = try pool.writeWithoutTransaction { db -> Int? in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                return try Int.fetchOne(db, sql: "PRAGMA synchronous")
            }
            guard level == 2 else {
                throw RegistryStoreError("SQLite did not accept synchronous=FULL (it reports \(level ?? -1))")
            }
        } catch let error as RegistryStoreError {
            throw error
        } catch {
            throw RegistryStoreError("cannot open the SQLite database: \(Self.describe(error))")
        }
        self.logger = logger
        ingestQueue = SQLiteIngestQueue(pool: pool, describe: { Self.storeError($0) })
    }

    /// Opens the pool, retrying while another process holds the lock that switching a new database to WAL needs:
    /// SQLite answers that switch with SQLITE_BUSY at once, without its busy handler (several instances, or a
    /// `device add` beside `serve`, opening a database nobody has opened yet). Up to ``busyTimeout``, as other
    /// waits for the lock.
    static func openPool(path: String, configuration: Configuration) throws -> DatabasePool {
        let deadline = ContinuousClock.now + .seconds(busyTimeout)
        var pause = Duration.milliseconds(10)
        while true {
            do {
                return try DatabasePool(path: path, configuration: configuration)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: Double(pause.nanoseconds) / 1e9)
                pause = min(pause * 2, .milliseconds(200))
            }
        }
    }

    /// The writer connection's `PRAGMA synchronous` (2 is FULL): what a commit waits for.
    public func commitSynchronous() async throws -> Int {
        try await pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? DatabaseError { return "\(e.resultCode) \(e.message ?? "")" }
        return "\(error)"
    }

    /// What a caller gets for an error of the database: a `RegistryStoreError` carrying SQLite's code and message
    /// (never statement arguments); other errors as they are.
    static func storeError(_ error: any Error) -> any Error {
        guard let e = error as? DatabaseError else { return error }
        return RegistryStoreError("SQLite: \(describe(e))")
    }

    /// Runs `body` in one IMMEDIATE transaction. Database errors become `RegistryStoreError`s carrying SQLite's
    /// code and message (never statement arguments).
    func transaction<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch let error as DatabaseError {
            throw Self.storeError(error)
        }
    }

    /// A read in one snapshot; errors as for ``transaction(_:)``.
    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch let error as DatabaseError {
            throw RegistryStoreError("SQLite: \(Self.describe(error))")
        }
    }

    // MARK: Schema

    public func migrate() async throws {
        try await transaction { db in
            try db.execute(
                sql: "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
            let applied = Set(try Int.fetchAll(db, sql: "SELECT version FROM schema_migrations"))
            for migration in SQLiteSchema.migrations where !applied.contains(migration.version) {
                try db.execute(sql: migration.sql)
                try db.execute(
                    sql: "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    arguments: [migration.version, StoreSupport.ms(Date())])
            }
            for name in [StoreSupport.pseudonymKeyName, StoreSupport.sessionKeyName] {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)",
                    arguments: [name, Data(StoreSupport.randomKey())])
            }
        }
    }

    public func checkReady() async throws {
        let versions = try await read { db in try Int.fetchAll(db, sql: "SELECT version FROM schema_migrations") }
        let missing = Set(SQLiteSchema.migrations.map(\.version)).subtracting(versions)
        guard missing.isEmpty else { throw RegistryStoreError("database migrations not applied: \(missing.sorted())") }
    }

    func setting(_ name: String) async throws -> [UInt8]? {
        let data = try await read { db in
            try Data.fetchOne(db, sql: "SELECT value FROM settings WHERE name = ?", arguments: [name])
        }
        return data.map { [UInt8]($0) }
    }

    public func pseudonymKey() async throws -> [UInt8] {
        try await keys.key(StoreSupport.pseudonymKeyName, read: setting)
    }

    public func sessionKey() async throws -> [UInt8] {
        try await keys.key(StoreSupport.sessionKeyName, read: setting)
    }

    public func close() async {
        try? pool.close()
    }

    // MARK: Credentials

    public func putDeviceToken(serial: String, tokenHash: String, at: Date) async throws {
        let t = StoreSupport.ms(at)
        try await transaction { db in
            try db.execute(
                sql: "INSERT INTO units (serial, created_at) VALUES (?, ?) ON CONFLICT (serial) DO NOTHING",
                arguments: [serial, t])
            try Self.putCredential(db, kind: "device", subject: serial, role: nil, tokenHash: tokenHash, at: t)
        }
    }

    public func putStationToken(name: String, tokenHash: String, at: Date) async throws {
        let t = StoreSupport.ms(at)
        try await transaction { db in
            try Self.putCredential(db, kind: "station", subject: name, role: nil, tokenHash: tokenHash, at: t)
        }
    }

    public func putOperatorToken(name: String, role: OperatorRole, tokenHash: String, at: Date) async throws {
        let t = StoreSupport.ms(at)
        try await transaction { db in
            try Self.putCredential(db, kind: "operator", subject: name, role: role.rawValue, tokenHash: tokenHash, at: t)
        }
    }

    /// Revokes the subject's valid tokens of that kind and stores the new one: one valid token per subject.
    static func putCredential(
        _ db: Database, kind: String, subject: String, role: String?, tokenHash: String, at: Int64
    ) throws {
        try db.execute(
            sql: "UPDATE credentials SET revoked_at = ? WHERE kind = ? AND subject = ? AND revoked_at IS NULL",
            arguments: [at, kind, subject])
        try db.execute(
            sql: """
                INSERT INTO credentials (token_hash, kind, subject, role, created_at) VALUES (?, ?, ?, ?, ?)
                """, arguments: [tokenHash, kind, subject, role, at])
    }

    public func credential(tokenHash: String) async throws -> CredentialRecord? {
        try await read { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT kind, subject, role, revoked_at FROM credentials WHERE token_hash = ?",
                    arguments: [tokenHash])
            else { return nil }
            return StoreRows.credential(
                kind: row["kind"], subject: row["subject"], role: row["role"], revokedAt: row["revoked_at"])
        }
    }

    // MARK: Ingest

    /// Whether `tokenHash` is a valid (unrevoked) token of the device `serial` (``IngestOptions/deviceTokenHash``).
    static func isValidDeviceToken(_ db: Database, tokenHash: String, serial: String) throws -> Bool {
        try Bool.fetchOne(
            db.cachedStatement(
                sql: """
                SELECT EXISTS (SELECT 1 FROM credentials WHERE token_hash = ? AND kind = 'device' AND subject = ?
                    AND revoked_at IS NULL)
                """), arguments: [tokenHash, serial]) ?? false
    }

    public func ingest(
        _ request: EnrollmentRequest, serial: String, origin: EventOrigin, references: [String], receivedAt: Date,
        options: IngestOptions
    ) async throws -> IngestOutcome {
        let key = try await pseudonymKey()
        let payload = try StoreSupport.payload(request, received: options.payload)
        let refs = StoreSupport.references(reported: references + (request.references?.all ?? []), identity: request.identity, key: key)
        let received = StoreSupport.ms(receivedAt)
        let occurred = StoreSupport.ms(StoreSupport.occurredAt(request.occurredAt, fallback: receivedAt))
        // Everything above runs on the caller's task; the writer thread does only the statements (one at a time for
        // the whole store: what it spends per event bounds the rate).
        return try await ingestQueue.submit { db -> IngestOutcome in
            if let tokenHash = options.deviceTokenHash,
                try !Self.isValidDeviceToken(db, tokenHash: tokenHash, serial: serial)
            {
                return .credentialRefused
            }
            let id = request.identity
            let prev = request.previous
            try db.cachedStatement(
                sql: """
                    INSERT INTO events (event_id, serial, origin, type, slot, sequence, severity, occurred_at,
                        received_at, imei, imsi, iccid, prev_imei, prev_imsi, prev_iccid, payload, eid, prev_eid,
                        sim_slot, state_lost)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (event_id) DO NOTHING
                    """
            ).execute(arguments: [
                request.eventID, serial, origin.rawValue, request.type, request.module.slot, request.sequence,
                request.severity, occurred, received, id.imei, id.imsi, id.iccid, prev?.imei, prev?.imsi,
                prev?.iccid, payload, id.eid, prev?.eid, id.simSlot, request.stateLost?.reason,
            ])
            guard db.changesCount == 1 else { return .duplicate }
            let reused = try Self.sequenceReusedFrom(db, request: request, serial: serial, origin: origin)
            let fieldSeen: Int64? = origin == .device ? received : nil
            try db.cachedStatement(
                sql: """
                    INSERT INTO units (serial, created_at, first_seen, last_seen) VALUES (?, ?, ?, ?)
                    ON CONFLICT (serial) DO UPDATE SET
                        first_seen = min(coalesce(units.first_seen, excluded.first_seen), excluded.first_seen),
                        last_seen = CASE WHEN excluded.last_seen IS NULL THEN units.last_seen
                            ELSE max(coalesce(units.last_seen, excluded.last_seen), excluded.last_seen) END
                    """
            ).execute(arguments: [serial, received, received, fieldSeen])
            try db.cachedStatement(
                sql: """
                    INSERT INTO slots (serial, origin, slot, imei, imsi, iccid, last_iccid, tac, manufacturer, model,
                        revision, source, last_event_type, occurred_at, updated_at, eid, last_eid, sim_slot,
                        max_sequence)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (serial, origin, slot) DO UPDATE SET imei = excluded.imei, imsi = excluded.imsi,
                        max_sequence = max(coalesce(slots.max_sequence, 0), excluded.max_sequence),
                        iccid = excluded.iccid, last_iccid = coalesce(excluded.last_iccid, slots.last_iccid),
                        eid = excluded.eid, sim_slot = excluded.sim_slot,
                        last_eid = CASE WHEN excluded.last_iccid IS NULL THEN slots.last_eid
                            ELSE excluded.last_eid END,
                        source = excluded.source, last_event_type = excluded.last_event_type,
                        occurred_at = excluded.occurred_at, updated_at = excluded.updated_at
                    WHERE excluded.occurred_at >= slots.occurred_at
                    """
            ).execute(arguments: [
                serial, origin.rawValue, request.module.slot, id.imei, id.imsi, id.iccid,
                id.iccid ?? prev?.iccid, StoreSupport.tac(id.imei), request.module.manufacturer,
                request.module.model, request.module.revision, request.module.source, request.type, occurred, received,
                id.eid, StoreSupport.lastEID(id, prev), id.simSlot, request.sequence,
            ])
            let isCurrent = db.changesCount == 1
            if isCurrent {
                // The module's names and the TAC (indexed: slots_tac, slots_model, slots_revision) are set apart, and
                // only when one differs: SQLite rewrites an index entry whenever its column is in an UPDATE's SET,
                // changed or not, and they change only with a firmware update or another module.
                try db.cachedStatement(
                    sql: """
                        UPDATE slots SET tac = ?1, manufacturer = ?2, model = ?3, revision = ?4
                        WHERE serial = ?5 AND origin = ?6 AND slot = ?7
                            AND NOT (tac IS ?1 AND manufacturer IS ?2 AND model IS ?3 AND revision IS ?4)
                        """
                ).execute(arguments: [
                    StoreSupport.tac(id.imei), request.module.manufacturer, request.module.model,
                    request.module.revision, serial, origin.rawValue, request.module.slot,
                ])
            } else {
                // A late event (older than the slot's current one) still counts for the slot's highest sequence.
                try db.cachedStatement(
                    sql: """
                        UPDATE slots SET max_sequence = max(coalesce(max_sequence, 0), ?)
                        WHERE serial = ? AND origin = ? AND slot = ?
                        """
                ).execute(arguments: [request.sequence, serial, origin.rawValue, request.module.slot])
            }
            for ref in refs {
                try db.cachedStatement(sql: "INSERT INTO refs (ref, serial) VALUES (?, ?) ON CONFLICT DO NOTHING")
                    .execute(arguments: [ref, serial])
            }
            var context = try Self.context(db, request: request, serial: serial, origin: origin)
            context.sequenceReusedFrom = reused
            if !isCurrent {
                // An older event than the slot's current one (a late backlog): it says nothing about who holds
                // the IMEI or SIM now, so the cross-unit rules (and moving the SIM away from its holder) skip it.
                context.imeiHolders = []
                context.iccidHolders = []
                context.iccidHoldersSameEID = []
                context.iccidHoldersOtherEID = []
                context.eidHolders = []
            }
            let flags = FlagRules.evaluate(context)
            if let eid = id.eid, !FlagRules.euiccMovedFrom(context).isEmpty {
                // The eUICC is in this unit now: the previous holder's slot no longer holds the card (nor its
                // profile).
                try db.cachedStatement(
                    sql: """
                        UPDATE slots SET eid = NULL, last_eid = NULL, iccid = NULL, imsi = NULL, last_iccid = NULL
                        WHERE origin = 'device' AND serial <> ? AND (eid = ? OR last_eid = ?)
                        """
                ).execute(arguments: [serial, eid, eid])
            }
            if let iccid = id.iccid, !FlagRules.iccidMovedFrom(context).isEmpty {
                // The SIM is in this unit now: the previous holder's slot no longer holds it.
                try db.cachedStatement(
                    sql: """
                        UPDATE slots SET iccid = NULL, imsi = NULL, last_iccid = NULL
                        WHERE origin = 'device' AND serial <> ? AND (iccid = ? OR last_iccid = ?)
                        """
                ).execute(arguments: [serial, iccid, iccid])
            }
            return .stored(raised: try Self.insertFlags(db, flags, at: received))
        }
    }

    /// The earlier stored event of the same field slot with the event's sequence (another event id), read before
    /// the slot takes the event: only when the sequence is not above the slot's highest (nearly every event is, and
    /// costs nothing more). Marks the event with it (`reuses_sequence_of`) for the timeline.
    static func sequenceReusedFrom(_ db: Database, request: EnrollmentRequest, serial: String, origin: EventOrigin)
        throws -> String?
    {
        guard origin == .device,
            let slot = try Row.fetchOne(
                db.cachedStatement(
                    sql: "SELECT max_sequence FROM slots WHERE serial = ? AND origin = 'device' AND slot = ?"),
                arguments: [serial, request.module.slot])
        else { return nil }  // a new slot: no earlier event
        if let highest = slot["max_sequence"] as Int64?, Int64(request.sequence) > highest { return nil }
        guard
            let earlier = try String.fetchOne(
                db.cachedStatement(
                    sql: """
                    SELECT event_id FROM events WHERE serial = ? AND origin = 'device' AND slot = ? AND sequence = ?
                        AND event_id <> ? ORDER BY id LIMIT 1
                    """), arguments: [serial, request.module.slot, request.sequence, request.eventID])
        else { return nil }
        try db.cachedStatement(sql: "UPDATE events SET reuses_sequence_of = ? WHERE event_id = ?")
            .execute(arguments: [earlier, request.eventID])
        return earlier
    }

    static func context(_ db: Database, request: EnrollmentRequest, serial: String, origin: EventOrigin) throws
        -> IngestContext
    {
        let lost = try Int64?.fetchOne(
            db.cachedStatement(sql: "SELECT lost_at FROM units WHERE serial = ?"), arguments: [serial])
        var context = IngestContext(request: request, serial: serial, origin: origin, unitLost: lost.flatMap { $0 } != nil)
        if let imei = request.identity.imei {
            context.imeiHolders = try String.fetchAll(
                db.cachedStatement(
                    sql: "SELECT DISTINCT serial FROM slots WHERE imei = ? AND origin = 'device' AND serial <> ?"),
                arguments: [imei, serial])
        }
        if let iccid = request.identity.iccid {
            context.iccidHolders = try String.fetchAll(
                db.cachedStatement(
                    sql: """
                    SELECT serial FROM slots WHERE iccid = ? AND origin = 'device' AND serial <> ?
                    UNION SELECT serial FROM slots WHERE last_iccid = ? AND origin = 'device' AND serial <> ?
                    """), arguments: [iccid, serial, iccid, serial])
        }
        if let eid = request.identity.eid {
            context.eidHolders = try String.fetchAll(
                db.cachedStatement(
                    sql: """
                    SELECT serial FROM slots WHERE eid = ? AND origin = 'device' AND serial <> ?
                    UNION SELECT serial FROM slots WHERE last_eid = ? AND origin = 'device' AND serial <> ?
                    """), arguments: [eid, serial, eid, serial])
            if let iccid = request.identity.iccid, !context.iccidHolders.isEmpty {
                let cards = try Row.fetchAll(
                    db.cachedStatement(
                        sql: """
                        SELECT DISTINCT serial, CASE WHEN iccid = ? THEN eid ELSE last_eid END AS card FROM slots
                        WHERE (iccid = ? OR last_iccid = ?) AND origin = 'device' AND serial <> ?
                        """), arguments: [iccid, iccid, iccid, serial])
                for row in cards {
                    guard let card = row["card"] as String? else { continue }
                    if card == eid {
                        context.iccidHoldersSameEID.append(row["serial"])
                    } else {
                        context.iccidHoldersOtherEID.append(row["serial"])
                    }
                }
            }
        }
        context.manufacturingEIDs = try String.fetchAll(
            db.cachedStatement(
                sql: """
                SELECT DISTINCT eid FROM events WHERE serial = ? AND origin = 'factory' AND eid IS NOT NULL
                    AND event_id <> ?
                """), arguments: [serial, request.eventID])
        context.manufacturingIMEIs = try String.fetchAll(
            db.cachedStatement(
                sql: """
                SELECT DISTINCT imei FROM events WHERE serial = ? AND origin = 'factory' AND imei IS NOT NULL
                    AND event_id <> ?
                """), arguments: [serial, request.eventID])
        if origin == .factory {
            context.fieldIMEIs = try String.fetchAll(
                db.cachedStatement(
                    sql: "SELECT imei FROM slots WHERE serial = ? AND origin = 'device' AND imei IS NOT NULL"),
                arguments: [serial])
            context.fieldEIDs = try String.fetchAll(
                db.cachedStatement(
                    sql: "SELECT eid FROM slots WHERE serial = ? AND origin = 'device' AND eid IS NOT NULL"),
                arguments: [serial])
        }
        return context
    }

    /// Inserts the flags whose dedupe key has no open flag (the partial unique index decides), returning those
    /// inserted.
    static func insertFlags(_ db: Database, _ flags: [NewFlag], at: Int64) throws -> [RegistryFlag] {
        var raised = [RegistryFlag]()
        for flag in flags {
            let id = try Int64.fetchOne(
                db.cachedStatement(
                    sql: """
                    INSERT INTO flags (kind, severity, serial, slot, summary, evidence, dedupe_key, raised_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (dedupe_key) WHERE resolved_at IS NULL DO NOTHING
                    RETURNING id
                    """), arguments: [
                    flag.kind.rawValue, flag.severity.rawValue, flag.serial, flag.slot, flag.summary,
                    StoreSupport.encodeEvidence(flag.evidence), flag.dedupeKey, at,
                ])
            if let id { raised.append(RegistryFlag(id: id, flag: flag, raisedAt: StoreSupport.date(at))) }
        }
        return raised
    }

    public func recordRefusal(serial: String, actor: String, reason: String, remote: String?, at: Date) async throws
        -> [RegistryFlag]
    {
        let t = StoreSupport.ms(at)
        return try await transaction { db in
            let window = try Row.fetchOne(
                db, sql: "SELECT window_start, count FROM refusal_windows WHERE serial = ? AND reason = ?",
                arguments: [serial, reason]
            ).map { (start: $0["window_start"] as Int64, count: $0["count"] as Int64) }
            if let detail = StoreSupport.refusalAudit(previous: window, at: t, reason: reason) {
                try db.execute(
                    sql: """
                        INSERT INTO refusal_windows (serial, reason, window_start, count) VALUES (?, ?, ?, 1)
                        ON CONFLICT (serial, reason) DO UPDATE SET window_start = excluded.window_start, count = 1
                        """, arguments: [serial, reason, t])
                try Self.insertAudit(
                    db, AuditEntry(at: at, actor: actor, action: "device_refused", serial: serial, remote: remote,
                        detail: detail))
            } else {
                try db.execute(
                    sql: "UPDATE refusal_windows SET count = count + 1 WHERE serial = ? AND reason = ?",
                    arguments: [serial, reason])
            }
            let lost = try Int64?.fetchOne(db, sql: "SELECT lost_at FROM units WHERE serial = ?", arguments: [serial])
            guard lost.flatMap({ $0 }) != nil else { return [] }
            return try Self.insertFlags(db, [FlagRules.lostUnitSeen(serial: serial, how: "tried to report")], at: t)
        }
    }

    // MARK: Queries

    public func searchUnits(_ terms: SearchTerms, limit: Int) async throws -> [UnitSummary] {
        guard !terms.isEmpty, limit > 0 else { return [] }
        return try await read { db in
            var serials = [String]()
            var seen = Set<String>()
            func add(_ sql: String, _ value: String?) throws {
                guard let value, serials.count < limit else { return }
                for s in try String.fetchAll(db, sql: sql, arguments: [value, limit]) where seen.insert(s).inserted {
                    serials.append(s)
                }
            }
            try add("SELECT serial FROM units WHERE serial = ? LIMIT ?", terms.serial)
            try add("SELECT DISTINCT serial FROM slots WHERE imei = ? LIMIT ?", terms.imei)
            try add("SELECT DISTINCT serial FROM slots WHERE iccid = ? LIMIT ?", terms.iccid)
            try add("SELECT DISTINCT serial FROM slots WHERE imsi = ? LIMIT ?", terms.imsi)
            try add("SELECT serial FROM refs WHERE ref = ? LIMIT ?", terms.reference)
            try add("SELECT DISTINCT serial FROM slots WHERE tac = ? ORDER BY serial LIMIT ?", terms.tac)
            try add("SELECT DISTINCT serial FROM slots WHERE eid = ? LIMIT ?", terms.eid)
            return try Self.summaries(db, serials: Array(serials.prefix(limit)))
        }
    }

    /// The three reads behind `summaries`, each of a JSON array of serials (json_each): the units, their slots, their
    /// open flags counted.
    static let summarySQL = (
        units: """
            SELECT serial, first_seen, last_seen, lost_at FROM units WHERE serial IN (SELECT value FROM json_each(?))
            """,
        slots: "SELECT * FROM slots WHERE serial IN (SELECT value FROM json_each(?)) ORDER BY serial, origin, slot",
        openFlags: """
            SELECT serial, count(*) AS n FROM flags
            WHERE serial IN (SELECT value FROM json_each(?)) AND resolved_at IS NULL GROUP BY serial
            """
    )

    /// Summaries of `serials` (in that order, unknown ones left out) in three queries whatever their number, as
    /// PostgreSQL's: the serials go in as one JSON array, so each statement is prepared once per connection.
    static func summaries(_ db: Database, serials: [String]) throws -> [UnitSummary] {
        guard !serials.isEmpty else { return [] }
        let list = String(decoding: try JSONEncoder().encode(serials), as: UTF8.self)
        var units = [String: Row]()
        for row in try Row.fetchAll(db.cachedStatement(sql: summarySQL.units), arguments: [list]) {
            units[row["serial"]] = row
        }
        var slots = [String: [SlotState]]()
        for row in try Row.fetchAll(db.cachedStatement(sql: summarySQL.slots), arguments: [list]) {
            slots[row["serial"], default: []].append(slotState(row))
        }
        var open = [String: Int]()
        for row in try Row.fetchAll(db.cachedStatement(sql: summarySQL.openFlags), arguments: [list]) {
            open[row["serial"]] = row["n"]
        }
        return serials.compactMap { serial in
            guard let unit = units[serial] else { return nil }
            return UnitSummary(
                serial: serial, slots: slots[serial] ?? [], lost: (unit["lost_at"] as Int64?) != nil,
                firstSeen: StoreSupport.date(unit["first_seen"] as Int64?),
                lastSeen: StoreSupport.date(unit["last_seen"] as Int64?), openFlags: open[serial] ?? 0)
        }
    }

    static func slotState(_ row: Row) -> SlotState {
        SlotState(
            slot: row["slot"],
            identity: IdentitySnapshot(
                imei: row["imei"], imsi: row["imsi"], iccid: row["iccid"], eid: row["eid"], simSlot: row["sim_slot"]),
            manufacturer: row["manufacturer"], model: row["model"], revision: row["revision"], source: row["source"],
            lastEventType: row["last_event_type"], updatedAt: StoreSupport.date(row["updated_at"] as Int64),
            origin: EventOrigin(rawValue: row["origin"]) ?? .device)
    }

    public func unit(serial: String) async throws -> UnitDetail? {
        try await read { db in
            guard let summary = try Self.summaries(db, serials: [serial]).first,
                let unit = try Row.fetchOne(
                    db, sql: "SELECT lost_at, lost_by, lost_note FROM units WHERE serial = ?", arguments: [serial])
            else { return nil }
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM (SELECT * FROM events WHERE serial = ? ORDER BY occurred_at DESC, id DESC LIMIT ?)
                    ORDER BY occurred_at, id
                    """, arguments: [serial, StoreSupport.timelineLimit])
            let timeline = rows.map(Self.timelineEntry)
            let flags = try Row.fetchAll(
                db, sql: "SELECT * FROM flags WHERE serial = ? ORDER BY id DESC LIMIT 1000", arguments: [serial]
            ).map(Self.flag)
            let lost = (unit["lost_at"] as Int64?).map {
                LostState(markedAt: StoreSupport.date($0), markedBy: unit["lost_by"] ?? "", note: unit["lost_note"])
            }
            return UnitDetail(
                summary: summary, manufacturing: timeline.filter { $0.origin == .factory }, timeline: timeline,
                flags: flags, lost: lost)
        }
    }

    static func timelineEntry(_ row: Row) -> TimelineEntry {
        let prev: IdentitySnapshot? =
            (row["prev_imei"] as String?) == nil && (row["prev_imsi"] as String?) == nil
                && (row["prev_iccid"] as String?) == nil && (row["prev_eid"] as String?) == nil
            ? nil
            : IdentitySnapshot(
                imei: row["prev_imei"], imsi: row["prev_imsi"], iccid: row["prev_iccid"], eid: row["prev_eid"])
        return TimelineEntry(
            eventID: row["event_id"], origin: EventOrigin(rawValue: row["origin"]) ?? .device, type: row["type"],
            slot: row["slot"], sequence: row["sequence"], severity: row["severity"],
            occurredAt: StoreSupport.date(row["occurred_at"] as Int64),
            receivedAt: StoreSupport.date(row["received_at"] as Int64),
            identity: IdentitySnapshot(
                imei: row["imei"], imsi: row["imsi"], iccid: row["iccid"], eid: row["eid"], simSlot: row["sim_slot"]),
            previous: prev, stateLost: row["state_lost"], reusesSequenceOf: row["reuses_sequence_of"],
            firmware: StoreSupport.firmware(type: row["type"], payload: row["payload"]))
    }

    static func flag(_ row: Row) -> RegistryFlag {
        StoreRows.flag(
            id: row["id"], kind: row["kind"], severity: row["severity"], serial: row["serial"], slot: row["slot"],
            summary: row["summary"], evidence: row["evidence"], dedupeKey: row["dedupe_key"],
            raisedAt: row["raised_at"], resolvedAt: row["resolved_at"], resolvedBy: row["resolved_by"],
            note: row["resolution_note"])
    }

    public func flag(id: Int64) async throws -> RegistryFlag? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM flags WHERE id = ?", arguments: [id]).map(Self.flag)
        }
    }

    public func resolveFlag(id: Int64, by: String, note: String, at: Date) async throws -> Bool {
        let t = StoreSupport.ms(at)
        return try await transaction { db in
            try db.execute(
                sql: """
                    UPDATE flags SET resolved_at = ?, resolved_by = ?, resolution_note = ?
                    WHERE id = ? AND resolved_at IS NULL
                    """, arguments: [t, by, note, id])
            return db.changesCount == 1
        }
    }

    public func raise(_ flags: [NewFlag], at: Date) async throws -> [RegistryFlag] {
        let t = StoreSupport.ms(at)
        return try await transaction { db in try Self.insertFlags(db, flags, at: t) }
    }

    // MARK: Lost / found

    public func markLost(serial: String, by: String, note: String?, at: Date) async throws -> Bool {
        let t = StoreSupport.ms(at)
        return try await transaction { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM units WHERE serial = ?", arguments: [serial]) != nil else {
                return false
            }
            try db.execute(
                sql: "UPDATE units SET lost_at = ?, lost_by = ?, lost_note = ? WHERE serial = ? AND lost_at IS NULL",
                arguments: [t, by, note, serial])
            try db.execute(
                sql: """
                    UPDATE credentials SET revoked_at = ? WHERE kind = 'device' AND subject = ? AND revoked_at IS NULL
                    """, arguments: [t, serial])
            return true
        }
    }

    public func markFound(serial: String, by: String, newTokenHash: String, at: Date) async throws -> Bool {
        let t = StoreSupport.ms(at)
        return try await transaction { db in
            guard
                let lost = try Int64?.fetchOne(db, sql: "SELECT lost_at FROM units WHERE serial = ?", arguments: [serial]),
                lost != nil
            else { return false }
            try db.execute(
                sql: "UPDATE units SET lost_at = NULL, lost_by = NULL, lost_note = NULL WHERE serial = ?",
                arguments: [serial])
            try Self.putCredential(db, kind: "device", subject: serial, role: nil, tokenHash: newTokenHash, at: t)
            return true
        }
    }

    // MARK: Audit

    static func insertAudit(_ db: Database, _ e: AuditEntry) throws {
        try db.execute(
            sql: "INSERT INTO audit (at, actor, action, serial, remote, detail) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [StoreSupport.ms(e.at), e.actor, e.action, e.serial, e.remote, e.detail])
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await transaction { db in try Self.insertAudit(db, entry) }
    }

    public func audit(limit: Int) async throws -> [AuditEntry] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit ORDER BY id DESC LIMIT ?", arguments: [max(0, limit)]).map {
                AuditEntry(
                    id: $0["id"], at: StoreSupport.date($0["at"] as Int64), actor: $0["actor"], action: $0["action"],
                    serial: $0["serial"], remote: $0["remote"], detail: $0["detail"])
            }
        }
    }

    // MARK: Exports and checks

    public func exportUnits() async throws -> [UnitExportRow] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT s.*, u.first_seen, u.last_seen FROM slots s JOIN units u ON u.serial = s.serial
                    ORDER BY s.serial, s.origin, s.slot
                    """
            ).map { row in
                UnitExportRow(
                    serial: row["serial"], slot: row["slot"],
                    identity: IdentitySnapshot(
                        imei: row["imei"], imsi: row["imsi"], iccid: row["iccid"], eid: row["eid"],
                        simSlot: row["sim_slot"]),
                    module: StoreRows.module(row["manufacturer"], row["model"]),
                    firstSeen: StoreSupport.date(row["first_seen"] as Int64?),
                    lastSeen: StoreSupport.date(row["last_seen"] as Int64?),
                    origin: EventOrigin(rawValue: row["origin"]) ?? .device)
            }
        }
    }

    public func simAssignments() async throws -> [SIMAssignment] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT serial, slot, iccid, imsi, eid FROM slots WHERE origin = 'device' AND iccid IS NOT NULL
                    ORDER BY serial, slot
                    """
            ).map {
                SIMAssignment(serial: $0["serial"], slot: $0["slot"], iccid: $0["iccid"], imsi: $0["imsi"], eid: $0["eid"])
            }
        }
    }

    public func silentUnits(lastSeenBefore before: Date) async throws -> [String] {
        try await read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT serial FROM units WHERE lost_at IS NULL AND last_seen IS NOT NULL AND last_seen < ?
                    ORDER BY serial
                    """, arguments: [StoreSupport.ms(before)])
        }
    }

    public func openFlagCounts() async throws -> [FlagKind: Int] {
        try await read { db in
            var counts = [FlagKind: Int]()
            for row in try Row.fetchAll(
                db, sql: "SELECT kind, count(*) AS n FROM flags WHERE resolved_at IS NULL GROUP BY kind")
            {
                if let kind = FlagKind(rawValue: row["kind"]) { counts[kind] = row["n"] }
            }
            return counts
        }
    }
}
