import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryHTTP
import CellprovRegistryStore
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers

/// Log lines captured for the leak scans: every record the HTTP layer writes, with its metadata.
final class LogCapture: Sendable {
    private let lines = NIOLockedValueBox<[String]>([])

    var all: [String] { lines.withLockedValue { $0 } }
    func append(_ line: String) { lines.withLockedValue { $0.append(line) } }

    func logger() -> Logger {
        var logger = Logger(label: "registry-test") { label in CapturingHandler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let meta = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append("\(event.level) \(event.message) \(meta.map { "\($0.key)=\($0.value)" }.sorted())")
        }
    }
}

/// A registry on a real store (SQLite in a temp directory, or a fresh PostgreSQL database: `TestStore`), with a
/// device, a station, an admin and a viewer.
struct RegistryFixture: Sendable {
    let testStore: TestStore
    var store: any RegistryStore { testStore.store }
    let logs: LogCapture
    let responder: RouterResponder<RegistryRequestContext>
    let deviceToken: String
    let otherDeviceToken: String
    let stationToken: String
    let adminToken: String
    let viewerToken: String

    static let serial = "GW-000100"
    static let otherSerial = "GW-000200"

    // Test identities (valid check digits): module A, module B, SIM 1, SIM 2.
    static let imeiA = "490154203237518"
    static let imeiB = "356938035643809"
    static let imsi1 = "262011234567890"
    static let iccid1 = withLuhn("894902000012345678")
    static let iccid2 = withLuhn("894902000087654321")

    static func withLuhn(_ digits: String) -> String {
        var sum = 0
        for (i, c) in digits.reversed().enumerated() {
            var d = Int(String(c))!
            if i % 2 == 0 {
                d *= 2
                if d > 9 { d -= 9 }
            }
            sum += d
        }
        return digits + String((10 - sum % 10) % 10)
    }

    static func make(
        _ backend: StoreBackend, options: RegistryHTTPOptions = RegistryHTTPOptions()
    ) async throws -> RegistryFixture {
        let logs = LogCapture()
        let testStore = try await TestStore.make(backend, logger: logs.logger())
        do {
            return try await populate(testStore, logs: logs, options: options)
        } catch {
            await testStore.cleanup()
            throw error
        }
    }

    private static func populate(
        _ testStore: TestStore, logs: LogCapture, options: RegistryHTTPOptions
    ) async throws -> RegistryFixture {
        let store = testStore.store
        // The process-wide pseudonymizer is left alone: suites run in parallel and other suites compare references
        // made under the key they set (`cellprov-registry serve` sets the store's key at start).
        let now = Date()
        let device = Tokens.generate(.device)
        let other = Tokens.generate(.device)
        let station = Tokens.generate(.station)
        let admin = Tokens.generate(.operator)
        let viewer = Tokens.generate(.operator)
        try await store.putDeviceToken(serial: serial, tokenHash: Tokens.hash(device), at: now)
        try await store.putDeviceToken(serial: otherSerial, tokenHash: Tokens.hash(other), at: now)
        try await store.putStationToken(name: "line-1", tokenHash: Tokens.hash(station), at: now)
        try await store.putOperatorToken(name: "alice", role: .admin, tokenHash: Tokens.hash(admin), at: now)
        try await store.putOperatorToken(name: "bob", role: .viewer, tokenHash: Tokens.hash(viewer), at: now)
        let router = try await RegistryHTTP.makeRouter(store: store, options: options, logger: logs.logger())
        return RegistryFixture(
            testStore: testStore, logs: logs, responder: router.buildResponder(), deviceToken: device,
            otherDeviceToken: other, stationToken: station, adminToken: admin, viewerToken: viewer)
    }

    /// A fixture for the duration of `body`, closed and removed afterwards (also when `body` throws).
    static func with(
        _ backend: StoreBackend, options: RegistryHTTPOptions = RegistryHTTPOptions(),
        _ body: (RegistryFixture) async throws -> Void
    ) async throws {
        let f = try await make(backend, options: options)
        do {
            try await body(f)
        } catch {
            await f.close()
            throw error
        }
        await f.close()
    }

    func close() async {
        await testStore.cleanup()
    }

    /// Runs `body` against the router (HummingbirdTesting's `.router`: the real responder chain, no socket).
    func test(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let app = Application(responder: responder)
        try await app.test(.router, body)
    }

    static func event(
        type: String = "enrolled", serial: String? = RegistryFixture.serial, imei: String? = imeiA,
        imsi: String? = imsi1, iccid: String? = iccid1, slot: String = "usb-1-1.2", sequence: Int = 1,
        severity: String = "info", eventID: String = UUID().uuidString.lowercased()
    ) -> EnrollmentRequest {
        EnrollmentRequest(
            eventID: eventID, type: type, occurredAt: EnrollmentRequest.timestamp(Date()), sequence: sequence,
            severity: severity, device: .init(serial: serial),
            module: .init(slot: slot, manufacturer: "Quectel", model: "EG25-G"),
            identity: .init(imei: imei, imsi: imsi, iccid: iccid))
    }
}

extension TestClientProtocol {
    /// POSTs an event to the device API with `token` (nil: no Authorization header); returns the status.
    func post(_ event: EnrollmentRequest, token: String?) async throws -> HTTPResponse.Status {
        try await postRaw(ByteBuffer(bytes: try event.jsonBytes()), token: token)
    }

    func postRaw(_ body: ByteBuffer, token: String?) async throws -> HTTPResponse.Status {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await execute(uri: "/v1/enrollments", method: .post, headers: headers, body: body) { $0.status }
    }

    /// A request with a bearer token; returns the status and the body.
    func call(
        _ method: HTTPRequest.Method, _ uri: String, token: String?, body: String? = nil
    ) async throws -> (HTTPResponse.Status, String) {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil { headers[.contentType] = "application/json" }
        return try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) {
            ($0.status, String(buffer: $0.body))
        }
    }
}

/// Runs of 14 or more digits: what an IMEI, IMSI or ICCID leaks as.
func identifierDigitRuns(_ text: String) -> [String] {
    var runs: [String] = []
    var current = ""
    for c in text {
        if c.isASCII && c.isNumber {
            current.append(c)
        } else {
            if current.count >= 14 { runs.append(current) }
            current = ""
        }
    }
    if current.count >= 14 { runs.append(current) }
    return runs
}
