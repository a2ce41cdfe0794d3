import CellprovRegistryCore
import Foundation
import Logging
import NIOConcurrencyHelpers

/// Where the registry's data lives, parsed from `--database URL`.
public enum RegistryDatabaseLocation: Sendable, Equatable {
    /// `sqlite:///ABSOLUTE/PATH`.
    case sqlite(path: String)
    /// `postgres://` or `postgresql://` as libpq reads it, with the PG* environment variables and the password file
    /// (PostgresConnectionSettings.swift): `postgres:///cellprov?host=/run/postgresql`,
    /// `postgres://USER@HOST:PORT/DB?sslmode=verify-full&sslrootcert=FILE`.
    case postgres(PostgresLocation)
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
            // Opening waits on file locks (up to the busy timeout) and sleeps between attempts: on a dispatch
            // thread, not on one of the concurrency pool's few threads (as many as cores), which every request needs.
            // The result is handed over under a lock: ThreadSanitizer sees a lock's release and acquire, and then
            // every later reader of the store's fields is ordered after the dispatch thread's writes of them (a
            // continuation alone left it one report of the store's `pool` in the TSan demo).
            let opened = NIOLockedValueBox<Result<SQLiteRegistryStore, any Error>?>(nil)
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async {
                    let result = Result { try SQLiteRegistryStore(path: path, logger: logger) }
                    opened.withLockedValue { $0 = result }
                    continuation.resume()
                }
            }
            let store = try opened.withLockedValue { $0! }.get()
            try await store.migrate()
            return store
        case .postgres(let resolved):
            for note in resolved.notes { logger.warning("PostgreSQL: \(note)") }
            logger.info("PostgreSQL: connecting to \(resolved.summary)")
            // The first connection by hand (libpq's fallbacks; an error naming what was tried), then the pool.
            let perAttempt = Duration.seconds(resolved.connectTimeoutSeconds ?? 0) + .seconds(2)
            let deadline = max(connectTimeout, perAttempt * resolved.tlsAttempts.count)
            let (location, encrypted) = try await withDeadline(deadline, resolved) {
                try await PostgresConnector.connect(resolved, logger: Self.libraryLogger(logger))
            }
            if case .tcp = location.endpoint, let attempt = location.tlsAttempts.first {
                switch (attempt, encrypted) {
                case (.tlsIfOffered, true?): logger.info("PostgreSQL: connected with TLS (certificate not checked)")
                case (.tlsIfOffered, false?): logger.info("PostgreSQL: connected without TLS (the server offers none)")
                default: logger.info("PostgreSQL: connected \(attempt)")
                }
            }
            let store = PostgresRegistryStore(location: location, logger: logger)
            do {
                try await withDeadline(connectTimeout, location) { try await store.migrate() }
            } catch {
                await store.close()
                throw RegistryStoreError("cannot open the PostgreSQL database \(location): \(error)")
            }
            return store
        }
    }

    /// `body`, or an error naming what was tried when it takes longer than `limit`.
    static func withDeadline<T: Sendable>(
        _ limit: Duration, _ location: PostgresLocation, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw RegistryStoreError("no answer from PostgreSQL within \(limit) (\(location.summary))")
            }
            return value
        }
    }

    /// PostgresNIO's logger: never below `.debug` (at `.trace` it logs every wire message, bind values included).
    static func libraryLogger(_ logger: Logger) -> Logger {
        var logger = logger
        if logger.logLevel < .debug { logger.logLevel = .debug }
        return logger
    }

    /// Parses a `--database` URL (see ``RegistryDatabaseLocation``); a PostgreSQL URL is completed from the
    /// process's environment, user and password file.
    public static func parse(_ text: String) throws -> RegistryDatabaseLocation {
        try parse(text, inputs: .current())
    }

    /// Parses a `--database` URL with the given environment, user and files (tests).
    public static func parse(_ text: String, inputs: @autoclosure () -> PostgresSettingsInputs) throws
        -> RegistryDatabaseLocation
    {
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
            return .postgres(try PostgresSettings.resolve(url: trimmed, inputs: inputs()))
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
}
