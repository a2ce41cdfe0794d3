import CellprovCore
import CellprovEnrollmentAPI
import Foundation

/// cellprov-registry's pure domain (docs/registry.md): the vocabulary shared by its storage backends, its HTTP
/// layer and its alerts. No I/O here.
public enum Registry {
    public static let defaultDatabaseURL = "sqlite:///var/lib/cellprov-registry/registry.db"
}

/// An operator's role. `viewer` finds units and reads flags with identifiers masked; `admin` also reveals
/// identifiers, marks units lost or found, resolves flags, reconciles carrier exports, exports units and reads the
/// audit log.
public enum OperatorRole: String, Sendable, Codable, CaseIterable {
    case viewer
    case admin
}

/// Who a request comes from, once its credentials are checked.
public enum Principal: Sendable, Equatable {
    /// A device's bearer token (or client certificate): it may post events for this serial only.
    case device(serial: String)
    /// A factory station's token: it may post `manufactured` records, for any serial.
    case station(name: String)
    /// A person using the operator API or the pages.
    case `operator`(name: String, role: OperatorRole)
}

/// What a stored credential resolves to. A device token stays on record after the unit is marked lost (it is
/// revoked, not deleted), so that a later attempt with it is recognised as the lost unit's and raises
/// `lost_unit_seen`.
public struct CredentialRecord: Sendable, Equatable {
    public var principal: Principal
    /// When the credential was revoked (lost unit, replaced token); nil while it is valid.
    public var revokedAt: Date?

    public init(principal: Principal, revokedAt: Date? = nil) {
        self.principal = principal
        self.revokedAt = revokedAt
    }
}

/// Where an event came from.
public enum EventOrigin: String, Sendable, Codable {
    /// cellprovd on the unit.
    case device
    /// A factory station's `cellprov probe --report` (`manufactured` records).
    case factory
}

/// The kinds of red flag the registry raises. Raw values are the API's `kind` names.
public enum FlagKind: String, Sendable, Codable, CaseIterable, CodingKeyRepresentable {
    /// A device reported `imei_changed` (a module reporting a new IMEI, or a swapped module).
    case imeiChanged = "imei_changed"
    /// A device reported `duplicate_imei` (two of its own slots with one IMEI).
    case duplicateIMEI = "duplicate_imei"
    /// One IMEI is the current IMEI of slots of two (or more) device serials: a cloned or mis-flashed module.
    case imeiOnTwoUnits = "imei_on_two_units"
    /// A SIM (ICCID) last seen in one unit is now reported by another. Not raised when the card's EID explains
    /// it: a profile switch on the same eUICC, or the whole eUICC moving (``euiccMoved``).
    case iccidMoved = "iccid_moved"
    /// An eUICC (EID) last seen in one unit is now reported by another: the card (or the module or board holding
    /// it) moved.
    case euiccMoved = "euicc_moved"
    /// One profile (ICCID) on two eUICCs: a device reported `profile_clone_suspected` (the same ICCID from another
    /// EID in one slot), or another unit holds the ICCID on another card (or this unit switched profile to an
    /// ICCID another unit holds). Genuine cards cannot do that: a cloned profile or a misread.
    case profileCloneSuspected = "profile_clone_suspected"
    /// A unit's field IMEI is not the one its manufacturing record holds.
    case moduleSwappedSinceManufacturing = "module_swapped_since_manufacturing"
    /// An event, or a refused attempt, from a unit marked lost.
    case lostUnitSeen = "lost_unit_seen"
    /// No event from the unit for the configured number of days.
    case unitSilent = "unit_silent"
    /// Carrier reconciliation: active at the carrier, in no unit.
    case simActiveUnassigned = "sim_active_unassigned"
    /// Carrier reconciliation: in a unit, absent from the carrier's export.
    case simUnknownToCarrier = "sim_unknown_to_carrier"
    /// Carrier reconciliation: the carrier pairs this ICCID with another IMSI than the unit reports.
    case imsiICCIDMismatch = "imsi_iccid_mismatch"
    /// Carrier reconciliation: the export lists an active profile on an eUICC (EID) that no unit reports.
    case eidUnknownToFleet = "eid_unknown_to_fleet"
    /// A device numbered an event of a slot with a sequence an earlier stored event of that slot already has
    /// (another event id): its state went back (its state directory restored from a backup, or wiped), or two
    /// devices report under one serial. The event is stored; the timeline marks it.
    case stateRolledBack = "state_rolled_back"
}

/// A flag to raise: what a rule found. The store gives it an id and a time, and does not raise it again while a
/// flag with the same ``dedupeKey`` is open.
public struct NewFlag: Sendable, Equatable {
    public var kind: FlagKind
    public var severity: EventSeverity
    /// The unit the flag is about (nil for a carrier finding about a SIM in no unit).
    public var serial: String?
    public var slot: String?
    /// One line for people, without identifier digits ("IMEI also enrolled by GW-000200").
    public var summary: String
    /// The identifiers and units behind the flag. Holds raw digits: the HTTP layer masks it like any identity.
    public var evidence: FlagEvidence
    /// Flags with the same key are one finding: while one is open, another is not raised.
    public var dedupeKey: String

    public init(
        kind: FlagKind, severity: EventSeverity, serial: String?, slot: String? = nil, summary: String,
        evidence: FlagEvidence, dedupeKey: String
    ) {
        self.kind = kind
        self.severity = severity
        self.serial = serial
        self.slot = slot
        self.summary = summary
        self.evidence = evidence
        self.dedupeKey = dedupeKey
    }
}

/// The evidence of a flag: the identifiers involved (raw digits: a data channel, masked when shown), the other
/// units involved and the events behind it.
public struct FlagEvidence: Sendable, Codable, Equatable {
    public var imei: String?
    public var imsi: String?
    public var iccid: String?
    /// The eUICC's EID (32 digits), when the flag is about a card.
    public var eid: String?
    /// For comparisons (manufacturing record, previous holder): the other value.
    public var expectedIMEI: String?
    /// For the manufacturing comparison of the card: the factory record's EID.
    public var expectedEID: String?
    public var otherSerials: [String]
    public var eventIDs: [String]
    /// Anything else, without identifier digits (e.g. "carrier status: active").
    public var note: String?

    public init(
        imei: String? = nil, imsi: String? = nil, iccid: String? = nil, eid: String? = nil,
        expectedIMEI: String? = nil, expectedEID: String? = nil, otherSerials: [String] = [],
        eventIDs: [String] = [], note: String? = nil
    ) {
        self.imei = imei
        self.imsi = imsi
        self.iccid = iccid
        self.eid = eid
        self.expectedIMEI = expectedIMEI
        self.expectedEID = expectedEID
        self.otherSerials = otherSerials
        self.eventIDs = eventIDs
        self.note = note
    }
}

/// A raised flag as stored.
public struct RegistryFlag: Sendable, Equatable {
    public var id: Int64
    public var flag: NewFlag
    public var raisedAt: Date
    public var resolvedAt: Date?
    public var resolvedBy: String?
    public var resolutionNote: String?

    public init(
        id: Int64, flag: NewFlag, raisedAt: Date, resolvedAt: Date? = nil, resolvedBy: String? = nil,
        resolutionNote: String? = nil
    ) {
        self.id = id
        self.flag = flag
        self.raisedAt = raisedAt
        self.resolvedAt = resolvedAt
        self.resolvedBy = resolvedBy
        self.resolutionNote = resolutionNote
    }

    public var isOpen: Bool { resolvedAt == nil }
}

/// One slot of a unit as last reported.
public struct SlotState: Sendable, Equatable {
    public var slot: String
    /// `device` for the unit's field slots (cellprovd), `factory` for the slots its manufacturing records describe.
    public var origin: EventOrigin
    public var identity: IdentitySnapshot
    public var manufacturer: String?
    public var model: String?
    public var revision: String?
    /// "at" or "modemmanager".
    public var source: String
    /// The type of the slot's last event.
    public var lastEventType: String
    public var updatedAt: Date

    public init(
        slot: String, identity: IdentitySnapshot, manufacturer: String? = nil, model: String? = nil,
        revision: String? = nil, source: String = "at", lastEventType: String, updatedAt: Date,
        origin: EventOrigin = .device
    ) {
        self.slot = slot
        self.origin = origin
        self.identity = identity
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision
        self.source = source
        self.lastEventType = lastEventType
        self.updatedAt = updatedAt
    }
}

/// A unit (one device serial) as search results list it.
public struct UnitSummary: Sendable, Equatable {
    public var serial: String
    public var slots: [SlotState]
    public var lost: Bool
    public var firstSeen: Date?
    public var lastSeen: Date?
    public var openFlags: Int

    public init(
        serial: String, slots: [SlotState], lost: Bool, firstSeen: Date?, lastSeen: Date?, openFlags: Int
    ) {
        self.serial = serial
        self.slots = slots
        self.lost = lost
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.openFlags = openFlags
    }
}

/// One entry of a unit's timeline: a stored event (field or factory).
public struct TimelineEntry: Sendable, Equatable {
    public var eventID: String
    public var origin: EventOrigin
    public var type: String
    public var slot: String
    public var sequence: Int
    public var severity: String
    public var occurredAt: Date
    public var receivedAt: Date
    public var identity: IdentitySnapshot
    public var previous: IdentitySnapshot?
    /// The event's `state_lost.reason`: the device announced that its state was lost (or put back) before it.
    public var stateLost: String?
    /// The event id of the earlier stored event of the same slot with this event's sequence: the device's
    /// numbering went back (``FlagKind/stateRolledBack``).
    public var reusesSequenceOf: String?
    /// `firmware_changed` only: the module's revision before (`previous_revision`) and after (`module.revision`),
    /// as the event carried them; nil on other events.
    public var firmware: FirmwareChange?

    public init(
        eventID: String, origin: EventOrigin, type: String, slot: String, sequence: Int, severity: String,
        occurredAt: Date, receivedAt: Date, identity: IdentitySnapshot, previous: IdentitySnapshot? = nil,
        stateLost: String? = nil, reusesSequenceOf: String? = nil, firmware: FirmwareChange? = nil
    ) {
        self.firmware = firmware
        self.stateLost = stateLost
        self.reusesSequenceOf = reusesSequenceOf
        self.eventID = eventID
        self.origin = origin
        self.type = type
        self.slot = slot
        self.sequence = sequence
        self.severity = severity
        self.occurredAt = occurredAt
        self.receivedAt = receivedAt
        self.identity = identity
        self.previous = previous
    }
}

/// The lost/stolen state of a unit.
public struct LostState: Sendable, Equatable {
    public var markedAt: Date
    public var markedBy: String
    public var note: String?

    public init(markedAt: Date, markedBy: String, note: String? = nil) {
        self.markedAt = markedAt
        self.markedBy = markedBy
        self.note = note
    }
}

/// Everything the unit page shows.
public struct UnitDetail: Sendable, Equatable {
    public var summary: UnitSummary
    /// The `manufactured` records, oldest first (also in ``timeline``).
    public var manufacturing: [TimelineEntry]
    /// Every event, oldest first.
    public var timeline: [TimelineEntry]
    /// The unit's flags, open and resolved, newest first.
    public var flags: [RegistryFlag]
    public var lost: LostState?

    public init(
        summary: UnitSummary, manufacturing: [TimelineEntry], timeline: [TimelineEntry], flags: [RegistryFlag],
        lost: LostState?
    ) {
        self.summary = summary
        self.manufacturing = manufacturing
        self.timeline = timeline
        self.flags = flags
        self.lost = lost
    }
}

/// What a search text is taken to mean (``SearchTerms/init(parsing:)``): each non-nil term is matched, a unit
/// matching any of them is found.
public struct SearchTerms: Sendable, Equatable {
    public var imei: String?
    public var imsi: String?
    public var iccid: String?
    /// 32 digits: the eUICC's EID (the card, whichever profile is enabled).
    public var eid: String?
    /// 8 digits: every unit with a module of this Type Allocation Code.
    public var tac: String?
    /// 10 lowercase hex digits: a pseudonym reference from cellprovd's log.
    public var reference: String?
    /// A device serial (exact, case-sensitive).
    public var serial: String?

    public init(
        imei: String? = nil, imsi: String? = nil, iccid: String? = nil, eid: String? = nil, tac: String? = nil,
        reference: String? = nil, serial: String? = nil
    ) {
        self.imei = imei
        self.imsi = imsi
        self.iccid = iccid
        self.eid = eid
        self.tac = tac
        self.reference = reference
        self.serial = serial
    }

    /// Reads a search box: blanks and dashes are dropped from digit strings; 15 digits may be an IMEI or an
    /// IMSI (both are tried); 14 digits an IMSI; 18 to 20 digits (with an optional trailing F) an ICCID; 32 digits an
    /// EID; 8 digits a TAC; 10 hex digits a reference (and a serial); anything else a serial.
    public init(parsing text: String) {
        self.init()
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty, trimmed.utf8.count <= 64 else { return }
        let compact = String(trimmed.unicodeScalars.filter { $0 != " " && $0 != "-" })
        let isDecimal = !compact.isEmpty && compact.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        if isDecimal {
            switch compact.utf8.count {
            case 15:
                imei = compact
                imsi = compact
            case 14:
                imsi = compact
            case 18...20:
                iccid = compact
            case EID.length:
                eid = compact
            case 8:
                tac = compact
            default:
                break
            }
        } else if compact.utf8.count >= 19, compact.utf8.count <= 20, compact.uppercased().hasSuffix("F"),
            compact.dropLast().utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
        {
            iccid = String(compact.dropLast())
        }
        let lower = trimmed.lowercased()
        if PseudonymReference.isWellFormed(lower) {
            reference = lower
        }
        serial = trimmed
    }

    public var isEmpty: Bool {
        imei == nil && imsi == nil && iccid == nil && eid == nil && tac == nil && reference == nil && serial == nil
    }
}

/// An entry of the append-only audit log: reveals of identifiers, lost/found, flag resolutions, exports, refused
/// device attempts.
public struct AuditEntry: Sendable, Equatable {
    public var id: Int64?
    public var at: Date
    /// The operator's name, or `device:SERIAL` / `station:NAME`.
    public var actor: String
    /// e.g. `reveal`, `mark_lost`, `mark_found`, `resolve_flag`, `export`, `reconcile`, `device_refused`.
    public var action: String
    public var serial: String?
    /// The client address the request came from.
    public var remote: String?
    /// Free text, without identifier digits.
    public var detail: String?

    public init(
        id: Int64? = nil, at: Date, actor: String, action: String, serial: String? = nil, remote: String? = nil,
        detail: String? = nil
    ) {
        self.id = id
        self.at = at
        self.actor = actor
        self.action = action
        self.serial = serial
        self.remote = remote
        self.detail = detail
    }
}

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
