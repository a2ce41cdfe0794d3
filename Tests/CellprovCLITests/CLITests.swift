import CellprovCore
import CellprovSimulator
import CellprovTestKit
import Foundation
import Testing

/// The `cellprov` executable as a user runs it: exit statuses, JSON output, and the leak scan of everything it
/// writes where people look.
@Suite struct CLITests {
    static let identities: [SimulatedIdentity] = [
        SimulatedIdentity(
            imei: luhn("35693803" + "564380"), imsi: "262011234567890", iccid: luhn("894920000123456789"),
            manufacturer: nil, model: nil, revision: nil),
        SimulatedIdentity(
            imei: luhn("86695404" + "551234"), imsi: "310260987654321", iccid: luhn("8901260881234567890"),
            manufacturer: nil, model: nil, revision: nil),
        SimulatedIdentity(
            imei: luhn("01234567" + "898765"), imsi: "234150555666777", iccid: luhn("894411223344556677"),
            manufacturer: nil, model: nil, revision: nil),
    ]

    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }

    @Test func allValidExitsZeroAndPrintsOneJSONLinePerPort() async throws {
        let sims = try Self.identities.enumerated().map { i, id in
            try ModemSimulator(SimulatorOptions(profile: VendorProfile.allCases[i], identity: id))
        }
        defer { sims.forEach { $0.stop() } }
        let run = try await CLI.run(["probe", "--json"] + sims.map(\.path))
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.stdout.split(separator: "\n")
        #expect(lines.count == sims.count)
        for (line, (sim, id)) in zip(lines, zip(sims, Self.identities)) {
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for key in ["port", "imei", "imsi", "iccid", "manufacturer", "model", "revision", "valid", "problems"] {
                #expect(object.keys.contains(key), "missing \(key)")
            }
            #expect(object["port"] as? String == sim.path)
            #expect(object["imei"] as? String == id.imei)
            #expect(object["imsi"] as? String == id.imsi)
            #expect(object["iccid"] as? String == id.iccid)
            #expect(object["valid"] as? Bool == true)
            #expect((object["problems"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func missingIdentityExitsOne() async throws {
        var quirks = SimulatorQuirks()
        quirks.simAbsent = true
        let good = try ModemSimulator(SimulatorOptions(identity: Self.identities[0]))
        let noSIM = try ModemSimulator(SimulatorOptions(identity: Self.identities[1], quirks: quirks))
        defer { good.stop(); noSIM.stop() }
        let run = try await CLI.run(["probe", "--json", good.path, noSIM.path])
        #expect(run.status == 1)
        let second = try #require(run.stdout.split(separator: "\n").last)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(second.utf8)) as? [String: Any])
        #expect(object["imsi"] is NSNull)
        #expect(object["imei"] as? String == Self.identities[1].imei)
        let problems = try #require(object["problems"] as? [[String: Any]])
        #expect(problems.first?["code"] as? String == "sim_not_inserted")
        #expect(problems.first?["field"] as? String == "sim")
        #expect(problems.first?["message"] is String)
    }

    @Test func unusablePortExitsTwo() async throws {
        let good = try ModemSimulator(SimulatorOptions(identity: Self.identities[0]))
        defer { good.stop() }
        let run = try await CLI.run(["probe", good.path, "/dev/cellprov-no-such-port"])
        #expect(run.status == 2)
        #expect(run.stdout.contains("port_unavailable"))
    }

    @Test(arguments: [["probe"], ["probe", "--timeout", "0", "/dev/null"], ["probe", "--bogus", "/dev/null"]])
    func usageErrorsExit64(arguments: [String]) async throws {
        let run = try await CLI.run(arguments)
        #expect(run.status == 64, "\(run.stderr)")
    }

    /// Everything a person sees (the table on stdout, every log level on stderr) is scanned for the full IMEI,
    /// the IMEI's serial digits, the IMSI's MSIN and the full ICCID: zero hits.
    @Test func noIdentifierDigitsReachTheTableOrTheLogs() async throws {
        var pinQuirks = SimulatorQuirks()
        pinQuirks.simPIN = true
        pinQuirks.urcNoise = true
        var badIMEI = Self.identities[2]
        badIMEI.imei = String(badIMEI.imei!.dropLast()) + (badIMEI.imei!.last == "0" ? "1" : "0")
        let sims = [
            try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.identities[0])),
            try ModemSimulator(SimulatorOptions(profile: .huawei, identity: Self.identities[1], quirks: pinQuirks)),
            try ModemSimulator(SimulatorOptions(profile: .telit, identity: badIMEI)),
        ]
        defer { sims.forEach { $0.stop() } }
        let ports = sims.map(\.path)
        let table = try await CLI.run(["probe", "-vvv"] + ports)
        let json = try await CLI.run(["probe", "--json", "-vvv"] + ports)
        #expect(table.stdout.contains("IMEI(TAC"))
        #expect(json.stdout.contains(Self.identities[0].imei!), "the JSON data channel carries the digits")

        let seen = table.stdout + table.stderr + json.stderr
        #expect(!table.stderr.isEmpty, "trace logging should have produced output to scan")
        for id in Self.identities + [badIMEI] {
            for secret in id.leakPatterns {
                #expect(!seen.contains(secret), "leaked \(secret.count) identifier digits")
            }
        }
    }
}

/// Runs the built `cellprov` executable to completion.
enum CLI {
    struct Result {
        var status: Int32?
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String]) async throws -> Result {
        let child = try ChildProcess("cellprov", arguments)
        let status = await child.waitForExit(timeout: .seconds(60))
        return Result(status: status, stdout: child.stdout, stderr: child.stderr)
    }
}
