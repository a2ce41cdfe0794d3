import CellprovRegistryCore
import Foundation
import PostgresNIO

/// Operator revocation (`cellprov-registry operator revoke`) and page sessions.
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

    public func startSession(idHash: String, tokenHash: String, expires: Date, at: Date) async throws {
        let (t, e) = (StoreSupport.ms(at), StoreSupport.ms(expires))
        let logger = logger
        try await transaction { conn in
            try await conn.query("DELETE FROM page_sessions WHERE expires_at <= \(t)", logger: logger)
            try await conn.query(
                """
                INSERT INTO page_sessions (id_hash, token_hash, created_at, expires_at)
                VALUES (\(idHash), \(tokenHash), \(t), \(e))
                """, logger: logger)
        }
    }

    public func session(idHash: String, at: Date) async throws -> (name: String, role: OperatorRole)? {
        let t = StoreSupport.ms(at)
        let logger = logger
        return try await read { conn in
            for try await (subject, role) in try await conn.query(
                """
                SELECT c.subject, c.role FROM page_sessions s JOIN credentials c ON c.token_hash = s.token_hash
                WHERE s.id_hash = \(idHash) AND s.expires_at > \(t) AND c.kind = 'operator' AND c.revoked_at IS NULL
                """, logger: logger
            ).decode((String, String?).self) {
                guard let role = role.flatMap(OperatorRole.init(rawValue:)) else { return nil }
                return (subject, role)
            }
            return nil
        }
    }

    public func endSession(idHash: String) async throws {
        let logger = logger
        try await read { conn in
            _ = try await conn.query("DELETE FROM page_sessions WHERE id_hash = \(idHash)", logger: logger)
        }
    }
}
