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

private enum FWValue {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }
    static let imei = luhn("35693803564380")
    static let imsi1 = "310260123456789"
    static let imsi2 = "262019876543210"
    static let iccid1 = luhn("894420005367105249")
    static let iccid2 = luhn("891004234814455936")
    static let slot = "pci-0000:00:14.0-usb-0:1:1.0"
}

private func fwObservation(revision: String, imsi: String = FWValue.imsi1, iccid: String = FWValue.iccid1)
    -> Observation
{
    var report = IdentityReport(port: "/dev/ttyUSB2", manufacturer: "Quectel", model: "EC25", revision: revision)
    report.imei = IMEI.validate(FWValue.imei).value
    report.imsi = IMSI.validate(imsi).value
    report.iccid = ICCID.validate(iccid).value
    return Observation(
        slot: ModuleSlot(key: FWValue.slot, port: "/dev/ttyUSB2", usbSerial: "SER-1", origin: .udev), report: report,
        observedAt: Date(), reason: "test")
}

private func fwEventually(within limit: Duration = .seconds(10), _ condition: () throws -> Bool) async rethrows
    -> Bool
{
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while clock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try condition()
}

private final class FWTempDir {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "cellprov-firmware-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

@Suite("firmware_changed delivery")
struct FirmwareChangeDeliveryTests {
    /// The store's three events of one slot: enrolled, firmware_changed, sim_changed (ids in that order).
    static func commitThree(_ store: StateStore) throws -> [UUID] {
        var ids: [UUID] = []
        ids += try store.commit(fwObservation(revision: "EC25EFAR06A06M4G")).map(\.id)
        ids += try store.commit(fwObservation(revision: "EC25EFAR06A08M4G")).map(\.id)
        ids += try store.commit(
            fwObservation(revision: "EC25EFAR06A08M4G", imsi: FWValue.imsi2, iccid: FWValue.iccid2)
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
        let dir = try FWTempDir()
        let store = try StateStore(directory: dir.path)
        let receiver = try EnrollmentReceiver(behaviour: .status(201))
        defer { receiver.stop() }
        let ids = try Self.commitThree(store)
        let types = try store.events().sorted { $0.event.sequence < $1.event.sequence }.map(\.event.type)
        #expect(types == [.enrolled, .firmwareChanged, .simChanged])

        let (_, task) = try Self.reporter(store, receiver)
        let done = try await fwEventually { try store.outboxDepth() == 0 }
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
        let dir = try FWTempDir()
        let store = try StateStore(directory: dir.path)
        let receiver = try EnrollmentReceiver(behaviour: .refuseTypes(["firmware_changed"], status: 422))
        defer { receiver.stop() }
        let ids = try Self.commitThree(store)

        let (_, task) = try Self.reporter(store, receiver)
        let done = try await fwEventually { try store.outboxDepth() == 0 }
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
