import CellprovRegistryCore
import Foundation
import PostgresNIO

// The keyset-paged lists (StorePaging): reads only.
extension PostgresRegistryStore {
    static func bindings(_ values: [StorePaging.Value]) -> PostgresBindings {
        var b = PostgresBindings()
        for v in values {
            switch v {
            case .text(let s): b.append(s)
            case .integer(let n): b.append(n)
            }
        }
        return b
    }

    public func flags(_ query: FlagQuery, limit: Int) async throws -> [RegistryFlag] {
        let q = StorePaging.flags(query, limit: limit, columns: Self.flagColumns, placeholder: { "$\($0)" })
        let logger = logger
        let b = Self.bindings(q.values)
        let rows = try await read { conn in try await Self.flags(conn, logger, q.sql, b) }
        return q.ascending ? rows.reversed() : rows
    }

    public func timeline(serial: String, cursor: PageCursor<TimelineKey>?, limit: Int) async throws -> [TimelineRow] {
        // The event's columns, then its row id by name: decode reads the leading columns.
        let q = StorePaging.timeline(
            serial: serial, cursor: cursor, limit: limit, columns: Self.eventColumns + ", id AS paging_row_id",
            placeholder: { "$\($0)" })
        let logger = logger
        let query = PostgresQuery(unsafeSQL: q.sql, binds: Self.bindings(q.values))
        let rows = try await read { conn in
            var out = [TimelineRow]()
            for try await row in try await conn.query(query, logger: logger) {
                let e = try row.decode(EventRow.self)
                let id = try row.makeRandomAccess()["paging_row_id"].decode(Int64.self)
                out.append(TimelineRow(entry: Self.timelineEntry(e), key: TimelineKey(occurredAtMs: e.6, rowID: id)))
            }
            return out
        }
        return q.ascending ? rows.reversed() : rows
    }
}
