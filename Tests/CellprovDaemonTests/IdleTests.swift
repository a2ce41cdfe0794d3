import CellprovSimulator
import CellprovTestKit
import Foundation
import Testing

@testable import CellprovDaemon
@testable import CellprovModemManager
@testable import CellprovSystemd

#if canImport(Glibc)
import Glibc
#endif

/// Idle without wake-ups (issue 8; docs/decisions.md "Idle without wake-ups"): the bus socket watch, the
/// executor's deadline arithmetic, and the daemon process itself staying asleep between triggers.
@Suite struct BusSocketWatchTests {
    @Test func socketPathOfAnAddress() {
        let standard = "/run/dbus/system_bus_socket"
        #expect(BusSocketWatch.socketPath(address: "unix:path=\(standard)") == standard)
        #expect(BusSocketWatch.socketPath(address: "unix:abstract=/x;unix:guid=1,path=/tmp/a%20b") == "/tmp/a b")
        #expect(BusSocketWatch.socketPath(address: "tcp:host=localhost,port=1") == nil)
        #expect(BusSocketWatch.socketPath(address: "") == nil)
        #expect(BusSocketWatch(address: "unix:abstract=/x") == nil)
    }

    @Test func watchWakesOnlyForTheAwaitedEntry() throws {
        let temporary = try TemporaryDirectory(prefix: "busw")
        let dir = URL(fileURLWithPath: temporary.path)
        // The socket's directory does not exist yet: the nearest existing ancestor is watched for it.
        let watch = try #require(BusSocketWatch(address: "unix:path=\(dir.path)/run/bus"))
        #expect(watch.directory == dir.path)
        #expect(watch.awaited == "run")
        #expect(!watch.consume())
        let unrelated = dir.appendingPathComponent("unrelated").path
        #expect(FileManager.default.createFile(atPath: unrelated, contents: nil))
        #expect(!watch.consume())
        try FileManager.default.createDirectory(
            at: dir.appendingPathComponent("run"), withIntermediateDirectories: false)
        #expect(watch.consume())
        #expect(!watch.consume())
    }
}

@Suite struct DaemonExecutorTests {
    @Test func deadlineArithmetic() {
        #expect(DaemonExecutor.nanoseconds(from: (10, 500), to: (12, 100)) == 1_999_999_600)
        #expect(DaemonExecutor.nanoseconds(from: (10, 500), to: (10, 400)) == 0)
        #expect(DaemonExecutor.nanoseconds(from: (10, 0), to: (9, 999_999_999)) == 0)
        #expect(DaemonExecutor.nanoseconds(from: (0, 0), to: (Int64.max, 0)) == Int64.max)
        #expect(DaemonExecutor.nanoseconds(from: (Int64.min, 0), to: (Int64.max, 0)) == Int64.max)
    }
}

@Suite(.serialized) struct IdleDaemonTests {
    /// Context switches of the threads of `pid`, by thread id.
    static func switches(_ pid: Int32) -> [String: Int] {
        var result: [String: Int] = [:]
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        for tid in tasks {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8)
            else { continue }
            var total = 0
            for line in status.split(separator: "\n") where line.contains("ctxt_switches:") {
                total += Int(line.split(separator: "\t").last.map(String.init) ?? "") ?? 0
            }
            result[tid] = total
        }
        return result
    }

    /// cellprovd with one modem and no system bus: it waits for the bus socket without retrying, connects as soon
    /// as a dbus-daemon creates it, and between triggers none of its threads wakes (no libdispatch pool monitor).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/dbus-daemon")))
    func idleDaemonSleepsAndFindsTheBusWhenItAppears() async throws {
        let modem = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: DaemonProcessTests.first))
        defer { modem.stop() }
        let fixture = try DaemonProcessTests.Fixture(staticPorts: [modem.path])
        defer { fixture.remove() }
        let busPath = fixture.dir.appendingPathComponent("bus/system_bus_socket").path
        let daemon = try ChildProcess(
            "cellprovd", ["--config", fixture.config.path, "--log-level", "debug"],
            environment: ["DBUS_SYSTEM_BUS_ADDRESS": "unix:path=\(busPath)"])
        defer { daemon.signal(SIGTERM) }
        #expect(await daemon.waitForStderr { $0.contains("identity read:") }, "\(daemon.stderr)")
        #expect(await daemon.waitForStderr { $0.contains("waiting for the system bus socket") }, "\(daemon.stderr)")
        // After start-up's burst: the memory release 5 s later, then dispatch's idle worker threads end (5 s).
        #expect(
            await daemon.waitForStderr(timeout: .seconds(15)) { $0.contains("memory released") }, "\(daemon.stderr)")
        try await Task.sleep(for: .seconds(6))

        let pid = daemon.process.processIdentifier
        let before = Self.switches(pid)
        try await Task.sleep(for: .seconds(4))
        let after = Self.switches(pid)
        var woke = 0
        for (tid, count) in after {
            if let earlier = before[tid] { woke += count - earlier }
        }
        // With libdispatch's pool monitor: at least 4 (1 Hz); without it, none. (Under a sanitizer its runtime's
        // own background thread wakes about ten times a second: nothing to measure there.)
        if !Sanitizers.active {
            #expect(woke <= 1, "threads woke \(woke) times in 4 idle seconds: \(before) -> \(after)")
        }

        // The bus appears: the daemon connects at once (its retry interval would be 30 s under auto).
        try FileManager.default.createDirectory(
            atPath: (busPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let bus = Process()
        bus.executableURL = URL(fileURLWithPath: "/usr/bin/dbus-daemon")
        bus.arguments = ["--session", "--nofork", "--nopidfile", "--address=unix:path=\(busPath)"]
        // Not the test runner's output: a bus that outlived the test would hold it open.
        bus.standardOutput = FileHandle.nullDevice
        bus.standardError = FileHandle.nullDevice
        try bus.run()
        defer {
            kill(bus.processIdentifier, SIGKILL)  // dbus-daemon --session ignores SIGTERM here
            bus.waitUntilExit()
        }
        #expect(
            await daemon.waitForStderr(timeout: .seconds(5)) { $0.contains("ModemManager is not on the system bus") },
            "\(daemon.stderr)")
    }
}
