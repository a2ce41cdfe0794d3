import CellprovCore
import CellprovSimulator
import CellprovTestKit
import CellprovStore
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// cellprovd as systemd runs it, against simulated modems on static ports: start, SIM swap by URC, unplug,
/// SIGHUP, SIGTERM, sd_notify, and the leak scan of its whole log output.
@Suite(.serialized) struct DaemonProcessTests {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }

    static let first = SimulatedIdentity(
        imei: luhn("35693803" + "111111"), imsi: "262011111111111", iccid: luhn("894920000111111111"))
    static let second = SimulatedIdentity(
        imei: luhn("86695404" + "222222"), imsi: "310260222222222", iccid: luhn("8901260222222222222"))
    static let swapped = SimulatedIdentity(
        imei: nil, imsi: "262023333333333", iccid: luhn("894920000333333333"))

    struct Fixture {
        let dir: URL
        let config: URL

        init(staticPorts: [String], extra: String = "") throws {
            dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cellprovd-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            config = dir.appendingPathComponent("cellprovd.toml")
            let ports = staticPorts.map { "\"\($0)\"" }.joined(separator: ", ")
            try """
            [daemon]
            state_directory = "\(dir.path)/state"
            [discovery]
            udev = false
            static_ports = [\(ports)]
            reprobe_interval_seconds = 600
            [device]
            serial = "GW-TEST-1"
            \(extra)
            """.write(to: config, atomically: true, encoding: .utf8)
        }

        func reference(_ kind: String, _ value: String) throws -> String {
            let key = try Data(contentsOf: dir.appendingPathComponent("state/pseudonym.key"))
            return Pseudonymizer(key: [UInt8](key)).reference(kind: kind, value: value)
        }

        func remove() { try? FileManager.default.removeItem(at: dir) }
    }

    static func count(_ needle: String, in haystack: String) -> Int {
        haystack.components(separatedBy: needle).count - 1
    }

    @Test func readsStaticPortsNoticesSwapSurvivesUnplugAndStopsOnSIGTERM() async throws {
        let a = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.first))
        let b = try ModemSimulator(SimulatorOptions(profile: .telit, identity: Self.second))
        defer { a.stop(); b.stop() }
        let fixture = try Fixture(staticPorts: [a.path, b.path])
        defer { fixture.remove() }
        let notify = try NotifyListener()
        let daemon = try ChildProcess(
            "cellprovd", ["--config", fixture.config.path, "--log-level", "debug"],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"])

        // Both modems read at start.
        #expect(await daemon.waitForStderr { Self.count("identity read:", in: $0) >= 2 }, "\(daemon.stderr)")
        // READY follows the start-up reads, which end with each module's SIM report setup (after its first
        // identity is committed and logged).
        #expect(await EnrollmentEndToEndTests.waitUntil { notify.messages().contains { $0.contains("READY=1") } })

        // SIM swap on A, announced by the modem's URCs: the daemon reads again and sees the new ICCID.
        let newICCIDRef = try fixture.reference("iccid", Self.swapped.iccid!)
        a.swapSIM(Self.swapped)
        #expect(await daemon.waitForStderr { $0.contains("ref \(newICCIDRef)") }, "\(daemon.stderr)")
        #expect(daemon.stderr.contains("reason=\"SIM event\""))

        // B is unplugged mid-session: the daemon says so and keeps serving A.
        b.unplug()
        #expect(await daemon.waitForStderr { $0.contains("modem port closed") }, "\(daemon.stderr)")
        #expect(daemon.process.isRunning)
        let before = Self.count("identity read:", in: daemon.stderr)

        // SIGHUP: every module is read again (A answers; B is gone).
        daemon.signal(SIGHUP)
        #expect(await daemon.waitForStderr { Self.count("identity read:", in: $0) > before }, "\(daemon.stderr)")
        #expect(daemon.stderr.contains("reason=SIGHUP"))

        // The watchdog is fed, STATUS is a one-line summary.
        #expect(await notify.waitFor { $0.contains { m in m.contains("WATCHDOG=1") } })
        #expect(notify.messages().contains { $0.contains("STATUS=2 modems") })

        // SIGTERM: STOPPING=1 and exit 0 within 5 s.
        let clock = ContinuousClock()
        let start = clock.now
        daemon.signal(SIGTERM)
        let status = await daemon.waitForExit(timeout: .seconds(5))
        #expect(status == 0)
        #expect(clock.now - start < .seconds(5))
        #expect(notify.messages().contains { $0.contains("STOPPING=1") })

        // Nothing the daemon logged carries identifier digits.
        let log = daemon.stderr + daemon.stdout
        for id in [Self.first, Self.second, Self.swapped] {
            for secret in id.leakPatterns {
                #expect(!log.contains(secret), "the daemon log leaked \(secret.count) identifier digits")
            }
        }
    }

    @Test func checkValidatesAndExits() async throws {
        let fixture = try Fixture(staticPorts: ["/dev/ttyS1"])
        defer { fixture.remove() }
        let run = try ChildProcess("cellprovd", ["--config", fixture.config.path, "--check"])
        #expect(await run.waitForExit() == 0)
        #expect(run.stdout.contains("valid"))
    }

    struct BadConfig: Sendable, CustomTestStringConvertible {
        var name: String
        var text: String
        var key: String?
        var line: Int?
        var testDescription: String { name }
    }

    static let badConfigs: [BadConfig] = [
        BadConfig(name: "unknown key", text: "[discovery]\nudev = true\nprobe_unknwon = true\n",
                  key: "discovery.probe_unknwon", line: 3),
        BadConfig(name: "unknown table", text: "[daemon]\n[modems]\nx = 1\n", key: "modems", line: 2),
        BadConfig(name: "wrong type", text: "[discovery]\nreprobe_interval_seconds = \"soon\"\n",
                  key: "discovery.reprobe_interval_seconds", line: 2),
        BadConfig(name: "static_ports not strings", text: "[discovery]\nstatic_ports = [1, 2]\n",
                  key: "discovery.static_ports", line: 2),
        BadConfig(name: "missing token file",
                  text: "[backend]\nurl = \"https://enroll.example.net\"\ntoken_file = \"/nonexistent/token\"\n",
                  key: "backend.token_file", line: 3),
        BadConfig(name: "plain http to a remote host", text: "[backend]\nurl = \"http://enroll.example.net\"\n",
                  key: "backend.url", line: 2),
        BadConfig(name: "missing serial file", text: "[device]\nserial_file = \"/nonexistent/serial\"\n",
                  key: "device.serial_file", line: 2),
        BadConfig(name: "syntax error", text: "[daemon\nstate_directory = 1\n", key: nil, line: 1),
    ]

    @Test(arguments: badConfigs)
    func configErrorsNameTheKeyAndExitNonZero(bad: BadConfig) async throws {
        let temporary = try TemporaryDirectory(prefix: "cellprovd")
        let dir = URL(fileURLWithPath: temporary.path)
        let path = dir.appendingPathComponent("bad.toml")
        try bad.text.write(to: path, atomically: true, encoding: .utf8)
        for extra in [[], ["--check"]] {
            let run = try ChildProcess("cellprovd", ["--config", path.path] + extra)
            #expect(await run.waitForExit() == 78, "\(run.stderr)")
            if let key = bad.key { #expect(run.stderr.contains(key), "\(run.stderr)") }
            if let line = bad.line { #expect(run.stderr.contains("bad.toml:\(line)"), "\(run.stderr)") }
        }
    }

    @Test func tokenFileReadableByOthersIsRefused() async throws {
        let temporary = try TemporaryDirectory(prefix: "cellprovd")
        let dir = URL(fileURLWithPath: temporary.path)
        let token = dir.appendingPathComponent("token")
        try "secret\n".write(to: token, atomically: true, encoding: .utf8)
        chmod(token.path, 0o644)
        let path = dir.appendingPathComponent("c.toml")
        try "[backend]\nurl = \"https://enroll.example.net\"\ntoken_file = \"\(token.path)\"\n"
            .write(to: path, atomically: true, encoding: .utf8)
        let run = try ChildProcess("cellprovd", ["--config", path.path, "--check"])
        #expect(await run.waitForExit() == 78)
        #expect(run.stderr.contains("chmod 600"))
        chmod(token.path, 0o600)
        let ok = try ChildProcess("cellprovd", ["--config", path.path, "--check"])
        #expect(await ok.waitForExit() == 0, "\(ok.stderr)")
    }
}

/// A NOTIFY_SOCKET the test owns: an AF_UNIX datagram socket collecting what sd_notify sends.
final class NotifyListener: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var thread: Thread?

    init() throws {
        path = NSTemporaryDirectory() + "cellprov-notify-\(UUID().uuidString.prefix(8))"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw POSIXError(.EADDRINUSE) }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let t = Thread { [weak self] in self?.receiveLoop() }
        thread = t
        t.start()
    }

    private func receiveLoop() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !Thread.current.isCancelled {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 {
                let text = String(decoding: buffer[0..<n], as: UTF8.self)
                lock.lock()
                received.append(text)
                lock.unlock()
            }
        }
        close(fd)
    }

    func messages() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        return received
    }

    func waitFor(timeout: Duration = .seconds(5), _ predicate: ([String]) -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: timeout)
        while clock.now < end {
            if predicate(messages()) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return predicate(messages())
    }

    deinit {
        thread?.cancel()
        unlink(path)
    }
}

/// A full disk under the state directory (a 1 MiB tmpfs, root only): the commit fails with a clear error and
/// nothing is lost: once there is room again, the next read records the change it could not record before.
@Suite(.serialized) struct FullDiskTests {
    static func run(_ tool: String, _ arguments: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// Root, and tmpfs mounts allowed here (not in every container).
    static let canMount: Bool = {
        guard geteuid() == 0 else { return false }
        let dir = NSTemporaryDirectory() + "cellprov-mount-probe-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]) == 0 else { return false }
        return run("/bin/umount", [dir]) == 0
    }()

    @Test(.enabled(if: canMount)) func fullDiskIsReportedAndTheChangeIsRecordedLater() async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: DaemonProcessTests.first))
        defer { sim.stop() }
        let fixture = try DaemonProcessTests.Fixture(staticPorts: [sim.path])
        defer { fixture.remove() }
        let state = fixture.dir.appendingPathComponent("state")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        #expect(Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", state.path]) == 0)
        defer { _ = Self.run("/bin/umount", ["-l", state.path]) }

        let daemon = try ChildProcess("cellprovd", ["--config", fixture.config.path, "--log-level", "debug"])
        #expect(await daemon.waitForStderr { $0.contains("observation committed events=1") }, "\(daemon.stderr)")

        // Fill the file system to the last byte.
        let filler = state.appendingPathComponent("filler")
        #expect(FileManager.default.createFile(atPath: filler.path, contents: nil))
        let handle = try FileHandle(forWritingTo: filler)
        let chunk = Data(count: 4096)
        while (try? handle.write(contentsOf: chunk)) != nil {}
        try? handle.close()

        sim.swapSIM(DaemonProcessTests.swapped)
        #expect(await daemon.waitForStderr { $0.contains("cannot record the observation") }, "\(daemon.stderr)")
        #expect(daemon.stderr.contains("disk is full"))
        #expect(daemon.process.isRunning)

        // Room again; the next read (SIGHUP here; the daemon also retries on its own after 30 s) records it.
        try FileManager.default.removeItem(at: filler)
        daemon.signal(SIGHUP)
        #expect(await daemon.waitForStderr { $0.contains("SIM changed:") }, "\(daemon.stderr)")
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit() == 0)
        let events = try StateStore(readOnlyDirectory: state.path).events().reversed().map(\.event.type)
        #expect(events == [.enrolled, .simChanged])
    }
}
