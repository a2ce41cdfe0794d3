import CellprovRegistryCore
import Foundation
import Logging

/// Where the registry's data lives, parsed from `--database URL`.
public enum RegistryDatabaseLocation: Sendable, Equatable {
    /// `sqlite:///ABSOLUTE/PATH`.
    case sqlite(path: String)
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]`, `postgres:///DB?host=/socket/dir`,
    /// `postgres://USER@/DB?host=/socket/dir`.
    case postgres(PostgresLocation)
}

/// A PostgreSQL server and database. `password` is never printed (``description``).
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The socket file (`DIR/.s.PGSQL.PORT`).
        case unixSocket(path: String)
    }

    public enum TLSMode: String, Sendable, Equatable {
        /// Plain TCP (the default for unix sockets and loopback hosts).
        case disable
        /// TLS when the server offers it.
        case prefer
        /// TLS or no connection.
        case require
    }

    public var endpoint: Endpoint
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    public init(endpoint: Endpoint, user: String, password: String?, database: String, tls: TLSMode) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// The location without its password.
    public var description: String {
        switch endpoint {
        case .tcp(let host, let port): "postgres://\(user)@\(host):\(port)/\(database)"
        case .unixSocket(let path): "postgres://\(user)@/\(database) (socket \(path))"
        }
    }

    /// The same server, another database (tests create one database per test).
    public func with(database: String) -> PostgresLocation {
        var copy = self
        copy.database = database
        return copy
    }
}

/// A `--database` URL the registry cannot use. The message names the problem, never the password.
public struct RegistryDatabaseURLError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Opens the registry's storage from its `--database` URL.
public enum RegistryDatabase {
    /// Opens (and migrates) the store the URL names: `SQLiteRegistryStore` or `PostgresRegistryStore`. A
    /// PostgreSQL server that cannot be reached (or migrated) within `connectTimeout` is an error rather than a wait
    /// (postgres-nio's pool would keep retrying for about a minute): under systemd the unit restarts and tries again.
    public static func open(url: String, logger: Logger, connectTimeout: Duration = .seconds(15)) async throws
        -> any RegistryStore
    {
        switch try parse(url) {
        case .sqlite(let path):
            let store = try SQLiteRegistryStore(path: path, logger: logger)
            try await store.migrate()
            return store
        case .postgres(let location):
            let store = PostgresRegistryStore(location: location, logger: logger)
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await store.migrate() }
                    group.addTask {
                        try await Task.sleep(for: connectTimeout)
                        throw RegistryStoreError("no answer within \(connectTimeout)")
                    }
                    defer { group.cancelAll() }
                    try await group.next()
                }
            } catch {
                await store.close()
                throw RegistryStoreError("cannot open the PostgreSQL database \(location): \(error)")
            }
            return store
        }
    }

    /// Parses a `--database` URL (see ``RegistryDatabaseLocation``).
    public static func parse(_ text: String) throws -> RegistryDatabaseLocation {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let colon = trimmed.firstIndex(of: ":") else {
            throw RegistryDatabaseURLError(
                "the database URL has no scheme: use sqlite:///ABSOLUTE/PATH or postgres://USER@HOST:PORT/DB")
        }
        let scheme = trimmed[..<colon].lowercased()
        switch scheme {
        case "sqlite":
            return try parseSQLite(trimmed)
        case "postgres", "postgresql":
            return .postgres(try parsePostgres(trimmed))
        default:
            throw RegistryDatabaseURLError(
                "unsupported database URL scheme '\(scheme.prefix(20))': use sqlite:///ABSOLUTE/PATH or postgres://…")
        }
    }

    static func parseSQLite(_ text: String) throws -> RegistryDatabaseLocation {
        guard text.lowercased().hasPrefix("sqlite://") else {
            throw RegistryDatabaseURLError("a SQLite URL is sqlite:///ABSOLUTE/PATH (three slashes)")
        }
        let rest = String(text.dropFirst("sqlite://".count))
        guard rest.hasPrefix("/") else {
            throw RegistryDatabaseURLError(
                "a SQLite URL names an absolute path after sqlite:// (sqlite:///var/lib/…), not a host")
        }
        guard let path = rest.removingPercentEncoding, path.utf8.count > 1, !path.hasSuffix("/"),
            !path.contains("\0"), !path.contains("?")
        else {
            throw RegistryDatabaseURLError("the SQLite URL does not name a database file")
        }
        return .sqlite(path: path)
    }

    static func parsePostgres(_ text: String) throws -> PostgresLocation {
        guard let components = URLComponents(string: text) else {
            throw RegistryDatabaseURLError("the PostgreSQL URL is malformed")
        }
        guard components.fragment == nil else {
            throw RegistryDatabaseURLError("the PostgreSQL URL has a fragment (#…)")
        }
        var socketDir: String?
        var tls: PostgresLocation.TLSMode?
        var userFromQuery: String?
        var portFromQuery: Int?
        for item in components.queryItems ?? [] {
            switch item.name {
            case "host":
                socketDir = item.value
            case "sslmode":
                switch item.value ?? "" {
                case "disable": tls = .disable
                case "allow", "prefer": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                default: throw RegistryDatabaseURLError("unknown sslmode in the PostgreSQL URL")
                }
            case "user":
                userFromQuery = item.value
            case "port":
                guard let p = item.value.flatMap({ Int($0) }) else {
                    throw RegistryDatabaseURLError("the PostgreSQL URL's port parameter is not a number")
                }
                portFromQuery = p
            case "application_name", "connect_timeout":
                break
            default:
                throw RegistryDatabaseURLError("unknown parameter '\(item.name.prefix(30))' in the PostgreSQL URL")
            }
        }
        let user = components.user.flatMap { $0.isEmpty ? nil : $0 } ?? userFromQuery ?? "postgres"
        var database = components.path
        if database.hasPrefix("/") { database.removeFirst() }
        guard !database.contains("/") else {
            throw RegistryDatabaseURLError("the PostgreSQL URL's path must be one database name (/DB)")
        }
        if database.isEmpty { database = user }
        let port = components.port ?? portFromQuery ?? 5432
        guard (1...65535).contains(port) else { throw RegistryDatabaseURLError("the PostgreSQL port is out of range") }
        let host = components.host ?? ""
        if let dir = socketDir, dir.hasPrefix("/") {
            guard host.isEmpty else {
                throw RegistryDatabaseURLError("the PostgreSQL URL names both a host and a socket directory")
            }
            let path = (dir.hasSuffix("/") ? String(dir.dropLast()) : dir) + "/.s.PGSQL.\(port)"
            return PostgresLocation(
                endpoint: .unixSocket(path: path), user: user, password: components.password, database: database,
                tls: .disable)
        }
        let tcpHost = socketDir ?? host
        guard !tcpHost.isEmpty else {
            throw RegistryDatabaseURLError(
                "the PostgreSQL URL names no host: use postgres://USER@HOST:PORT/DB or postgres:///DB?host=/socket/dir")
        }
        let loopback = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(tcpHost)
        return PostgresLocation(
            endpoint: .tcp(host: tcpHost, port: port), user: user, password: components.password, database: database,
            tls: tls ?? (loopback ? .disable : .prefer))
    }
}
