import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import HummingbirdTesting
import Testing

// The unit page and API show a device's repeated sequence (issue 19 row 14, case b): the event is accepted (201),
// the unit gets `state_rolled_back`, and the timeline row says the sequence came again.
@Suite struct HTTPTimelineRollbackTests {
    @Test(arguments: StoreBackend.available)
    func repeatedSequenceIsOnTheTimeline(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                let first = RegistryFixture.event(sequence: 1)
                #expect(try await client.post(first, token: f.deviceToken) == .created)
                let again = RegistryFixture.event(
                    type: "sim_changed", iccid: RegistryFixture.iccid2, sequence: 1, severity: "warning")
                #expect(try await client.post(again, token: f.deviceToken) == .created)
                let flags = try await f.store.flags(openOnly: true, limit: 10)
                #expect(flags.map(\.flag.kind) == [.stateRolledBack])

                let (status, body) = try await client.call(
                    .get, "/v1/units/\(RegistryFixture.serial)", token: f.viewerToken)
                #expect(status == .ok)
                #expect(body.contains("\"reuses_sequence_of\":\"\(first.eventID)\""))
                #expect(body.contains("state_rolled_back"))

                let viewer = try await HTTPPagesTests.signIn(client, token: f.viewerToken)
                let page = try await client.execute(
                    uri: "/units/\(RegistryFixture.serial)", method: .get, headers: [.cookie: viewer.cookie]
                ) { String(buffer: $0.body) }
                #expect(page.contains("data-rolled-back=\"true\""))
                #expect(page.contains("sequence 1 again (first by event \(first.eventID.prefix(8))): the device"))
                #expect(page.components(separatedBy: "data-rolled-back").count == 2, "only the repeat is marked")
                #expect(page.contains("data-kind=\"state_rolled_back\""))
                #expect(identifierDigitRuns(page).isEmpty)
            }
        }
    }
}
