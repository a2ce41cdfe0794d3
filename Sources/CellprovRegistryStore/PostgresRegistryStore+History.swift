import CellprovCore
import CellprovRegistryCore
import Foundation
import Logging
import PostgresNIO

// Who held an identifier when, and a unit as of a moment (StoreHistory, Holdings): reads only.
extension PostgresRegistryStore {
    static let slotEventColumns = """
        id, event_id, serial, origin, type, slot, occurred_at, received_at, imei, imsi, iccid, eid, sim_slot
        """

    typealias SlotEventRow = (
        Int64, String, String, String, String, String, Int64, Int64, String?, String?, String?, String?, Int32?
    )

    static func slotEvent(_ r: SlotEventRow) -> SlotEventRecord {
        SlotEventRecord(
            serial: r.2, origin: EventOrigin(rawValue: r.3) ?? .device, slot: r.5, eventID: r.1, type: r.4, rowID: r.0,
            occurredAt: StoreSupport.date(r.6), receivedAt: StoreSupport.date(r.7),
            identity: IdentitySnapshot(imei: r.8, imsi: r.9, iccid: r.10, eid: r.11, simSlot: r.12.map(Int.init)))
    }

    static func slotEvents(_ conn: PostgresConnection, _ logger: Logger, _ query: PostgresQuery) async throws
        -> [SlotEventRecord]
    {
        var out = [SlotEventRecord]()
        for try await row in try await conn.query(query, logger: logger).decode(SlotEventRow.self) {
            out.append(slotEvent(row))
        }
        return out
    }

    public func searchHolders(_ terms: SearchTerms, at: Date?, limit: Int) async throws -> [IdentifierHolder] {
        let ids = Holdings.identifiers(of: terms)
        guard !ids.isEmpty, limit > 0 else { return [] }
        let refs = StoreHistory.references(ids, key: try await pseudonymKey())
        let logger = logger
        let candidates = StoreHistory.candidateLimit
        return try await read { conn in
            var serials = Set<String>()
            for ref in refs {
                for try await s in try await conn.query(
                    "SELECT serial FROM refs WHERE ref = \(ref) ORDER BY serial LIMIT \(candidates)", logger: logger
                ).decode(String.self) {
                    serials.insert(s)
                }
            }
            guard !serials.isEmpty else { return [] }
            let list = serials.sorted()
            var b = PostgresBindings()
            b.append(list)
            let events = try await Self.slotEvents(
                conn, logger,
                PostgresQuery(
                    unsafeSQL: """
                        SELECT \(Self.slotEventColumns) FROM events
                        WHERE serial = ANY($1::text[]) AND origin = 'device'
                        """, binds: b))
            let holders = StoreHistory.holders(ids, events: events, at: at, limit: limit)
            return StoreHistory.join(
                holders, try await Self.summaries(conn, logger, serials: holders.map(\.serial)))
        }
    }

    public func unit(serial: String, at: Date) async throws -> UnitDetail? {
        let t = StoreSupport.ms(at)
        let logger = logger
        let timelineLimit = StoreSupport.timelineLimit
        return try await read { conn in
            var found = false
            var lost: LostState?
            for try await (lostAt, by, note) in try await conn.query(
                "SELECT lost_at, lost_by, lost_note FROM units WHERE serial = \(serial)", logger: logger
            ).decode((Int64?, String?, String?).self) {
                found = true
                lost = lostAt.map { LostState(markedAt: StoreSupport.date($0), markedBy: by ?? "", note: note) }
            }
            guard found else { return nil }
            let events = try await Self.slotEvents(
                conn, logger,
                "SELECT \(unescaped: Self.slotEventColumns) FROM events WHERE serial = \(serial) AND occurred_at <= \(t)")
            var slots = [SlotState]()
            for e in Holdings.slotsAsOf(events, at: at) {
                var payload: String?
                for try await p in try await conn.query(
                    "SELECT payload FROM events WHERE id = \(e.rowID)", logger: logger
                ).decode(String.self) {
                    payload = p
                }
                slots.append(StoreHistory.slotState(e, payload: payload))
            }
            var timeline = [TimelineEntry]()
            for try await row in try await conn.query(
                """
                SELECT \(unescaped: Self.eventColumns) FROM (
                    SELECT *, id AS row_id FROM events WHERE serial = \(serial) AND occurred_at <= \(t)
                    ORDER BY occurred_at DESC, id DESC LIMIT \(timelineLimit)) AS newest
                ORDER BY occurred_at, row_id
                """, logger: logger
            ).decode(EventRow.self) {
                timeline.append(Self.timelineEntry(row))
            }
            var fb = PostgresBindings()
            fb.append(serial)
            fb.append(t)
            let flags = try await Self.flags(
                conn, logger,
                """
                SELECT \(Self.flagColumns) FROM flags WHERE serial = $1 AND raised_at <= $2 ORDER BY id DESC LIMIT 1000
                """, fb)
            return StoreHistory.detail(
                serial: serial, at: at, slots: slots, fieldEvents: events, lost: lost, timeline: timeline, flags: flags)
        }
    }
}
