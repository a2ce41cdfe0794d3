import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryHTTP
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// Issue 19 row 6: payloads the published schema forbids are refused with a 422 naming the field (never the value),
/// for devices and factory stations alike, and nothing of them is stored.
extension HTTPDeviceAPITests {
    typealias Change = @Sendable (inout EnrollmentRequest) -> Void

    /// (what, the field the 422 names, the change).
    static let forbidden: [(String, String, Change)] = [
        ("IMEI formula", "identity.imei", { $0.identity.imei = "-2+3+cmd|' /C calc'!A0" }),
        ("slot NUL", "module.slot", { $0.module.slot = "usb-1-1.2\u{0}" }),
        ("slot CR", "module.slot", { $0.module.slot = "usb-1-1.2\r" }),
        ("slot tab", "module.slot", { $0.module.slot = "usb-1\t1.2" }),
        ("slot U+202E", "module.slot", { $0.module.slot = "usb-1-\u{202E}2.1" }),
        ("slot U+200B", "module.slot", { $0.module.slot = "usb-1-1.2\u{200B}" }),
        ("module NUL", "module.manufacturer", { $0.module.manufacturer = "Quectel\u{0}" }),
        ("module CR", "module.model", { $0.module.model = "EG25\r-G" }),
        ("module tab", "module.revision", { $0.module.revision = "R07\tA08" }),
        ("module U+202E", "module.model", { $0.module.model = "\u{202E}G-52GE" }),
        ("module U+200B", "module.manufacturer", { $0.module.manufacturer = "Quec\u{200B}tel" }),
        ("occurred_at year 99999", "occurred_at", { $0.occurredAt = "99999-01-01T00:00:00Z" }),
        ("occurred_at year 0000", "occurred_at", { $0.occurredAt = "0000-01-01T00:00:00Z" }),
        ("event_id dup", "event_id", { $0.eventID = "dup" }),
    ]

    /// The 422's status and body for `body` posted with `token` and, when given, `Idempotency-Key`.
    static func post(
        _ client: any TestClientProtocol, _ body: [UInt8], token: String, idempotencyKey: String? = nil
    ) async throws -> (HTTPResponse.Status, String) {
        var headers: HTTPFields = [.contentType: "application/json", .authorization: "Bearer \(token)"]
        if let idempotencyKey { headers[.init("Idempotency-Key")!] = idempotencyKey }
        return try await client.execute(
            uri: "/v1/enrollments", method: .post, headers: headers, body: ByteBuffer(bytes: body)
        ) { ($0.status, String(buffer: $0.body)) }
    }

    static func expectRefusal(_ answer: (HTTPResponse.Status, String), field: String, _ what: String) {
        #expect(answer.0 == .unprocessableContent, "\(what): \(answer.0)")
        #expect(answer.1.hasPrefix("{\"error\":\"\(field): "), "\(what): \(answer.1)")
        #expect(identifierDigitRuns(answer.1).isEmpty, "\(what): no identifier in the answer")
    }

    @Test(arguments: StoreBackend.available)
    func payloadsTheSchemaForbidsAreRefusedNamingTheField(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { (client: any TestClientProtocol) async throws in
                for (what, field, change) in Self.forbidden {
                    // A device's event and a station's factory record alike.
                    var event = RegistryFixture.event()
                    change(&event)
                    Self.expectRefusal(
                        try await Self.post(client, try event.jsonBytes(), token: f.deviceToken), field: field, what)
                    var factory = RegistryFixture.event(type: "manufactured", serial: RegistryFixture.otherSerial)
                    change(&factory)
                    Self.expectRefusal(
                        try await Self.post(client, try factory.jsonBytes(), token: f.stationToken), field: field,
                        "station: \(what)")
                }
                // Duplicate keys: at the top, and inside `identity` (JSONDecoder would keep one of them).
                let event = RegistryFixture.event()
                let text = String(decoding: try event.jsonBytes(), as: UTF8.self)
                let twice = text.replacingOccurrences(
                    of: #""identity":{"#, with: #""identity":{"imei":"\#(RegistryFixture.imeiB)","#)
                #expect(twice != text)
                Self.expectRefusal(
                    try await Self.post(client, Array(twice.utf8), token: f.deviceToken), field: "identity.imei",
                    "duplicate identity.imei")
                let topTwice = String(text.dropLast()) + #","event_id":"\#(UUID().uuidString.lowercased())"}"#
                Self.expectRefusal(
                    try await Self.post(client, Array(topTwice.utf8), token: f.deviceToken), field: "event_id",
                    "duplicate event_id")
                // Idempotency-Key: another id is refused; the same one is stored.
                Self.expectRefusal(
                    try await Self.post(
                        client, try event.jsonBytes(), token: f.deviceToken,
                        idempotencyKey: UUID().uuidString.lowercased()), field: "Idempotency-Key", "key mismatch")
                let stored = try await Self.post(
                    client, try event.jsonBytes(), token: f.deviceToken, idempotencyKey: event.eventID)
                #expect(stored.0 == .created, "\(stored.1)")
            }
            // Only the one valid event is stored, and no refusal logged a value.
            let unit = try #require(try await f.store.unit(serial: RegistryFixture.serial))
            #expect(unit.timeline.count == 1)
            #expect(try await f.store.unit(serial: RegistryFixture.otherSerial)?.manufacturing.isEmpty != false)
            for line in f.logs.all { #expect(identifierDigitRuns(line).isEmpty, "\(line)") }
            #expect(!f.logs.all.contains { $0.contains("calc") || $0.contains("\u{202E}") })
        }
    }

    /// A token past the bound is malformed, not missing.
    @Test(arguments: StoreBackend.available)
    func anOverlongTokenIsMalformed(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { (client: any TestClientProtocol) async throws in
                let event = RegistryFixture.event()
                let long = String(repeating: "a", count: 600)
                let answer = try await Self.post(client, try event.jsonBytes(), token: long)
                #expect(answer.0 == .unauthorized)
                #expect(answer.1 == #"{"error":"malformed token"}"#)
                var headers: HTTPFields = [.contentType: "application/json"]
                headers[.authorization] = "Basic " + long
                let basic = try await client.execute(
                    uri: "/v1/enrollments", method: .post, headers: headers,
                    body: ByteBuffer(bytes: try event.jsonBytes())
                ) { ($0.status, String(buffer: $0.body)) }
                #expect(basic.0 == .unauthorized)
                #expect(basic.1 == #"{"error":"missing bearer token"}"#)
            }
        }
    }
}
