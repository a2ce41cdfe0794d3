import CellprovCore
import CellprovReporter
import CellprovStore
import CellprovTestKit
import Foundation
import Logging
import Testing

/// The test kit receiver's fault mode (used by `make soak`): failed and unanswered shares, recorded per request.
@Suite("Receiver faults")
struct ReceiverFaultsTests {
    @Test("a failing share answers the fail status, a hanging share never answers, and each is recorded")
    func faults() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cellprov-faults-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try StateStore(directory: dir.path)
        let receiver = try EnrollmentReceiver(faults: .init(failFraction: 1, failStatus: 503))
        defer { receiver.stop() }
        var config = ReporterConfiguration(url: URL(string: "http://\(receiver.url)")!)
        config.requestTimeout = .milliseconds(500)
        let reporter = try Reporter(config: config, outbox: store, logger: Logger(label: "faults-test"))
        let running = Task { await reporter.run() }
        defer { running.cancel() }

        let event = IdentityEvent(
            id: UUID(), type: .enrolled, slot: "slot-a", sequence: 1, occurredAt: Date(), severity: .info,
            module: ModuleInfo(), identity: IdentitySnapshot(imei: "356938035643809"))
        #expect(await reporter.deliver(event) == .retry(reason: "HTTP 503"))
        #expect(receiver.requests.last?.status == 503)

        receiver.setFaults(.init(hangFraction: 1))
        guard case .retry = await reporter.deliver(event) else {
            Issue.record("an unanswered request was not a retry")
            return
        }
        #expect(receiver.requests.count == 2)
        #expect(receiver.requests.last?.status == nil)

        receiver.setFaults(nil)
        #expect(await reporter.deliver(event) == .delivered(status: 201))
        #expect(receiver.requests.last?.status == 201)
        #expect(receiver.acceptedEventIDs == [event.id.uuidString.lowercased()])
        running.cancel()
        await running.value
    }
}
