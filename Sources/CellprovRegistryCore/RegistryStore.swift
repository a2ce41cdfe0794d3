import CellprovCore
import CellprovEnrollmentAPI
import Foundation

/// The outcome of storing one posted event.
public enum IngestOutcome: Sendable, Equatable {
    /// Stored; the flags it raised (possibly none).
    case stored(raised: [RegistryFlag])
    /// An event with this `event_id` is already stored (the API answers 409).
    case duplicate
    /// Nothing stored: ``IngestOptions/deviceTokenHash`` is not, at the moment of the write, a valid token of the
    /// device the event was stored for (unknown, revoked, another device's, not a device's). The HTTP layer then
    /// looks the credential up and refuses the request as it would have without the option.
    case credentialRefused
}

/// How an event is stored, beyond its content.
public struct IngestOptions: Sendable, Equatable {
    /// The request body as received, already validated (``EnrollmentValidation``): stored as the event's payload,
    /// byte for byte, instead of the decoded event encoded again. nil: the store encodes the event. Bytes that are
    /// not UTF-8 are never stored as such (the store encodes the event instead).
    public var payload: [UInt8]?
    /// The device token (its hash, ``Tokens/hash(_:)``) the request came with, checked in the same transaction as
    /// the write: the event is stored only if the hash is a valid, unrevoked token of the device `serial`
    /// (otherwise ``IngestOutcome/credentialRefused``, nothing written). On PostgreSQL this makes the credential
    /// check and the ingest one round trip. nil: the caller has already authorised the request.
    public var deviceTokenHash: String?

    public init(payload: [UInt8]? = nil, deviceTokenHash: String? = nil) {
        self.payload = payload
        self.deviceTokenHash = deviceTokenHash
    }
}

/// A current SIM assignment, for carrier reconciliation.
public struct SIMAssignment: Sendable, Equatable {
    public var serial: String
    public var slot: String
    public var iccid: String
    public var imsi: String?
    /// The eUICC the profile is on, when the unit reported its EID.
    public var eid: String?

    public init(serial: String, slot: String, iccid: String, imsi: String?, eid: String? = nil) {
        self.serial = serial
        self.slot = slot
        self.iccid = iccid
        self.imsi = imsi
        self.eid = eid
    }
}

/// One row of `GET /v1/units.csv`.
public struct UnitExportRow: Sendable, Equatable {
    public var serial: String
    public var slot: String
    /// `device` (field slot) or `factory` (manufacturing record's slot).
    public var origin: EventOrigin
    public var identity: IdentitySnapshot
    public var module: String?
    public var firstSeen: Date?
    public var lastSeen: Date?

    public init(
        serial: String, slot: String, identity: IdentitySnapshot, module: String?, firstSeen: Date?, lastSeen: Date?,
        origin: EventOrigin = .device
    ) {
        self.serial = serial
        self.slot = slot
        self.origin = origin
        self.identity = identity
        self.module = module
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
    }
}

/// Errors a store reports to its callers. Messages carry no identifier digits.
public struct RegistryStoreError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The registry's storage: SQLite (one host) and PostgreSQL (several instances) implement it
/// (CellprovRegistryStore), and one test suite runs against both. Every method is one transaction; `ingest` is
/// atomic with the flags it raises, and safe against another instance ingesting the same event at the same time
/// (the event is stored once; the other gets `.duplicate`).
public protocol RegistryStore: Sendable {
    /// Creates or upgrades the schema (versioned migrations, idempotent; several instances may start at once).
    func migrate() async throws
    /// Throws unless the database answers and every migration this build knows is applied (`/readyz`).
    func checkReady() async throws
    /// The registry's own pseudonym key (made by the first migration, shared by every instance): masked identifiers
    /// in answers carry references under it.
    func pseudonymKey() async throws -> [UInt8]
    /// The key that signs session cookies and CSRF tokens (made by the first migration, shared by every instance,
    /// distinct from ``pseudonymKey()``).
    func sessionKey() async throws -> [UInt8]
    func close() async

    // Credentials (tokens are stored only as hashes, `Tokens.hash`: SHA-256 hex).
    /// Creates the device or gives it a new token (the old one is revoked).
    func putDeviceToken(serial: String, tokenHash: String, at: Date) async throws
    func putStationToken(name: String, tokenHash: String, at: Date) async throws
    func putOperatorToken(name: String, role: OperatorRole, tokenHash: String, at: Date) async throws
    /// The credential a token hash belongs to, valid or revoked; nil when unknown.
    func credential(tokenHash: String) async throws -> CredentialRecord?
    /// Revokes every valid token of the operator `name` (someone who left, a token that leaked) and records it in
    /// the audit log; false when the operator had none.
    func revokeOperator(name: String, by: String, at: Date) async throws -> Bool
    /// The role of the operator's valid token; nil when the operator has none (never added, or revoked). Page
    /// sessions are checked against it on every request, so a revocation ends them at once.
    func operatorRole(name: String) async throws -> OperatorRole?

    // Page sessions: the cookie carries a random session id; the store keeps its hash (`Tokens.hash`), bound to the
    // operator token that signed in. A session is worth no more than that token: revoked (by `operator revoke`, or
    // by a new token for the same operator, whatever its role) it ends every session it started, and a new token
    // never revives them.
    /// Starts a session for the operator token `tokenHash`, until `expires`; drops sessions expired at `at`.
    func startSession(idHash: String, tokenHash: String, expires: Date, at: Date) async throws
    /// The operator name and role of a session whose token is still valid and which has not expired at `at`; nil
    /// otherwise.
    func session(idHash: String, at: Date) async throws -> (name: String, role: OperatorRole)?
    /// Ends a session (sign-out). Ending an unknown session is not an error.
    func endSession(idHash: String) async throws

    // Ingest.
    /// Stores one event for `serial` (already authorised) with the flags its rules raise, in one transaction.
    /// `references` are pseudonym references to index for search (cellprovd's log refs); the store also indexes
    /// those in `request.references` and the registry's own refs of the identity, so passing `[]` is fine.
    /// `options`: the payload as received, and a device token to check in the same transaction
    /// (``IngestOptions``).
    func ingest(_ request: EnrollmentRequest, serial: String, origin: EventOrigin, references: [String],
        receivedAt: Date, options: IngestOptions) async throws -> IngestOutcome
    /// Records a refused attempt (revoked token of a lost unit, a token used for another serial) in the audit
    /// log; when the unit is marked lost, raises `lost_unit_seen` and returns it.
    func recordRefusal(serial: String, actor: String, reason: String, remote: String?, at: Date) async throws
        -> [RegistryFlag]

    // Queries (operator API, pages).
    func searchUnits(_ terms: SearchTerms, limit: Int) async throws -> [UnitSummary]
    func unit(serial: String) async throws -> UnitDetail?
    /// Every unit one of whose field slots ever reported an identifier the terms name (IMEI, IMSI, ICCID, EID:
    /// ``Holdings/identifiers(of:)``), each with the intervals it held it (``Holdings``), in
    /// ``Holdings/holders(_:at:)`` order; with `at` (device time), only the units that held it then, with the
    /// intervals covering `at`. At most `limit` units; serials, TACs and references find no holder.
    func searchHolders(_ terms: SearchTerms, at: Date?, limit: Int) async throws -> [IdentifierHolder]
    /// The unit as it stood at `at` (device time, the events' `occurred_at`): each slot as its last event at or
    /// before `at` left it (slots first reported later are absent), the flags raised by then and not resolved by
    /// then (a flag resolved later shows open), the timeline up to `at`, `lost` when its current lost mark was set
    /// by then. nil when the unit is unknown.
    func unit(serial: String, at: Date) async throws -> UnitDetail?
    /// The units carrying a module the filter names (``ModuleFilter``: manufacturer, model, firmware revision,
    /// exact or by prefix, TAC, on one and the same current field slot; seen since a moment), in serial order,
    /// `offset` units skipped, at most `limit`: their summaries as today (current identities and modules). A filter
    /// without a module criterion finds nothing.
    func affectedUnits(_ filter: ModuleFilter, limit: Int, offset: Int) async throws -> [UnitSummary]
    /// The flags the query's filters select, newest first (id descending), from its cursor on (``PageCursor``:
    /// `.after` answers the rows nearest the cursor, in that same order), at most `limit`.
    func flags(_ query: FlagQuery, limit: Int) async throws -> [RegistryFlag]
    /// A page of the unit's timeline (field and factory events), newest first (``TimelineKey`` descending), from
    /// the cursor on as ``flags(_:limit:)`` reads it, at most `limit`. Empty for an unknown unit.
    func timeline(serial: String, cursor: PageCursor<TimelineKey>?, limit: Int) async throws -> [TimelineRow]
    func flag(id: Int64) async throws -> RegistryFlag?
    /// False when the flag does not exist or is already resolved.
    func resolveFlag(id: Int64, by: String, note: String, at: Date) async throws -> Bool
    /// Raises flags found outside ingest (carrier reconciliation, `unit_silent`); skips those whose dedupe key
    /// is open; returns those raised.
    func raise(_ flags: [NewFlag], at: Date) async throws -> [RegistryFlag]

    // Lost/stolen playbook.
    /// Marks the unit lost and revokes its device tokens; false when the unit is unknown. Marking a lost unit lost
    /// again keeps the first mark and returns true. The store writes no audit entry for it (nor for `markFound`,
    /// `resolveFlag`, reveals, exports): the caller appends one with the request's remote address.
    func markLost(serial: String, by: String, note: String?, at: Date) async throws -> Bool
    /// Clears the lost mark and gives the device a new token (its hash); false when the unit is unknown or not lost.
    func markFound(serial: String, by: String, newTokenHash: String, at: Date) async throws -> Bool

    // Audit log (append-only).
    func appendAudit(_ entry: AuditEntry) async throws
    func audit(limit: Int) async throws -> [AuditEntry]

    // Exports and periodic checks.
    func exportUnits() async throws -> [UnitExportRow]
    func simAssignments() async throws -> [SIMAssignment]
    /// Serials (not lost) whose last field event is older than `before` (units that never reported are left out).
    func silentUnits(lastSeenBefore before: Date) async throws -> [String]
    /// Open flags by kind (`/metrics`).
    func openFlagCounts() async throws -> [FlagKind: Int]
    /// The fleet overview's counts (``OverviewQuery``, ``OverviewCounts``), read in one transaction.
    func overviewCounts(_ query: OverviewQuery) async throws -> OverviewCounts
}

extension RegistryStore {
    /// The unit now (`at` nil), or as it stood at `at` (``unit(serial:at:)``).
    public func unit(serial: String, asOf at: Date?) async throws -> UnitDetail? {
        if let at { return try await unit(serial: serial, at: at) }
        return try await unit(serial: serial)
    }

    /// The newest flags, open ones only or all.
    public func flags(openOnly: Bool, limit: Int) async throws -> [RegistryFlag] {
        try await flags(FlagQuery(status: openOnly ? .open : .all), limit: limit)
    }

    /// Stores one event the caller has authorised, its payload encoded by the store.
    public func ingest(
        _ request: EnrollmentRequest, serial: String, origin: EventOrigin, references: [String], receivedAt: Date
    ) async throws -> IngestOutcome {
        try await ingest(
            request, serial: serial, origin: origin, references: references, receivedAt: receivedAt,
            options: IngestOptions())
    }
}
