import CellprovCore
import CellprovRegistryCore
import Foundation
import GRDB

// Who held an identifier when, and a unit as of a moment (StoreHistory, Holdings): reads only.
extension SQLiteRegistryStore {
    static let slotEventColumns = "id, event_id, serial, origin, type, slot, occurred_at, received_at, imei, imsi, iccid, eid, sim_slot"

    static func slotEvent(_ row: Row) -> SlotEventRecord {
        SlotEventRecord(
            serial: row["serial"], origin: EventOrigin(rawValue: row["origin"]) ?? .device, slot: row["slot"],
            eventID: row["event_id"], type: row["type"], rowID: row["id"],
            occurredAt: StoreSupport.date(row["occurred_at"] as Int64),
            receivedAt: StoreSupport.date(row["received_at"] as Int64),
            identity: IdentitySnapshot(
                imei: row["imei"], imsi: row["imsi"], iccid: row["iccid"], eid: row["eid"], simSlot: row["sim_slot"]))
    }

    public func searchHolders(_ terms: SearchTerms, at: Date?, limit: Int) async throws -> [IdentifierHolder] {
        let ids = Holdings.identifiers(of: terms)
        guard !ids.isEmpty, limit > 0 else { return [] }
        let refs = StoreHistory.references(ids, key: try await pseudonymKey())
        return try await read { db in
            var serials = Set<String>()
            for ref in refs {
                serials.formUnion(
                    try String.fetchAll(
                        db, sql: "SELECT serial FROM refs WHERE ref = ? ORDER BY serial LIMIT ?",
                        arguments: [ref, StoreHistory.candidateLimit]))
            }
            var events = [SlotEventRecord]()
            for serial in serials.sorted() {
                events += try Row.fetchAll(
                    db,
                    sql: "SELECT \(Self.slotEventColumns) FROM events WHERE serial = ? AND origin = 'device'",
                    arguments: [serial]
                ).map(Self.slotEvent)
            }
            let holders = StoreHistory.holders(ids, events: events, at: at, limit: limit)
            return StoreHistory.join(holders, try Self.summaries(db, serials: holders.map(\.serial)))
        }
    }

    public func unit(serial: String, at: Date) async throws -> UnitDetail? {
        let t = StoreSupport.ms(at)
        return try await read { db in
            guard
                let unit = try Row.fetchOne(
                    db, sql: "SELECT lost_at, lost_by, lost_note FROM units WHERE serial = ?",
                    arguments: [serial])
            else { return nil }
            let events = try Row.fetchAll(
                db, sql: "SELECT \(Self.slotEventColumns) FROM events WHERE serial = ? AND occurred_at <= ?",
                arguments: [serial, t]
            ).map(Self.slotEvent)
            let slots = try Holdings.slotsAsOf(events, at: at).map { e in
                StoreHistory.slotState(
                    e,
                    payload: try String.fetchOne(db, sql: "SELECT payload FROM events WHERE id = ?", arguments: [e.rowID]))
            }
            let timeline = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM (SELECT * FROM events WHERE serial = ? AND occurred_at <= ?
                        ORDER BY occurred_at DESC, id DESC LIMIT ?)
                    ORDER BY occurred_at, id
                    """, arguments: [serial, t, StoreSupport.timelineLimit]
            ).map(Self.timelineEntry)
            let flags = try Row.fetchAll(
                db, sql: "SELECT * FROM flags WHERE serial = ? AND raised_at <= ? ORDER BY id DESC LIMIT 1000",
                arguments: [serial, t]
            ).map(Self.flag)
            let lost = (unit["lost_at"] as Int64?).map {
                LostState(markedAt: StoreSupport.date($0), markedBy: unit["lost_by"] ?? "", note: unit["lost_note"])
            }
            return StoreHistory.detail(
                serial: serial, at: at, slots: slots, fieldEvents: events, lost: lost, timeline: timeline,
                flags: flags)
        }
    }
}
