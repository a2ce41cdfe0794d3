import CellprovRegistryCore
import Foundation
import GRDB
import Logging
import PostgresNIO

// Raw inserts for a bulk load (`cellprov-registry-bench` only, docs/performance.md): a million units through
// `ingest` would take longer than the queries the benchmark measures, so the benchmark writes the rows `ingest`
// would have written itself, through these entry points. They are `@_spi(Bench)`: not part of the store's API, and
// no module of the product imports them (`@_spi(Bench) import CellprovRegistryStore` is the benchmark's). What the
// rows mean stays the store's (the schema migrations); the benchmark checks its answers against what it wrote.

/// One value of a bulk-loaded row.
@_spi(Bench)
public enum BulkValue: Sendable, Equatable {
    case text(String)
    case integer(Int64)
    case null

    public init(_ s: String?) { self = s.map { .text($0) } ?? .null }
}

/// Rows for one table, every row with one value per column, in order.
@_spi(Bench)
public struct BulkRows: Sendable {
    public var table: String
    public var columns: [String]
    public var rows: [[BulkValue]]

    public init(table: String, columns: [String], rows: [[BulkValue]] = []) {
        self.table = table
        self.columns = columns
        self.rows = rows
    }

    /// The `INSERT` head, with the table and column names checked as plain identifiers.
    func insertHead() throws -> String {
        for name in [table] + columns where !StoreBulk.isPlainIdentifier(name) {
            throw RegistryStoreError("not a plain identifier in a bulk insert")
        }
        for row in rows where row.count != columns.count {
            throw RegistryStoreError("a bulk row of \(table) has \(row.count) values for \(columns.count) columns")
        }
        return "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES "
    }
}

/// A store a benchmark can bulk-load.
@_spi(Bench)
public protocol BulkLoadable: Sendable {
    /// Inserts every batch, in order, in one transaction.
    func bulkInsert(_ batches: [BulkRows]) async throws
    /// After the load: what a long-running database would have done meanwhile (PostgreSQL: autovacuum's
    /// `VACUUM ANALYZE`; SQLite: the default page cache again, nothing else, as the registry never analyses it).
    func bulkSettle() async throws
}

enum StoreBulk {
    static func isPlainIdentifier(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 63
            && s.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }
}

@_spi(Bench)
extension SQLiteRegistryStore: BulkLoadable {
    /// One prepared statement per table; a large page cache on the writer connection for the load (random inserts
    /// into `refs`), set back by ``bulkSettle()``.
    public func bulkInsert(_ batches: [BulkRows]) async throws {
        let heads = try batches.map { try $0.insertHead() }
        try await transaction { db in
            try db.execute(sql: "PRAGMA cache_size = -1048576")
            for (batch, head) in zip(batches, heads) {
                let marks = "(" + Array(repeating: "?", count: batch.columns.count).joined(separator: ", ") + ")"
                let statement = try db.makeStatement(sql: head + marks)
                for row in batch.rows {
                    var arguments = StatementArguments()
                    for v in row {
                        switch v {
                        case .text(let s): arguments += [s]
                        case .integer(let n): arguments += [n]
                        case .null: arguments += [nil as String?]
                        }
                    }
                    try statement.execute(arguments: arguments)
                }
            }
        }
    }

    public func bulkSettle() async throws {
        do {
            try await pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA cache_size = -2000")
                try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            }
        } catch let error as DatabaseError {
            throw Self.storeError(error)
        }
    }
}

@_spi(Bench)
extension PostgresRegistryStore: BulkLoadable {
    /// Multi-row `INSERT`s of as many rows as the protocol's 65 535 parameters allow.
    public func bulkInsert(_ batches: [BulkRows]) async throws {
        let heads = try batches.map { try $0.insertHead() }
        let logger = logger
        try await transaction { conn in
            for (batch, head) in zip(batches, heads) {
                let width = batch.columns.count
                let perStatement = max(1, 65_535 / width)
                var start = 0
                while start < batch.rows.count {
                    let rows = batch.rows[start..<min(batch.rows.count, start + perStatement)]
                    var sql = head
                    var binds = PostgresBindings(capacity: rows.count * width)
                    var n = 0
                    for (i, row) in rows.enumerated() {
                        sql += i == 0 ? "(" : ", ("
                        for (j, v) in row.enumerated() {
                            n += 1
                            sql += j == 0 ? "$\(n)" : ", $\(n)"
                            switch v {
                            case .text(let s): binds.append(s)
                            case .integer(let x): binds.append(x)
                            case .null: binds.appendNull()
                            }
                        }
                        sql += ")"
                    }
                    try await conn.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
                    start += rows.count
                }
            }
        }
    }

    public func bulkSettle() async throws {
        let logger = logger
        _ = try await read { conn in try await conn.query("VACUUM ANALYZE", logger: logger) }
    }
}

extension PostgresRegistryStore {
    /// Creates a database on the server `admin` names (connecting to its database): the benchmark wants a fresh
    /// one. `name` must be a plain identifier.
    @_spi(Bench)
    public static func createDatabase(_ name: String, on admin: PostgresLocation, logger: Logger) async throws {
        try await adminQuery("CREATE DATABASE \(try identifier(name))", on: admin, logger: logger)
    }

    @_spi(Bench)
    public static func dropDatabase(_ name: String, on admin: PostgresLocation, logger: Logger) async throws {
        try await adminQuery("DROP DATABASE IF EXISTS \(try identifier(name)) WITH (FORCE)", on: admin, logger: logger)
    }

    static func identifier(_ name: String) throws -> String {
        guard StoreBulk.isPlainIdentifier(name) else { throw RegistryStoreError("not a plain database name") }
        return name
    }

    static func adminQuery(_ sql: String, on admin: PostgresLocation, logger: Logger) async throws {
        let store = PostgresRegistryStore(location: admin, logger: logger)
        do {
            _ = try await store.read { conn in try await conn.query(PostgresQuery(unsafeSQL: sql), logger: logger) }
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }
}
