import CellprovCore
import CellprovRegistryCore
import Foundation

/// Row-to-domain conversions both backends share.
enum StoreRows {
    static func credential(kind: String, subject: String, role: String?, revokedAt: Int64?) -> CredentialRecord? {
        let principal: Principal
        switch kind {
        case "device": principal = .device(serial: subject)
        case "station": principal = .station(name: subject)
        case "operator":
            guard let role = role.flatMap(OperatorRole.init(rawValue:)) else { return nil }
            principal = .operator(name: subject, role: role)
        default: return nil
        }
        return CredentialRecord(principal: principal, revokedAt: StoreSupport.date(revokedAt))
    }

    static func flag(
        id: Int64, kind: String, severity: String, serial: String?, slot: String?, summary: String, evidence: String?,
        dedupeKey: String, raisedAt: Int64, resolvedAt: Int64?, resolvedBy: String?, note: String?
    ) -> RegistryFlag {
        RegistryFlag(
            id: id,
            flag: NewFlag(
                kind: FlagKind(rawValue: kind) ?? .imeiChanged, severity: EventSeverity(rawValue: severity) ?? .warning,
                serial: serial, slot: slot, summary: summary, evidence: StoreSupport.decodeEvidence(evidence),
                dedupeKey: dedupeKey),
            raisedAt: StoreSupport.date(raisedAt), resolvedAt: StoreSupport.date(resolvedAt), resolvedBy: resolvedBy,
            resolutionNote: note)
    }

    /// "Manufacturer Model" for the export's module column.
    static func module(_ manufacturer: String?, _ model: String?) -> String? {
        let parts = [manufacturer, model].compactMap { $0 }.filter { !$0.isEmpty }
        return parts.isEmpty ? nil : parts.joined(separator: " ")
    }
}

/// The SQLite schema, as versioned migrations (applied in order, each once, recorded in `schema_migrations`).
enum SQLiteSchema {
    struct Migration {
        var version: Int
        var sql: String
    }

    static let migrations: [Migration] = [
        Migration(
            version: 1,
            sql: """
                CREATE TABLE settings (name TEXT PRIMARY KEY, value BLOB NOT NULL);
                CREATE TABLE credentials (
                    token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, role TEXT,
                    created_at INTEGER NOT NULL, revoked_at INTEGER);
                CREATE INDEX credentials_subject ON credentials (kind, subject) WHERE revoked_at IS NULL;
                CREATE TABLE units (
                    serial TEXT PRIMARY KEY, created_at INTEGER NOT NULL, first_seen INTEGER, last_seen INTEGER,
                    lost_at INTEGER, lost_by TEXT, lost_note TEXT);
                CREATE INDEX units_last_seen ON units (last_seen) WHERE lost_at IS NULL;
                CREATE TABLE slots (
                    serial TEXT NOT NULL, origin TEXT NOT NULL, slot TEXT NOT NULL,
                    imei TEXT, imsi TEXT, iccid TEXT, last_iccid TEXT, tac TEXT,
                    manufacturer TEXT, model TEXT, revision TEXT, source TEXT NOT NULL,
                    last_event_type TEXT NOT NULL, occurred_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                    PRIMARY KEY (serial, origin, slot));
                CREATE INDEX slots_imei ON slots (imei);
                CREATE INDEX slots_imsi ON slots (imsi);
                CREATE INDEX slots_iccid ON slots (iccid);
                CREATE INDEX slots_last_iccid ON slots (last_iccid);
                CREATE INDEX slots_tac ON slots (tac, serial);
                CREATE TABLE events (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, serial TEXT NOT NULL,
                    origin TEXT NOT NULL, type TEXT NOT NULL, slot TEXT NOT NULL, sequence INTEGER NOT NULL,
                    severity TEXT NOT NULL, occurred_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
                    imei TEXT, imsi TEXT, iccid TEXT, prev_imei TEXT, prev_imsi TEXT, prev_iccid TEXT,
                    payload TEXT NOT NULL);
                CREATE INDEX events_serial ON events (serial, occurred_at);
                CREATE TABLE refs (ref TEXT NOT NULL, serial TEXT NOT NULL, PRIMARY KEY (ref, serial)) WITHOUT ROWID;
                CREATE TABLE flags (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, severity TEXT NOT NULL, serial TEXT,
                    slot TEXT, summary TEXT NOT NULL, evidence TEXT NOT NULL, dedupe_key TEXT NOT NULL,
                    raised_at INTEGER NOT NULL, resolved_at INTEGER, resolved_by TEXT, resolution_note TEXT);
                CREATE UNIQUE INDEX flags_open_dedupe ON flags (dedupe_key) WHERE resolved_at IS NULL;
                CREATE INDEX flags_serial ON flags (serial, id);
                CREATE INDEX flags_open ON flags (id) WHERE resolved_at IS NULL;
                CREATE TABLE audit (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL,
                    action TEXT NOT NULL, serial TEXT, remote TEXT, detail TEXT);
                CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
                    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
                    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                """),
        // Version 2: page sessions, each bound to the operator token that signed in (its id stored hashed), and
        // the per-unit count of refused attempts between two audited ones.
        Migration(
            version: 2,
            sql: """
                CREATE TABLE page_sessions (
                    id_hash TEXT PRIMARY KEY, token_hash TEXT NOT NULL, created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL) WITHOUT ROWID;
                CREATE INDEX page_sessions_expiry ON page_sessions (expires_at);
                CREATE TABLE refusal_windows (
                    serial TEXT NOT NULL, reason TEXT NOT NULL, window_start INTEGER NOT NULL, count INTEGER NOT NULL,
                    PRIMARY KEY (serial, reason)) WITHOUT ROWID;
                """),
        // Version 3: the eUICC (issue 15). Each slot keeps the card's EID (and `last_eid`, the card of
        // `last_iccid`, kept across a `sim_removed` like it) and the module's active SIM slot; each event its EID,
        // its previous EID and the active slot. The EID is indexed for search and for the `euicc_moved` rule
        // (partial: most slots hold a plain SIM). Events stored before this version have no EID column values.
        Migration(
            version: 3,
            sql: """
                ALTER TABLE slots ADD COLUMN eid TEXT;
                ALTER TABLE slots ADD COLUMN last_eid TEXT;
                ALTER TABLE slots ADD COLUMN sim_slot INTEGER;
                ALTER TABLE events ADD COLUMN eid TEXT;
                ALTER TABLE events ADD COLUMN prev_eid TEXT;
                ALTER TABLE events ADD COLUMN sim_slot INTEGER;
                CREATE INDEX slots_eid ON slots (eid) WHERE eid IS NOT NULL;
                CREATE INDEX slots_last_eid ON slots (last_eid) WHERE last_eid IS NOT NULL;
                """),
        // Version 4: sequence rollbacks (issue 19 row 14). Each slot keeps the highest sequence stored for it
        // (`max_sequence`: an event at or below it is checked for a repeated sequence, others cost nothing more);
        // each event the `state_lost.reason` it carried and, when its sequence repeats an earlier event's of the
        // same slot, that event's id (`reuses_sequence_of`), both for the timeline. Existing slots get their
        // maximum from their events.
        Migration(
            version: 4,
            sql: """
                ALTER TABLE slots ADD COLUMN max_sequence INTEGER;
                ALTER TABLE events ADD COLUMN state_lost TEXT;
                ALTER TABLE events ADD COLUMN reuses_sequence_of TEXT;
                UPDATE slots SET max_sequence = (SELECT max(e.sequence) FROM events e
                    WHERE e.serial = slots.serial AND e.origin = slots.origin AND e.slot = slots.slot);
                """),
        // Version 5 (issue 18): the unit's manufacturing records, which the rules read for every event, through a
        // partial index of their own, as PostgreSQL's migration 2 has it. Without it that read went through
        // `events_serial` and read every event of the unit (its pages mostly outside the cache: a field event cost
        // more the longer the unit's history).
        Migration(
            version: 5,
            sql: """
                CREATE INDEX events_factory ON events (serial) WHERE origin = 'factory';
                """),
        // Version 6: the flags list filtered by kind (`/flags?kind=`, linked from the overview), newest first, from
        // a cursor: the index's range instead of every open flag (or every flag) read for a rare kind
        // (docs/decisions.md, "Pages of a list"). Written once per raised flag; resolving does not touch it.
        Migration(
            version: 6,
            sql: """
                CREATE INDEX flags_kind ON flags (kind, id);
                """),
        // Version 7: the affected-units list by model and revision (exact and prefix: a byte range), as PostgreSQL's
        // migration 7 has. The slot upsert sets the module's names (and the TAC) only when they change, so that
        // these indexes are written on a firmware update or a module swap, not on every event
        // (docs/decisions.md, "Affected units").
        Migration(
            version: 7,
            sql: """
                CREATE INDEX slots_model ON slots (model, serial) WHERE model IS NOT NULL;
                CREATE INDEX slots_revision ON slots (revision, serial) WHERE revision IS NOT NULL;
                """),
    ]
}
