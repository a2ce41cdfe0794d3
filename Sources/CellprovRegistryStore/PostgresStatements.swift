import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import PostgresNIO

// The store's prepared statements: each parsed and planned once per connection (postgres-nio's
// PostgresPreparedStatement), its SQL, bindings and row decoding together.

/// `SELECT * FROM cellprov_ingest(...)` (the 29-argument overload of PostgresSchema's migrations 5 and 9) as a
/// prepared statement: parsed and planned once per connection, as the function's own statements are (migration 9).
struct IngestCall: PostgresPreparedStatement {
    static let sql = """
        SELECT stored, is_current, lost, imei_holders, iccid_holders, made, field, eid_holders, iccid_same_eid,
            iccid_other_eid, made_eids, field_eids, reused_of
        FROM cellprov_ingest(
            $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
            $24, $25, $26, $27, $28, $29)
        """

    struct Row {
        var stored: Bool
        var isCurrent: Bool
        var lost: Bool
        var imeiHolders: [String]
        var iccidHolders: [String]
        var made: [String]
        var field: [String]
        var eidHolders: [String]
        var iccidSameEID: [String]
        var iccidOtherEID: [String]
        var madeEIDs: [String]
        var fieldEIDs: [String]
        var reusedOf: String?
    }

    var eventID: String
    var serial: String
    var origin: String
    var type: String
    var slot: String
    var sequence: Int64
    var severity: String
    var occurred: Int64
    var received: Int64
    var identity: EnrollmentRequest.Identity
    var previous: EnrollmentRequest.Identity?
    var payload: String
    var locks: [Int64]
    var refs: [String]
    var tac: String?
    var module: EnrollmentRequest.Module
    var stateLost: String?
    var fast = false

    init(
        request: EnrollmentRequest, serial: String, origin: EventOrigin, refs: [String], receivedAt: Date,
        payload body: [UInt8]? = nil
    ) throws {
        eventID = request.eventID
        self.serial = serial
        self.origin = origin.rawValue
        type = request.type
        slot = request.module.slot
        sequence = Int64(request.sequence)
        severity = request.severity
        received = StoreSupport.ms(receivedAt)
        occurred = StoreSupport.ms(StoreSupport.occurredAt(request.occurredAt, fallback: receivedAt))
        identity = request.identity
        previous = request.previous
        payload = try StoreSupport.payload(request, received: body)
        // Advisory locks on the unit, the IMEI and the ICCID, in key order (two ingests cannot deadlock on them).
        var names = ["serial:\(serial)"]
        if let imei = identity.imei { names.append("imei:\(imei)") }
        if let iccid = identity.iccid { names.append("iccid:\(iccid)") }
        if let eid = identity.eid { names.append("eid:\(eid)") }
        locks = Array(Set(names.map(StoreSupport.lockKey))).sorted()
        self.refs = refs
        tac = StoreSupport.tac(identity.imei)
        module = request.module
        stateLost = request.stateLost?.reason
    }

    /// The same call for the fast path (autocommit; refuses with CPRUL when the rules' context is not empty).
    func fastPath() -> IngestCall {
        var c = self
        c.fast = true
        return c
    }

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 29)
        appendBindings(to: &b)
        return b
    }

    /// The function's 29 arguments, in order.
    func appendBindings(to b: inout PostgresBindings) {
        b.append(eventID)
        b.append(serial)
        b.append(origin)
        b.append(type)
        b.append(slot)
        b.append(sequence)
        b.append(severity)
        b.append(occurred)
        b.append(received)
        b.append(identity.imei)
        b.append(identity.imsi)
        b.append(identity.iccid)
        b.append(previous?.imei)
        b.append(previous?.imsi)
        b.append(previous?.iccid)
        b.append(payload)
        b.append(locks)
        b.append(refs)
        b.append(tac)
        b.append(module.manufacturer)
        b.append(module.model)
        b.append(module.revision)
        b.append(module.source)
        b.append(fast)
        b.append(identity.eid)
        b.append(previous?.eid)
        b.append(StoreSupport.lastEID(identity, previous))
        b.append(identity.simSlot.map { Int32(clamping: $0) })
        b.append(stateLost)
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        let (stored, current, lost, imei, iccid, made, field, eid, sameEID, otherEID, madeEIDs, fieldEIDs, reused) =
            try row.decode(
                (Bool, Bool?, Bool?, [String]?, [String]?, [String]?, [String]?, [String]?, [String]?, [String]?,
                    [String]?, [String]?, String?).self)
        return Row(
            stored: stored, isCurrent: current ?? false, lost: lost ?? false, imeiHolders: imei ?? [],
            iccidHolders: iccid ?? [], made: made ?? [], field: field ?? [], eidHolders: eid ?? [],
            iccidSameEID: sameEID ?? [], iccidOtherEID: otherEID ?? [], madeEIDs: madeEIDs ?? [],
            fieldEIDs: fieldEIDs ?? [], reusedOf: reused)
    }
}

/// ``IngestCall`` with the device's token checked in the same statement (`cellprov_ingest_device`, migration 6):
/// the credential lookup and the ingest in one round trip. The row is nil when the token is refused.
struct DeviceIngestCall: PostgresPreparedStatement {
    static let sql = """
        SELECT stored, is_current, lost, imei_holders, iccid_holders, made, field, eid_holders, iccid_same_eid,
            iccid_other_eid, made_eids, field_eids, reused_of, credential_ok
        FROM cellprov_ingest_device(
            $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
            $24, $25, $26, $27, $28, $29, $30)
        """
    typealias Row = IngestCall.Row?

    var tokenHash: String
    var call: IngestCall

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 30)
        b.append(tokenHash)
        call.appendBindings(to: &b)
        return b
    }

    /// The first 13 columns are ``IngestCall``'s (its decoder reads them), then `credential_ok`.
    func decodeRow(_ row: PostgresRow) throws -> Row {
        guard try row.makeRandomAccess()[13].decode(Bool.self) else { return nil }
        return try call.decodeRow(row)
    }
}

/// The credential lookup every request makes, as a prepared statement (parsed and planned once per connection).
struct CredentialLookup: PostgresPreparedStatement {
    static let sql = "SELECT kind, subject, role, revoked_at FROM credentials WHERE token_hash = $1"
    typealias Row = (String, String, String?, Int64?)
    var tokenHash: String

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 1)
        b.append(tokenHash)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}

/// `searchUnits`' one query (every term kind, in the order of the kinds) as a prepared statement.
struct SearchStatement: PostgresPreparedStatement {
    static let sql = """
        (SELECT serial, 1 AS kind FROM units WHERE serial = $1 LIMIT $7)
        UNION ALL (SELECT DISTINCT serial, 2 FROM slots WHERE imei = $2 LIMIT $7)
        UNION ALL (SELECT DISTINCT serial, 3 FROM slots WHERE iccid = $3 LIMIT $7)
        UNION ALL (SELECT DISTINCT serial, 4 FROM slots WHERE imsi = $4 LIMIT $7)
        UNION ALL (SELECT serial, 5 FROM refs WHERE ref = $5 LIMIT $7)
        UNION ALL (SELECT DISTINCT serial, 6 FROM slots WHERE tac = $6 ORDER BY serial LIMIT $7)
        UNION ALL (SELECT DISTINCT serial, 7 FROM slots WHERE eid = $8 LIMIT $7)
        ORDER BY kind
        """
    typealias Row = (String, Int32)
    var terms: SearchTerms
    var limit: Int

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 8)
        for term in [terms.serial, terms.imei, terms.iccid, terms.imsi, terms.reference, terms.tac] {
            b.append(term)
        }
        b.append(Int64(limit))
        b.append(terms.eid)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// A prepared statement whose one parameter is a list of serials.
protocol SerialsStatement: PostgresPreparedStatement {
    var serials: [String] { get }
}

extension SerialsStatement {
    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 1)
        b.append(serials)
        return b
    }
}

/// The three queries of a unit summary, prepared.
struct UnitRows: SerialsStatement {
    static let sql = "SELECT serial, first_seen, last_seen, lost_at FROM units WHERE serial = ANY($1::text[])"
    typealias Row = (String, Int64?, Int64?, Int64?)
    var serials: [String]

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

struct SlotRows: SerialsStatement {
    static let sql =
        "SELECT \(PostgresRegistryStore.slotColumns) FROM slots WHERE serial = ANY($1::text[]) ORDER BY serial, origin, slot"
    typealias Row = PostgresRegistryStore.SlotRow
    var serials: [String]

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

struct OpenFlagCounts: SerialsStatement {
    static let sql = """
        SELECT serial, count(*) FROM flags WHERE serial = ANY($1::text[]) AND resolved_at IS NULL GROUP BY serial
        """
    typealias Row = (String, Int64)
    var serials: [String]

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
