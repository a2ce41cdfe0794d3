import CellprovRegistryCore
import Foundation
import GRDB

// The keyset-paged lists (StorePaging): reads only.
extension SQLiteRegistryStore {
    static func arguments(_ values: [StorePaging.Value]) -> StatementArguments {
        var arguments = StatementArguments()
        for v in values {
            switch v {
            case .text(let s): arguments += [s]
            case .integer(let n): arguments += [n]
            }
        }
        return arguments
    }

    public func flags(_ query: FlagQuery, limit: Int) async throws -> [RegistryFlag] {
        let q = StorePaging.flags(query, limit: limit, columns: "*", placeholder: { _ in "?" })
        let arguments = Self.arguments(q.values)
        let rows = try await read { db in try Row.fetchAll(db, sql: q.sql, arguments: arguments).map(Self.flag) }
        return q.ascending ? rows.reversed() : rows
    }

    public func timeline(serial: String, cursor: PageCursor<TimelineKey>?, limit: Int) async throws -> [TimelineRow] {
        let q = StorePaging.timeline(serial: serial, cursor: cursor, limit: limit, columns: "*", placeholder: { _ in "?" })
        let arguments = Self.arguments(q.values)
        let rows = try await read { db in
            try Row.fetchAll(db, sql: q.sql, arguments: arguments).map { row in
                TimelineRow(
                    entry: Self.timelineEntry(row),
                    key: TimelineKey(occurredAtMs: row["occurred_at"], rowID: row["id"]))
            }
        }
        return q.ascending ? rows.reversed() : rows
    }
}
