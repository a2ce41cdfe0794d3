import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import GRDB
import Logging
import PostgresNIO
import Synchronization
import Testing

/// The storage backends the one suite runs against: SQLite always; PostgreSQL when CELLPROV_TEST_POSTGRES_URL
/// names a server (each test gets its own fresh database on it), or always when CELLPROV_TEST_NO_SKIP=1 (then a
/// missing URL fails the PostgreSQL half instead of skipping it).
enum StoreBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    static var postgresURL: String? {
        ProcessInfo.processInfo.environment["CELLPROV_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static var available: [StoreBackend] {
        let noSkip = ProcessInfo.processInfo.environment["CELLPROV_TEST_NO_SKIP"] == "1"
        return postgresURL != nil || noSkip ? [.sqlite, .postgres] : [.sqlite]
    }
}

/// A store for one test, removed afterwards.
struct TestStore: Sendable {
    var store: any RegistryStore
    var url: String
    var cleanup: @Sendable () async -> Void

    static let logger = Logger(label: "cellprov.registry.test")

    /// A database nobody opened yet (no schema) and how to remove it.
    static func emptyDatabase(_ backend: StoreBackend) async throws -> (String, @Sendable () async -> Void) {
        switch backend {
        case .sqlite:
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "regstore-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            return ("sqlite://" + dir.appendingPathComponent("registry.db").path, {
                try? FileManager.default.removeItem(at: dir)
            })
        case .postgres:
            guard let admin = StoreBackend.postgresURL else {
                throw RegistryStoreError("CELLPROV_TEST_POSTGRES_URL is not set and CELLPROV_TEST_NO_SKIP=1")
            }
            let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
            try await PostgresTestDatabases.create(String(name), adminURL: admin)
            return (try PostgresTestDatabases.url(admin, database: String(name)), {
                try? await PostgresTestDatabases.drop(String(name), adminURL: admin)
            })
        }
    }

    /// A migrated store on `backend`; `logger` is the store's (the HTTP fixture passes its capturing one so the leak
    /// scans see what the store logs too).
    static func make(_ backend: StoreBackend, logger: Logger = TestStore.logger) async throws -> TestStore {
        switch backend {
        case .sqlite:
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "regstore-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let url = "sqlite://" + dir.appendingPathComponent("registry.db").path
            let store = try await RegistryDatabase.open(url: url, logger: logger)
            return TestStore(store: store, url: url) {
                await store.close()
                try? FileManager.default.removeItem(at: dir)
            }
        case .postgres:
            guard let admin = StoreBackend.postgresURL else {
                throw RegistryStoreError("CELLPROV_TEST_POSTGRES_URL is not set and CELLPROV_TEST_NO_SKIP=1")
            }
            let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
            try await PostgresTestDatabases.create(String(name), adminURL: admin)
            let url = try PostgresTestDatabases.url(admin, database: String(name))
            let store = try await RegistryDatabase.open(url: url, logger: logger)
            return TestStore(store: store, url: url) {
                await store.close()
                try? await PostgresTestDatabases.drop(String(name), adminURL: admin)
            }
        }
    }
}

func withStore(_ backend: StoreBackend, _ body: (any RegistryStore, String) async throws -> Void) async throws {
    let t = try await TestStore.make(backend)
    do {
        try await body(t.store, t.url)
    } catch {
        await t.cleanup()
        throw error
    }
    await t.cleanup()
}

/// Test identities: valid IMEIs (Luhn check digit) from a number, ICCIDs and IMSIs likewise.
enum TestID {
    static func imei(_ n: Int, tac: String = "35209900") -> String {
        let body = tac + String(format: "%06d", n % 1_000_000)
        return body + String(Luhn.checkDigit(for: body)!)
    }

    static func iccid(_ n: Int) -> String {
        let body = "8949226" + String(format: "%011d", n)
        return body + String(Luhn.checkDigit(for: body)!)
    }

    static func imsi(_ n: Int) -> String { "26201" + String(format: "%010d", n) }
}

let t0 = Date(timeIntervalSince1970: 1_790_000_000)

/// A sequence no other test event has: a device never numbers two events of a slot alike (a repeat is the
/// `state_rolled_back` finding), so events built without one get a fresh number each.
private let sequences = Atomic<Int>(0)
func nextSequence() -> Int { sequences.add(1, ordering: .relaxed).newValue }

func event(
    _ type: String = "enrolled", serial: String? = nil, slot: String = "usb-1", imei: String?, imsi: String? = nil,
    iccid: String? = nil, previous: EnrollmentRequest.Identity? = nil, severity: String = "info",
    id: String = UUID().uuidString.lowercased(), sequence: Int = nextSequence(), at: Date = t0
) -> EnrollmentRequest {
    EnrollmentRequest(
        eventID: id, type: type, occurredAt: EnrollmentRequest.timestamp(at), sequence: sequence,
        severity: severity, device: .init(serial: serial), module: .init(slot: slot, manufacturer: "Quectel", model: "EG25"),
        identity: .init(imei: imei, imsi: imsi, iccid: iccid), previous: previous)
}

extension RegistryStore {
    /// Ingests a field event and returns the kinds raised (fails the test on a duplicate).
    @discardableResult
    func field(_ r: EnrollmentRequest, _ serial: String, refs: [String] = [], at: Date = t0) async throws -> [FlagKind] {
        let outcome = try await ingest(r, serial: serial, origin: .device, references: refs, receivedAt: at)
        guard case .stored(let raised) = outcome else {
            Issue.record("unexpected duplicate")
            return []
        }
        return raised.map(\.flag.kind)
    }

    @discardableResult
    func factory(_ r: EnrollmentRequest, _ serial: String, at: Date = t0) async throws -> [FlagKind] {
        let outcome = try await ingest(r, serial: serial, origin: .factory, references: [], receivedAt: at)
        guard case .stored(let raised) = outcome else {
            Issue.record("unexpected duplicate")
            return []
        }
        return raised.map(\.flag.kind)
    }
}

/// Raw SQL against a test database, past the store (to check the schema's own guards).
enum StoreTestSQL {
    static func execute(_ url: String, _ sql: String) async throws {
        switch try RegistryDatabase.parse(url) {
        case .sqlite(let path):
            let queue = try DatabaseQueue(path: path)
            try await queue.write { db in try db.execute(sql: sql) }
        case .postgres(let location):
            try await PostgresTestDatabases.withClient(location) { client in
                _ = try await client.query(PostgresQuery(unsafeSQL: sql), logger: TestStore.logger)
            }
        }
    }
}

/// Fresh databases on the test server (one per test).
enum PostgresTestDatabases {
    static func withClient<T: Sendable>(
        _ location: PostgresLocation, _ body: @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        let client = PostgresClient(configuration: PostgresRegistryStore.clientConfiguration(location))
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    static func create(_ name: String, adminURL: String) async throws {
        guard case .postgres(let admin) = try RegistryDatabase.parse(adminURL) else { return }
        try await withClient(admin) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: TestStore.logger)
        }
    }

    static func drop(_ name: String, adminURL: String) async throws {
        guard case .postgres(let admin) = try RegistryDatabase.parse(adminURL) else { return }
        try await withClient(admin) { client in
            _ = try await client.query(
                PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: TestStore.logger)
        }
    }

    /// The admin URL with its database replaced.
    static func url(_ admin: String, database: String) throws -> String {
        guard var c = URLComponents(string: admin) else { throw RegistryStoreError("bad CELLPROV_TEST_POSTGRES_URL") }
        c.path = "/" + database
        return c.string!
    }
}
