import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryHTTP
import CellprovRegistryStore
import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Testing

/// `IngestOptions` on both backends: the payload stored as received, and the device token checked in the write's
/// own transaction (on PostgreSQL, the credential check and the ingest in one round trip: issue 18).
@Suite struct StoreIngestOptionsTests {
    /// The stored payload of an event, read with the backend's own client.
    static func payload(_ backend: StoreBackend, url: String, eventID: String) async throws -> String? {
        switch try RegistryDatabase.parse(url) {
        case .sqlite(let path):
            let queue = try DatabaseQueue(path: path)
            return try await queue.read { db in
                try String.fetchOne(db, sql: "SELECT payload FROM events WHERE event_id = ?", arguments: [eventID])
            }
        case .postgres(let location):
            return try await PostgresTestDatabases.withClient(location) { client in
                for try await p in try await client.query(
                    "SELECT payload FROM events WHERE event_id = \(eventID)", logger: TestStore.logger
                ).decode(String.self) {
                    return p
                }
                return nil
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func payloadIsStoredAsReceived(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, url in
            // A body as a device may send it: other key order, blanks, a field this registry does not know.
            let r = event(serial: "GW-P", imei: TestID.imei(901), imsi: TestID.imsi(901), iccid: TestID.iccid(901))
            let encoded = String(decoding: try r.jsonBytes(), as: UTF8.self)
            let received = "{ \"x_later_field\": [1, 2],\n  " + encoded.dropFirst()
            let outcome = try await store.ingest(
                r, serial: "GW-P", origin: .device, references: [], receivedAt: t0,
                options: IngestOptions(payload: Array(received.utf8)))
            #expect(outcome == .stored(raised: []))
            #expect(try await Self.payload(backend, url: url, eventID: r.eventID) == received)

            // Without a body the store encodes the event (the encoder's key order is its own: compare decoded);
            // bytes that are not UTF-8 are never stored as text.
            let plain = event(serial: "GW-P", imei: TestID.imei(901), imsi: TestID.imsi(901), iccid: TestID.iccid(901))
            _ = try await store.ingest(plain, serial: "GW-P", origin: .device, references: [], receivedAt: t0)
            let plainStored = try #require(try await Self.payload(backend, url: url, eventID: plain.eventID))
            #expect(try EnrollmentRequest.decode(Array(plainStored.utf8)) == plain)
            let odd = event(serial: "GW-P", imei: TestID.imei(901), imsi: TestID.imsi(901), iccid: TestID.iccid(901))
            _ = try await store.ingest(
                odd, serial: "GW-P", origin: .device, references: [], receivedAt: t0,
                options: IngestOptions(payload: [0x7B, 0xFF, 0xFE, 0x7D]))
            let oddStored = try #require(try await Self.payload(backend, url: url, eventID: odd.eventID))
            #expect(try EnrollmentRequest.decode(Array(oddStored.utf8)) == odd)
        }
    }

    @Test(arguments: StoreBackend.available)
    func deviceTokenIsCheckedInTheWrite(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            try await store.putDeviceToken(serial: "GW-A", tokenHash: Tokens.hash("token-a"), at: t0)
            try await store.putDeviceToken(serial: "GW-B", tokenHash: Tokens.hash("token-b"), at: t0)
            try await store.putStationToken(name: "line-1", tokenHash: Tokens.hash("token-s"), at: t0)
            func send(_ r: EnrollmentRequest, _ token: String?) async throws -> IngestOutcome {
                try await store.ingest(
                    r, serial: "GW-A", origin: .device, references: [], receivedAt: t0,
                    options: IngestOptions(deviceTokenHash: token.map(Tokens.hash)))
            }
            let first = event(serial: "GW-A", imei: TestID.imei(902), imsi: TestID.imsi(902), iccid: TestID.iccid(902))
            #expect(try await send(first, "token-a") == .stored(raised: []))
            #expect(try await send(first, "token-a") == .duplicate)

            // Another device's token, an unknown one, a station's: refused, and nothing was written (the same
            // event stores afterwards).
            for token in ["token-b", "token-x", "token-s"] {
                let r = event(serial: "GW-A", imei: TestID.imei(902), imsi: TestID.imsi(902), iccid: TestID.iccid(902))
                #expect(try await send(r, token) == .credentialRefused, "\(token)")
                #expect(try await send(r, nil) == .stored(raised: []), "\(token)")
            }

            // A replaced token is revoked at once; the new one works.
            try await store.putDeviceToken(serial: "GW-A", tokenHash: Tokens.hash("token-a2"), at: t0)
            let next = event(serial: "GW-A", imei: TestID.imei(902), imsi: TestID.imsi(902), iccid: TestID.iccid(902))
            #expect(try await send(next, "token-a") == .credentialRefused)
            #expect(try await send(next, "token-a2") == .stored(raised: []))

            // An event whose rules need their context (the IMEI is another unit's: on PostgreSQL the transaction
            // path) is checked the same way.
            let other = event(serial: "GW-B", imei: TestID.imei(903), imsi: TestID.imsi(903), iccid: TestID.iccid(903))
            _ = try await store.ingest(other, serial: "GW-B", origin: .device, references: [], receivedAt: t0)
            let clash = event(serial: "GW-A", imei: TestID.imei(903), imsi: TestID.imsi(902), iccid: TestID.iccid(902))
            #expect(try await send(clash, "token-b") == .credentialRefused)
            guard case .stored(let raised) = try await send(clash, "token-a2") else {
                Issue.record("the clash was not stored")
                return
            }
            #expect(raised.map(\.flag.kind).contains(.imeiOnTwoUnits))
        }
    }
}

/// The device API's order of checks with the one-call path: what a request without a valid credential learns is
/// what it learned before (401 first, whatever its body), and a device's event stores in one store call.
@Suite(.serialized) struct HTTPDeviceAPIOneCallTests {
    @Test(arguments: StoreBackend.available)
    func refusalsKeepTheirOrder(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { (client: any TestClientProtocol) async throws in
                let unknown = Tokens.generate(.device)
                // An unknown token: 401 for a valid event, a body that is not an event, a bad field, a large body.
                #expect(try await client.post(RegistryFixture.event(), token: unknown) == .unauthorized)
                #expect(try await client.postRaw(ByteBuffer(string: "not json"), token: unknown) == .unauthorized)
                #expect(
                    try await client.post(RegistryFixture.event(type: "teleported"), token: unknown) == .unauthorized)
                let big = "{\"pad\": \"" + String(repeating: "x", count: 70 * 1024) + "\"}"
                #expect(try await client.postRaw(ByteBuffer(string: big), token: unknown) == .unauthorized)
                // The device's own token: stored; its event naming another serial: 403 and audited.
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                let spoofed = RegistryFixture.event(serial: RegistryFixture.otherSerial, sequence: 2)
                #expect(try await client.post(spoofed, token: f.deviceToken) == .forbidden)
            }
            let audit = try await f.store.audit(limit: 100)
            #expect(audit.contains { $0.actor == "device:\(RegistryFixture.serial)" })
        }
    }
}
