import CellprovRegistryCore
import Foundation
import PostgresNIO

/// Operator revocation (`cellprov-registry operator revoke`) and the check behind page sessions.
extension PostgresRegistryStore {
    public func revokeOperator(name: String, by: String, at: Date) async throws -> Bool {
        let t = StoreSupport.ms(at)
        let logger = logger
        return try await transaction { conn in
            var revoked = 0
            for try await _ in try await conn.query(
                """
                UPDATE credentials SET revoked_at = \(t)
                WHERE kind = 'operator' AND subject = \(name) AND revoked_at IS NULL RETURNING token_hash
                """, logger: logger
            ).decode(String.self) {
                revoked += 1
            }
            guard revoked > 0 else { return false }
            let detail = "operator \(name)"
            try await conn.query(
                """
                INSERT INTO audit (at, actor, action, serial, remote, detail)
                VALUES (\(t), \(by), 'revoke_operator', NULL, NULL, \(detail))
                """, logger: logger)
            return true
        }
    }

    public func operatorRole(name: String) async throws -> OperatorRole? {
        let logger = logger
        return try await read { conn in
            for try await role in try await conn.query(
                """
                SELECT role FROM credentials WHERE kind = 'operator' AND subject = \(name) AND revoked_at IS NULL
                ORDER BY created_at DESC LIMIT 1
                """, logger: logger
            ).decode(String?.self) {
                return role.flatMap(OperatorRole.init(rawValue:))
            }
            return nil
        }
    }
}
