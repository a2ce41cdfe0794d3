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
            ])
    ]
}
