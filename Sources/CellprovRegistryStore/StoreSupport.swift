import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Crypto
import Foundation
import NIOConcurrencyHelpers

/// What both backends share: time encoding, the values an event writes to its slot, the references it indexes,
/// and the schema's version list. Kept here so that the two backends cannot drift apart in meaning.
enum StoreSupport {
    /// Times are stored as UTC milliseconds since 1970 (BIGINT / INTEGER): one encoding for both backends,
    /// compared and indexed as numbers.
    static func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
    static func date(_ ms: Int64) -> Date { Date(timeIntervalSince1970: Double(ms) / 1000) }
    static func date(_ ms: Int64?) -> Date? { ms.map { date($0) } }

    /// `occurred_at` as sent (RFC 3339, with or without fractional seconds); `fallback` (the receive time) when
    /// it does not parse, so that a device with a broken clock string still has its event stored. Parsed by the
    /// registry's ``IngestTime``, as ingest validation does.
    static func occurredAt(_ text: String, fallback: Date) -> Date {
        IngestTime.parse(text) ?? fallback
    }

    /// Refused attempts (`recordRefusal`) are audited once per unit, reason and hour: a lost unit retrying every
    /// minute must not grow the append-only audit log without bound. The attempts in between are counted in
    /// `refusal_windows`; the next audited one says how many there were.
    static let refusalWindowMs: Int64 = 3_600_000

    /// Whether a refusal at `t` opens a new window (and is audited, with this detail), given the unit's current
    /// window for the reason (its start and its count of attempts), if any.
    static func refusalAudit(previous: (start: Int64, count: Int64)?, at t: Int64, reason: String) -> String? {
        guard let previous else { return reason }
        guard t - previous.start >= refusalWindowMs else { return nil }
        let unaudited = previous.count - 1
        return unaudited > 0 ? "\(reason) (and \(unaudited) more refused in the hour before, not audited each)" : reason
    }

    /// The Type Allocation Code of a 15-digit IMEI (nil otherwise): indexed so that a TAC search is one lookup.
    static func tac(_ imei: String?) -> String? {
        guard let imei, imei.utf8.count == 15, imei.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return String(imei.prefix(8))
    }

    /// The references a search for this event's unit may use: those cellprovd reported (its log's refs, under
    /// the device's key) and the registry's own refs of the event's identifiers (what masked answers show), all
    /// 10 lowercase hex digits; anything else is dropped (bounded: a payload cannot make us index junk).
    static func references(reported: [String], identity: EnrollmentRequest.Identity, key: [UInt8]) -> [String] {
        var refs = Set<String>()
        for r in reported.prefix(16) {
            let lower = r.lowercased()
            if PseudonymReference.isWellFormed(lower) { refs.insert(lower) }
        }
        let p = Pseudonymizer(key: key)
        if let v = identity.imei, !v.isEmpty { refs.insert(p.reference(kind: "imei", value: v)) }
        if let v = identity.imsi, !v.isEmpty { refs.insert(p.reference(kind: "imsi", value: v)) }
        if let v = identity.iccid, !v.isEmpty { refs.insert(p.reference(kind: "iccid", value: v)) }
        if let v = identity.eid, !v.isEmpty { refs.insert(p.reference(kind: "eid", value: v)) }
        return refs.sorted()
    }

    /// The card of the slot's `last_iccid` (written as `coalesce(ICCID, previous ICCID)`): the EID read with that
    /// ICCID, so a `sim_removed` (no ICCID, the previous one) keeps the removed card's EID. The slot keeps its
    /// former `last_eid` only when it keeps its former `last_iccid`.
    static func lastEID(_ identity: EnrollmentRequest.Identity, _ previous: EnrollmentRequest.Identity?) -> String? {
        identity.iccid != nil ? identity.eid : previous?.iccid != nil ? previous?.eid : nil
    }

    /// A 64-bit advisory-lock key for a name (`imei:…`, `iccid:…`, `serial:…`): the first 8 bytes of its SHA-256.
    static func lockKey(_ name: String) -> Int64 {
        let digest = Array(SHA256.hash(data: Data(name.utf8)))
        var v: UInt64 = 0
        for b in digest.prefix(8) { v = v << 8 | UInt64(b) }
        return Int64(bitPattern: v)
    }

    static func randomKey() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &g) }
    }

    static func encodeEvidence(_ e: FlagEvidence) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(e)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func decodeEvidence(_ s: String?) -> FlagEvidence {
        guard let s, let e = try? JSONDecoder().decode(FlagEvidence.self, from: Data(s.utf8)) else {
            return FlagEvidence()
        }
        return e
    }

    /// The event's stored payload: the body as received when the caller passed it (validated JSON, hence UTF-8;
    /// checked again here, so bytes that are not UTF-8 are never stored as text), else the event encoded.
    static func payload(_ r: EnrollmentRequest, received: [UInt8]? = nil) throws -> String {
        if let received, let text = String(validating: received, as: UTF8.self) { return text }
        return String(decoding: try r.jsonBytes(), as: UTF8.self)
    }

    /// A `firmware_changed` event's revisions, read from its stored payload (`payload`: the stored text for that
    /// type, nil for others, as both backends' timeline queries select it). nil when the event is of another type
    /// or the payload cannot be read.
    static func firmware(type: String, payload: String?) -> FirmwareChange? {
        guard type == IdentityEventType.firmwareChanged.rawValue, let payload,
            let r = try? EnrollmentRequest.decode(Array(payload.utf8))
        else { return nil }
        return FirmwareChange(previous: r.previousRevision, current: r.module.revision)
    }

    /// Bound on the timeline a unit page gets (newest kept).
    static let timelineLimit = 1000

    static let pseudonymKeyName = "pseudonym_key"
    static let sessionKeyName = "session_key"
}

/// The settings' keys (``StoreSupport/pseudonymKeyName``, ``StoreSupport/sessionKeyName``): made by the first
/// migration, never changed after it, so each is read from the database once and then kept.
final class StoredKeys: Sendable {
    private let cache = NIOLockedValueBox<[String: [UInt8]]>([:])

    /// The key `name`, read with `read` (the backend's `SELECT value FROM settings`) the first time.
    func key(_ name: String, read: (String) async throws -> [UInt8]?) async throws -> [UInt8] {
        if let k = cache.withLockedValue({ $0[name] }) { return k }
        guard let k = try await read(name), !k.isEmpty else {
            throw RegistryStoreError("the database has no \(name) (not migrated)")
        }
        cache.withLockedValue { $0[name] = k }
        return k
    }
}
