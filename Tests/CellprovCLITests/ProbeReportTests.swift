import CellprovCore
import CellprovEnrollmentAPI
import CellprovSimulator
import CellprovTestKit
import Foundation
import Testing

/// `cellprov probe --device-serial SN --report URL`: the factory station's records, posted by the real executable
/// from simulated modems (PTYs) to the real loopback receiver, as a station does.
@Suite struct ProbeReportTests {
    static let identities = CLITests.identities
    static let serial = "GW-FAB-0042"

    /// A temporary directory with a token file of the given mode.
    final class TokenDir {
        let dir: URL
        let token = "cps_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        var path: String { dir.appendingPathComponent("station.token").path }

        init(mode: Int = 0o600) throws {
            dir = URL(fileURLWithPath: NSTemporaryDirectory())
                .appendingPathComponent("cellprov-token-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try (token + "\n").write(toFile: path, atomically: false, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        }

        deinit { try? FileManager.default.removeItem(at: dir) }
    }

    static func simulators(_ count: Int, quirks: [Int: SimulatorQuirks] = [:]) throws -> [ModemSimulator] {
        try (0..<count).map { i in
            try ModemSimulator(
                SimulatorOptions(
                    profile: VendorProfile.allCases[i], identity: identities[i],
                    quirks: quirks[i] ?? SimulatorQuirks()))
        }
    }

    static func probe(_ ports: [String], receiver: EnrollmentReceiver, token: TokenDir?, extra: [String] = [])
        async throws -> CLI.Result
    {
        var arguments = ["probe", "--json", "--device-serial", serial, "--report", "http://\(receiver.url)"]
        if let token { arguments += ["--token-file", token.path] }
        return try await CLI.run(arguments + extra + ports)
    }

    /// The JSON lines of stdout, by port.
    static func lines(_ run: CLI.Result) throws -> [String: [String: Any]] {
        var out: [String: [String: Any]] = [:]
        for line in run.stdout.split(separator: "\n") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            out[try #require(object["port"] as? String)] = object
        }
        return out
    }

    /// No IMEI, IMSI or ICCID (nor their serial parts) and no token in what a person sees.
    static func expectNoLeak(_ text: String, token: TokenDir?, _ place: String) {
        for id in identities {
            for secret in [id.imei, String(id.imei!.dropFirst(8)), id.imsi, String(id.imsi!.dropFirst(5)), id.iccid] {
                if let secret { #expect(!text.contains(secret), "\(place) leaks an identifier") }
            }
        }
        if let token { #expect(!text.contains(token.token), "\(place) leaks the token") }
    }

    @Test func validPortsAreReportedAsManufacturedRecordsWithTheToken() async throws {
        let sims = try Self.simulators(2)
        defer { sims.forEach { $0.stop() } }
        let receiver = try EnrollmentReceiver()
        defer { receiver.stop() }
        let token = try TokenDir()

        let run = try await Self.probe(sims.map(\.path), receiver: receiver, token: token, extra: ["-vv"])
        #expect(run.status == 0, "\(run.stderr)")
        Self.expectNoLeak(run.stderr, token: token, "stderr")
        #expect(!run.stdout.contains(token.token))

        let requests = receiver.requests
        #expect(requests.count == 2)
        let lines = try Self.lines(run)
        for (sim, id) in zip(sims, Self.identities) {
            let request = try #require(
                requests.first { ($0.json?["module"] as? [String: Any])?["slot"] as? String == sim.path })
            #expect(request.method == "POST")
            #expect(request.path == "/v1/enrollments")
            #expect(request.headers["authorization"] == "Bearer \(token.token)")
            #expect(request.headers["content-type"] == "application/json")
            #expect(request.headers["user-agent"]?.wholeMatch(of: /cellprov\/[0-9A-Za-z.+-]+/) != nil)
            let body = try EnrollmentRequest.decode([UInt8](request.body))
            #expect(body.type == APIEventType.manufactured.rawValue)
            #expect(EnrollmentAPI.eventTypes.contains(body.type))
            #expect(body.severity == "info")
            #expect(body.sequence == 1)
            #expect(body.device.serial == Self.serial)
            #expect(body.identity == EnrollmentRequest.Identity(imei: id.imei, imsi: id.imsi, iccid: id.iccid))
            #expect(body.previous == nil)
            #expect(body.references == nil)
            #expect(request.json?.keys.contains("references") == false)
            #expect(body.module.slot == sim.path)
            #expect(body.module.source == "at")
            #expect(body.module.manufacturer != nil)
            #expect(body.module.model != nil)
            #expect(body.eventID.wholeMatch(of: /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/) != nil)
            #expect(request.headers["idempotency-key"] == body.eventID)
            #expect(ISO8601DateFormatter().date(from: body.occurredAt) != nil)

            let line = try #require(lines[sim.path])
            let report = try #require(line["report"] as? [String: Any])
            #expect(report["status"] as? Int == 201)
            #expect(report["outcome"] as? String == "stored")
            #expect(report["event_id"] as? String == body.eventID)
            #expect(report["attempts"] as? Int == 1)
            #expect(report["reason"] == nil)
        }
        #expect(Set(requests.compactMap { $0.headers["idempotency-key"] }).count == 2, "each record its own event id")
    }

    /// The receiver's answer decides the outcome and the exit status; only transient answers are retried, with
    /// the same event id.
    @Test(arguments: [
        (409, Int32(0), "duplicate", 1), (401, 3, "rejected", 1), (403, 3, "rejected", 1), (422, 3, "rejected", 1),
        (404, 3, "rejected", 1), (503, 4, "failed", 3), (429, 4, "failed", 3), (302, 4, "failed", 1),
    ])
    func answers(status: Int, exit: Int32, outcome: String, attempts: Int) async throws {
        let sims = try Self.simulators(1)
        defer { sims.forEach { $0.stop() } }
        let receiver = try EnrollmentReceiver(behaviour: .status(status))
        defer { receiver.stop() }
        let token = try TokenDir()
        let run = try await Self.probe(sims.map(\.path), receiver: receiver, token: token)
        #expect(run.status == exit, "\(run.stderr)")
        let report = try #require(try Self.lines(run)[sims[0].path]?["report"] as? [String: Any])
        #expect(report["status"] as? Int == status)
        #expect(report["outcome"] as? String == outcome)
        #expect(report["attempts"] as? Int == attempts)
        #expect(receiver.requests.count == attempts)
        #expect(Set(receiver.requests.compactMap { $0.headers["idempotency-key"] }) == [report["event_id"] as? String])
        if exit != 0 { #expect((report["reason"] as? String)?.hasPrefix("HTTP \(status)") == true) }
        Self.expectNoLeak(run.stderr, token: token, "stderr")
    }

    /// A refusal with a body far past what is read: the status still decides, the reason is cut to 200 characters.
    @Test func aHugeAnswerBodyIsCutNotAFailure() async throws {
        let sims = try Self.simulators(1)
        defer { sims.forEach { $0.stop() } }
        let receiver = try EnrollmentReceiver(behaviour: .status(422))
        defer { receiver.stop() }
        receiver.setResponseBody(String(repeating: "no such unit; ", count: 20_000))
        let run = try await Self.probe(sims.map(\.path), receiver: receiver, token: nil)
        #expect(run.status == 3, "\(run.stderr)")
        let report = try #require(try Self.lines(run)[sims[0].path]?["report"] as? [String: Any])
        #expect(report["status"] as? Int == 422)
        #expect(report["outcome"] as? String == "rejected")
        #expect(report["attempts"] as? Int == 1)
        #expect(((report["reason"] as? String)?.count ?? 0) <= "HTTP 422: ".count + 200)
    }

    @Test func aTransientFailureIsRetriedAndThenStored() async throws {
        let sims = try Self.simulators(1)
        defer { sims.forEach { $0.stop() } }
        let receiver = try EnrollmentReceiver()
        defer { receiver.stop() }
        receiver.enqueue([.status(503), .status(500)])
        let run = try await Self.probe(sims.map(\.path), receiver: receiver, token: nil)
        #expect(run.status == 0, "\(run.stderr)")
        let report = try #require(try Self.lines(run)[sims[0].path]?["report"] as? [String: Any])
        #expect(report["outcome"] as? String == "stored")
        #expect(report["attempts"] as? Int == 3)
        #expect(receiver.requests.count == 3)
        #expect(receiver.idempotencyKeyCounts.values.sorted() == [3])
        #expect(receiver.requests.allSatisfy { $0.headers["authorization"] == nil }, "no token file, no header")
    }

    /// Nobody listening: three quick attempts, exit 4, and no waiting for minutes.
    @Test func anUnreachableRegistryFailsQuickly() async throws {
        let sims = try Self.simulators(1)
        defer { sims.forEach { $0.stop() } }
        let receiver = try EnrollmentReceiver()
        receiver.stop()  // its port is now closed
        let clock = ContinuousClock()
        let start = clock.now
        let run = try await Self.probe(sims.map(\.path), receiver: receiver, token: nil)
        #expect(clock.now - start < .seconds(15))
        #expect(run.status == 4, "\(run.stderr)")
        let report = try #require(try Self.lines(run)[sims[0].path]?["report"] as? [String: Any])
        #expect(report["status"] is NSNull)
        #expect(report["outcome"] as? String == "failed")
        #expect(report["attempts"] as? Int == 3)
    }

    /// A probe whose identity is incomplete (no SIM) or invalid (a placeholder IMEI) is never a factory record;
    /// the valid port beside it still is.
    @Test func incompleteOrInvalidIdentitiesAreNotReported() async throws {
        var noSIM = SimulatorQuirks()
        noSIM.simAbsent = true
        let sims = try Self.simulators(2, quirks: [1: noSIM])
        var placeholder = SimulatorOptions(identity: SimulatedIdentity(
            imei: "000000000000000", imsi: Self.identities[2].imsi, iccid: Self.identities[2].iccid))
        placeholder.profile = .quectel
        let invalid = try ModemSimulator(placeholder)
        defer { sims.forEach { $0.stop() }; invalid.stop() }
        let receiver = try EnrollmentReceiver()
        defer { receiver.stop() }
        let run = try await Self.probe(sims.map(\.path) + [invalid.path], receiver: receiver, token: nil)
        #expect(run.status == 1, "\(run.stderr)")
        #expect(receiver.requests.count == 1)
        let body = try EnrollmentRequest.decode([UInt8](try #require(receiver.requests.first).body))
        #expect(body.module.slot == sims[0].path)
        let lines = try Self.lines(run)
        #expect((lines[sims[0].path]?["report"] as? [String: Any])?["outcome"] as? String == "stored")
        #expect(lines[sims[1].path]?["report"] is NSNull)
        #expect(lines[invalid.path]?["report"] is NSNull)
    }

    /// A record the registry would refuse (EnrollmentValidation, the registry's own rules) is not sent: a port
    /// reached through a link whose name holds U+202E (the slot key is the path as given) is `rejected` without an
    /// answer, exit status 3, and the other port's record is stored.
    @Test func aRecordTheRulesRefuseIsNotSent() async throws {
        let sims = try Self.simulators(2)
        defer { sims.forEach { $0.stop() } }
        let dirTemporary = try TemporaryDirectory(prefix: "cellprov-rlo")
        let dir = URL(fileURLWithPath: dirTemporary.path)
        let spoofed = dir.appendingPathComponent("ttyUSB\u{202E}2").path
        try FileManager.default.createSymbolicLink(atPath: spoofed, withDestinationPath: sims[0].path)
        let receiver = try EnrollmentReceiver()
        defer { receiver.stop() }
        let run = try await Self.probe([spoofed, sims[1].path], receiver: receiver, token: nil)
        #expect(run.status == 3, "\(run.stderr)")
        #expect(receiver.requests.count == 1)
        let body = try EnrollmentRequest.decode([UInt8](try #require(receiver.requests.first).body))
        #expect(body.module.slot == sims[1].path)
        let lines = try Self.lines(run)
        let refused = try #require(lines[spoofed]?["report"] as? [String: Any])
        #expect(refused["outcome"] as? String == "rejected")
        #expect(refused["status"] is NSNull)
        #expect(refused["attempts"] as? Int == 0)
        #expect(refused["reason"] as? String == "not sent: module.slot: contains a bidirectional control character")
        #expect((lines[sims[1].path]?["report"] as? [String: Any])?["outcome"] as? String == "stored")
    }

    /// A careless registry echoing the payload in its error: the table output and the logs show no digits.
    @Test func anEchoedIdentifierNeverReachesTheOutput() async throws {
        let sims = try Self.simulators(1)
        defer { sims.forEach { $0.stop() } }
        let receiver = try EnrollmentReceiver(behaviour: .status(422))
        defer { receiver.stop() }
        let id = Self.identities[0]
        receiver.setResponseBody("bad record: imei \(id.imei!) imsi \(id.imsi!) iccid \(id.iccid!)")
        let token = try TokenDir()
        let run = try await CLI.run(
            ["probe", "-vv", "--device-serial", Self.serial, "--report", "http://\(receiver.url)", "--token-file",
             token.path, sims[0].path])
        #expect(run.status == 3, "\(run.stderr)")
        #expect(run.stdout.contains("rejected (HTTP 422"))
        Self.expectNoLeak(run.stdout, token: token, "stdout")
        Self.expectNoLeak(run.stderr, token: token, "stderr")
    }

    /// A registry behind https with a private CA: trusted with --ca-file; without it the system trust store
    /// refuses the certificate and nothing is stored.
    @Test func httpsWithTheStationsCAFile() async throws {
        let certs = try TestCertificates()
        let sims = try Self.simulators(1)
        defer { sims.forEach { $0.stop() } }
        let receiver = try EnrollmentReceiver(
            tls: .init(certificateFile: certs.file("server.pem"), keyFile: certs.file("server.key")))
        defer { receiver.stop() }
        let base = ["probe", "--json", "--device-serial", Self.serial, "--report", "https://\(receiver.url)"]

        let trusted = try await CLI.run(base + ["--ca-file", certs.file("ca.pem"), sims[0].path])
        #expect(trusted.status == 0, "\(trusted.stderr)")
        let report = try #require(try Self.lines(trusted)[sims[0].path]?["report"] as? [String: Any])
        #expect(report["outcome"] as? String == "stored")
        #expect(receiver.requests.count == 1)

        let untrusted = try await CLI.run(base + [sims[0].path])
        #expect(untrusted.status == 4, "\(untrusted.stderr)")
        let refused = try #require(try Self.lines(untrusted)[sims[0].path]?["report"] as? [String: Any])
        #expect(refused["outcome"] as? String == "failed")
        #expect(refused["status"] is NSNull)
        #expect((refused["reason"] as? String)?.contains("TLS") == true)
        #expect(receiver.requests.count == 1, "no request got through without the CA")

        let missing = try await CLI.run(base + ["--ca-file", certs.file("nope.pem"), sims[0].path])
        #expect(missing.status == 78, "\(missing.stderr)")
    }

    @Test(arguments: [0o644, 0o620, 0o604])
    func aTokenFileOthersCanReadIsRefusedBeforeAnyPortIsOpened(mode: Int) async throws {
        let receiver = try EnrollmentReceiver()
        defer { receiver.stop() }
        let token = try TokenDir(mode: mode)
        let run = try await Self.probe(["/dev/cellprov-no-such-port"], receiver: receiver, token: token)
        #expect(run.status == 78, "\(run.stderr)")
        #expect(run.stderr.contains("chmod 600"))
        #expect(!run.stderr.contains(token.token) && !run.stdout.contains(token.token))
        #expect(receiver.requests.isEmpty)
    }

    @Test func aMissingTokenFileIsAConfigurationError() async throws {
        let receiver = try EnrollmentReceiver()
        defer { receiver.stop() }
        let run = try await CLI.run(
            ["probe", "--device-serial", Self.serial, "--report", "http://\(receiver.url)", "--token-file",
             "/nonexistent/cellprov.token", "/dev/null"])
        #expect(run.status == 78, "\(run.stderr)")
    }

    @Test(arguments: [
        ["--report", "http://127.0.0.1:9"],  // no serial
        ["--device-serial", "GW-1"],  // no URL
        ["--token-file", "/dev/null"],  // no URL
        ["--device-serial", "GW-1", "--report", "http://registry.example.net"],  // plain http off loopback
        ["--device-serial", "GW-1", "--report", "ftp://127.0.0.1/"],
        ["--device-serial", "", "--report", "https://registry.example.net"],
        ["--device-serial", " GW-1", "--report", "https://registry.example.net"],
        ["--device-serial", "GW\u{7}1", "--report", "https://registry.example.net"],
        // The registry's serial rule (DeviceSerial): an inner blank or a non-ASCII character is refused here too.
        ["--device-serial", "GW 1", "--report", "https://registry.example.net"],
        ["--device-serial", "GW-\u{e9}", "--report", "https://registry.example.net"],
    ])
    func usageErrors(arguments: [String]) async throws {
        let run = try await CLI.run(["probe"] + arguments + ["/dev/null"])
        #expect(run.status == 64, "\(run.stderr)")
    }
}

/// A CA and a server certificate for 127.0.0.1, made with `openssl` at test time.
final class TestCertificates {
    let dir: URL

    func file(_ name: String) -> String { dir.appendingPathComponent(name).path }

    init() throws {
        dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cellprov-certs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try Self.openssl(
            ["req", "-x509"] + ec + ["-keyout", file("ca.key"), "-out", file("ca.pem"), "-days", "2", "-subj",
            "/CN=cellprov test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign"])
        try ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=IP:127.0.0.1\n"
            + "extendedKeyUsage=serverAuth\n").write(toFile: file("server.ext"), atomically: true, encoding: .utf8)
        try Self.openssl(
            ["req", "-new"] + ec
                + ["-keyout", file("server.key"), "-out", file("server.csr"), "-subj", "/CN=127.0.0.1"])
        try Self.openssl(
            ["x509", "-req", "-in", file("server.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key"),
             "-CAcreateserial", "-out", file("server.pem"), "-days", "2", "-extfile", file("server.ext")])
    }

    deinit { try? FileManager.default.removeItem(at: dir) }

    private static func openssl(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["openssl"] + args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
    }
}
