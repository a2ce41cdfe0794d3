import CellprovRegistryCore
import Foundation

/// What both backends share for the affected-units question (``RegistryStore/affectedUnits(_:limit:offset:)``):
/// the filter as one SQL condition over the current field slots (`slots s`) and their unit (`units u`). Exact
/// values and prefixes are compared as bytes: a prefix is the half-open range ``ModuleMatch/prefixRange(_:)``,
/// which a B-tree index on the column answers (PostgreSQL's `slots_model`, `slots_revision`; SQLite scans the slots
/// in serial order: docs/decisions.md, "Affected units"), where `LIKE 'p%'` would need its own escaping and, on
/// PostgreSQL, a pattern index.
enum StoreAffected {
    enum Value: Sendable, Equatable {
        case text(String)
        case integer(Int64)
    }

    /// The `WHERE` condition and its values in order; `column` spells a slot column (PostgreSQL compares under
    /// the "C" collation, byte order, as its indexes are built), `placeholder(n)` the n-th value (1-based).
    static func condition(
        _ filter: ModuleFilter, column: (String) -> String, placeholder: (Int) -> String
    ) -> (sql: String, values: [Value]) {
        var parts = ["s.origin = 'device'"]
        var values: [Value] = []
        func bind(_ v: Value) -> String {
            values.append(v)
            return placeholder(values.count)
        }
        func text(_ name: String, _ m: ModuleMatch?) {
            switch m {
            case .exact(let s)?:
                parts.append("\(column(name)) = \(bind(.text(s)))")
            case .prefix(let p)?:
                let r = ModuleMatch.prefixRange(p)
                parts.append("\(column(name)) >= \(bind(.text(r.lower))) AND \(column(name)) < \(bind(.text(r.upper)))")
            case nil: break
            }
        }
        text("manufacturer", filter.manufacturer)
        text("model", filter.model)
        text("revision", filter.revision)
        if let tac = filter.tac { parts.append("s.tac = \(bind(.text(tac)))") }
        if let since = filter.seenSince {
            parts.append("u.last_seen >= \(bind(.integer(StoreSupport.ms(since))))")
        }
        return (parts.joined(separator: " AND "), values)
    }

    /// The query for one page of serials, in serial order (the caller appends the limit and offset values). The
    /// units table is joined only for `seen_since`: without it, a list of 10 000 units is the index's range alone
    /// (joined, PostgreSQL chose a hash join over every unit: docs/decisions.md).
    static func serialsSQL(_ filter: ModuleFilter, _ condition: String, limit: String, offset: String) -> String {
        let units = filter.seenSince == nil ? "" : " JOIN units u ON u.serial = s.serial"
        return """
            SELECT DISTINCT s.serial FROM slots s\(units)
            WHERE \(condition)
            ORDER BY s.serial LIMIT \(limit) OFFSET \(offset)
            """
    }
}
