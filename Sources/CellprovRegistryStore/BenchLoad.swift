import CellprovRegistryCore
import Foundation
import Logging
import GRDB
import PostgresNIO

/// Bulk loading of synthetic units, for `cellprov-registry-bench` only (docs/decisions.md, "Registry
/// storage"): a million units through `ingest` would take the benchmark longer than the lookups it measures, so it
/// writes the rows `ingest` would have written (a unit and one field slot each) directly, in one statement or one
/// transaction. Never used by the registry itself.
///
/// Unit `n` (0-based) is serial `BENCH-%07d`, IMEI `35209900` + n (6 digits) + `0`, IMSI `26201` + n (10 digits),
/// ICCID `8949226` + n (12 digits); ``BenchUnits`` gives the same values to the benchmark's lookups.
public enum BenchUnits {
    public static func serial(_ n: Int) -> String { "BENCH-" + pad(n, 7) }
    public static func imei(_ n: Int) -> String { "35209900" + pad(n % 1_000_000, 6) + "0" }
    public static func imsi(_ n: Int) -> String { "26201" + pad(n, 10) }
    public static func iccid(_ n: Int) -> String { "8949226" + pad(n, 12) }

    static func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }
}

extension SQLiteRegistryStore {
    /// Inserts units `0..<count` (see ``BenchUnits``) in one transaction. Benchmark only.
    public func benchLoadUnits(count: Int, at: Date) async throws {
        let t = StoreSupport.ms(at)
        try await transaction { db in
            let unit = try db.makeStatement(
                sql: "INSERT INTO units (serial, created_at, first_seen, last_seen) VALUES (?, ?, ?, ?)")
            let slot = try db.makeStatement(
                sql: """
                    INSERT INTO slots (serial, origin, slot, imei, imsi, iccid, last_iccid, tac, manufacturer, model,
                        source, last_event_type, occurred_at, updated_at)
                    VALUES (?, 'device', 'usb-1', ?, ?, ?, ?, '35209900', 'Quectel', 'EG25', 'at', 'enrolled', ?, ?)
                    """)
            for n in 0..<count {
                let serial = BenchUnits.serial(n)
                try unit.execute(arguments: [serial, t, t, t])
                let iccid = BenchUnits.iccid(n)
                try slot.execute(arguments: [serial, BenchUnits.imei(n), BenchUnits.imsi(n), iccid, iccid, t, t])
            }
        }
    }
}

extension PostgresRegistryStore {
    /// Inserts units `0..<count` (see ``BenchUnits``) with two server-side `INSERT … SELECT generate_series`
    /// statements, then ANALYZE. Benchmark only.
    public func benchLoadUnits(count: Int, at: Date) async throws {
        let t = StoreSupport.ms(at)
        let last = count - 1
        let logger = logger
        try await transaction { conn in
            try await conn.query(
                """
                INSERT INTO units (serial, created_at, first_seen, last_seen)
                SELECT 'BENCH-' || lpad(n::text, 7, '0'), \(t), \(t), \(t) FROM generate_series(0, \(last)) AS n
                """, logger: logger)
            try await conn.query(
                """
                INSERT INTO slots (serial, origin, slot, imei, imsi, iccid, last_iccid, tac, manufacturer, model,
                    source, last_event_type, occurred_at, updated_at)
                SELECT 'BENCH-' || lpad(n::text, 7, '0'), 'device', 'usb-1',
                    '35209900' || lpad((n % 1000000)::text, 6, '0') || '0', '26201' || lpad(n::text, 10, '0'),
                    '8949226' || lpad(n::text, 12, '0'), '8949226' || lpad(n::text, 12, '0'), '35209900', 'Quectel',
                    'EG25', 'at', 'enrolled', \(t), \(t)
                FROM generate_series(0, \(last)) AS n
                """, logger: logger)
        }
        _ = try await read { conn in
            try await conn.query("ANALYZE", logger: logger)
        }
    }
}

extension PostgresRegistryStore {
    /// Creates a database on the server `admin` names (connecting to its database). For benchmarks and tests,
    /// which each want a fresh database. `name` must be a plain identifier.
    public static func createDatabase(_ name: String, on admin: PostgresLocation, logger: Logger) async throws {
        try await adminQuery("CREATE DATABASE \(try identifier(name))", on: admin, logger: logger)
    }

    public static func dropDatabase(_ name: String, on admin: PostgresLocation, logger: Logger) async throws {
        try await adminQuery("DROP DATABASE IF EXISTS \(try identifier(name)) WITH (FORCE)", on: admin, logger: logger)
    }

    static func identifier(_ name: String) throws -> String {
        guard !name.isEmpty, name.utf8.count <= 63,
            name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F })
        else { throw RegistryStoreError("not a plain database name") }
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
