import CellprovRegistryCore
import Foundation
import PostgresNIO

// The units carrying an affected module (StoreAffected, ModuleFilter): reads only.
extension PostgresRegistryStore {
    public func affectedUnits(_ filter: ModuleFilter, limit: Int, offset: Int) async throws -> [UnitSummary] {
        guard filter.hasModuleCriterion, limit > 0, offset >= 0 else { return [] }
        // Byte order, as the indexes of migration 7 are built: a prefix range under a language collation would
        // not be a prefix.
        let (condition, values) = StoreAffected.condition(
            filter, column: { "s.\($0) COLLATE \"C\"" }, placeholder: { "$\($0)" })
        var b = PostgresBindings()
        for v in values {
            switch v {
            case .text(let s): b.append(s)
            case .integer(let n): b.append(n)
            }
        }
        b.append(Int64(limit))
        b.append(Int64(offset))
        let sql = StoreAffected.serialsSQL(
            filter, condition, limit: "$\(values.count + 1)", offset: "$\(values.count + 2)")
        let logger = logger
        let query = PostgresQuery(unsafeSQL: sql, binds: b)
        return try await read { conn in
            var serials = [String]()
            for try await s in try await conn.query(query, logger: logger)
                .decode(String.self)
            {
                serials.append(s)
            }
            return try await Self.summaries(conn, logger, serials: serials)
        }
    }
}
