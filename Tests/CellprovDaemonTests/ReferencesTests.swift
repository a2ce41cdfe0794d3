import CellprovCore
import CellprovEnrollmentAPI
import CellprovSimulator
import CellprovTestKit
import Foundation
import Testing

/// API 0.2.0: cellprovd's payload carries `references`, the keyed refs its own log prints for the identifiers, so
/// that the registry can find a unit from a log line without holding the unit's pseudonym key.
@Suite(.serialized) struct ReferencesTests {
    typealias E2E = EnrollmentEndToEndTests

    /// The refs in a payload are the ones the daemon's log shows for the same values, under the key in its state
    /// directory; after a SIM swap they follow the new SIM.
    @Test func payloadReferencesEqualTheRefsTheDaemonLogs() async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: E2E.original))
        defer { sim.stop() }
        let setup = try E2E.Setup(ports: [sim.path], receiver: try EnrollmentReceiver())
        defer { setup.cleanup() }
        let daemon = try setup.start()

        #expect(await E2E.waitUntil { setup.requests(ofType: "enrolled").count == 1 }, "\(daemon.stderr)")
        let key = try [UInt8](Data(contentsOf: URL(fileURLWithPath: setup.stateDirectory + "/pseudonym.key")))
        let pseudonymizer = Pseudonymizer(key: key)
        func refs(_ imei: String?, _ imsi: String?, _ iccid: String?) -> EnrollmentRequest.References {
            EnrollmentRequest.References(
                imei: imei.map { pseudonymizer.reference(kind: "imei", value: $0) },
                imsi: imsi.map { pseudonymizer.reference(kind: "imsi", value: $0) },
                iccid: iccid.map { pseudonymizer.reference(kind: "iccid", value: $0) })
        }

        let enrolled = try EnrollmentRequest.decode(
            [UInt8](try #require(setup.requests(ofType: "enrolled").first).body))
        let expected = refs(E2E.original.imei, E2E.original.imsi, E2E.original.iccid)
        #expect(enrolled.references == expected)
        for ref in expected.all {
            #expect(ref.wholeMatch(of: /[0-9a-f]{10}/) != nil)
            #expect(daemon.stderr.contains("ref \(ref)"), "the log shows ref \(ref)")
        }
        // The wire form: an object of three strings.
        let json = try #require(setup.requests(ofType: "enrolled").first?.json?["references"] as? [String: String])
        #expect(json == ["imei": expected.imei!, "imsi": expected.imsi!, "iccid": expected.iccid!])

        // A SIM swap: the new event's refs are the new SIM's, and the log names them too.
        sim.swapSIM(E2E.swappedSIM)
        #expect(await E2E.waitUntil { setup.requests(ofType: "sim_changed").count == 1 }, "\(daemon.stderr)")
        let changed = try EnrollmentRequest.decode(
            [UInt8](try #require(setup.requests(ofType: "sim_changed").first).body))
        let swapped = refs(E2E.original.imei, E2E.swappedSIM.imsi, E2E.swappedSIM.iccid)
        #expect(changed.references == swapped)
        #expect(changed.references?.imei == expected.imei, "same module, same IMEI ref")
        #expect(daemon.stderr.contains("ref \(swapped.iccid!)"))
        #expect(await setup.stop() == 0)
    }

    /// Only the values present get a ref; an old payload without the property still decodes; `manufactured` has
    /// none.
    @Test func referencesFollowTheIdentityAndAreOptionalOnTheWire() throws {
        let pseudonymizer = Pseudonymizer.random()
        let identity = EnrollmentRequest.Identity(imei: E2E.original.imei)
        let refs = EnrollmentRequest.References(identity, pseudonymizer: pseudonymizer)
        #expect(refs.imei == pseudonymizer.reference(kind: "imei", value: E2E.original.imei!))
        #expect(refs.imsi == nil && refs.iccid == nil)
        #expect(refs.all.count == 1)
        #expect(try String(decoding: JSONEncoder().encode(refs), as: UTF8.self) == "{\"imei\":\"\(refs.imei!)\"}")

        var request = EnrollmentRequest.manufactured(
            deviceSerial: "GW-1", module: .init(slot: "/dev/ttyS1"), identity: identity)
        #expect(request.references == nil)
        #expect(try request.jsonBytes().count > 0)
        #expect(String(decoding: try request.jsonBytes(), as: UTF8.self).contains("references") == false)
        request.references = refs
        #expect(try EnrollmentRequest.decode(try request.jsonBytes()) == request)
        #expect(EnrollmentAPI.eventTypes.contains("manufactured"))
        #expect(EnrollmentAPI.eventTypes.isSuperset(of: IdentityEventType.allCases.map(\.rawValue)))
    }
}
