import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryHTTP
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// `POST /v1/enrollments` against a real store (SQLite and PostgreSQL, `StoreBackend`): every status the device API
/// answers, in the order of its checks (docs/enrollment-api.yaml, REGISTRY.md "Device API").
@Suite(.serialized) struct HTTPDeviceAPITests {
    @Test(arguments: StoreBackend.available)
    func statusCodesOfTheDeviceAPI(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { (client: any TestClientProtocol) async throws in
                let event = RegistryFixture.event()
                // 401: no token, an unknown token.
                #expect(try await client.post(event, token: nil) == .unauthorized)
                #expect(try await client.post(event, token: Tokens.generate(.device)) == .unauthorized)
                // 201 stored, then 409 for the same event_id.
                #expect(try await client.post(event, token: f.deviceToken) == .created)
                #expect(try await client.post(event, token: f.deviceToken) == .conflict)
                // A missing device.serial means the token's serial.
                var noSerial = RegistryFixture.event(type: "sim_changed", serial: nil, sequence: 2, severity: "warning")
                noSerial.identity.iccid = RegistryFixture.iccid2
                #expect(try await client.post(noSerial, token: f.deviceToken) == .created)
                // 403: the token of another device.
                let spoofed = RegistryFixture.event(serial: RegistryFixture.otherSerial)
                #expect(try await client.post(spoofed, token: f.deviceToken) == .forbidden)
                // 403: a device may not post a factory record; an operator token may not post at all.
                #expect(try await client.post(RegistryFixture.event(type: "manufactured"), token: f.deviceToken) == .forbidden)
                #expect(try await client.post(RegistryFixture.event(), token: f.adminToken) == .forbidden)
                // A station posts manufactured for any serial, and nothing else.
                let factory = RegistryFixture.event(type: "manufactured", serial: RegistryFixture.otherSerial)
                #expect(try await client.post(factory, token: f.stationToken) == .created)
                #expect(try await client.post(RegistryFixture.event(), token: f.stationToken) == .forbidden)
                #expect(
                    try await client.post(RegistryFixture.event(type: "manufactured", serial: nil), token: f.stationToken)
                        == .unprocessableContent)
                // 400: not the schema; 422: an unknown type or a bad time.
                #expect(try await client.postRaw(ByteBuffer(string: "{\"nope\": 1}"), token: f.deviceToken) == .badRequest)
                #expect(try await client.postRaw(ByteBuffer(string: "not json"), token: f.deviceToken) == .badRequest)
                #expect(try await client.post(RegistryFixture.event(type: "teleported"), token: f.deviceToken) == .unprocessableContent)
                var badTime = RegistryFixture.event()
                badTime.occurredAt = "yesterday"
                #expect(try await client.post(badTime, token: f.deviceToken) == .unprocessableContent)
                // 413: more than 64 KiB.
                let big = "{\"pad\": \"" + String(repeating: "x", count: 70 * 1024) + "\"}"
                #expect(try await client.postRaw(ByteBuffer(string: big), token: f.deviceToken) == .contentTooLarge)
            }
            // The refused spoof is recorded.
            let audit = try await f.store.audit(limit: 100)
            #expect(audit.contains { $0.actor == "device:\(RegistryFixture.serial)" })
            // The unit holds both field events and the other unit its factory record.
            let unit = try #require(try await f.store.unit(serial: RegistryFixture.serial))
            #expect(unit.timeline.count == 2)
            let other = try #require(try await f.store.unit(serial: RegistryFixture.otherSerial))
            #expect(other.manufacturing.count == 1)
        }
    }

    @Test(arguments: StoreBackend.available)
    func lostUnitIsRefusedAndFlaggedThenFoundWithANewToken(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { (client: any TestClientProtocol) async throws in
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                // A viewer may not mark lost; an admin may.
                let path = "/v1/units/\(RegistryFixture.serial)/lost"
                #expect(try await client.call(.post, path, token: f.viewerToken).0 == .forbidden)
                #expect(try await client.call(.post, path, token: f.adminToken, body: "{\"note\": \"stolen van\"}").0 == .ok)
                // Its token is revoked: 403, and lost_unit_seen is raised.
                let later = RegistryFixture.event(type: "sim_removed", sequence: 2, severity: "warning")
                #expect(try await client.post(later, token: f.deviceToken) == .forbidden)
                let (status, flags) = try await client.call(.get, "/v1/flags", token: f.viewerToken)
                #expect(status == .ok)
                #expect(flags.contains("\"kind\":\"lost_unit_seen\""))
                #expect(flags.contains("\"serial\":\"\(RegistryFixture.serial)\""))
                // The unit page carries the playbook.
                let (_, unit) = try await client.call(.get, "/v1/units/\(RegistryFixture.serial)", token: f.viewerToken)
                #expect(unit.contains("\"lost\":true"))
                #expect(unit.contains("carrier"))
                // Found: a new token, shown once; the old one stays refused, the new one is accepted.
                let (foundStatus, found) = try await client.call(
                    .post, "/v1/units/\(RegistryFixture.serial)/found", token: f.adminToken)
                #expect(foundStatus == .ok)
                struct Found: Decodable { var token: String }
                let newToken = try JSONDecoder().decode(Found.self, from: Data(found.utf8)).token
                #expect(newToken.hasPrefix("cpd_"))
                #expect(try await client.post(later, token: f.deviceToken) == .forbidden)
                #expect(try await client.post(later, token: newToken) == .created)
                // Found twice: 409; an unknown unit: 404.
                #expect(try await client.call(.post, "/v1/units/\(RegistryFixture.serial)/found", token: f.adminToken).0 == .conflict)
                #expect(try await client.call(.post, "/v1/units/NOPE/lost", token: f.adminToken).0 == .notFound)
            }
            #expect(try await f.store.audit(limit: 100).contains { $0.action == "mark_lost" && $0.actor == "alice" })
        }
    }
}
