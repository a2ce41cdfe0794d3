/// The PostgreSQL schema, as versioned migrations. Each migration is a list of statements (postgres-nio speaks the
/// extended query protocol: one statement per query), applied in one transaction under an advisory lock so that
/// several instances starting at once apply it once.
enum PostgresSchema {
    struct Migration {
        var version: Int
        var statements: [String]
    }

    /// The advisory lock key migrations run under (any constant unlikely to clash: "cellprov" in ASCII).
    static let migrationLock: Int64 = 0x6365_6c6c_7072_6f76

    static let migrations: [Migration] = [
        Migration(
            version: 1,
            statements: [
                "CREATE TABLE settings (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
                """
                CREATE TABLE credentials (
                    token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, role TEXT,
                    created_at BIGINT NOT NULL, revoked_at BIGINT)
                """,
                "CREATE INDEX credentials_subject ON credentials (kind, subject) WHERE revoked_at IS NULL",
                """
                CREATE TABLE units (
                    serial TEXT PRIMARY KEY, created_at BIGINT NOT NULL, first_seen BIGINT, last_seen BIGINT,
                    lost_at BIGINT, lost_by TEXT, lost_note TEXT)
                """,
                "CREATE INDEX units_last_seen ON units (last_seen) WHERE lost_at IS NULL",
                """
                CREATE TABLE slots (
                    serial TEXT NOT NULL, origin TEXT NOT NULL, slot TEXT NOT NULL,
                    imei TEXT, imsi TEXT, iccid TEXT, last_iccid TEXT, tac TEXT,
                    manufacturer TEXT, model TEXT, revision TEXT, source TEXT NOT NULL,
                    last_event_type TEXT NOT NULL, occurred_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
                    PRIMARY KEY (serial, origin, slot))
                """,
                "CREATE INDEX slots_imei ON slots (imei)",
                "CREATE INDEX slots_imsi ON slots (imsi)",
                "CREATE INDEX slots_iccid ON slots (iccid)",
                "CREATE INDEX slots_last_iccid ON slots (last_iccid)",
                "CREATE INDEX slots_tac ON slots (tac, serial)",
                """
                CREATE TABLE events (
                    id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, serial TEXT NOT NULL,
                    origin TEXT NOT NULL, type TEXT NOT NULL, slot TEXT NOT NULL, sequence BIGINT NOT NULL,
                    severity TEXT NOT NULL, occurred_at BIGINT NOT NULL, received_at BIGINT NOT NULL,
                    imei TEXT, imsi TEXT, iccid TEXT, prev_imei TEXT, prev_imsi TEXT, prev_iccid TEXT,
                    payload TEXT NOT NULL)
                """,
                "CREATE INDEX events_serial ON events (serial, occurred_at)",
                "CREATE TABLE refs (ref TEXT NOT NULL, serial TEXT NOT NULL, PRIMARY KEY (ref, serial))",
                """
                CREATE TABLE flags (
                    id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, severity TEXT NOT NULL, serial TEXT, slot TEXT,
                    summary TEXT NOT NULL, evidence TEXT NOT NULL, dedupe_key TEXT NOT NULL,
                    raised_at BIGINT NOT NULL, resolved_at BIGINT, resolved_by TEXT, resolution_note TEXT)
                """,
                "CREATE UNIQUE INDEX flags_open_dedupe ON flags (dedupe_key) WHERE resolved_at IS NULL",
                "CREATE INDEX flags_serial ON flags (serial, id)",
                "CREATE INDEX flags_open ON flags (id) WHERE resolved_at IS NULL",
                """
                CREATE TABLE audit (
                    id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
                    serial TEXT, remote TEXT, detail TEXT)
                """,
                """
                CREATE FUNCTION cellprov_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'the audit log is append-only';
                END
                $$
                """,
                """
                CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit
                    FOR EACH ROW EXECUTE FUNCTION cellprov_audit_append_only()
                """,
                """
                CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
                    FOR EACH STATEMENT EXECUTE FUNCTION cellprov_audit_append_only()
                """,
            ]),
        // Version 2: the per-event ingest as one server-side function (one round trip instead of four; see
        // docs/registry.md, "Ingest on PostgreSQL in one round trip"), a partial index for the manufacturing
        // records the flag rules read, and no index on `units.last_seen`: it was the only indexed column an
        // event changes on its unit, so with it gone the unit's update is HOT (no index write); the periodic
        // `unit_silent` check scans instead.
        Migration(
            version: 2,
            statements: [
                "CREATE INDEX events_factory ON events (serial) WHERE origin = 'factory'",
                "DROP INDEX units_last_seen",
                "ALTER TABLE units SET (fillfactor = 80)",
                "ALTER TABLE slots SET (fillfactor = 80)",
                ingestFunction,
            ]),
        // Version 3: page sessions, each bound to the operator token that signed in (its id stored hashed), and
        // the per-unit count of refused attempts between two audited ones.
        Migration(
            version: 3,
            statements: [
                """
                CREATE TABLE refusal_windows (
                    serial TEXT NOT NULL, reason TEXT NOT NULL, window_start BIGINT NOT NULL, count BIGINT NOT NULL,
                    PRIMARY KEY (serial, reason))
                """,
                """
                CREATE TABLE page_sessions (
                    id_hash TEXT PRIMARY KEY, token_hash TEXT NOT NULL, created_at BIGINT NOT NULL,
                    expires_at BIGINT NOT NULL)
                """,
                "CREATE INDEX page_sessions_expiry ON page_sessions (expires_at)",
            ]),
        // Version 4: the eUICC (issue 15). Each slot keeps the card's EID (and `last_eid`, the card of
        // `last_iccid`, kept across a `sim_removed` like it) and the module's active SIM slot; each event its EID,
        // its previous EID and the active slot. EIDs are indexed (partial: most slots hold a plain SIM) for search
        // and the `euicc_moved` rule. `cellprov_ingest` gains the EID parameters and context as a new overload
        // (28 arguments): instances of the previous version keep calling the 24-argument one beside it (their
        // events are stored without EID). ADD COLUMN without a default rewrites nothing.
        Migration(
            version: 4,
            statements: [
                "ALTER TABLE slots ADD COLUMN eid TEXT, ADD COLUMN last_eid TEXT, ADD COLUMN sim_slot INTEGER",
                "ALTER TABLE events ADD COLUMN eid TEXT, ADD COLUMN prev_eid TEXT, ADD COLUMN sim_slot INTEGER",
                "CREATE INDEX slots_eid ON slots (eid) WHERE eid IS NOT NULL",
                "CREATE INDEX slots_last_eid ON slots (last_eid) WHERE last_eid IS NOT NULL",
                ingestFunctionEID,
            ]),
        // Version 5: sequence rollbacks (issue 19 row 14). Each slot keeps the highest sequence stored for it
        // (`max_sequence`, filled from the events for existing slots); each event the `state_lost.reason` it carried
        // and the id of the earlier event whose sequence it repeats (`reuses_sequence_of`), for the timeline;
        // `cellprov_ingest` gains the check as a new overload (29 arguments). ADD COLUMN without a default rewrites
        // nothing; the fill is one pass over the events.
        Migration(
            version: 5,
            statements: [
                "ALTER TABLE slots ADD COLUMN max_sequence BIGINT",
                "ALTER TABLE events ADD COLUMN state_lost TEXT, ADD COLUMN reuses_sequence_of TEXT",
                """
                UPDATE slots SET max_sequence = m.s
                FROM (SELECT serial, origin, slot, max(sequence) AS s FROM events GROUP BY serial, origin, slot) AS m
                WHERE slots.serial = m.serial AND slots.origin = m.origin AND slots.slot = m.slot
                """,
                ingestFunctionSequence,
            ]),
        // Version 6: the device's credential checked inside the ingest call (issue 18): one round trip per event
        // instead of two. A wrapper around migration 5's function, so the ingest steps stay written once.
        Migration(version: 6, statements: [ingestDeviceFunction]),
        // Version 7 (issue 20): the affected-units question (`GET /v1/affected`) by module model or firmware revision,
        // exact or by prefix, through an index each (docs/decisions.md, "Affected units": without one, a revision
        // nobody carries reads every slot; an event that leaves the module's names as they were stays a HOT update).
        // Under the "C" collation (byte order), which the queries compare in: a prefix is then a range of the index
        // whatever the database's collation. SQLite's migration 7 adds the same two indexes (its slot upsert sets
        // the names only when they change, so that they are not rewritten by every event).
        Migration(
            version: 7,
            statements: [
                "CREATE INDEX slots_model ON slots ((model COLLATE \"C\"), serial) WHERE model IS NOT NULL",
                "CREATE INDEX slots_revision ON slots ((revision COLLATE \"C\"), serial) WHERE revision IS NOT NULL",
            ]),
        // Version 8: the flags list filtered by kind, newest first, from a cursor (SQLite's migration 6;
        // docs/decisions.md, "Pages of a list").
        Migration(version: 8, statements: ["CREATE INDEX flags_kind ON flags (kind, id)"]),
        // Version 9: the ingest function reads its rule context in fewer scans and plans its statements once per
        // connection (docs/decisions.md, "The ingest function's plans and scans"). PL/pgSQL gives each statement
        // five custom plans, then keeps planning it on every call when the generic plan's estimate is above
        // theirs: migration 4's nine-subquery context costs almost nothing to a custom plan when the event has no
        // EID (`eid = NULL` folds to false), so it was planned on every call (0.26 ms of the function's 1 ms;
        // pgbench at 1 000 000 units: 2 440 calls/s against 3 490 for migration 2's function). Every statement of
        // the functions is an index probe or a write keyed by its parameters, which a generic plan serves as well.
        // The context itself: the ICCID's holders read once (the same-card and other-card lists are filters of
        // that read, not two more), the factory records' IMEIs and EIDs in one read, the EID's holders only for an
        // event with an EID, the field identities only for a factory record. The earlier overloads get the plan
        // setting too: an instance of a previous version calls them during a rolling upgrade.
        Migration(
            version: 9,
            statements: [ingestFunctionContext]
                + ingestSignatures.map { "ALTER FUNCTION \($0) SET plan_cache_mode = force_generic_plan" }),
    ]

    /// Every overload of the ingest functions, by argument types: migration 2's (24 arguments), 4's (28), 5's (29)
    /// and 6's device wrapper (the token hash, then 5's 29).
    static let ingestSignatures: [String] = {
        let v2 = """
            TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT, BIGINT, BIGINT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, \
            BIGINT[], TEXT[], TEXT, TEXT, TEXT, TEXT, TEXT, BOOLEAN
            """
        let v4 = v2 + ", TEXT, TEXT, TEXT, INTEGER"
        let v5 = v4 + ", TEXT"
        return [
            "cellprov_ingest(\(v2))", "cellprov_ingest(\(v4))", "cellprov_ingest(\(v5))",
            "cellprov_ingest_device(TEXT, \(v5))",
        ]
    }()

    /// `cellprov_ingest_device(p_token_hash, ...)`: `cellprov_ingest(...)` of migration 5 (the same 29 arguments
    /// after the token hash), run only if `p_token_hash` is a valid (unrevoked) token of the device `p_serial`,
    /// checked in the same statement (so in the same transaction as the writes). `credential_ok = false`: nothing
    /// written, the caller looks the credential up to refuse the request.
    static let ingestDeviceFunction = """
        CREATE FUNCTION cellprov_ingest_device(
            p_token_hash TEXT,
            p_event_id TEXT, p_serial TEXT, p_origin TEXT, p_type TEXT, p_slot TEXT, p_sequence BIGINT,
            p_severity TEXT, p_occurred BIGINT, p_received BIGINT, p_imei TEXT, p_imsi TEXT, p_iccid TEXT,
            p_prev_imei TEXT, p_prev_imsi TEXT, p_prev_iccid TEXT, p_payload TEXT, p_locks BIGINT[], p_refs TEXT[],
            p_tac TEXT, p_manufacturer TEXT, p_model TEXT, p_revision TEXT, p_source TEXT, p_fast BOOLEAN,
            p_eid TEXT, p_prev_eid TEXT, p_last_eid TEXT, p_sim_slot INTEGER, p_state_lost TEXT,
            OUT credential_ok BOOLEAN,
            OUT stored BOOLEAN, OUT is_current BOOLEAN, OUT lost BOOLEAN, OUT imei_holders TEXT[],
            OUT iccid_holders TEXT[], OUT made TEXT[], OUT field TEXT[], OUT eid_holders TEXT[],
            OUT iccid_same_eid TEXT[], OUT iccid_other_eid TEXT[], OUT made_eids TEXT[], OUT field_eids TEXT[],
            OUT reused_of TEXT)
        LANGUAGE plpgsql AS $$
        BEGIN
            credential_ok := EXISTS (SELECT 1 FROM credentials WHERE token_hash = p_token_hash AND kind = 'device'
                AND subject = p_serial AND revoked_at IS NULL);
            IF NOT credential_ok THEN
                stored := false;
                RETURN;
            END IF;
            SELECT i.stored, i.is_current, i.lost, i.imei_holders, i.iccid_holders, i.made, i.field, i.eid_holders,
                i.iccid_same_eid, i.iccid_other_eid, i.made_eids, i.field_eids, i.reused_of
            INTO stored, is_current, lost, imei_holders, iccid_holders, made, field, eid_holders, iccid_same_eid,
                iccid_other_eid, made_eids, field_eids, reused_of
            FROM cellprov_ingest(p_event_id, p_serial, p_origin, p_type, p_slot, p_sequence, p_severity, p_occurred,
                p_received, p_imei, p_imsi, p_iccid, p_prev_imei, p_prev_imsi, p_prev_iccid, p_payload, p_locks,
                p_refs, p_tac, p_manufacturer, p_model, p_revision, p_source, p_fast, p_eid, p_prev_eid, p_last_eid,
                p_sim_slot, p_state_lost) AS i;
        END
        $$
        """

    /// `cellprov_ingest(...)`: what `PostgresRegistryStore.ingest` did in four round trips, in one call.
    ///
    /// 1. The event, deduplicated on `event_id` (a concurrent twin waits for our commit, then conflicts:
    ///    `stored = false`, nothing else done).
    /// 2. The advisory locks (`p_locks`, sorted by the caller: serial, IMEI, ICCID keys in key order, so two
    ///    ingests cannot deadlock on them).
    /// 3. The unit, its slot (`is_current`: the slot took this event, it is not older than the slot's current
    ///    one) and the references.
    /// 4. The flag rules' context, in one statement, read after the locks (each statement of a PL/pgSQL function takes a new
    ///    snapshot under READ COMMITTED, so every committed holder of the IMEI or ICCID is seen). None of these
    ///    reads can match this event's own writes (other serials, other event ids, the other origin).
    ///
    /// With `p_fast` the caller runs it as its own statement (autocommit: one round trip, committed durably when
    /// it returns) because the flag rules raise nothing for this event on an empty context; if the context is not
    /// empty (the unit is lost, another unit holds the IMEI or ICCID, manufacturing records exist ...), the rules
    /// must run in Swift within the same transaction, so the function raises SQLSTATE `CPRUL`, everything it did
    /// rolls back, and the caller runs it again with `p_fast = false` inside BEGIN ... COMMIT.
    /// `cellprov_ingest(...)` of migration 4: the same steps with the eUICC. The event's and the slot's EID and
    /// active slot are written (`p_last_eid`: the card of the slot's `last_iccid`, `StoreSupport.lastEID`), the
    /// EID is one more advisory lock (in `p_locks`), and the context adds the other units holding the EID
    /// (`eid_holders`), the ICCID's holders split by their card (`iccid_same_eid`: the same EID, the card moved;
    /// `iccid_other_eid`: another EID, one profile on two cards) and the manufacturing and field EIDs. Any of them
    /// non-empty sends the event to the Swift rules (CPRUL), as for the IMEI and the ICCID.
    static let ingestFunctionEID = """
        CREATE OR REPLACE FUNCTION cellprov_ingest(
            p_event_id TEXT, p_serial TEXT, p_origin TEXT, p_type TEXT, p_slot TEXT, p_sequence BIGINT,
            p_severity TEXT, p_occurred BIGINT, p_received BIGINT, p_imei TEXT, p_imsi TEXT, p_iccid TEXT,
            p_prev_imei TEXT, p_prev_imsi TEXT, p_prev_iccid TEXT, p_payload TEXT, p_locks BIGINT[], p_refs TEXT[],
            p_tac TEXT, p_manufacturer TEXT, p_model TEXT, p_revision TEXT, p_source TEXT, p_fast BOOLEAN,
            p_eid TEXT, p_prev_eid TEXT, p_last_eid TEXT, p_sim_slot INTEGER,
            OUT stored BOOLEAN, OUT is_current BOOLEAN, OUT lost BOOLEAN, OUT imei_holders TEXT[],
            OUT iccid_holders TEXT[], OUT made TEXT[], OUT field TEXT[], OUT eid_holders TEXT[],
            OUT iccid_same_eid TEXT[], OUT iccid_other_eid TEXT[], OUT made_eids TEXT[], OUT field_eids TEXT[])
        LANGUAGE plpgsql AS $$
        DECLARE
            n BIGINT;
        BEGIN
            INSERT INTO events (event_id, serial, origin, type, slot, sequence, severity, occurred_at, received_at,
                imei, imsi, iccid, prev_imei, prev_imsi, prev_iccid, payload, eid, prev_eid, sim_slot)
            VALUES (p_event_id, p_serial, p_origin, p_type, p_slot, p_sequence, p_severity, p_occurred, p_received,
                p_imei, p_imsi, p_iccid, p_prev_imei, p_prev_imsi, p_prev_iccid, p_payload, p_eid, p_prev_eid,
                p_sim_slot)
            ON CONFLICT (event_id) DO NOTHING;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n = 0 THEN
                stored := false;
                RETURN;
            END IF;
            stored := true;
            PERFORM count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(p_locks) AS k ORDER BY 1) AS keys;
            INSERT INTO units (serial, created_at, first_seen, last_seen)
            VALUES (p_serial, p_received, p_received, CASE WHEN p_origin = 'device' THEN p_received END)
            ON CONFLICT (serial) DO UPDATE SET
                first_seen = least(coalesce(units.first_seen, excluded.first_seen), excluded.first_seen),
                last_seen = greatest(units.last_seen, excluded.last_seen)
            RETURNING lost_at IS NOT NULL INTO lost;
            INSERT INTO slots (serial, origin, slot, imei, imsi, iccid, last_iccid, tac, manufacturer, model,
                revision, source, last_event_type, occurred_at, updated_at, eid, last_eid, sim_slot)
            VALUES (p_serial, p_origin, p_slot, p_imei, p_imsi, p_iccid, coalesce(p_iccid, p_prev_iccid), p_tac,
                p_manufacturer, p_model, p_revision, p_source, p_type, p_occurred, p_received, p_eid, p_last_eid,
                p_sim_slot)
            ON CONFLICT (serial, origin, slot) DO UPDATE SET imei = excluded.imei, imsi = excluded.imsi,
                iccid = excluded.iccid, last_iccid = coalesce(excluded.last_iccid, slots.last_iccid),
                eid = excluded.eid, sim_slot = excluded.sim_slot,
                last_eid = CASE WHEN excluded.last_iccid IS NULL THEN slots.last_eid ELSE excluded.last_eid END,
                tac = excluded.tac, manufacturer = excluded.manufacturer, model = excluded.model,
                revision = excluded.revision, source = excluded.source,
                last_event_type = excluded.last_event_type, occurred_at = excluded.occurred_at,
                updated_at = excluded.updated_at
            WHERE excluded.occurred_at >= slots.occurred_at;
            GET DIAGNOSTICS n = ROW_COUNT;
            is_current := n = 1;
            IF cardinality(p_refs) > 0 THEN
                INSERT INTO refs (ref, serial) SELECT r, p_serial FROM unnest(p_refs) AS r ON CONFLICT DO NOTHING;
            END IF;
            SELECT
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE imei = p_imei AND origin = 'device' AND serial <> p_serial),
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (iccid = p_iccid OR last_iccid = p_iccid) AND origin = 'device' AND serial <> p_serial),
                ARRAY(SELECT DISTINCT imei FROM events WHERE serial = p_serial AND origin = 'factory'
                    AND imei IS NOT NULL AND event_id <> p_event_id),
                ARRAY(SELECT imei FROM slots WHERE p_origin = 'factory' AND serial = p_serial
                    AND origin = 'device' AND imei IS NOT NULL),
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (eid = p_eid OR last_eid = p_eid) AND origin = 'device' AND serial <> p_serial),
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (iccid = p_iccid OR last_iccid = p_iccid) AND origin = 'device' AND serial <> p_serial
                    AND CASE WHEN iccid = p_iccid THEN eid ELSE last_eid END = p_eid),
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (iccid = p_iccid OR last_iccid = p_iccid) AND origin = 'device' AND serial <> p_serial
                    AND CASE WHEN iccid = p_iccid THEN eid ELSE last_eid END <> p_eid),
                ARRAY(SELECT DISTINCT eid FROM events WHERE serial = p_serial AND origin = 'factory'
                    AND eid IS NOT NULL AND event_id <> p_event_id),
                ARRAY(SELECT eid FROM slots WHERE p_origin = 'factory' AND serial = p_serial
                    AND origin = 'device' AND eid IS NOT NULL)
            INTO imei_holders, iccid_holders, made, field, eid_holders, iccid_same_eid, iccid_other_eid, made_eids,
                field_eids;
            IF p_fast AND (lost OR cardinality(made) > 0 OR cardinality(field) > 0 OR cardinality(made_eids) > 0
                OR cardinality(field_eids) > 0
                OR (is_current AND (cardinality(imei_holders) > 0 OR cardinality(iccid_holders) > 0
                    OR cardinality(eid_holders) > 0)))
            THEN
                RAISE EXCEPTION 'this event needs the flag rules' USING ERRCODE = 'CPRUL';
            END IF;
        END
        $$
        """

    /// The 29 arguments and 13 results of `cellprov_ingest` since migration 5 (migrations 5 and 9 create it). Part
    /// of applied migrations: never edit (a change is a new migration).
    static let ingestSignature29 = """
            p_event_id TEXT, p_serial TEXT, p_origin TEXT, p_type TEXT, p_slot TEXT, p_sequence BIGINT,
            p_severity TEXT, p_occurred BIGINT, p_received BIGINT, p_imei TEXT, p_imsi TEXT, p_iccid TEXT,
            p_prev_imei TEXT, p_prev_imsi TEXT, p_prev_iccid TEXT, p_payload TEXT, p_locks BIGINT[], p_refs TEXT[],
            p_tac TEXT, p_manufacturer TEXT, p_model TEXT, p_revision TEXT, p_source TEXT, p_fast BOOLEAN,
            p_eid TEXT, p_prev_eid TEXT, p_last_eid TEXT, p_sim_slot INTEGER, p_state_lost TEXT,
            OUT stored BOOLEAN, OUT is_current BOOLEAN, OUT lost BOOLEAN, OUT imei_holders TEXT[],
            OUT iccid_holders TEXT[], OUT made TEXT[], OUT field TEXT[], OUT eid_holders TEXT[],
            OUT iccid_same_eid TEXT[], OUT iccid_other_eid TEXT[], OUT made_eids TEXT[], OUT field_eids TEXT[],
            OUT reused_of TEXT)
        """

    /// `cellprov_ingest`'s writes since migration 5, up to the rule context: the event, the advisory locks, the unit,
    /// the sequence check, the slot and the references (migration 5's steps; migrations 5 and 9 use them). Part of
    /// applied migrations: never edit.
    static let ingestWrites29 = """
        DECLARE
            n BIGINT;
            prior_max BIGINT;
        BEGIN
            INSERT INTO events (event_id, serial, origin, type, slot, sequence, severity, occurred_at, received_at,
                imei, imsi, iccid, prev_imei, prev_imsi, prev_iccid, payload, eid, prev_eid, sim_slot, state_lost)
            VALUES (p_event_id, p_serial, p_origin, p_type, p_slot, p_sequence, p_severity, p_occurred, p_received,
                p_imei, p_imsi, p_iccid, p_prev_imei, p_prev_imsi, p_prev_iccid, p_payload, p_eid, p_prev_eid,
                p_sim_slot, p_state_lost)
            ON CONFLICT (event_id) DO NOTHING;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n = 0 THEN
                stored := false;
                RETURN;
            END IF;
            stored := true;
            PERFORM count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(p_locks) AS k ORDER BY 1) AS keys;
            INSERT INTO units (serial, created_at, first_seen, last_seen)
            VALUES (p_serial, p_received, p_received, CASE WHEN p_origin = 'device' THEN p_received END)
            ON CONFLICT (serial) DO UPDATE SET
                first_seen = least(coalesce(units.first_seen, excluded.first_seen), excluded.first_seen),
                last_seen = greatest(units.last_seen, excluded.last_seen)
            RETURNING lost_at IS NOT NULL INTO lost;
            IF p_origin = 'device' THEN
                SELECT max_sequence INTO prior_max FROM slots
                WHERE serial = p_serial AND origin = 'device' AND slot = p_slot;
                IF FOUND AND (prior_max IS NULL OR p_sequence <= prior_max) THEN
                    SELECT event_id INTO reused_of FROM events
                    WHERE serial = p_serial AND origin = 'device' AND slot = p_slot AND sequence = p_sequence
                        AND event_id <> p_event_id
                    ORDER BY id LIMIT 1;
                    IF reused_of IS NOT NULL THEN
                        UPDATE events SET reuses_sequence_of = reused_of WHERE event_id = p_event_id;
                    END IF;
                END IF;
            END IF;
            INSERT INTO slots (serial, origin, slot, imei, imsi, iccid, last_iccid, tac, manufacturer, model,
                revision, source, last_event_type, occurred_at, updated_at, eid, last_eid, sim_slot, max_sequence)
            VALUES (p_serial, p_origin, p_slot, p_imei, p_imsi, p_iccid, coalesce(p_iccid, p_prev_iccid), p_tac,
                p_manufacturer, p_model, p_revision, p_source, p_type, p_occurred, p_received, p_eid, p_last_eid,
                p_sim_slot, p_sequence)
            ON CONFLICT (serial, origin, slot) DO UPDATE SET imei = excluded.imei, imsi = excluded.imsi,
                max_sequence = greatest(slots.max_sequence, excluded.max_sequence),
                iccid = excluded.iccid, last_iccid = coalesce(excluded.last_iccid, slots.last_iccid),
                eid = excluded.eid, sim_slot = excluded.sim_slot,
                last_eid = CASE WHEN excluded.last_iccid IS NULL THEN slots.last_eid ELSE excluded.last_eid END,
                tac = excluded.tac, manufacturer = excluded.manufacturer, model = excluded.model,
                revision = excluded.revision, source = excluded.source,
                last_event_type = excluded.last_event_type, occurred_at = excluded.occurred_at,
                updated_at = excluded.updated_at
            WHERE excluded.occurred_at >= slots.occurred_at;
            GET DIAGNOSTICS n = ROW_COUNT;
            is_current := n = 1;
            IF NOT is_current THEN
                -- A late event (older than the slot's current one) still counts for the slot's highest sequence.
                UPDATE slots SET max_sequence = greatest(max_sequence, p_sequence)
                WHERE serial = p_serial AND origin = p_origin AND slot = p_slot;
            END IF;
            IF cardinality(p_refs) > 0 THEN
                INSERT INTO refs (ref, serial) SELECT r, p_serial FROM unnest(p_refs) AS r ON CONFLICT DO NOTHING;
            END IF;
        """

    /// `cellprov_ingest(...)` of migration 9: migration 5's steps and arguments (the same overload, replaced), the
    /// rule context read in fewer scans (every statement planned once per connection: migration 9's `ALTER` list sets
    /// that for each overload, this one included). The outputs are as before:
    /// the ICCID's holders split by their card's EID (`iccid_same_eid`, `iccid_other_eid`: a NULL card or a NULL
    /// `p_eid` is in neither), the factory records' IMEIs and EIDs, the field slot's for a factory record.
    static let ingestFunctionContext = """
        CREATE OR REPLACE FUNCTION cellprov_ingest(
        \(ingestSignature29)
        LANGUAGE plpgsql AS $$
        \(ingestWrites29)
            -- The other units holding the IMEI; those holding the ICCID (as current or last SIM), each with the
            -- card it is on there.
            SELECT
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE imei = p_imei AND origin = 'device' AND serial <> p_serial),
                coalesce(array_agg(DISTINCT h.serial), '{}'),
                coalesce(array_agg(DISTINCT h.serial) FILTER (WHERE h.card = p_eid), '{}'),
                coalesce(array_agg(DISTINCT h.serial) FILTER (WHERE h.card <> p_eid), '{}')
            INTO imei_holders, iccid_holders, iccid_same_eid, iccid_other_eid
            FROM (SELECT serial, CASE WHEN iccid = p_iccid THEN eid ELSE last_eid END AS card FROM slots
                WHERE (iccid = p_iccid OR last_iccid = p_iccid) AND origin = 'device' AND serial <> p_serial) AS h;
            -- The unit's factory records (other than this event).
            SELECT coalesce(array_agg(DISTINCT imei) FILTER (WHERE imei IS NOT NULL), '{}'),
                coalesce(array_agg(DISTINCT eid) FILTER (WHERE eid IS NOT NULL), '{}')
            INTO made, made_eids
            FROM events WHERE serial = p_serial AND origin = 'factory' AND event_id <> p_event_id;
            IF p_eid IS NULL THEN
                eid_holders := '{}';
            ELSE
                eid_holders := ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (eid = p_eid OR last_eid = p_eid) AND origin = 'device' AND serial <> p_serial);
            END IF;
            -- A factory record: what the unit's field slots report.
            IF p_origin = 'factory' THEN
                SELECT coalesce(array_agg(imei) FILTER (WHERE imei IS NOT NULL), '{}'),
                    coalesce(array_agg(eid) FILTER (WHERE eid IS NOT NULL), '{}')
                INTO field, field_eids
                FROM slots WHERE serial = p_serial AND origin = 'device';
            ELSE
                field := '{}';
                field_eids := '{}';
            END IF;
            IF p_fast AND (lost OR reused_of IS NOT NULL OR cardinality(made) > 0 OR cardinality(field) > 0
                OR cardinality(made_eids) > 0 OR cardinality(field_eids) > 0
                OR (is_current AND (cardinality(imei_holders) > 0 OR cardinality(iccid_holders) > 0
                    OR cardinality(eid_holders) > 0)))
            THEN
                RAISE EXCEPTION 'this event needs the flag rules' USING ERRCODE = 'CPRUL';
            END IF;
        END
        $$
        """

    /// `cellprov_ingest(...)` of migration 5: the steps of migration 4's, and the sequence check (issue 19 row
    /// 14). `p_state_lost` (the event's `state_lost.reason`, NULL without) is stored with the event. For a field
    /// event of a slot already stored, whose sequence is not above the slot's `max_sequence` (NULL: an instance of
    /// an earlier version wrote the slot, so check), the earlier event of that slot with the same sequence is
    /// looked up (`reused_of`, also stored as the event's `reuses_sequence_of`); one found sends the event to the
    /// Swift rules (CPRUL), which raise `state_rolled_back`. Every event raises the slot's `max_sequence`, a late
    /// one too. A new overload (29 arguments): instances of the previous versions keep calling theirs.
    static let ingestFunctionSequence = """
        CREATE FUNCTION cellprov_ingest(
        \(ingestSignature29)
        LANGUAGE plpgsql AS $$
        \(ingestWrites29)
            SELECT
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE imei = p_imei AND origin = 'device' AND serial <> p_serial),
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (iccid = p_iccid OR last_iccid = p_iccid) AND origin = 'device' AND serial <> p_serial),
                ARRAY(SELECT DISTINCT imei FROM events WHERE serial = p_serial AND origin = 'factory'
                    AND imei IS NOT NULL AND event_id <> p_event_id),
                ARRAY(SELECT imei FROM slots WHERE p_origin = 'factory' AND serial = p_serial
                    AND origin = 'device' AND imei IS NOT NULL),
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (eid = p_eid OR last_eid = p_eid) AND origin = 'device' AND serial <> p_serial),
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (iccid = p_iccid OR last_iccid = p_iccid) AND origin = 'device' AND serial <> p_serial
                    AND CASE WHEN iccid = p_iccid THEN eid ELSE last_eid END = p_eid),
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (iccid = p_iccid OR last_iccid = p_iccid) AND origin = 'device' AND serial <> p_serial
                    AND CASE WHEN iccid = p_iccid THEN eid ELSE last_eid END <> p_eid),
                ARRAY(SELECT DISTINCT eid FROM events WHERE serial = p_serial AND origin = 'factory'
                    AND eid IS NOT NULL AND event_id <> p_event_id),
                ARRAY(SELECT eid FROM slots WHERE p_origin = 'factory' AND serial = p_serial
                    AND origin = 'device' AND eid IS NOT NULL)
            INTO imei_holders, iccid_holders, made, field, eid_holders, iccid_same_eid, iccid_other_eid, made_eids,
                field_eids;
            IF p_fast AND (lost OR reused_of IS NOT NULL OR cardinality(made) > 0 OR cardinality(field) > 0 OR cardinality(made_eids) > 0
                OR cardinality(field_eids) > 0
                OR (is_current AND (cardinality(imei_holders) > 0 OR cardinality(iccid_holders) > 0
                    OR cardinality(eid_holders) > 0)))
            THEN
                RAISE EXCEPTION 'this event needs the flag rules' USING ERRCODE = 'CPRUL';
            END IF;
        END
        $$
        """

    static let ingestFunction = """
        CREATE FUNCTION cellprov_ingest(
            p_event_id TEXT, p_serial TEXT, p_origin TEXT, p_type TEXT, p_slot TEXT, p_sequence BIGINT,
            p_severity TEXT, p_occurred BIGINT, p_received BIGINT, p_imei TEXT, p_imsi TEXT, p_iccid TEXT,
            p_prev_imei TEXT, p_prev_imsi TEXT, p_prev_iccid TEXT, p_payload TEXT, p_locks BIGINT[], p_refs TEXT[],
            p_tac TEXT, p_manufacturer TEXT, p_model TEXT, p_revision TEXT, p_source TEXT, p_fast BOOLEAN,
            OUT stored BOOLEAN, OUT is_current BOOLEAN, OUT lost BOOLEAN, OUT imei_holders TEXT[],
            OUT iccid_holders TEXT[], OUT made TEXT[], OUT field TEXT[])
        LANGUAGE plpgsql AS $$
        DECLARE
            n BIGINT;
        BEGIN
            INSERT INTO events (event_id, serial, origin, type, slot, sequence, severity, occurred_at, received_at,
                imei, imsi, iccid, prev_imei, prev_imsi, prev_iccid, payload)
            VALUES (p_event_id, p_serial, p_origin, p_type, p_slot, p_sequence, p_severity, p_occurred, p_received,
                p_imei, p_imsi, p_iccid, p_prev_imei, p_prev_imsi, p_prev_iccid, p_payload)
            ON CONFLICT (event_id) DO NOTHING;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n = 0 THEN
                stored := false;
                RETURN;
            END IF;
            stored := true;
            PERFORM count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(p_locks) AS k ORDER BY 1) AS keys;
            INSERT INTO units (serial, created_at, first_seen, last_seen)
            VALUES (p_serial, p_received, p_received, CASE WHEN p_origin = 'device' THEN p_received END)
            ON CONFLICT (serial) DO UPDATE SET
                first_seen = least(coalesce(units.first_seen, excluded.first_seen), excluded.first_seen),
                last_seen = greatest(units.last_seen, excluded.last_seen)
            RETURNING lost_at IS NOT NULL INTO lost;
            INSERT INTO slots (serial, origin, slot, imei, imsi, iccid, last_iccid, tac, manufacturer, model,
                revision, source, last_event_type, occurred_at, updated_at)
            VALUES (p_serial, p_origin, p_slot, p_imei, p_imsi, p_iccid, coalesce(p_iccid, p_prev_iccid), p_tac,
                p_manufacturer, p_model, p_revision, p_source, p_type, p_occurred, p_received)
            ON CONFLICT (serial, origin, slot) DO UPDATE SET imei = excluded.imei, imsi = excluded.imsi,
                iccid = excluded.iccid, last_iccid = coalesce(excluded.last_iccid, slots.last_iccid),
                tac = excluded.tac, manufacturer = excluded.manufacturer, model = excluded.model,
                revision = excluded.revision, source = excluded.source,
                last_event_type = excluded.last_event_type, occurred_at = excluded.occurred_at,
                updated_at = excluded.updated_at
            WHERE excluded.occurred_at >= slots.occurred_at;
            GET DIAGNOSTICS n = ROW_COUNT;
            is_current := n = 1;
            IF cardinality(p_refs) > 0 THEN
                INSERT INTO refs (ref, serial) SELECT r, p_serial FROM unnest(p_refs) AS r ON CONFLICT DO NOTHING;
            END IF;
            SELECT
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE imei = p_imei AND origin = 'device' AND serial <> p_serial),
                ARRAY(SELECT DISTINCT serial FROM slots
                    WHERE (iccid = p_iccid OR last_iccid = p_iccid) AND origin = 'device' AND serial <> p_serial),
                ARRAY(SELECT DISTINCT imei FROM events WHERE serial = p_serial AND origin = 'factory'
                    AND imei IS NOT NULL AND event_id <> p_event_id),
                ARRAY(SELECT imei FROM slots WHERE p_origin = 'factory' AND serial = p_serial
                    AND origin = 'device' AND imei IS NOT NULL)
            INTO imei_holders, iccid_holders, made, field;
            IF p_fast AND (lost OR cardinality(made) > 0 OR cardinality(field) > 0
                OR (is_current AND (cardinality(imei_holders) > 0 OR cardinality(iccid_holders) > 0)))
            THEN
                RAISE EXCEPTION 'this event needs the flag rules' USING ERRCODE = 'CPRUL';
            END IF;
        END
        $$
        """
}
