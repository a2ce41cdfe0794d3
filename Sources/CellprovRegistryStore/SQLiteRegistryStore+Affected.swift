import CellprovRegistryCore
import Foundation
import GRDB

// The units carrying an affected module (StoreAffected, ModuleFilter): reads only.
extension SQLiteRegistryStore {
    public func affectedUnits(_ filter: ModuleFilter, limit: Int, offset: Int) async throws -> [UnitSummary] {
        guard filter.hasModuleCriterion, limit > 0, offset >= 0 else { return [] }
        let (condition, values) = StoreAffected.condition(filter, column: { "s.\($0)" }, placeholder: { _ in "?" })
        var arguments = StatementArguments()
        for v in values {
            switch v {
            case .text(let s): arguments += [s]
            case .integer(let n): arguments += [n]
            }
        }
        arguments += [limit, offset]
        let bound = arguments
        let sql = StoreAffected.serialsSQL(filter, condition, limit: "?", offset: "?")
        return try await read { db in
            let serials = try String.fetchAll(db, sql: sql, arguments: bound)
            return try Self.summaries(db, serials: serials)
        }
    }
}
