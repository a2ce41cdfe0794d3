import CellprovRegistryCore
import Foundation
import GRDB

/// Operator revocation (`cellprov-registry operator revoke`) and page sessions.
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

    public func startSession(idHash: String, tokenHash: String, expires: Date, at: Date) async throws {
        let (t, e) = (StoreSupport.ms(at), StoreSupport.ms(expires))
        try await transaction { db in
            try db.execute(sql: "DELETE FROM page_sessions WHERE expires_at <= ?", arguments: [t])
            try db.execute(
                sql: "INSERT INTO page_sessions (id_hash, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
                arguments: [idHash, tokenHash, t, e])
        }
    }

    public func session(idHash: String, at: Date) async throws -> (name: String, role: OperatorRole)? {
        let t = StoreSupport.ms(at)
        return try await read { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT c.subject, c.role FROM page_sessions s JOIN credentials c ON c.token_hash = s.token_hash
                        WHERE s.id_hash = ? AND s.expires_at > ? AND c.kind = 'operator' AND c.revoked_at IS NULL
                        """,
                    arguments: [idHash, t]),
                let role = (row["role"] as String?).flatMap(OperatorRole.init(rawValue:))
            else { return nil }
            return (row["subject"], role)
        }
    }

    public func endSession(idHash: String) async throws {
        try await transaction { db in
            try db.execute(sql: "DELETE FROM page_sessions WHERE id_hash = ?", arguments: [idHash])
        }
    }
}
