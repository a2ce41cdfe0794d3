import CellprovCore
import CellprovDaemon
import CellprovReporter
import CellprovSimulator
import CellprovStore
import CellprovTestKit
import CellprovTestSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

/// `[metrics] textfile`: the configuration key, the text (checked by promtool), no identifier in it, the write
/// bound (one a second however often things change), a slow disk that does not hold up the store, and failures
/// logged once.
@Suite struct MetricsTextfileTests {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }
    static let imei = luhn("35693803564380")
    static let imeiB = luhn("86144205219734")
    static let imsi = "310260123456789"
    static let iccid = luhn("894420005367105249")
    static let slotA = "pci-0000:00:14.0-usb-0:1:1.0"
    static let slotB = "/dev/ttyS1"

    static func observation(
        slot: String, imei: String = imei, imsi: String?, iccid: String?, problems extra: [Problem] = []
    ) -> Observation {
        var report = IdentityReport(port: "/dev/ttyUSB2", manufacturer: "Quectel", model: "EG25", revision: "EG25GR07")
        report.imei = IMEI.validate(imei).value
        if let imsi { report.imsi = IMSI.validate(imsi).value }
        if let iccid { report.iccid = ICCID.validate(iccid).value }
        report.problems = extra
        return Observation(
            slot: ModuleSlot(key: slot, port: "/dev/ttyUSB2", usbSerial: "SER-1", origin: .udev), report: report,
            reason: "test")
    }

    /// A store with slot A read (valid, hot-swap reports unavailable: enrolled, one event waiting) and slot B read
    /// without a SIM (an IMEI alone raises no event on a slot never enrolled).
    static func populatedStore() throws -> (StateStore, TemporaryDirectory) {
        let temporary = try TemporaryDirectory(prefix: "cellprov-metrics")
        let dir = temporary.path
        let store = try StateStore(directory: dir)
        let hotswap = Problem(.simHotSwapUnavailable, field: .sim, severity: .warning, message: "detection off")
        let a = observation(slot: slotA, imsi: imsi, iccid: iccid, problems: [hotswap])
        _ = try store.commit(a)
        try store.recordRead(
            slot: slotA, port: "/dev/ttyUSB2", valid: true, problems: [hotswap.code.rawValue], at: Date())
        let noSIM = Problem(.simNotInserted, field: .sim, message: "no SIM")
        let b = observation(slot: slotB, imei: imeiB, imsi: nil, iccid: nil, problems: [noSIM])
        _ = try store.commit(b)
        try store.recordRead(slot: slotB, port: slotB, valid: false, problems: [noSIM.code.rawValue], at: Date())
        return (store, temporary)
    }

    static func waitUntil(_ timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
        _ = await pollUntil(within: timeout, condition)
    }

    // MARK: - Configuration

    @Test func configurationKey() throws {
        let config = try DaemonConfig.parse(
            "[metrics]\ntextfile = \"/var/lib/prometheus/node-exporter/cellprov.prom\"\n")
        #expect(config.metricsTextfile == "/var/lib/prometheus/node-exporter/cellprov.prom")
        #expect(try DaemonConfig.parse("[metrics]\n").metricsTextfile == nil)
        for bad in ["cellprov.prom", "/var/lib/x/cellprov.txt", "/var/lib/x/.prom", "/var/lib/x/"] {
            #expect(throws: ConfigError.self) { try DaemonConfig.parse("[metrics]\ntextfile = \"\(bad)\"\n") }
            do {
                _ = try DaemonConfig.parse("[metrics]\ntextfile = \"\(bad)\"\n")
            } catch {
                #expect(error.key == "metrics.textfile", "\(error)")
            }
        }
        #expect(throws: ConfigError.self) { try DaemonConfig.parse("[metrics]\ninterval = 5\n") }
    }

    // MARK: - The text

    @Test func textPassesPromtoolAndCarriesNoIdentifier() async throws {
        let (store, temporary) = try Self.populatedStore()
        let dir = temporary.path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/cellprov.prom"
        let metrics = MetricsTextfile(path: path, logger: Logger(label: "test"))
        metrics.delivered(.delivered(status: 201))
        metrics.delivered(.retry(reason: "HTTP 503"))
        metrics.delivered(.retry(reason: "timeout"))
        metrics.attach(store)
        try await Self.waitUntil { FileManager.default.fileExists(atPath: path) }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o644, "node_exporter runs as another user")

        let a = "slot=\"\(Self.slotA)\""
        let b = "slot=\"\(Self.slotB)\""
        for line in [
            "cellprov_slot_read_state{\(a),state=\"warning\"} 1", "cellprov_slot_read_state{\(a),state=\"ok\"} 0",
            "cellprov_slot_read_state{\(b),state=\"error\"} 1", "cellprov_slot_sim_state{\(a),state=\"ready\"} 1",
            "cellprov_slot_sim_state{\(b),state=\"absent\"} 1", "cellprov_slot_sim_hotswap_unavailable{\(a)} 1",
            "cellprov_slot_sim_hotswap_unavailable{\(b)} 0", "cellprov_slot_present{\(a)} 1",
            "cellprov_outbox_events 1", "cellprov_deliveries_total{outcome=\"delivered\"} 1",
            "cellprov_deliveries_total{outcome=\"failed\"} 2", "cellprov_deliveries_total{outcome=\"rejected\"} 0",
            "# TYPE cellprov_deliveries_total counter", "# TYPE cellprov_slot_read_state gauge",
        ] {
            #expect(text.contains(line + "\n"), "missing: \(line)\n\(text)")
        }
        // Slot A's last successful read and the oldest waiting event (enrolled) are timestamps near now.
        let now = Date().timeIntervalSince1970
        for name in [
            "cellprov_slot_last_successful_read_timestamp_seconds{\(a)}",
            "cellprov_outbox_oldest_event_timestamp_seconds",
        ] {
            let line = try #require(text.split(separator: "\n").first { $0.hasPrefix(name + " ") }, "\(name)\n\(text)")
            let value = try #require(Double(line.split(separator: " ").last!))
            #expect(abs(value - now) < 120)
        }
        #expect(!text.contains("cellprov_slot_last_successful_read_timestamp_seconds{\(b)}"), "slot B never read valid")
        // No identifier, whole or in part, anywhere (labels included).
        for secret in [
            Self.imei, Self.imeiB, String(Self.imei.dropFirst(8)), Self.imsi, String(Self.imsi.dropFirst(5)),
            Self.iccid,
        ] {
            #expect(!text.contains(secret), "identifier digits in the metrics file")
        }

        // promtool's own parser and lint (names, types, HELP, units, counters' _total).
        let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard let promtool else {
            let mustRun = ProcessInfo.processInfo.environment["CELLPROV_TEST_NO_SKIP"] == "1"
            #expect(!mustRun, "promtool is missing (Debian package prometheus; scripts/install-deps.sh installs it)")
            return
        }
        let check = Process()
        check.executableURL = URL(fileURLWithPath: promtool)
        check.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        check.standardInput = input
        check.standardOutput = output
        check.standardError = output
        try check.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        #expect(check.terminationStatus == 0, "promtool check metrics: \(said)")
        #expect(said.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool lint: \(said)")

        // promtool parses what it checks: a broken line would fail (the check can fail).
        let broken = Process()
        broken.executableURL = URL(fileURLWithPath: promtool)
        broken.arguments = ["check", "metrics"]
        let brokenInput = Pipe()
        broken.standardInput = brokenInput
        broken.standardOutput = FileHandle.nullDevice
        broken.standardError = FileHandle.nullDevice
        try broken.run()
        brokenInput.fileHandleForWriting.write(Data((text + "cellprov_bad{slot=\"x} 1\n").utf8))
        try brokenInput.fileHandleForWriting.close()
        broken.waitUntilExit()
        #expect(broken.terminationStatus != 0)
    }

    @Test func labelValuesAreEscaped() {
        let view = StatusView(slots: [StatusView.Slot(slot: "/dev/odd\"name\\with\nbreak")])
        let text = MetricsTextfile.render(view, lastSuccess: [:], deliveries: [:])
        #expect(text.contains("cellprov_slot_present{slot=\"/dev/odd\\\"name\\\\with\\nbreak\"} 0\n"))
        #expect(
            text.contains("cellprov_slot_read_state{slot=\"/dev/odd\\\"name\\\\with\\nbreak\",state=\"not_read\"} 1\n"))
    }

    // MARK: - Writing

    /// A modem flapping (a change every few milliseconds for 2.5 s) costs at most one write a second, and the
    /// last change is always written.
    @Test func writesAreBoundedToOneASecond() async throws {
        let (store, temporary) = try Self.populatedStore()
        let dir = temporary.path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let times = NIOLockedValueBox<[ContinuousClock.Instant]>([])
        let last = NIOLockedValueBox("")
        let metrics = MetricsTextfile(path: dir + "/c.prom", logger: Logger(label: "test")) {
            _, text throws(MetricsWriteError) in
            times.withLockedValue { $0.append(ContinuousClock().now) }
            last.withLockedValue { $0 = text }
        }
        metrics.attach(store)
        let start = ContinuousClock().now
        var changes = 0
        while ContinuousClock().now - start < .milliseconds(2500) {
            try store.setPresence(slot: Self.slotA, port: "/dev/ttyUSB2", present: changes % 2 == 0)
            metrics.changed()
            changes += 1
            try await Task.sleep(for: .milliseconds(2))
        }
        try store.setPresence(slot: Self.slotA, port: "/dev/ttyUSB2", present: false)
        metrics.changed()
        try await Task.sleep(for: .milliseconds(1500))
        let written = times.withLockedValue { $0 }
        // Each change is a committed SQLite write: under load (a build beside the tests) 2.5 s holds fewer than a
        // hundred, and 20 changes are already four times what the bound lets through.
        #expect(changes > 20)
        #expect(written.count >= 2 && written.count <= 5, "\(written.count) writes for \(changes) changes")
        // The bound is on when writes begin (one second apart); the writer is called after the store's views are
        // read, which takes a few milliseconds more or less each time (tens under ThreadSanitizer).
        for (earlier, later) in zip(written, written.dropFirst()) {
            #expect(later - earlier >= .milliseconds(950), "two writes \(later - earlier) apart")
        }
        #expect(
            last.withLockedValue { $0 }.contains("cellprov_slot_present{slot=\"\(Self.slotA)\"} 0\n"),
            "the last change is written")
    }

    /// A write stuck on a slow disk: changed() returns at once and the store is not held.
    @Test func aSlowDiskHoldsUpNothing() async throws {
        let (store, temporary) = try Self.populatedStore()
        let dir = temporary.path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inWrite = NIOLockedValueBox(false)
        let metrics = MetricsTextfile(path: dir + "/c.prom", logger: Logger(label: "test")) {
            _, _ throws(MetricsWriteError) in
            inWrite.withLockedValue { $0 = true }
            Thread.sleep(forTimeInterval: 2)
            inWrite.withLockedValue { $0 = false }
        }
        metrics.attach(store)
        try await Self.waitUntil { inWrite.withLockedValue { $0 } }
        #expect(inWrite.withLockedValue { $0 })
        var slowest: Duration = .zero
        for i in 0..<200 {
            let t0 = ContinuousClock().now
            metrics.changed()
            try store.recordRead(slot: Self.slotA, port: "/dev/ttyUSB2", valid: i % 2 == 0, problems: [], at: Date())
            _ = try store.commit(Self.observation(slot: Self.slotA, imsi: Self.imsi, iccid: Self.iccid))
            slowest = max(slowest, ContinuousClock().now - t0)
        }
        #expect(inWrite.withLockedValue { $0 }, "the write was still in progress throughout")
        #expect(slowest < .milliseconds(500), "a change and a commit took \(slowest) during a slow write")
    }

    /// A write that keeps failing is logged once (not once per change), and its recovery once.
    @Test func failuresAreLoggedOnce() async throws {
        let (store, temporary) = try Self.populatedStore()
        let dir = temporary.path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = CapturedLogs()
        let logger = Logger(label: "test") { _ in records }
        let fail = NIOLockedValueBox(true)
        let attempts = NIOLockedValueBox(0)
        let metrics = MetricsTextfile(path: dir + "/c.prom", logger: logger, minimumInterval: .milliseconds(20)) {
            _, _ throws(MetricsWriteError) in
            attempts.withLockedValue { $0 += 1 }
            if fail.withLockedValue({ $0 }) {
                throw MetricsWriteError("/x/.c.prom.1.tmp: cannot create (No space left on device)")
            }
        }
        metrics.attach(store)
        for _ in 0..<10 {
            metrics.changed()
            try await Task.sleep(for: .milliseconds(40))
        }
        #expect(attempts.withLockedValue { $0 } >= 5)
        #expect(records.messages(.warning).count == 1, "\(records.messages(.warning))")
        #expect(records.messages(.warning).first?.contains("No space left on device") == true)
        fail.withLockedValue { $0 = false }
        metrics.changed()
        try await Self.waitUntil { metrics.writes == 1 }
        metrics.changed()
        try await Self.waitUntil { metrics.writes == 2 }
        #expect(records.messages(.notice) == ["metrics file written again"])
    }

    /// cellprovd with `[metrics] textfile`, a simulated modem and a backend answering 503 then 201: the file shows
    /// the read, the waiting event and the failed attempts, then the delivery and an empty outbox; no identifier.
    @Test func daemonKeepsTheFileCurrent() async throws {
        let identity = SimulatedIdentity(imei: Self.imei, imsi: Self.imsi, iccid: Self.iccid)
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: identity))
        defer { sim.stop() }
        let receiver = try EnrollmentReceiver(behaviour: .status(503))
        defer { receiver.stop() }
        let dirTemporary = try TemporaryDirectory(prefix: "cellprovd-metrics")
        let dir = dirTemporary.path
        try FileManager.default.createDirectory(atPath: dir + "/textfiles", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/textfiles/cellprov.prom"
        try """
        [daemon]
        state_directory = "\(dir)/state"
        [discovery]
        udev = false
        static_ports = ["\(sim.path)"]
        [backend]
        url = "http://127.0.0.1:\(receiver.port)"
        [metrics]
        textfile = "\(path)"
        """.write(toFile: dir + "/cellprovd.toml", atomically: true, encoding: .utf8)
        let daemon = try ChildProcess("cellprovd", ["--config", dir + "/cellprovd.toml", "--log-level", "debug"])
        defer { daemon.signal(SIGKILL) }
        func text() -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let slot = "slot=\"\(sim.path)\""
        try await Self.waitUntil(.seconds(20)) {
            let t = text()
            return t.contains("cellprov_slot_read_state{\(slot),state=\"ok\"} 1\n")
                && !t.contains("cellprov_deliveries_total{outcome=\"failed\"} 0\n")
        }
        var t = text()
        #expect(t.contains("cellprov_slot_read_state{\(slot),state=\"ok\"} 1\n"), "\(t)\n\(daemon.stderr)")
        #expect(t.contains("cellprov_slot_sim_state{\(slot),state=\"ready\"} 1\n"))
        #expect(t.contains("cellprov_slot_sim_hotswap_unavailable{\(slot)} 0\n"))
        #expect(t.contains("cellprov_outbox_events 1\n"))
        #expect(t.contains("cellprov_outbox_oldest_event_timestamp_seconds "))
        #expect(!t.contains("cellprov_deliveries_total{outcome=\"failed\"} 0\n"))
        #expect(t.contains("cellprov_slot_last_successful_read_timestamp_seconds{\(slot)} "))

        receiver.setBehaviour(.status(201))
        daemon.signal(SIGHUP)  // ends the reporter's backoff sleep
        try await Self.waitUntil(.seconds(20)) { text().contains("cellprov_outbox_events 0\n") }
        t = text()
        #expect(t.contains("cellprov_outbox_events 0\n"), "\(t)")
        #expect(t.contains("cellprov_deliveries_total{outcome=\"delivered\"} 1\n"))
        #expect(!t.contains("cellprov_outbox_oldest_event_timestamp_seconds "), "no sample for an empty outbox")
        for secret in [
            Self.imei, String(Self.imei.dropFirst(8)), Self.imsi, String(Self.imsi.dropFirst(5)), Self.iccid,
        ] {
            #expect(!t.contains(secret), "identifier digits in the metrics file")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/textfiles") == ["cellprov.prom"])
    }

    /// The real writer: the file appears whole, the temporary file is gone, a missing directory is an error that
    /// names the path (no crash).
    @Test func atomicWriteReplacesTheFile() throws {
        let dirTemporary = try TemporaryDirectory(prefix: "cellprov-metrics")
        let dir = dirTemporary.path
        let path = dir + "/cellprov.prom"
        try MetricsTextfile.atomicWrite(path, "a 1\n")
        try MetricsTextfile.atomicWrite(path, "a 2\n")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "a 2\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["cellprov.prom"])
        #expect(throws: MetricsWriteError.self) { try MetricsTextfile.atomicWrite(dir + "/none/c.prom", "a 1\n") }
    }
}
