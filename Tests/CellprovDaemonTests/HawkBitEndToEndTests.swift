import CellprovCore
import CellprovSimulator
import CellprovStore
import CellprovTestKit
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `[hawkbit]` as deployed: cellprovd as a process over a simulated modem, with the enrollment receiver as its
/// backend and the loopback hawkBit stand-in (HawkBitStandIn; no real hawkBit server runs here) as its hawkBit.
@Suite(.serialized) struct HawkBitEndToEndTests {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }
    static let original = SimulatedIdentity(
        imei: luhn("35693803" + "778812"), imsi: "262014455660011", iccid: luhn("894920000445560011"))
    static let swapped = SimulatedIdentity(imsi: "262029988770022", iccid: luhn("894920000998870022"))
    static let whileDown = SimulatedIdentity(imsi: "262037766550033", iccid: luhn("894920000776650033"))
    static let token = "bH7XXAprK1ChnLfKSdtlsp7NOlPnZAYY"
    static let serial = "GW-HB-1"

    static func waitUntil(_ timeout: Duration = .seconds(20), _ condition: () throws -> Bool) async rethrows -> Bool {
        try await pollUntil(within: timeout, condition)
    }

    @Test func attributesFollowTheIdentityThroughFailuresAndRestarts() async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.original))
        defer { sim.stop() }
        let receiver = try EnrollmentReceiver()
        defer { receiver.stop() }
        let hawkBit = try HawkBitStandIn(controllerIDs: [Self.serial], token: Self.token)
        defer { hawkBit.stop() }
        hawkBit.setAttributes(["rauc_version": "1.11"], of: Self.serial)

        let temporary = try TemporaryDirectory(prefix: "cellprov-hawkbit-e2e")
        let dir = temporary.path
        let tokenFile = dir + "/hawkbit-token"
        try "\(Self.token)\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        chmod(tokenFile, 0o600)
        let config = dir + "/cellprovd.toml"
        try """
        [daemon]
        state_directory = "\(dir)/state"
        [discovery]
        udev = false
        static_ports = ["\(sim.path)"]
        reprobe_interval_seconds = 600
        [backend]
        url = "http://127.0.0.1:\(receiver.port)"
        [device]
        serial = "\(Self.serial)"
        [hawkbit]
        url = "\(hawkBit.url)"
        token_file = "\(tokenFile)"
        """.write(toFile: config, atomically: true, encoding: .utf8)

        var logs = ""
        func start() throws -> ChildProcess {
            try ChildProcess("cellprovd", ["--config", config, "--log-level", "debug"])
        }
        func stop(_ d: ChildProcess) async {
            d.signal(SIGTERM)
            #expect(await d.waitForExit(timeout: .seconds(10)) == 0)
            logs += d.stderr
        }
        func attribute(_ name: String) -> String? { hawkBit.attributes(of: Self.serial)?[name] }

        // 1. hawkBit drops the first two connections; the enrollment is delivered meanwhile, and the attributes
        //    arrive once hawkBit answers: masked with the daemon's key, as its journal and the registry show them.
        hawkBit.enqueue([.drop, .drop])
        var daemon = try start()
        #expect(await Self.waitUntil { receiver.requests.count >= 1 }, "\(daemon.stderr)")
        #expect(await Self.waitUntil { attribute("cellprov_modem1_read_status") == "ok" }, "\(daemon.stderr)")
        let key = try PseudonymKeyFile.loadOrCreate(in: dir + "/state")
        let imei = try #require(Self.original.imei)
        #expect(attribute("cellprov_modem1_imei") == "IMEI(TAC 35693803, ref \(key.reference(kind: "imei", value: imei)))")
        let iccid = try #require(Self.original.iccid)
        #expect(attribute("cellprov_modem1_iccid")?.hasSuffix("ref \(key.reference(kind: "iccid", value: iccid)))") == true)
        #expect(attribute("cellprov_modems") == "1")
        #expect(attribute("cellprov_modem1_slot") == sim.path)
        #expect(attribute("cellprov_modem1_sim_state") == "ready")
        #expect(attribute("rauc_version") == "1.11", "merge keeps the update client's attributes")
        #expect(hawkBit.requests.prefix(2).allSatisfy { $0.status == nil })
        #expect(hawkBit.requests.allSatisfy { $0.refusal == nil }, "\(hawkBit.requests.compactMap(\.refusal))")

        // 2. A live SIM swap: the new SIM's reference follows.
        let before = hawkBit.requests.count
        sim.swapSIM(Self.swapped)
        let swappedICCID = try #require(Self.swapped.iccid)
        #expect(
            await Self.waitUntil {
                attribute("cellprov_modem1_iccid")?.contains(key.reference(kind: "iccid", value: swappedICCID)) == true
            }, "\(daemon.stderr)")
        #expect(hawkBit.requests.count > before)
        await stop(daemon)

        // 3. Swapped while cellprovd is down, and hawkBit failing (503, then a dropped connection) at restart: the
        //    state database brings the newest identity, sent once hawkBit answers.
        sim.swapSIM(Self.whileDown)
        hawkBit.enqueue([.status(503), .drop])
        daemon = try start()
        let downICCID = try #require(Self.whileDown.iccid)
        #expect(
            await Self.waitUntil {
                attribute("cellprov_modem1_iccid")?.contains(key.reference(kind: "iccid", value: downICCID)) == true
            }, "\(daemon.stderr)")
        await stop(daemon)
        #expect(hawkBit.requests.allSatisfy { $0.refusal == nil }, "\(hawkBit.requests.compactMap(\.refusal))")

        // The daemon's log never carried an identifier, nor the token.
        for id in [Self.original, Self.swapped, Self.whileDown] {
            for secret in id.leakPatterns { #expect(!logs.contains(secret), "identifier digits in the log") }
        }
        #expect(!logs.contains(Self.token))
        #expect(logs.contains("hawkBit: keeping target \(Self.serial)"))
    }

    /// A hawkBit that accepts connections and never answers holds up neither the reads nor the enrollment, and
    /// cellprovd still stops at once.
    @Test func aHangingHawkBitBlocksNothing() async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.original))
        defer { sim.stop() }
        let receiver = try EnrollmentReceiver()
        defer { receiver.stop() }
        let hawkBit = try HawkBitStandIn(controllerIDs: [Self.serial], token: Self.token)
        defer { hawkBit.stop() }
        hawkBit.setBehaviour(.hang)
        let temporary = try TemporaryDirectory(prefix: "cellprov-hawkbit-hang")
        let dir = temporary.path
        try "\(Self.token)\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        chmod(dir + "/token", 0o600)
        try """
        [daemon]
        state_directory = "\(dir)/state"
        [discovery]
        udev = false
        static_ports = ["\(sim.path)"]
        [backend]
        url = "http://127.0.0.1:\(receiver.port)"
        [device]
        serial = "\(Self.serial)"
        [hawkbit]
        url = "\(hawkBit.url)"
        token_file = "\(dir)/token"
        """.write(toFile: dir + "/c.toml", atomically: true, encoding: .utf8)
        let daemon = try ChildProcess("cellprovd", ["--config", dir + "/c.toml", "--log-level", "debug"])
        #expect(await Self.waitUntil { !hawkBit.requests.isEmpty }, "\(daemon.stderr)")
        #expect(await Self.waitUntil(.seconds(10)) { receiver.requests.count == 1 }, "\(daemon.stderr)")
        // A live SIM swap is read and delivered while the hawkBit request still hangs.
        sim.swapSIM(Self.swapped)
        #expect(await Self.waitUntil(.seconds(10)) { receiver.requests.count == 2 }, "\(daemon.stderr)")
        #expect(hawkBit.requests.count == 1, "one request at a time")
        let clock = ContinuousClock()
        let stopping = clock.now
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(timeout: .seconds(10)) == 0)
        #expect(clock.now - stopping < .seconds(5), "the hanging request did not hold up the stop")
    }

    /// `identifiers = "full"`: the digits, and only then.
    @Test func fullIdentifiersOnlyWhenSet() async throws {
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.original))
        defer { sim.stop() }
        let hawkBit = try HawkBitStandIn(tenant: "fleet-7", controllerIDs: ["gw-7"], token: Self.token)
        defer { hawkBit.stop() }
        let temporary = try TemporaryDirectory(prefix: "cellprov-hawkbit-full")
        let dir = temporary.path
        try "\(Self.token)\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        chmod(dir + "/token", 0o600)
        try """
        [daemon]
        state_directory = "\(dir)/state"
        [discovery]
        udev = false
        static_ports = ["\(sim.path)"]
        [hawkbit]
        url = "\(hawkBit.url)/"
        tenant = "fleet-7"
        controller_id = "gw-7"
        token_file = "\(dir)/token"
        identifiers = "full"
        """.write(toFile: dir + "/c.toml", atomically: true, encoding: .utf8)
        let daemon = try ChildProcess("cellprovd", ["--config", dir + "/c.toml"])
        #expect(
            await Self.waitUntil { hawkBit.attributes(of: "gw-7")?["cellprov_modem1_imei"] == Self.original.imei },
            "\(daemon.stderr)")
        #expect(hawkBit.attributes(of: "gw-7")?["cellprov_modem1_imsi"] == Self.original.imsi)
        #expect(hawkBit.requests.first?.path == "/fleet-7/controller/v1/gw-7/configData")
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(timeout: .seconds(10)) == 0)
        for secret in Self.original.leakPatterns { #expect(!daemon.stderr.contains(secret)) }
    }
}
