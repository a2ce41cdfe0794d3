import CellprovCore
import CellprovReporter
import CellprovStore
import CellprovTestKit
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

// A `firmware_changed` event from the store's outbox to a receiver: the payload it posts, and what happens when
// the receiver is a registry older than the event type (it answers 422 "type: unknown event type", as any
// registry's ingest validation does for a type it does not know): the event is rejected for good and the events
// behind it are still delivered.

/// A read of the slot with an EC25 of firmware `revision` (the fixture's identities otherwise).
private func fwObservation(
    revision: String, imsi: String = FixtureValues.imsi1, iccid: String = FixtureValues.iccid1
) -> Observation {
    var observation = fixtureObservation(imsi: imsi, iccid: iccid)
    observation.report.model = "EC25"
    observation.report.revision = revision
    return observation
}

@Suite("firmware_changed delivery")
struct FirmwareChangeDeliveryTests {
    /// The store's three events of one slot: enrolled, firmware_changed, sim_changed (ids in that order).
    static func commitThree(_ store: StateStore) throws -> [UUID] {
        var ids: [UUID] = []
        ids += try store.commit(fwObservation(revision: "EC25EFAR06A06M4G")).map(\.id)
        ids += try store.commit(fwObservation(revision: "EC25EFAR06A08M4G")).map(\.id)
        ids += try store.commit(
            fwObservation(revision: "EC25EFAR06A08M4G", imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2)
        ).map(\.id)
        return ids
    }

    static func reporter(_ store: StateStore, _ receiver: EnrollmentReceiver) throws -> (Reporter, Task<Void, Never>) {
        var config = ReporterConfiguration(
            url: URL(string: "http://\(receiver.url)")!, token: "test-token", deviceSerial: "GW-TEST-1")
        config.backoffBase = .milliseconds(50)
        config.backoffCap = .seconds(1)
        let reporter = try Reporter(config: config, outbox: store, logger: Logger(label: "firmware-tests"))
        return (reporter, Task { await reporter.run() })
    }

    @Test("a registry that knows the type gets previous_revision and the new module.revision")
    func delivered() async throws {
        let dir = try TemporaryDirectory(prefix: "cellprov-firmware")
        let store = try StateStore(directory: dir.path)
        let receiver = try EnrollmentReceiver(behaviour: .status(201))
        defer { receiver.stop() }
        let ids = try Self.commitThree(store)
        let types = try store.events().sorted { $0.event.sequence < $1.event.sequence }.map(\.event.type)
        #expect(types == [.enrolled, .firmwareChanged, .simChanged])

        let (_, task) = try Self.reporter(store, receiver)
        let done = try await pollUntil(within: .seconds(10)) { try store.outboxDepth() == 0 }
        task.cancel()
        await task.value
        #expect(done)
        let bodies = receiver.requests.compactMap(\.json)
        let firmware = try #require(bodies.first { $0["type"] as? String == "firmware_changed" })
        #expect(firmware["event_id"] as? String == ids[1].uuidString.lowercased())
        #expect(firmware["previous_revision"] as? String == "EC25EFAR06A06M4G")
        #expect((firmware["module"] as? [String: Any])?["revision"] as? String == "EC25EFAR06A08M4G")
        #expect(firmware["severity"] as? String == "info")
        #expect(firmware["previous"] is NSNull)
        // The other events carry no previous_revision.
        #expect(bodies.filter { $0["previous_revision"] != nil }.count == 1)
    }

    @Test("an older registry refuses the unknown type with 422: rejected once, the next event still delivered")
    func olderRegistry() async throws {
        let dir = try TemporaryDirectory(prefix: "cellprov-firmware")
        let store = try StateStore(directory: dir.path)
        let receiver = try EnrollmentReceiver(behaviour: .refuseTypes(["firmware_changed"], status: 422))
        defer { receiver.stop() }
        let ids = try Self.commitThree(store)

        let (_, task) = try Self.reporter(store, receiver)
        let done = try await pollUntil(within: .seconds(10)) { try store.outboxDepth() == 0 }
        // A little longer: a retry of the rejected event would show here.
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        await task.value
        #expect(done, "the outbox empties: the refused event does not block the ones behind it")

        let events = try store.events()
        let firmware = try #require(events.first { $0.event.id == ids[1] })
        #expect(firmware.state == .rejected)
        #expect(firmware.attempts == 1)
        #expect(firmware.lastError?.hasPrefix("HTTP 422") == true)
        #expect(firmware.lastError?.contains("unknown event type") == true)
        for id in [ids[0], ids[2]] {
            #expect(events.first { $0.event.id == id }?.state == .delivered)
        }
        // Posted in order, each once: the rejected event is never retried by itself.
        #expect(receiver.requests.compactMap { $0.headers["idempotency-key"] } == ids.map { $0.uuidString.lowercased() })
        #expect(receiver.acceptedEventIDs == [ids[0].uuidString.lowercased(), ids[2].uuidString.lowercased()])
    }
}
