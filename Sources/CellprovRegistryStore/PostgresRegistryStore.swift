import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import NIOConcurrencyHelpers

/// The registry at fleet scale: PostgreSQL through postgres-nio, shared by several registry instances behind a
/// load balancer.
///
/// - One `PostgresClient` (a connection pool) per store, its `run()` in a task the store owns.
/// - Every method is one transaction (READ COMMITTED). `ingest` inserts its event with
///   `ON CONFLICT (event_id) DO NOTHING` first: of two instances racing on one event, the second waits for the
///   first's commit and then finds the conflict (`.duplicate`). It then takes transaction-scoped advisory locks on
///   the unit's serial and the event's IMEI and ICCID (in key order, so two transactions cannot deadlock on them)
///   before it reads who else holds them: two units enrolling one IMEI at once are serialised, and the second sees
///   the first (`imei_on_two_units`); the same for a SIM moving (`iccid_moved`).
/// - Deadlocks and serialisation failures (which the locks make unlikely) are retried a few times.
public final class PostgresRegistryStore: RegistryStore, Sendable {
    let client: PostgresClient
    let logger: Logger
    let location: PostgresLocation
    private let runTask: Task<Void, Never>
    private let keys = StoredKeys()
    /// Set once the pool's run task has started (a lease before `run()` logs a warning and waits).
    private let running: RunFlag

    /// Connects lazily (the pool opens connections on first use). Call ``migrate()`` next.
    ///
    /// The logger handed to PostgresNIO is held at `.debug` or above: at `.trace` PostgresNIO logs every wire
    /// message, bind values and result rows included, so `--log-level trace` would write raw IMEIs, IMSIs and
    /// ICCIDs (as hex bytes) into the journal. Its `.debug` lines are connection lifecycle and errors.
    public init(location: PostgresLocation, logger: Logger) {
        var logger = logger
        if logger.logLevel < .debug { logger.logLevel = .debug }
        let client = PostgresClient(configuration: Self.clientConfiguration(location), backgroundLogger: logger)
        self.client = client
        self.logger = logger
        self.location = location
        let running = RunFlag()
        self.running = running
        runTask = Task {
            running.value.withLockedValue { $0 = true }
            await client.run()
        }
    }

    /// Waits until the pool's run task is running (the first few microseconds of the store's life).
    func started() async {
        var spins = 0
        while !running.value.withLockedValue({ $0 }) && spins < 10_000 {
            spins += 1
            await Task.yield()
        }
        await Task.yield()
    }

    /// postgres-nio's client configuration for a location (PostgresConnect.swift): unix socket or TCP, TLS as the
    /// location's first attempt says.
    public static func clientConfiguration(_ location: PostgresLocation) -> PostgresClient.Configuration {
        var config = location.clientConfiguration()
        config.options.maximumConnections = 32
        return config
    }

    public func close() async {
        runTask.cancel()
        _ = await runTask.value
    }

    /// An error without the query text or bound values (they may hold identifiers): SQLSTATE and message only.
    static func describe(_ error: any Error) -> String {
        if let e = error as? PSQLError {
            let state = e.serverInfo?[.sqlState] ?? "-"
            let message = e.serverInfo?[.message] ?? "\(e.code)"
            return "PostgreSQL \(state): \(message)"
        }
        if String(describing: type(of: error)).contains("ConnectionPoolError") {
            return "cannot connect to the PostgreSQL server (\(error))"
        }
        return "\(error)"
    }

    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// Runs `body` in one transaction, retrying on deadlock (40P01) and serialisation failure (40001).
    func transaction<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        await started()
        var attempt = 0
        while true {
            do {
                return try await client.withConnection { conn in
                    try await conn.query("BEGIN", logger: logger)
                    do {
                        let result = try await body(conn)
                        try await conn.query("COMMIT", logger: logger)
                        return result
                    } catch {
                        _ = try? await conn.query("ROLLBACK", logger: logger)
                        throw error
                    }
                }
            } catch let error where ["40P01", "40001"].contains(Self.sqlState(error) ?? "") && attempt < 8 {
                attempt += 1
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 << attempt))))
            } catch let error as RegistryStoreError {
                throw error
            } catch {
                throw RegistryStoreError(Self.describe(error))
            }
        }
    }

    /// A read outside an explicit transaction (one statement sees one snapshot).
    func read<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        await started()
        do {
            return try await client.withConnection { conn in try await body(conn) }
        } catch let error as RegistryStoreError {
            throw error
        } catch {
            throw RegistryStoreError(Self.describe(error))
        }
    }

    // MARK: Schema

    public func migrate() async throws {
        let logger = logger
        try await transaction { conn in
            try await conn.query("SELECT pg_advisory_xact_lock(\(PostgresSchema.migrationLock))", logger: logger)
            try await conn.query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
                logger: logger)
            var applied = Set<Int>()
            for try await v in try await conn.query("SELECT version FROM schema_migrations", logger: logger)
                .decode(Int32.self)
            {
                applied.insert(Int(v))
            }
            for migration in PostgresSchema.migrations where !applied.contains(migration.version) {
                for statement in migration.statements {
                    try await conn.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                let now = StoreSupport.ms(Date())
                try await conn.query(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (\(Int32(migration.version)), \(now))",
                    logger: logger)
            }
            for name in [StoreSupport.pseudonymKeyName, StoreSupport.sessionKeyName] {
                let value = ByteBuffer(bytes: StoreSupport.randomKey())
                try await conn.query(
                    "INSERT INTO settings (name, value) VALUES (\(name), \(value)) ON CONFLICT (name) DO NOTHING",
                    logger: logger)
            }
        }
    }

    public func checkReady() async throws {
        let logger = logger
        let versions = try await read { conn in
            var v = Set<Int>()
            for try await x in try await conn.query("SELECT version FROM schema_migrations", logger: logger)
                .decode(Int32.self)
            {
                v.insert(Int(x))
            }
            return v
        }
        let missing = Set(PostgresSchema.migrations.map(\.version)).subtracting(versions)
        guard missing.isEmpty else { throw RegistryStoreError("database migrations not applied: \(missing.sorted())") }
    }

    func setting(_ name: String) async throws -> [UInt8]? {
        let logger = logger
        let value = try await read { conn -> [UInt8]? in
            for try await b in try await conn.query("SELECT value FROM settings WHERE name = \(name)", logger: logger)
                .decode(ByteBuffer.self)
            {
                return Array(b.readableBytesView)
            }
            return nil
        }
        return value
    }

    public func pseudonymKey() async throws -> [UInt8] {
        try await keys.key(StoreSupport.pseudonymKeyName, read: setting)
    }

    public func sessionKey() async throws -> [UInt8] {
        try await keys.key(StoreSupport.sessionKeyName, read: setting)
    }

    // MARK: Credentials

    public func putDeviceToken(serial: String, tokenHash: String, at: Date) async throws {
        let t = StoreSupport.ms(at)
        let logger = logger
        try await transaction { conn in
            try await conn.query(
                "INSERT INTO units (serial, created_at) VALUES (\(serial), \(t)) ON CONFLICT (serial) DO NOTHING",
                logger: logger)
            try await Self.putCredential(conn, logger, kind: "device", subject: serial, role: nil, hash: tokenHash, at: t)
        }
    }

    public func putStationToken(name: String, tokenHash: String, at: Date) async throws {
        let t = StoreSupport.ms(at)
        let logger = logger
        try await transaction { conn in
            try await Self.putCredential(conn, logger, kind: "station", subject: name, role: nil, hash: tokenHash, at: t)
        }
    }

    public func putOperatorToken(name: String, role: OperatorRole, tokenHash: String, at: Date) async throws {
        let t = StoreSupport.ms(at)
        let logger = logger
        try await transaction { conn in
            try await Self.putCredential(
                conn, logger, kind: "operator", subject: name, role: role.rawValue, hash: tokenHash, at: t)
        }
    }

    static func putCredential(
        _ conn: PostgresConnection, _ logger: Logger, kind: String, subject: String, role: String?, hash: String,
        at: Int64
    ) async throws {
        try await conn.query(
            """
            UPDATE credentials SET revoked_at = \(at)
            WHERE kind = \(kind) AND subject = \(subject) AND revoked_at IS NULL
            """, logger: logger)
        try await conn.query(
            """
            INSERT INTO credentials (token_hash, kind, subject, role, created_at)
            VALUES (\(hash), \(kind), \(subject), \(role), \(at))
            """, logger: logger)
    }

    public func credential(tokenHash: String) async throws -> CredentialRecord? {
        let logger = logger
        return try await read { conn in
            for try await (kind, subject, role, revoked) in try await conn.execute(
                CredentialLookup(tokenHash: tokenHash), logger: logger)
            {
                return StoreRows.credential(kind: kind, subject: subject, role: role, revokedAt: revoked)
            }
            return nil
        }
    }

    // MARK: Ingest

    public func ingest(
        _ request: EnrollmentRequest, serial: String, origin: EventOrigin, references: [String], receivedAt: Date,
        options: IngestOptions
    ) async throws -> IngestOutcome {
        let key = try await pseudonymKey()
        let call = try IngestCall(
            request: request, serial: serial, origin: origin,
            refs: StoreSupport.references(
                reported: references + (request.references?.all ?? []), identity: request.identity, key: key),
            receivedAt: receivedAt, payload: options.payload)
        let tokenHash = options.deviceTokenHash
        let logger = logger
        // The fast path: when the rules raise nothing for this event on an empty context (an event of a unit that
        // is not lost, shares no IMEI or SIM with another unit and has no manufacturing record: nearly every
        // event), the whole ingest is one statement in autocommit, one round trip, durable when it returns. The
        // function refuses (SQLSTATE CPRUL, everything rolled back) when the context turns out not to be empty.
        if FlagRules.evaluate(IngestContext(request: request, serial: serial, origin: origin)).isEmpty {
            let fast = call.fastPath()
            do {
                let outcome = try await retrying {
                    try await self.client.withConnection { conn -> IngestOutcome in
                        guard let row = try await Self.run(fast, tokenHash: tokenHash, on: conn, logger: logger) else {
                            return .credentialRefused
                        }
                        return row.stored ? .stored(raised: []) : .duplicate
                    }
                }
                return outcome
            } catch let error where Self.sqlState(error) == Self.needsRules {
                // The context is not empty: run it again, with the rules, in one transaction.
            } catch let error as RegistryStoreError {
                throw error
            } catch {
                throw RegistryStoreError(Self.describe(error))
            }
        }
        // The full path: BEGIN; the function (the same writes, returning the rules' context); the ICCID moved
        // away from its former holder and the flags, in Swift's rules; COMMIT.
        return try await transaction { conn -> IngestOutcome in
            guard let row = try await Self.run(call, tokenHash: tokenHash, on: conn, logger: logger) else {
                return .credentialRefused
            }
            guard row.stored else { return .duplicate }
            var context = IngestContext(request: request, serial: serial, origin: origin)
            context.unitLost = row.lost
            context.manufacturingIMEIs = row.made
            context.fieldIMEIs = row.field
            // An older event than the slot's current one (a late backlog) says nothing about who holds the IMEI
            // or SIM now, so the cross-unit rules (and moving the SIM away from its holder) skip it.
            context.manufacturingEIDs = row.madeEIDs
            context.fieldEIDs = row.fieldEIDs
            context.sequenceReusedFrom = row.reusedOf
            if row.isCurrent {
                context.imeiHolders = row.imeiHolders
                context.iccidHolders = row.iccidHolders
                context.eidHolders = row.eidHolders
                context.iccidHoldersSameEID = row.iccidSameEID
                context.iccidHoldersOtherEID = row.iccidOtherEID
            }
            let flags = FlagRules.evaluate(context)
            if let eid = request.identity.eid, !FlagRules.euiccMovedFrom(context).isEmpty {
                // The eUICC is in this unit now: the previous holder's slot no longer holds the card (nor its
                // profile).
                try await conn.query(
                    """
                    UPDATE slots SET eid = NULL, last_eid = NULL, iccid = NULL, imsi = NULL, last_iccid = NULL
                    WHERE origin = 'device' AND serial <> \(serial) AND (eid = \(eid) OR last_eid = \(eid))
                    """, logger: logger)
            }
            if let iccid = request.identity.iccid, !FlagRules.iccidMovedFrom(context).isEmpty {
                try await conn.query(
                    """
                    UPDATE slots SET iccid = NULL, imsi = NULL, last_iccid = NULL
                    WHERE origin = 'device' AND serial <> \(serial) AND (iccid = \(iccid) OR last_iccid = \(iccid))
                    """, logger: logger)
            }
            return .stored(raised: try await Self.insertFlags(conn, logger, flags, at: call.received))
        }
    }

    /// Runs the ingest function on `conn`: `cellprov_ingest`, or `cellprov_ingest_device` when a device token is
    /// to be checked in the same statement; nil when that token is refused (nothing written).
    static func run(_ call: IngestCall, tokenHash: String?, on conn: PostgresConnection, logger: Logger) async throws
        -> IngestCall.Row?
    {
        if let tokenHash {
            for try await row in try await conn.execute(
                DeviceIngestCall(tokenHash: tokenHash, call: call), logger: logger)
            {
                return row
            }
        } else {
            for try await row in try await conn.execute(call, logger: logger) { return row }
        }
        throw RegistryStoreError("cellprov_ingest returned no row")
    }

    /// SQLSTATE of `cellprov_ingest`'s refusal on the fast path: the flag rules must run.
    static let needsRules = "CPRUL"

    /// Runs `body`, retrying on deadlock (40P01) and serialisation failure (40001) like ``transaction(_:)``.
    func retrying<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await started()
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch let error where ["40P01", "40001"].contains(Self.sqlState(error) ?? "") && attempt < 8 {
                attempt += 1
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 << attempt))))
            }
        }
    }

    static func strings(_ rows: PostgresRowSequence) async throws -> [String] {
        var out = [String]()
        for try await s in rows.decode(String.self) { out.append(s) }
        return out
    }

    static func insertFlags(_ conn: PostgresConnection, _ logger: Logger, _ flags: [NewFlag], at: Int64) async throws
        -> [RegistryFlag]
    {
        var raised = [RegistryFlag]()
        for flag in flags {
            let rows = try await conn.query(
                """
                INSERT INTO flags (kind, severity, serial, slot, summary, evidence, dedupe_key, raised_at)
                VALUES (\(flag.kind.rawValue), \(flag.severity.rawValue), \(flag.serial), \(flag.slot),
                    \(flag.summary), \(StoreSupport.encodeEvidence(flag.evidence)), \(flag.dedupeKey), \(at))
                ON CONFLICT (dedupe_key) WHERE resolved_at IS NULL DO NOTHING
                RETURNING id
                """, logger: logger)
            for try await id in rows.decode(Int64.self) {
                raised.append(RegistryFlag(id: id, flag: flag, raisedAt: StoreSupport.date(at)))
            }
        }
        return raised
    }

    static func insertAudit(_ conn: PostgresConnection, _ logger: Logger, _ e: AuditEntry) async throws {
        try await conn.query(
            """
            INSERT INTO audit (at, actor, action, serial, remote, detail)
            VALUES (\(StoreSupport.ms(e.at)), \(e.actor), \(e.action), \(e.serial), \(e.remote), \(e.detail))
            """, logger: logger)
    }

    static func isLost(_ conn: PostgresConnection, _ logger: Logger, _ serial: String) async throws -> Bool? {
        for try await l in try await conn.query("SELECT lost_at FROM units WHERE serial = \(serial)", logger: logger)
            .decode(Int64?.self)
        {
            return l != nil
        }
        return nil
    }

    public func recordRefusal(serial: String, actor: String, reason: String, remote: String?, at: Date) async throws
        -> [RegistryFlag]
    {
        let t = StoreSupport.ms(at)
        let logger = logger
        return try await transaction { conn in
            var window: (start: Int64, count: Int64)?
            for try await (start, count) in try await conn.query(
                """
                SELECT window_start, count FROM refusal_windows WHERE serial = \(serial) AND reason = \(reason)
                FOR UPDATE
                """, logger: logger
            ).decode((Int64, Int64).self) {
                window = (start, count)
            }
            if let detail = StoreSupport.refusalAudit(previous: window, at: t, reason: reason) {
                try await conn.query(
                    """
                    INSERT INTO refusal_windows (serial, reason, window_start, count) VALUES (\(serial), \(reason), \(t), 1)
                    ON CONFLICT (serial, reason) DO UPDATE SET window_start = EXCLUDED.window_start, count = 1
                    """, logger: logger)
                try await Self.insertAudit(
                    conn, logger,
                    AuditEntry(at: at, actor: actor, action: "device_refused", serial: serial, remote: remote, detail: detail))
            } else {
                try await conn.query(
                    "UPDATE refusal_windows SET count = count + 1 WHERE serial = \(serial) AND reason = \(reason)",
                    logger: logger)
            }
            guard try await Self.isLost(conn, logger, serial) == true else { return [] }
            return try await Self.insertFlags(
                conn, logger, [FlagRules.lostUnitSeen(serial: serial, how: "tried to report")], at: t)
        }
    }

    // MARK: Queries

    public func searchUnits(_ terms: SearchTerms, limit: Int) async throws -> [UnitSummary] {
        guard !terms.isEmpty, limit > 0 else { return [] }
        let logger = logger
        let n = limit
        return try await read { conn in
            // Every term kind in one round trip (a term that is nil matches nothing), in the order of the kinds; a
            // prepared statement, like the summaries' three (planned once per connection, not per lookup; the
            // server's part of a lookup is then about 0.15 ms, the rest is the four round trips).
            let rows = try await conn.execute(SearchStatement(terms: terms, limit: n), logger: logger)
            var serials = [String]()
            var seen = Set<String>()
            for try await (serial, _) in rows where seen.insert(serial).inserted {
                serials.append(serial)
            }
            return try await Self.summaries(conn, logger, serials: Array(serials.prefix(limit)))
        }
    }

    static let slotColumns = """
        serial, origin, slot, imei, imsi, iccid, manufacturer, model, revision, source, last_event_type, updated_at,
        eid, sim_slot
        """

    typealias SlotRow = (
        String, String, String, String?, String?, String?, String?, String?, String?, String, String, Int64, String?,
        Int32?
    )

    static func slotState(_ r: SlotRow) -> SlotState {
        SlotState(
            slot: r.2,
            identity: IdentitySnapshot(imei: r.3, imsi: r.4, iccid: r.5, eid: r.12, simSlot: r.13.map(Int.init)),
            manufacturer: r.6, model: r.7,
            revision: r.8, source: r.9, lastEventType: r.10, updatedAt: StoreSupport.date(r.11),
            origin: EventOrigin(rawValue: r.1) ?? .device)
    }

    /// Summaries of `serials` (in that order) in three queries, whatever their number.
    static func summaries(_ conn: PostgresConnection, _ logger: Logger, serials: [String]) async throws
        -> [UnitSummary]
    {
        guard !serials.isEmpty else { return [] }
        var units = [String: (Int64?, Int64?, Int64?)]()
        for try await (s, first, last, lost) in try await conn.execute(UnitRows(serials: serials), logger: logger) {
            units[s] = (first, last, lost)
        }
        var slots = [String: [SlotState]]()
        for try await row in try await conn.execute(SlotRows(serials: serials), logger: logger) {
            slots[row.0, default: []].append(slotState(row))
        }
        var open = [String: Int]()
        for try await (s, n) in try await conn.execute(OpenFlagCounts(serials: serials), logger: logger) {
            open[s] = Int(n)
        }
        return serials.compactMap { s in
            guard let u = units[s] else { return nil }
            return UnitSummary(
                serial: s, slots: slots[s] ?? [], lost: u.2 != nil, firstSeen: StoreSupport.date(u.0),
                lastSeen: StoreSupport.date(u.1), openFlags: open[s] ?? 0)
        }
    }

    static func binds(_ values: some PostgresEncodable) throws -> PostgresBindings {
        var b = PostgresBindings()
        try b.append(values)
        return b
    }

    /// The last (20th) column is the payload of a `firmware_changed` event only (its revisions), null otherwise.
    static let eventColumns = """
        event_id, origin, type, slot, sequence, severity, occurred_at, received_at, imei, imsi, iccid, prev_imei,
        prev_imsi, prev_iccid, eid, prev_eid, sim_slot, state_lost, reuses_sequence_of,
        CASE WHEN type = 'firmware_changed' THEN payload END
        """

    typealias EventRow = (
        String, String, String, String, Int64, String, Int64, Int64, String?, String?, String?, String?, String?,
        String?, String?, String?, Int32?, String?, String?, String?
    )

    static func timelineEntry(_ r: EventRow) -> TimelineEntry {
        let prev: IdentitySnapshot? =
            r.11 == nil && r.12 == nil && r.13 == nil && r.15 == nil
            ? nil : IdentitySnapshot(imei: r.11, imsi: r.12, iccid: r.13, eid: r.15)
        return TimelineEntry(
            eventID: r.0, origin: EventOrigin(rawValue: r.1) ?? .device, type: r.2, slot: r.3, sequence: Int(r.4),
            severity: r.5, occurredAt: StoreSupport.date(r.6), receivedAt: StoreSupport.date(r.7),
            identity: IdentitySnapshot(imei: r.8, imsi: r.9, iccid: r.10, eid: r.14, simSlot: r.16.map(Int.init)),
            previous: prev, stateLost: r.17, reusesSequenceOf: r.18,
            firmware: StoreSupport.firmware(type: r.2, payload: r.19))
    }

    static let flagColumns = """
        id, kind, severity, serial, slot, summary, evidence, dedupe_key, raised_at, resolved_at, resolved_by,
        resolution_note
        """

    typealias FlagRow = (Int64, String, String, String?, String?, String, String, String, Int64, Int64?, String?, String?)

    static func flag(_ r: FlagRow) -> RegistryFlag {
        StoreRows.flag(
            id: r.0, kind: r.1, severity: r.2, serial: r.3, slot: r.4, summary: r.5, evidence: r.6, dedupeKey: r.7,
            raisedAt: r.8, resolvedAt: r.9, resolvedBy: r.10, note: r.11)
    }

    static func flags(_ conn: PostgresConnection, _ logger: Logger, _ sql: String, _ binds: PostgresBindings)
        async throws -> [RegistryFlag]
    {
        var out = [RegistryFlag]()
        for try await row in try await conn.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
            .decode(FlagRow.self)
        {
            out.append(flag(row))
        }
        return out
    }

    public func unit(serial: String) async throws -> UnitDetail? {
        let logger = logger
        return try await read { conn in
            guard let summary = try await Self.summaries(conn, logger, serials: [serial]).first else { return nil }
            var lost: LostState?
            for try await (at, by, note) in try await conn.query(
                "SELECT lost_at, lost_by, lost_note FROM units WHERE serial = \(serial)", logger: logger
            ).decode((Int64?, String?, String?).self) {
                lost = at.map { LostState(markedAt: StoreSupport.date($0), markedBy: by ?? "", note: note) }
            }
            var timeline = [TimelineEntry]()
            var b = PostgresBindings()
            b.append(serial)
            b.append(StoreSupport.timelineLimit)
            for try await row in try await conn.query(
                PostgresQuery(
                    unsafeSQL: """
                        SELECT \(Self.eventColumns) FROM (
                            SELECT *, id AS row_id FROM events WHERE serial = $1
                            ORDER BY occurred_at DESC, id DESC LIMIT $2) AS newest
                        ORDER BY occurred_at, row_id
                        """, binds: b), logger: logger
            ).decode(EventRow.self) {
                timeline.append(Self.timelineEntry(row))
            }
            var fb = PostgresBindings()
            fb.append(serial)
            let flags = try await Self.flags(
                conn, logger, "SELECT \(Self.flagColumns) FROM flags WHERE serial = $1 ORDER BY id DESC LIMIT 1000", fb)
            return UnitDetail(
                summary: summary, manufacturing: timeline.filter { $0.origin == .factory }, timeline: timeline,
                flags: flags, lost: lost)
        }
    }

    public func flag(id: Int64) async throws -> RegistryFlag? {
        let logger = logger
        var b = PostgresBindings()
        b.append(id)
        return try await read { [b] conn in
            try await Self.flags(conn, logger, "SELECT \(Self.flagColumns) FROM flags WHERE id = $1", b).first
        }
    }

    public func resolveFlag(id: Int64, by: String, note: String, at: Date) async throws -> Bool {
        let t = StoreSupport.ms(at)
        let logger = logger
        return try await transaction { conn in
            let rows = try await conn.query(
                """
                UPDATE flags SET resolved_at = \(t), resolved_by = \(by), resolution_note = \(note)
                WHERE id = \(id) AND resolved_at IS NULL RETURNING id
                """, logger: logger)
            var found = false
            for try await _ in rows { found = true }
            return found
        }
    }

    public func raise(_ flags: [NewFlag], at: Date) async throws -> [RegistryFlag] {
        let t = StoreSupport.ms(at)
        let logger = logger
        return try await transaction { conn in try await Self.insertFlags(conn, logger, flags, at: t) }
    }

    // MARK: Lost / found

    public func markLost(serial: String, by: String, note: String?, at: Date) async throws -> Bool {
        let t = StoreSupport.ms(at)
        let logger = logger
        return try await transaction { conn in
            guard try await Self.isLost(conn, logger, serial) != nil else { return false }
            try await conn.query(
                """
                UPDATE units SET lost_at = \(t), lost_by = \(by), lost_note = \(note)
                WHERE serial = \(serial) AND lost_at IS NULL
                """, logger: logger)
            try await conn.query(
                """
                UPDATE credentials SET revoked_at = \(t)
                WHERE kind = 'device' AND subject = \(serial) AND revoked_at IS NULL
                """, logger: logger)
            return true
        }
    }

    public func markFound(serial: String, by: String, newTokenHash: String, at: Date) async throws -> Bool {
        let t = StoreSupport.ms(at)
        let logger = logger
        return try await transaction { conn in
            let rows = try await conn.query(
                """
                UPDATE units SET lost_at = NULL, lost_by = NULL, lost_note = NULL
                WHERE serial = \(serial) AND lost_at IS NOT NULL RETURNING serial
                """, logger: logger)
            var found = false
            for try await _ in rows { found = true }
            guard found else { return false }
            try await Self.putCredential(
                conn, logger, kind: "device", subject: serial, role: nil, hash: newTokenHash, at: t)
            return true
        }
    }

    // MARK: Audit

    public func appendAudit(_ entry: AuditEntry) async throws {
        let logger = logger
        try await transaction { conn in try await Self.insertAudit(conn, logger, entry) }
    }

    public func audit(limit: Int) async throws -> [AuditEntry] {
        let logger = logger
        let n = max(0, limit)
        return try await read { conn in
            var out = [AuditEntry]()
            for try await (id, at, actor, action, serial, remote, detail) in try await conn.query(
                "SELECT id, at, actor, action, serial, remote, detail FROM audit ORDER BY id DESC LIMIT \(n)",
                logger: logger
            ).decode((Int64, Int64, String, String, String?, String?, String?).self) {
                out.append(
                    AuditEntry(
                        id: id, at: StoreSupport.date(at), actor: actor, action: action, serial: serial, remote: remote,
                        detail: detail))
            }
            return out
        }
    }

    // MARK: Exports and checks

    public func exportUnits() async throws -> [UnitExportRow] {
        let logger = logger
        return try await read { conn in
            var out = [UnitExportRow]()
            for try await r in try await conn.query(
                """
                SELECT s.serial, s.origin, s.slot, s.imei, s.imsi, s.iccid, s.manufacturer, s.model, u.first_seen,
                    u.last_seen, s.eid, s.sim_slot
                FROM slots s JOIN units u ON u.serial = s.serial ORDER BY s.serial, s.origin, s.slot
                """, logger: logger
            ).decode(
                (String, String, String, String?, String?, String?, String?, String?, Int64?, Int64?, String?, Int32?)
                    .self
            ) {
                out.append(
                    UnitExportRow(
                        serial: r.0, slot: r.2,
                        identity: IdentitySnapshot(
                            imei: r.3, imsi: r.4, iccid: r.5, eid: r.10, simSlot: r.11.map(Int.init)),
                        module: StoreRows.module(r.6, r.7), firstSeen: StoreSupport.date(r.8),
                        lastSeen: StoreSupport.date(r.9), origin: EventOrigin(rawValue: r.1) ?? .device))
            }
            return out
        }
    }

    public func simAssignments() async throws -> [SIMAssignment] {
        let logger = logger
        return try await read { conn in
            var out = [SIMAssignment]()
            for try await (serial, slot, iccid, imsi, eid) in try await conn.query(
                """
                SELECT serial, slot, iccid, imsi, eid FROM slots WHERE origin = 'device' AND iccid IS NOT NULL
                ORDER BY serial, slot
                """, logger: logger
            ).decode((String, String, String, String?, String?).self) {
                out.append(SIMAssignment(serial: serial, slot: slot, iccid: iccid, imsi: imsi, eid: eid))
            }
            return out
        }
    }

    public func silentUnits(lastSeenBefore before: Date) async throws -> [String] {
        let logger = logger
        let t = StoreSupport.ms(before)
        return try await read { conn in
            try await Self.strings(
                conn.query(
                    """
                    SELECT serial FROM units WHERE lost_at IS NULL AND last_seen IS NOT NULL AND last_seen < \(t)
                    ORDER BY serial
                    """, logger: logger))
        }
    }

    public func openFlagCounts() async throws -> [FlagKind: Int] {
        let logger = logger
        return try await read { conn in
            var counts = [FlagKind: Int]()
            for try await (kind, n) in try await conn.query(
                "SELECT kind, count(*) FROM flags WHERE resolved_at IS NULL GROUP BY kind", logger: logger
            ).decode((String, Int64).self) {
                if let k = FlagKind(rawValue: kind) { counts[k] = Int(n) }
            }
            return counts
        }
    }
}

/// Whether a pool's run task has started.
final class RunFlag: Sendable {
    let value = NIOLockedValueBox(false)
}
