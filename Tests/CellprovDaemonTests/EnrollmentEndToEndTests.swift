import CellprovCore
import CellprovSimulator
import CellprovStore
import CellprovTestKit
import CellprovTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The whole chain, as deployed: simulated modems on static ports, cellprovd as a process, its state directory,
/// and a real HTTP receiver on loopback playing the fleet backend.
@Suite(.serialized) struct EnrollmentEndToEndTests {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }

    static let original = SimulatedIdentity(
        imei: luhn("35693803" + "445566"), imsi: "262014455667788", iccid: luhn("894920000445566778"))
    static let swappedSIM = SimulatedIdentity(imsi: "262029988776655", iccid: luhn("894920000998877665"))
    static let liveSIM = SimulatedIdentity(imsi: "262037766554433", iccid: luhn("894920000776655443"))
    static let newIMEI = luhn("86695404" + "778899")

    final class Setup {
        let dir: URL
        let config: URL
        let receiver: EnrollmentReceiver
        var daemon: ChildProcess?

        init(ports: [String], receiver: EnrollmentReceiver, backendExtra: String = "") throws {
            self.receiver = receiver
            dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cellprov-e2e-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            config = dir.appendingPathComponent("cellprovd.toml")
            try """
            [daemon]
            state_directory = "\(dir.path)/state"
            [discovery]
            udev = false
            static_ports = [\(ports.map { "\"\($0)\"" }.joined(separator: ", "))]
            reprobe_interval_seconds = 600
            [backend]
            url = "http://127.0.0.1:\(receiver.port)"
            \(backendExtra)
            [device]
            serial = "GW-E2E-7"
            """.write(to: config, atomically: true, encoding: .utf8)
        }

        var stateDirectory: String { dir.path + "/state" }

        @discardableResult
        func start() throws -> ChildProcess {
            let d = try ChildProcess("cellprovd", ["--config", config.path, "--log-level", "debug"])
            daemon = d
            return d
        }

        /// Waits until the daemon has committed `count` observations in this run.
        func waitForCommits(_ count: Int) async -> Bool {
            await daemon!.waitForStderr { $0.components(separatedBy: "observation committed").count - 1 >= count }
        }

        func stop() async -> Int32? {
            daemon?.signal(SIGTERM)
            return await daemon?.waitForExit(timeout: .seconds(5))
        }

        func events() throws -> [StoredEvent] {
            try StateStore(readOnlyDirectory: stateDirectory).events().reversed()
        }

        func requests(ofType type: String) -> [EnrollmentReceiver.Request] {
            receiver.requests.filter { ($0.json?["type"] as? String) == type }
        }

        func cleanup() {
            if let daemon, daemon.process.isRunning { daemon.signal(SIGKILL) }
            receiver.stop()
            try? FileManager.default.removeItem(at: dir)
        }
    }

    static func waitUntil(_ timeout: Duration = .seconds(10), _ condition: () throws -> Bool) async rethrows -> Bool {
        try await pollUntil(within: timeout, condition)
    }

    @Test func enrollRestartSwapLiveSwapIMEIChangeAndOutageWithSIGKILL() async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.original))
        defer { sim.stop() }
        let setup = try Setup(ports: [sim.path], receiver: try EnrollmentReceiver())
        defer { setup.cleanup() }

        // 1. First run: one `enrolled`, delivered with the documented payload.
        try setup.start()
        #expect(await Self.waitUntil { setup.requests(ofType: "enrolled").count == 1 }, "\(setup.daemon!.stderr)")
        let enrolled = try #require(setup.requests(ofType: "enrolled").first)
        let body = try #require(enrolled.json)
        #expect(enrolled.path == "/v1/enrollments")
        #expect(enrolled.headers["idempotency-key"] == body["event_id"] as? String)
        #expect((body["device"] as? [String: Any])?["serial"] as? String == "GW-E2E-7")
        #expect((body["module"] as? [String: Any])?["slot"] as? String == sim.path)
        #expect((body["module"] as? [String: Any])?["manufacturer"] as? String == "Quectel")
        #expect((body["identity"] as? [String: Any])?["imei"] as? String == Self.original.imei)
        #expect((body["identity"] as? [String: Any])?["iccid"] as? String == Self.original.iccid)
        #expect(body["previous"] is NSNull)
        #expect(body["sequence"] as? Int == 1)
        // Stopped only once the daemon has recorded the answer: a SIGTERM while the request is in flight leaves the
        // event pending, and the next run sends it again under the same idempotency key (at least once, by design).
        #expect(try await Self.waitUntil { try setup.events().allSatisfy { $0.state == .delivered } })
        #expect(await setup.stop() == 0)

        // 2. Restart with the same identity: nothing new.
        try setup.start()
        #expect(await setup.waitForCommits(1))
        #expect(try setup.events().count == 1)
        #expect(await setup.stop() == 0)
        #expect(setup.receiver.requests.count == 1)

        // 3. SIM swapped while the daemon was down: `sim_changed` on restart, with the previous ICCID.
        sim.swapSIM(Self.swappedSIM)
        try setup.start()
        #expect(await Self.waitUntil { setup.requests(ofType: "sim_changed").count == 1 }, "\(setup.daemon!.stderr)")
        let changed = try #require(setup.requests(ofType: "sim_changed").first?.json)
        #expect((changed["previous"] as? [String: Any])?["iccid"] as? String == Self.original.iccid)
        #expect((changed["identity"] as? [String: Any])?["iccid"] as? String == Self.swappedSIM.iccid)
        #expect(changed["sequence"] as? Int == 2)

        // 4. SIM swapped live: the modem's URCs make the daemon read again; `sim_changed` without a restart.
        sim.swapSIM(Self.liveSIM)
        #expect(await Self.waitUntil { setup.requests(ofType: "sim_changed").count == 2 }, "\(setup.daemon!.stderr)")
        let live = try #require(setup.requests(ofType: "sim_changed").last?.json)
        #expect((live["previous"] as? [String: Any])?["iccid"] as? String == Self.swappedSIM.iccid)

        // 5. The module reports another IMEI: `imei_changed`, a red flag.
        sim.swapSIM(SimulatedIdentity(imei: Self.newIMEI, imsi: Self.liveSIM.imsi, iccid: Self.liveSIM.iccid))
        #expect(await Self.waitUntil { setup.requests(ofType: "imei_changed").count == 1 }, "\(setup.daemon!.stderr)")
        let imeiChanged = try #require(setup.requests(ofType: "imei_changed").first?.json)
        #expect((imeiChanged["previous"] as? [String: Any])?["imei"] as? String == Self.original.imei)
        #expect((imeiChanged["identity"] as? [String: Any])?["imei"] as? String == Self.newIMEI)
        #expect(imeiChanged["severity"] as? String == "critical")

        // 6. The backend fails (503) while a swap happens; the daemon is killed; the backend heals; restart:
        //    the event arrives, and every event id is accepted exactly once.
        setup.receiver.setBehaviour(.status(503))
        let before = setup.receiver.requests.count
        sim.swapSIM(Self.swappedSIM)
        #expect(await Self.waitUntil { setup.receiver.requests.count > before }, "\(setup.daemon!.stderr)")
        setup.daemon!.signal(SIGKILL)
        _ = await setup.daemon!.waitForExit()
        let pending = try setup.events().filter { $0.state == .pending }
        #expect(pending.map(\.event.type) == [.simChanged])
        setup.receiver.setBehaviour(.status(201))
        try setup.start()
        #expect(try await Self.waitUntil { try setup.events().allSatisfy { $0.state == .delivered } })
        #expect(await setup.stop() == 0)

        let stored = try setup.events()
        #expect(stored.map(\.event.sequence) == Array(1...stored.count))
        #expect(stored.map(\.event.type) == [.enrolled, .simChanged, .simChanged, .imeiChanged, .simChanged])
        #expect(setup.receiver.acceptedEventIDs == Set(stored.map { $0.event.id.uuidString.lowercased() }))
        let accepted = setup.receiver.requests.filter { $0.headers["x-accepted"] == "1" }
        let perID = Dictionary(grouping: accepted, by: { $0.headers["idempotency-key"] ?? "" })
        #expect(perID.values.allSatisfy { $0.count == 1 }, "an event was accepted twice")

        // `cellprov status` and `cellprov events` read the state: redacted, with the live view and the history.
        let status = try ChildProcess("cellprov", ["status", "--state-directory", setup.stateDirectory])
        #expect(await status.waitForExit() == 0, "\(status.stderr)")
        #expect(status.stdout.contains("present on \(sim.path)"), "\(status.stdout)")
        #expect(status.stdout.contains("enrolled: yes"))
        #expect(status.stdout.contains("last event: #5 sim_changed"), "\(status.stdout)")
        #expect(status.stdout.contains("outbox: 0 events"))
        let history = try ChildProcess("cellprov", ["events", "--state-directory", setup.stateDirectory])
        #expect(await history.waitForExit() == 0)
        #expect(history.stdout.components(separatedBy: "\n").filter { $0.contains("  #") }.count == 5)
        let json = try ChildProcess("cellprov", ["events", "--json", "--state-directory", setup.stateDirectory])
        #expect(await json.waitForExit() == 0)
        #expect(json.stdout.contains(Self.newIMEI), "the --json data channel carries the digits")
        for id in [Self.original, Self.swappedSIM, Self.liveSIM] {
            for secret in id.leakPatterns { #expect(!(status.stdout + history.stdout).contains(secret)) }
        }
        #expect(!(status.stdout + history.stdout).contains(Self.newIMEI))

        // The daemon's log never carried the identifiers.
        let log = setup.daemon!.stderr
        for id in [Self.original, Self.swappedSIM, Self.liveSIM] {
            for secret in id.leakPatterns { #expect(!log.contains(secret)) }
        }
        #expect(!log.contains(Self.newIMEI))
    }

    /// kill -9 at 50 random moments while the SIM keeps changing: the store is never torn (every slot record's
    /// sequence is its last event's, sequences have no gaps, SQLite's integrity check passes), and a final clean
    /// run delivers every event.
    @Test func sigkillAtRandomMomentsNeverTearsTheStateOrLosesAnEvent() async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.original))
        defer { sim.stop() }
        let setup = try Setup(ports: [sim.path], receiver: try EnrollmentReceiver())
        defer { setup.cleanup() }

        let swapper = Task {
            var flip = false
            while !Task.isCancelled {
                sim.swapSIM(flip ? Self.swappedSIM : Self.liveSIM)
                flip.toggle()
                try? await Task.sleep(for: .milliseconds(Int.random(in: 20...120)))
            }
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let daemon = try setup.start()
            try? await Task.sleep(for: .milliseconds(Int.random(in: 5...400, using: &generator)))
            daemon.signal(SIGKILL)
            _ = await daemon.waitForExit()
        }
        swapper.cancel()

        let store = try StateStore(readOnlyDirectory: setup.stateDirectory)
        let events = try store.events().reversed().map(\.event)
        #expect(!events.isEmpty)
        #expect(events.map(\.sequence) == Array(1...events.count), "a gap or a duplicate in the sequence")
        let records = try store.slotRecords()
        #expect(records.count == 1)
        #expect(records.first?.sequence == events.last?.sequence, "a record without its events or the reverse")

        // A clean run delivers everything the killed runs left in the outbox.
        try setup.start()
        #expect(try await Self.waitUntil(.seconds(20)) {
            try StateStore(readOnlyDirectory: setup.stateDirectory).outboxDepth() == 0
        })
        _ = await setup.stop()
        let delivered = try StateStore(readOnlyDirectory: setup.stateDirectory).events().map(\.event)
        #expect(setup.receiver.acceptedEventIDs == Set(delivered.map { $0.id.uuidString.lowercased() }))
    }

    // MARK: - Damaged and lost state, refused credentials

    enum StateDamage: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case truncated, headerOverwritten, directory, zeroLength, missing
        var testDescription: String { rawValue }
        var isLoss: Bool { self == .zeroLength || self == .missing }
    }

    /// Two events waiting (the backend answered 503), then the state database is damaged or lost while the daemon
    /// is down. Damaged: the restarted daemon salvages them and the receiver gets both, oldest first, with their
    /// original event ids and sequences; no module is enrolled again; the next change carries `state_lost`.
    /// Lost (nothing left to read): a critical line, and the new `enrolled` continues the slot's numbering and
    /// carries `state_lost`.
    @Test(arguments: StateDamage.allCases)
    func damagedOrLostStateIsSalvagedOrAnnounced(damage: StateDamage) async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.original))
        defer { sim.stop() }
        let setup = try Setup(ports: [sim.path], receiver: try EnrollmentReceiver(behaviour: .status(503)))
        defer { setup.cleanup() }
        func pending() -> Int { (try? StateStore(readOnlyDirectory: setup.stateDirectory).outboxDepth()) ?? 0 }

        try setup.start()
        #expect(await Self.waitUntil { pending() == 1 }, "\(setup.daemon!.stderr)")
        sim.swapSIM(Self.swappedSIM)
        #expect(await Self.waitUntil { pending() == 2 }, "\(setup.daemon!.stderr)")
        let db = setup.stateDirectory + "/state.db"
        var walCopy: String?
        if damage == .directory {
            // Killed: the write-ahead log (holding the recent commits) stays beside the database.
            setup.daemon!.signal(SIGKILL)
            _ = await setup.daemon!.waitForExit()
            walCopy = setup.dir.path + "/wal-copy"
            try FileManager.default.copyItem(atPath: db + "-wal", toPath: walCopy!)
        } else {
            #expect(await setup.stop() == 0)
            // Checkpointed into state.db (the stopped daemon may leave its WAL), so the damage hits the data.
            do { _ = try StateStore(directory: setup.stateDirectory) }
        }
        let before = try setup.events()
        #expect(before.map(\.event.type) == [.enrolled, .simChanged])
        #expect(before.allSatisfy { $0.state == .pending })
        switch damage {
        case .truncated: try DatabaseDamage.truncated.apply(to: db, walCopy: nil)
        case .headerOverwritten: try DatabaseDamage.headerOverwritten.apply(to: db, walCopy: nil)
        case .directory: try DatabaseDamage.directory.apply(to: db, walCopy: walCopy)
        case .zeroLength, .missing:
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + suffix) }
            if damage == .zeroLength {
                #expect(truncate(db, 0) == 0)
            } else {
                try FileManager.default.removeItem(atPath: db)
            }
        }

        setup.receiver.setBehaviour(.status(201))
        let daemon = try setup.start()
        let accepted = { setup.receiver.requests.filter { $0.headers["x-accepted"] == "1" } }
        if damage.isLoss {
            #expect(await daemon.waitForStderr { $0.contains("the daemon's state was lost") }, "\(daemon.stderr)")
            #expect(daemon.stderr.contains("2 event(s) of history"))
            #expect(await Self.waitUntil { accepted().count == 1 }, "\(daemon.stderr)")
            let body = try #require(accepted().first?.json)
            #expect(body["type"] as? String == "enrolled")
            #expect(body["sequence"] as? Int == 3, "the slot's numbering continues")
            #expect(!before.map { $0.event.id.uuidString.lowercased() }.contains(body["event_id"] as? String ?? ""))
            let lost = try #require(body["state_lost"] as? [String: Any])
            #expect(lost["reason"] as? String == (damage == .zeroLength ? "database_empty" : "database_missing"))
            #expect(lost["last_sequence"] as? Int == 2)
            #expect(lost["events_lost"] as? Int == 2)
        } else {
            #expect(await daemon.waitForStderr { $0.contains("damaged state database") }, "\(daemon.stderr)")
            #expect(daemon.stderr.contains("salvaged 2 event(s) (2 waiting"), "\(daemon.stderr)")
            #expect(daemon.stderr.contains("0 event(s) lost"))
            #expect(await Self.waitUntil { accepted().count == 2 }, "\(daemon.stderr)")
            let got = accepted().compactMap(\.json)
            #expect(got.map { $0["event_id"] as? String } == before.map { $0.event.id.uuidString.lowercased() })
            #expect(got.map { $0["sequence"] as? Int } == [1, 2])
            #expect(got.map { $0["type"] as? String } == ["enrolled", "sim_changed"])
            #expect(got.allSatisfy { $0["state_lost"] == nil }, "salvaged events are sent as they were")
            // The record was salvaged: no second enrollment; the next change carries the notice.
            #expect(await setup.waitForCommits(1))
            sim.swapSIM(Self.liveSIM)
            #expect(await Self.waitUntil { accepted().count == 3 }, "\(daemon.stderr)")
            let next = try #require(accepted().last?.json)
            #expect(next["type"] as? String == "sim_changed")
            #expect(next["sequence"] as? Int == 3)
            let lost = try #require(next["state_lost"] as? [String: Any])
            #expect(lost["reason"] as? String == "database_damaged")
            #expect(lost["events_salvaged"] as? Int == 2)
            #expect(lost["events_lost"] as? Int == 0)
            #expect(lost["last_sequence"] as? Int == 2)
            #expect(accepted().filter { ($0.json?["type"] as? String) == "enrolled" }.count == 1, "enrolled again")
        }
        #expect(await setup.stop() == 0)
        let status = try ChildProcess("cellprov", ["status", "--state-directory", setup.stateDirectory])
        #expect(await status.waitForExit() == 0)
        let what = damage == .zeroLength ? "empty" : damage == .missing ? "missing" : "damaged"
        #expect(status.stdout.contains("state loss: the database was \(what)"), "\(status.stdout)")
        let log = daemon.stderr
        for id in [Self.original, Self.swappedSIM, Self.liveSIM] {
            for secret in id.leakPatterns { #expect(!log.contains(secret)) }
        }
    }

    /// 401: the event waits (retried with backoff), the log and `cellprov status` name the cause; a renewed token
    /// file and SIGHUP deliver it with its original event id.
    @Test func refusedCredentialsWaitUntilSIGHUPRereadsTheTokenFile() async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.original))
        defer { sim.stop() }
        let receiver = try EnrollmentReceiver(behaviour: .status(401))
        let tokenDirTemporary = try TemporaryDirectory(prefix: "cellprov-token")
        let tokenDir = URL(fileURLWithPath: tokenDirTemporary.path)
        let token = tokenDir.appendingPathComponent("token").path
        try "old-token\n".write(toFile: token, atomically: true, encoding: .utf8)
        chmod(token, 0o600)
        let setup = try Setup(ports: [sim.path], receiver: receiver, backendExtra: "token_file = \"\(token)\"")
        defer { setup.cleanup() }

        let daemon = try setup.start()
        #expect(
            await daemon.waitForStderr { $0.contains("backend refuses our credentials (HTTP 401)") },
            "\(daemon.stderr)")
        #expect(await Self.waitUntil { receiver.requests.count >= 2 }, "retried")
        #expect(receiver.requests.allSatisfy { $0.headers["authorization"] == "Bearer old-token" })
        let waiting = try setup.events()
        #expect(waiting.map(\.state) == [.pending])
        let status = try ChildProcess("cellprov", ["status", "--state-directory", setup.stateDirectory])
        #expect(await status.waitForExit() == 0)
        #expect(status.stdout.contains("backend refuses our credentials"), "\(status.stdout)")

        // The token is renewed; SIGHUP re-reads it and delivery resumes at once.
        try "new-token\n".write(toFile: token, atomically: true, encoding: .utf8)
        chmod(token, 0o600)
        receiver.setBehaviour(.status(201))
        daemon.signal(SIGHUP)
        #expect(await Self.waitUntil(.seconds(5)) { receiver.acceptedEventIDs.count == 1 }, "\(daemon.stderr)")
        let accepted = try #require(receiver.requests.first { $0.headers["x-accepted"] == "1" })
        #expect(accepted.headers["authorization"] == "Bearer new-token")
        #expect(accepted.headers["idempotency-key"] == waiting.first?.event.id.uuidString.lowercased())
        #expect(daemon.stderr.contains("credentials (token file, certificates) read again"))
        let after = try ChildProcess("cellprov", ["status", "--state-directory", setup.stateDirectory])
        #expect(await after.waitForExit() == 0)
        #expect(!after.stdout.contains("refuses"), "\(after.stdout)")
        #expect(await setup.stop() == 0)
        for secret in Self.original.leakPatterns { #expect(!daemon.stderr.contains(secret)) }
        #expect(!daemon.stderr.contains("old-token") && !daemon.stderr.contains("new-token"))
    }

    /// `cellprov events --json` spells event ids in lower case (as the payload, the Idempotency-Key and the
    /// journal do); `cellprov events --requeue ID` puts a rejected event back in the outbox.
    @Test func eventsJSONIsLowerCaseAndRequeueWorks() async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.original))
        defer { sim.stop() }
        let setup = try Setup(ports: [sim.path], receiver: try EnrollmentReceiver(behaviour: .status(422)))
        defer { setup.cleanup() }
        try setup.start()
        #expect(await Self.waitUntil { (try? setup.events().first?.state) == .rejected }, "\(setup.daemon!.stderr)")
        #expect(await setup.stop() == 0)
        let id = try #require(try setup.events().first?.event.id)
        let lower = id.uuidString.lowercased()

        let json = try ChildProcess("cellprov", ["events", "--json", "--state-directory", setup.stateDirectory])
        #expect(await json.waitForExit() == 0)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["id"] as? String == lower)
        #expect(!json.stdout.contains(id.uuidString), "an upper-case id")
        #expect(setup.receiver.requests.first?.headers["idempotency-key"] == lower)

        let requeue = try ChildProcess(
            "cellprov", ["events", "--requeue", id.uuidString, "--state-directory", setup.stateDirectory])
        #expect(await requeue.waitForExit() == 0, "\(requeue.stderr)")
        #expect(requeue.stdout.contains(lower))
        #expect(try setup.events().first?.state == .pending)
        let again = try ChildProcess(
            "cellprov", ["events", "--requeue", lower, "--state-directory", setup.stateDirectory])
        #expect(await again.waitForExit() == 1, "not rejected any more")
        let bad = try ChildProcess(
            "cellprov", ["events", "--requeue", "nonsense", "--state-directory", setup.stateDirectory])
        #expect(await bad.waitForExit() == 64)

        // The backend now takes it: the requeued event goes with its original id.
        setup.receiver.setBehaviour(.status(201))
        try setup.start()
        #expect(await Self.waitUntil { setup.receiver.acceptedEventIDs == [lower] }, "\(setup.daemon!.stderr)")
        #expect(await setup.stop() == 0)
    }
}
