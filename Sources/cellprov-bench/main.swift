import CellprovCore
import CellprovReporter
import CellprovStore
import CellprovTestKit
import Foundation
import Logging

// `make bench` (release): events per second through state commit + outbox + delivery to a loopback receiver,
// and the time from an observation to the receiver's 201. Figures are printed, not asserted.

func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }

func observation(slot: Int, sim: Int) -> Observation {
    let imei = IMEI.validate(luhn("35693803" + String(format: "%06d", slot))).value
    let imsi = IMSI.validate("26201" + String(format: "%010d", sim)).value
    let iccid = ICCID.validate(luhn("89492000" + String(format: "%010d", sim))).value
    let report = IdentityReport(
        port: "/dev/bench\(slot)", imei: imei, imsi: imsi, iccid: iccid, manufacturer: "Quectel", model: "EC25",
        revision: "EC25EFAR06A06M4G", commandCount: 8)
    return Observation(slot: ModuleSlot(key: "bench-slot-\(slot)", port: "/dev/bench\(slot)", origin: .static),
                       report: report, reason: "bench")
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

@main
struct Bench {
    static func main() async throws {
        LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
        let logger = Logger(label: "bench")
        let events = Int(ProcessInfo.processInfo.environment["BENCH_EVENTS"] ?? "2000") ?? 2000
        let clock = ContinuousClock()
        let dir = NSTemporaryDirectory() + "cellprov-bench-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // 1. Commit only (change detection + one SQLite transaction, synchronous=FULL, per observation).
        let store = try StateStore(directory: dir)
        let slots = 4
        var start = clock.now
        for i in 0..<events {
            try store.commit(observation(slot: i % slots, sim: i), presentSlots: Set((0..<slots).map { "bench-slot-\($0)" }))
        }
        let commitTime = clock.now - start
        let committed = try store.outboxDepth()

        // 2. Delivery of the whole outbox to a loopback receiver answering 201.
        let receiver = try EnrollmentReceiver()
        let reporter = try Reporter(
            config: ReporterConfiguration(url: URL(string: "http://127.0.0.1:\(receiver.port)")!, deviceSerial: "GW-BENCH"),
            outbox: store, logger: logger)
        start = clock.now
        let run = Task { await reporter.run() }
        reporter.wake()
        while try store.outboxDepth() > 0 { try await Task.sleep(for: .milliseconds(1)) }
        let deliveryTime = clock.now - start

        // 3. Observation -> 201: commit one change, wake the reporter, wait for the receiver to have it.
        var latencies: [Double] = []
        for i in 0..<200 {
            let before = receiver.requests.count
            start = clock.now
            try store.commit(observation(slot: 0, sim: events + i), presentSlots: ["bench-slot-0"])
            reporter.wake()
            while receiver.requests.count == before { await Task.yield() }
            latencies.append(seconds(clock.now - start) * 1000)
        }
        run.cancel()
        receiver.stop()
        latencies.sort()

        print("events committed: \(committed) (\(slots) slots, alternating SIMs)")
        print(String(format: "commit (detect + SQLite transaction, synchronous=FULL): %.0f events/s (%.3f ms each)",
                     Double(committed) / seconds(commitTime), seconds(commitTime) * 1000 / Double(committed)))
        print(String(format: "delivery to a loopback receiver (HTTP/1.1, one at a time, outbox updated per event): %.0f events/s",
                     Double(committed) / seconds(deliveryTime)))
        print(String(format: "observation -> receiver has the event: median %.2f ms, p90 %.2f ms, max %.2f ms (200 runs)",
                     latencies[latencies.count / 2], latencies[latencies.count * 9 / 10], latencies.last!))
    }
}
