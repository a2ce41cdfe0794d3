import CSQLite
import NIOConcurrencyHelpers

/// The state store's access to SQLite: the system's libsqlite3 through the CSQLite shim, and no more of it than
/// the store uses (open with flags, prepared statements with bind, step and column, transactions that roll back
/// on error, the migration bookkeeping).
///
/// Why not GRDB (which the store used until issue 8): GRDB imports Foundation in 57 files and has no
/// FoundationEssentials build, and Foundation brings ICU's 33 MB of data into the installed static executable
/// (docs/decisions.md, "Installed size without Foundation"). The registry, a separate executable, keeps GRDB.

/// What SQLite said: its result code and message (`sqlite3_errmsg`, which names no row contents).
struct SQLiteError: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { message }
}

/// A value as SQLite stores it (the store keeps no blobs).
enum SQLiteValue: Equatable, Sendable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
}

/// A Swift type that binds to a statement parameter and reads back from a column.
protocol SQLiteBindable {
    var sqliteValue: SQLiteValue { get }
    /// Nil when the stored value is not of this type (NULL included).
    init?(sqliteValue: SQLiteValue)
}

extension Int64: SQLiteBindable {
    var sqliteValue: SQLiteValue { .integer(self) }
    init?(sqliteValue: SQLiteValue) {
        switch sqliteValue {
        case .integer(let v): self = v
        case .real(let d): guard let v = Int64(exactly: d) else { return nil }; self = v
        default: return nil
        }
    }
}

extension Int: SQLiteBindable {
    var sqliteValue: SQLiteValue { .integer(Int64(self)) }
    init?(sqliteValue: SQLiteValue) {
        guard let v = Int64(sqliteValue: sqliteValue) else { return nil }
        self = Int(v)
    }
}

extension Bool: SQLiteBindable {
    var sqliteValue: SQLiteValue { .integer(self ? 1 : 0) }
    init?(sqliteValue: SQLiteValue) {
        guard let v = Int64(sqliteValue: sqliteValue) else { return nil }
        self = v != 0
    }
}

extension Double: SQLiteBindable {
    var sqliteValue: SQLiteValue { .real(self) }
    init?(sqliteValue: SQLiteValue) {
        switch sqliteValue {
        case .real(let d): self = d
        case .integer(let v): self = Double(v)
        default: return nil
        }
    }
}

extension String: SQLiteBindable {
    var sqliteValue: SQLiteValue { .text(self) }
    init?(sqliteValue: SQLiteValue) {
        guard case .text(let s) = sqliteValue else { return nil }
        self = s
    }
}

/// A result row, by column name.
struct SQLiteRow {
    var values: [String: SQLiteValue]
    /// The name of the first column.
    var first: String?

    /// The column's value; nil when it is NULL. A column that is missing or of another type is an error (the
    /// schema is ours: that is a damaged database, not a value to guess).
    func optional<T: SQLiteBindable>(_ column: String, as type: T.Type = T.self) throws(SQLiteError) -> T? {
        guard let value = values[column] else { throw SQLiteError(code: SQLITE_MISMATCH, message: "no column \(column)") }
        if value == .null { return nil }
        guard let v = T(sqliteValue: value) else {
            throw SQLiteError(code: SQLITE_MISMATCH, message: "column \(column) holds a value of another type")
        }
        return v
    }

    /// The column's value, which must not be NULL.
    func value<T: SQLiteBindable>(_ column: String, as type: T.Type = T.self) throws(SQLiteError) -> T {
        guard let v = try optional(column, as: T.self) else {
            throw SQLiteError(code: SQLITE_MISMATCH, message: "column \(column) is NULL")
        }
        return v
    }
}

/// One open connection. Not thread-safe by itself (opened SQLITE_OPEN_NOMUTEX): ``SQLiteDatabase`` serialises
/// every use behind its lock, which is why it may be `@unchecked Sendable`.
final class SQLiteConnection: @unchecked Sendable {
    private let handle: OpaquePointer

    init(path: String, readOnly: Bool, busyTimeoutMilliseconds: Int32) throws(SQLiteError) {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            throw SQLiteError(code: rc, message: message)
        }
        handle = db
        sqlite3_busy_timeout(db, busyTimeoutMilliseconds)
    }

    deinit { sqlite3_close_v2(handle) }

    /// The rowid of the last row inserted on this connection.
    var lastInsertedRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// The rows the last INSERT, UPDATE or DELETE changed.
    var changes: Int { Int(sqlite3_changes(handle)) }

    private func error(_ code: Int32) -> SQLiteError {
        SQLiteError(code: code, message: String(cString: sqlite3_errmsg(handle)))
    }

    /// Runs `sql`: several statements when there are no arguments (a migration), otherwise one.
    func execute(_ sql: String, _ arguments: [(any SQLiteBindable)?] = []) throws(SQLiteError) {
        if arguments.isEmpty {
            let rc = sqlite3_exec(handle, sql, nil, nil, nil)
            guard rc == SQLITE_OK else { throw error(rc) }
        } else {
            _ = try rows(sql, arguments)
        }
    }

    /// Runs one statement and returns its rows.
    func rows(_ sql: String, _ arguments: [(any SQLiteBindable)?] = []) throws(SQLiteError) -> [SQLiteRow] {
        var statement: OpaquePointer?
        var rc = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc) }
        defer { sqlite3_finalize(statement) }
        guard Int(sqlite3_bind_parameter_count(statement)) == arguments.count else {
            throw SQLiteError(code: SQLITE_RANGE, message: "wrong number of arguments for a statement")
        }
        for (i, argument) in arguments.enumerated() {
            let index = Int32(i + 1)
            switch argument?.sqliteValue ?? .null {
            case .null: rc = sqlite3_bind_null(statement, index)
            case .integer(let v): rc = sqlite3_bind_int64(statement, index, v)
            case .real(let d): rc = sqlite3_bind_double(statement, index, d)
            case .text(let s): rc = sqlite3_bind_text(statement, index, s, -1, csqlite_transient())
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
        let count = sqlite3_column_count(statement)
        let names = (0..<count).map { String(cString: sqlite3_column_name(statement, $0)) }
        var result: [SQLiteRow] = []
        while true {
            rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return result }
            guard rc == SQLITE_ROW else { throw error(rc) }
            var row = SQLiteRow(values: [:], first: names.first)
            for c in 0..<count {
                let value: SQLiteValue
                switch sqlite3_column_type(statement, c) {
                case SQLITE_INTEGER: value = .integer(sqlite3_column_int64(statement, c))
                case SQLITE_FLOAT: value = .real(sqlite3_column_double(statement, c))
                case SQLITE_NULL: value = .null
                default:  // text (and a blob, which the store never writes, read as text)
                    value = .text(sqlite3_column_text(statement, c).map { String(cString: $0) } ?? "")
                }
                row.values[names[Int(c)]] = value
            }
            result.append(row)
        }
    }

    /// The first column of the first row (nil: no row, or NULL).
    func scalar<T: SQLiteBindable>(
        _ type: T.Type, _ sql: String, _ arguments: [(any SQLiteBindable)?] = []
    ) throws(SQLiteError) -> T? {
        guard let row = try rows(sql, arguments).first, let first = row.first else { return nil }
        return try row.optional(first, as: T.self)
    }

    func tableExists(_ name: String) throws(SQLiteError) -> Bool {
        try scalar(Int.self, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", [name]) ?? 0 > 0
    }
}

/// A connection behind a lock: reads and writes each in their own transaction, one at a time. The daemon is
/// the only writer and writes rarely (presence, reads, events, deliveries); `cellprov status` reads through its
/// own read-only connection, beside it, thanks to WAL.
final class SQLiteDatabase: Sendable {
    private let connection: NIOLockedValueBox<SQLiteConnection>

    init(_ connection: sending SQLiteConnection) {
        self.connection = NIOLockedValueBox(connection)
    }

    /// `body` in a read transaction (one snapshot of the database).
    func read<T: Sendable>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try transaction("BEGIN DEFERRED", body)
    }

    /// `body` in a write transaction, taken at once (BEGIN IMMEDIATE: no upgrade from a read lock that could
    /// fail with SQLITE_BUSY half-way), rolled back if it throws.
    func write<T: Sendable>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try transaction("BEGIN IMMEDIATE", body)
    }

    private func transaction<T: Sendable>(_ begin: String, _ body: (SQLiteConnection) throws -> T) throws -> T {
        try connection.withLockedValue { c throws -> T in
            try c.execute(begin)
            do {
                let result = try body(c)
                try c.execute("COMMIT")
                return result
            } catch {
                try? c.execute("ROLLBACK")
                throw error
            }
        }
    }
}
