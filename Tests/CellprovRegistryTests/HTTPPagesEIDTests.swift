import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryHTTP
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// The eUICC on the operator API and the pages: search by EID (API and search box), the EID masked like the other
/// identifiers (revealed for an admin who asks), the card apart from the profile on the unit page, a profile switch
/// on the timeline without a warning colour.
@Suite struct HTTPPagesEIDTests {
    static let eid = TestID.eid(7)

    static func eUICCEvent(
        type: String = "enrolled", iccid: String, sequence: Int, severity: String = "info",
        previous: EnrollmentRequest.Identity? = nil
    ) -> EnrollmentRequest {
        var r = RegistryFixture.event(type: type, iccid: iccid, sequence: sequence, severity: severity)
        r.identity.eid = eid
        r.identity.simSlot = 1
        r.previous = previous
        return r
    }

    @Test(arguments: StoreBackend.available)
    func unitFoundByEIDAndShownMasked(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                #expect(try await client.post(Self.eUICCEvent(iccid: RegistryFixture.iccid1, sequence: 1), token: f.deviceToken)
                    == .created)
                let switched = Self.eUICCEvent(
                    type: "profile_switched", iccid: RegistryFixture.iccid2, sequence: 2,
                    previous: .init(imsi: RegistryFixture.imsi1, iccid: RegistryFixture.iccid1, eid: Self.eid))
                #expect(try await client.post(switched, token: f.deviceToken) == .created)

                // The API: found by EID, masked.
                let (status, body) = try await client.call(.get, "/v1/units?q=\(Self.eid)", token: f.viewerToken)
                #expect(status == .ok)
                #expect(body.contains("\"serial\":\"GW-000100\""))
                #expect(body.contains("EID(89049032, ref "))
                #expect(body.contains("\"sim_slot\":1"))
                #expect(!body.contains(Self.eid) && identifierDigitRuns(body).isEmpty)
                // Revealed for an admin who asks.
                let (_, revealed) = try await client.call(.get, "/v1/units/GW-000100?reveal=true", token: f.adminToken)
                #expect(revealed.contains(Self.eid))

                // The search box and the unit page.
                let viewer = try await HTTPPagesTests.signIn(client, token: f.viewerToken)
                let results = try await client.execute(
                    uri: "/?q=\(Self.eid)", method: .get, headers: [.cookie: viewer.cookie]
                ) { String(buffer: $0.body) }
                #expect(results.contains("href=\"/units/GW-000100\""))
                let page = try await client.execute(
                    uri: "/units/GW-000100", method: .get, headers: [.cookie: viewer.cookie]
                ) { String(buffer: $0.body) }
                #expect(page.contains("Card (EID)") && page.contains("Profile ICCID"))
                #expect(page.contains("class=\"id card slot-eid\">EID(89049032, ref "))
                #expect(!page.contains(Self.eid) && identifierDigitRuns(page).isEmpty)
                // The profile switch is on the timeline, in no warning colour.
                #expect(page.contains("data-type=\"profile_switched\" data-severity=\"info\""))
                #expect(page.contains("<td class=\"info\">profile_switched</td>"))
                #expect(!page.contains("<td class=\"warning\">profile_switched</td>"))
                // No flag for a profile switch.
                #expect(try await f.store.flags(openOnly: true, limit: 10).isEmpty)
                // Nothing logged holds the EID.
                #expect(!f.logs.all.joined(separator: "\n").contains(Self.eid))
            }
        }
    }
}
