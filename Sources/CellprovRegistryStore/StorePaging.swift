import CellprovRegistryCore
import Foundation

/// What both backends share for the keyset-paged lists (``RegistryStore/flags(_:limit:)``,
/// ``RegistryStore/timeline(serial:cursor:limit:)``): the query text and its values in order, `placeholder(n)`
/// spelling the n-th value (1-based). A cursor `.after` reads the rows nearest it first (ascending); the backend
/// reverses them into the list's order (``ascending``).
enum StorePaging {
    typealias Value = StoreAffected.Value

    struct Query {
        var sql: String
        var values: [Value]
        /// The rows come oldest first: reverse them.
        var ascending: Bool
    }

    /// Flags, newest first: `flags_open (id) WHERE resolved_at IS NULL` or the primary key walked backwards from
    /// the cursor; `kind` and `severity` filter on the way (docs/decisions.md, "Pages of a list").
    static func flags(_ q: FlagQuery, limit: Int, columns: String, placeholder: (Int) -> String) -> Query {
        var parts: [String] = []
        var values: [Value] = []
        func bind(_ v: Value) -> String {
            values.append(v)
            return placeholder(values.count)
        }
        switch q.status {
        case .open: parts.append("resolved_at IS NULL")
        case .resolved: parts.append("resolved_at IS NOT NULL")
        case .all: break
        }
        if let kind = q.kind { parts.append("kind = \(bind(.text(kind.rawValue)))") }
        if let severity = q.severity { parts.append("severity = \(bind(.text(severity.rawValue)))") }
        var ascending = false
        switch q.cursor {
        case .before(let id)?: parts.append("id < \(bind(.integer(id)))")
        case .after(let id)?:
            parts.append("id > \(bind(.integer(id)))")
            ascending = true
        case nil: break
        }
        let whereClause = parts.isEmpty ? "" : " WHERE " + parts.joined(separator: " AND ")
        let sql = """
            SELECT \(columns) FROM flags\(whereClause) ORDER BY id \(ascending ? "ASC" : "DESC") \
            LIMIT \(bind(.integer(Int64(max(0, limit)))))
            """
        return Query(sql: sql, values: values, ascending: ascending)
    }

    /// A unit's events, newest first, through `events_serial (serial, occurred_at)`: the range on `occurred_at`
    /// bounds the index scan, the row id only breaks ties of one millisecond (written so both backends keep the
    /// range: a row-value comparison is not one on SQLite's index).
    static func timeline(
        serial: String, cursor: PageCursor<TimelineKey>?, limit: Int, columns: String, placeholder: (Int) -> String
    ) -> Query {
        var values: [Value] = []
        func bind(_ v: Value) -> String {
            values.append(v)
            return placeholder(values.count)
        }
        var parts = ["serial = \(bind(.text(serial)))"]
        var ascending = false
        switch cursor {
        case .before(let k)?:
            let t = bind(.integer(k.occurredAtMs)), t2 = bind(.integer(k.occurredAtMs))
            parts.append("occurred_at <= \(t) AND (occurred_at < \(t2) OR id < \(bind(.integer(k.rowID))))")
        case .after(let k)?:
            let t = bind(.integer(k.occurredAtMs)), t2 = bind(.integer(k.occurredAtMs))
            parts.append("occurred_at >= \(t) AND (occurred_at > \(t2) OR id > \(bind(.integer(k.rowID))))")
            ascending = true
        case nil: break
        }
        let order = ascending ? "ASC" : "DESC"
        let sql = """
            SELECT \(columns) FROM events WHERE \(parts.joined(separator: " AND ")) \
            ORDER BY occurred_at \(order), id \(order) LIMIT \(bind(.integer(Int64(max(0, limit)))))
            """
        return Query(sql: sql, values: values, ascending: ascending)
    }
}
