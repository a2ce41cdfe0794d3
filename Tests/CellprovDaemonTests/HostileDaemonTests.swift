import CellprovCore
import CellprovSimulator
import CellprovTestKit
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// cellprovd with one slot on a port that streams random bytes without pause, beside a healthy modem: the noise
/// costs a few log lines (the first occurrence, then at most one summary a minute per slot and kind), a bounded
/// share of a core, and the healthy slot is read as usual.
@Suite(.serialized) struct HostileDaemonTests {
    /// utime + stime of a running process, from /proc (clock ticks of 1/100 s).
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command name: state is field 3, utime 14, stime 15 (1-based over the whole line).
        guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    @Test func randomBytesOnOneSlotLogAFewLinesAndLeaveTheOtherSlotAlone() async throws {
        var quirks = SimulatorQuirks()
        quirks.randomBytes = true
        let noise = try ModemSimulator(SimulatorOptions(quirks: quirks))
        let good = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: DaemonProcessTests.first))
        defer { noise.stop(); good.stop() }
        let fixture = try DaemonProcessTests.Fixture(staticPorts: [noise.path, good.path])
        defer { fixture.remove() }
        let daemon = try ChildProcess("cellprovd", ["--config", fixture.config.path, "--log-level", "info"])

        #expect(await daemon.waitForStderr { $0.contains("identity read:") }, "\(daemon.stderr)")
        let seconds = 8
        try await Task.sleep(for: .seconds(seconds))
        let cpu = Self.cpuSeconds(pid: daemon.process.processIdentifier)
        daemon.signal(SIGTERM)
        _ = await daemon.waitForExit(timeout: .seconds(10))
        let lines = daemon.stderr.split(separator: "\n")
        let anomalies = lines.filter { $0.contains("unreadable bytes") }
        print("cellprovd, \(seconds) s of random bytes on one slot: \(lines.count) log lines in all, "
            + "\(anomalies.count) about the noise, CPU \(cpu.map { String(format: "%.2f", $0) } ?? "-") s")
        #expect(anomalies.count >= 1, "the first occurrence is logged")
        #expect(anomalies.count <= 3, "first occurrence, at most a summary a minute, the summary at close")
        #expect(lines.count < 60, "\(lines.suffix(20))")
        #expect(daemon.stderr.contains("not_a_modem"), "the noisy slot's read ends as not a modem")
        if let cpu { #expect(cpu < Double(seconds) / 2, "a garbage port costs a bounded share of a core") }
    }
}
