import CellprovRegistryCore
import Foundation
import GRDB

/// Operator revocation (`cellprov-registry operator revoke`) and the check behind page sessions.
extension SQLiteRegistryStore {
    public func revokeOperator(name: String, by: String, at: Date) async throws -> Bool {
        let t = StoreSupport.ms(at)
        return try await transaction { db in
            try db.execute(
                sql: "UPDATE credentials SET revoked_at = ? WHERE kind = 'operator' AND subject = ? AND revoked_at IS NULL",
                arguments: [t, name])
            guard db.changesCount > 0 else { return false }
            try db.execute(
                sql: "INSERT INTO audit (at, actor, action, serial, remote, detail) VALUES (?, ?, 'revoke_operator', NULL, NULL, ?)",
                arguments: [t, by, "operator \(name)"])
            return true
        }
    }

    public func operatorRole(name: String) async throws -> OperatorRole? {
        try await read { db in
            let role = try String.fetchOne(
                db,
                sql: """
                    SELECT role FROM credentials WHERE kind = 'operator' AND subject = ? AND revoked_at IS NULL
                    ORDER BY created_at DESC LIMIT 1
                    """,
                arguments: [name])
            return role.flatMap(OperatorRole.init(rawValue:))
        }
    }
}
