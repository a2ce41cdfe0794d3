import CellprovCore
import CellprovModem
import CellprovSerial
import CellprovSimulator
import Foundation
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Identity reads over real PTYs served by the simulator: every vendor profile, every quirk, the SIM states, an
/// unplug mid-command, a silent port and a port another process holds.
@Suite struct IdentityReaderTests {
    static let identity = SimulatedIdentity(
        imei: TestIdentities.imei(tac: "86695404", serial: "123456"),
        imsi: "310260123456789",
        iccid: TestIdentities.iccid("891004234814455936"),
        manufacturer: nil, model: nil, revision: nil)

    static func reader(timeout: Duration = .seconds(10)) -> IdentityReader {
        var options = IdentityReadOptions()
        options.timeout = timeout
        options.wakeTimeouts = [.seconds(1), .seconds(2)]
        options.commandTimeout = .seconds(2)
        // Room for a loaded machine: the tests run in parallel on a small cooperative pool, and a backoff's
        // Task.sleep may resume late (3 s was too short with six builds running beside the suite).
        options.simBusyLimit = .seconds(6)
        return IdentityReader(options: options, logger: Logger(label: "test"))
    }

    static func read(_ options: SimulatorOptions, timeout: Duration = .seconds(10)) async throws
        -> (IdentityReport, [String])
    {
        let sim = try ModemSimulator(options)
        defer { sim.stop() }
        let report = await reader(timeout: timeout).read(port: sim.path)
        return (report, sim.commandLog)
    }

    @Test(arguments: VendorProfile.allCases)
    func everyVendorProfileYieldsAllThreeIdentities(profile: VendorProfile) async throws {
        let (report, log) = try await Self.read(SimulatorOptions(profile: profile, identity: Self.identity))
        #expect(report.isValid, "\(profile): \(report.problems)")
        #expect(report.imei?.unredacted == Self.identity.imei)
        #expect(report.imsi?.unredacted == Self.identity.imsi)
        #expect(report.iccid?.unredacted == Self.identity.iccid)
        #expect(report.manufacturer != nil)
        #expect(report.model != nil)
        #expect(report.revision != nil)
        // 8 on a healthy module, a vendor ICCID fallback one more, and the plain SIM's refused AT+CCHO one more.
        #expect(log.count < 11, "\(profile) took \(log.count) commands: \(log)")
    }

    @Test func healthyQuectelReadTakesNineCommands() async throws {
        // Eight for the identities, and the EID step's AT+CCHO, which a plain SIM refuses (issue 15: at most 9;
        // a re-read in the same port session is 8 again: EIDReaderTests).
        let (report, log) = try await Self.read(SimulatorOptions(profile: .quectel, identity: Self.identity))
        #expect(report.isValid)
        #expect(log.map { $0.uppercased() } == [
            "ATE0", "AT+CMEE=2", "AT+CGMI", "AT+CGMM", "AT+CGMR", "AT+CGSN", "AT+CIMI", "AT+CCID",
            EUICCAccess.openCommand.uppercased(),
        ])
        #expect(report.commandCount == 9)
        #expect(report.eidStatus == .noEUICC)
    }

    struct QuirkCase: Sendable, CustomTestStringConvertible {
        var name: String
        var quirks: SimulatorQuirks
        var testDescription: String { name }
    }

    static let tolerableQuirks: [QuirkCase] = {
        var cases: [QuirkCase] = []
        func add(_ name: String, _ change: (inout SimulatorQuirks) -> Void) {
            var q = SimulatorQuirks()
            change(&q)
            cases.append(QuirkCase(name: name, quirks: q))
        }
        add("echo on") { $0.echoAlways = true }
        add("URC noise") { $0.urcNoise = true }
        add("50 ms answers") { $0.responseDelayMilliseconds = 50 }
        add("SIM busy 3 tries") { $0.simBusyTries = 3 }
        add("first command swallowed") { $0.swallowFirst = 1 }
        add("garbage and an overlong line") { $0.garbageBeforeAnswers = true }
        add("no AT+CCID") { $0.ccidUnsupported = true }
        add("no AT+CCID, no vendor command") {
            $0.ccidUnsupported = true
            $0.vendorICCIDUnsupported = true
        }
        add("everything at once") {
            $0.echoAlways = true
            $0.urcNoise = true
            $0.simBusyTries = 2
            $0.swallowFirst = 1
            $0.ccidUnsupported = true
        }
        return cases
    }()

    @Test(arguments: tolerableQuirks, VendorProfile.allCases)
    func quirksStillYieldTheIdentities(quirk: QuirkCase, profile: VendorProfile) async throws {
        let (report, log) = try await Self.read(
            SimulatorOptions(profile: profile, identity: Self.identity, quirks: quirk.quirks))
        #expect(report.isValid, "\(quirk.name)/\(profile): \(report.problems) after \(log)")
        #expect(report.imei?.unredacted == Self.identity.imei)
        #expect(report.imsi?.unredacted == Self.identity.imsi)
        #expect(report.iccid?.unredacted == Self.identity.iccid)
    }

    @Test func fallsBackToCRSMAndUnswapsIt() async throws {
        var q = SimulatorQuirks()
        q.ccidUnsupported = true
        q.vendorICCIDUnsupported = true
        let (report, log) = try await Self.read(SimulatorOptions(profile: .quectel, identity: Self.identity, quirks: q))
        #expect(report.iccid?.unredacted == Self.identity.iccid)
        // The last identity command (the EID step's refused AT+CCHO follows it).
        #expect(log.last { !$0.uppercased().hasPrefix("AT+CCHO") }?.uppercased() == "AT+CRSM=176,12258,0,0,10")
    }

    @Test(arguments: VendorProfile.allCases)
    func failedCIMIFallsBackToEFIMSI(profile: VendorProfile) async throws {
        var q = SimulatorQuirks()
        q.cimiUnsupported = true
        let (report, log) = try await Self.read(SimulatorOptions(profile: profile, identity: Self.identity, quirks: q))
        #expect(report.isValid, "\(profile): \(report.problems) after \(log)")
        #expect(report.imsi?.unredacted == Self.identity.imsi)
        let upper = log.map { $0.uppercased() }
        let cimi = try #require(upper.firstIndex(of: "AT+CIMI"))
        #expect(upper[cimi + 1] == crsmReadIMSICommand, "EF_IMSI is read right after AT+CIMI fails: \(log)")
    }

    @Test func healthyQuectelReadWithoutCIMITakesTenCommands() async throws {
        var q = SimulatorQuirks()
        q.cimiUnsupported = true
        let (report, log) = try await Self.read(SimulatorOptions(profile: .quectel, identity: Self.identity, quirks: q))
        #expect(report.isValid)
        #expect(log.map { $0.uppercased() } == [
            "ATE0", "AT+CMEE=2", "AT+CGMI", "AT+CGMM", "AT+CGMR", "AT+CGSN", "AT+CIMI", crsmReadIMSICommand, "AT+CCID",
            EUICCAccess.openCommand.uppercased(),
        ])
        #expect(report.commandCount == 10)
    }

    @Test func noIMSIAnywhereIsReportedOnce() async throws {
        var q = SimulatorQuirks()
        q.cimiUnsupported = true
        q.crsmUnsupported = true
        let (report, _) = try await Self.read(SimulatorOptions(profile: .quectel, identity: Self.identity, quirks: q))
        #expect(report.imsi == nil)
        #expect(report.problems.filter { $0.field == .imsi }.map(\.code) == [.imsiMissing])
        #expect(report.iccid?.unredacted == Self.identity.iccid, "AT+CCID still works")
    }

    @Test func lockedSIMIsNotAskedForEFIMSI() async throws {
        var q = SimulatorQuirks()
        q.simPIN = true
        let (report, log) = try await Self.read(SimulatorOptions(profile: .quectel, identity: Self.identity, quirks: q))
        #expect(report.imsi == nil)
        #expect(report.problems.map(\.code).contains(.simPINRequired))
        #expect(!log.map { $0.uppercased() }.contains(crsmReadIMSICommand))
        #expect(report.iccid?.unredacted == Self.identity.iccid)
    }

    @Test func lastICCIDFallbackIsPlusICCID() async throws {
        var q = SimulatorQuirks()
        q.ccidUnsupported = true
        q.vendorICCIDUnsupported = true
        q.crsmUnsupported = true
        let (report, log) = try await Self.read(SimulatorOptions(profile: .sierra, identity: Self.identity, quirks: q))
        #expect(report.iccid?.unredacted == Self.identity.iccid, "\(report.problems)")
        // The ICCID commands, before the EID step's AT+CCHO.
        #expect(log.map { $0.uppercased() }.filter { !$0.hasPrefix("AT+CCHO") }.suffix(4)
            == ["AT+CCID", "AT!ICCID?", crsmReadICCIDCommand, "AT+ICCID"])
    }

    @Test func simAbsentStillReportsTheIMEI() async throws {
        var q = SimulatorQuirks()
        q.simAbsent = true
        let (report, _) = try await Self.read(SimulatorOptions(profile: .quectel, identity: Self.identity, quirks: q))
        #expect(report.imei?.unredacted == Self.identity.imei)
        #expect(report.imsi == nil)
        #expect(report.iccid == nil)
        #expect(report.problems.map(\.code) == [.simNotInserted])
        #expect(!report.isValid)
        #expect(!report.portUnusable)
    }

    @Test(arguments: [VendorProfile.quectel, .huawei, .telit])
    func pinLockedSIMYieldsIMEIAndICCID(profile: VendorProfile) async throws {
        var q = SimulatorQuirks()
        q.simPIN = true
        let (report, _) = try await Self.read(SimulatorOptions(profile: profile, identity: Self.identity, quirks: q))
        #expect(report.imei?.unredacted == Self.identity.imei)
        #expect(report.iccid?.unredacted == Self.identity.iccid)
        #expect(report.imsi == nil)
        #expect(report.problems.map(\.code) == [.simPINRequired])
    }

    @Test func pukLockedSIM() async throws {
        var q = SimulatorQuirks()
        q.simPUK = true
        let (report, _) = try await Self.read(SimulatorOptions(profile: .sierra, identity: Self.identity, quirks: q))
        #expect(report.imei != nil)
        #expect(report.problems.contains { $0.code == .simPUKRequired })
    }

    @Test func simBusyBeyondTheLimitIsAProblem() async throws {
        var q = SimulatorQuirks()
        q.simBusyTries = 1000
        let (report, _) = try await Self.read(SimulatorOptions(profile: .quectel, identity: Self.identity, quirks: q))
        #expect(report.imei != nil)
        #expect(report.problems.contains { $0.code == .simBusy })
        #expect(!report.isValid)
    }

    @Test func silentPortIsNoResponse() async throws {
        var q = SimulatorQuirks()
        q.silent = true
        let clock = ContinuousClock()
        let start = clock.now
        let (report, _) = try await Self.read(SimulatorOptions(identity: Self.identity, quirks: q))
        #expect(report.problems.map(\.code) == [.noResponse])
        #expect(report.portUnusable)
        // Gives up after the wake-up waits (1 s + 2 s), not at the read's 10 s deadline; the margin is for a
        // loaded 2-core CI machine (5.4 s was seen with six builds running).
        #expect(clock.now - start < .seconds(9))
    }

    @Test func unplugMidCommandEndsTheReadWithAnError() async throws {
        var q = SimulatorQuirks()
        q.unplugAfterCommands = 6  // AT+CGSN
        let (report, log) = try await Self.read(SimulatorOptions(identity: Self.identity, quirks: q))
        #expect(report.problems.contains { $0.code == .portClosed }, "\(report.problems) \(log)")
        #expect(report.imei == nil)
        #expect(report.portUnusable)
    }

    @Test func portHeldByAnotherProcessIsBusy() async throws {
        let sim = try ModemSimulator(SimulatorOptions(identity: Self.identity))
        defer { sim.stop() }
        let holder = try SerialPort.open(sim.path)
        defer { holder.close() }
        let report = await Self.reader().read(port: sim.path)
        #expect(report.problems.map(\.code) == [.portBusy])
        #expect(sim.commandLog.isEmpty)
    }

    @Test func missingPortIsUnavailable() async {
        let report = await Self.reader().read(port: "/dev/cellprov-test-does-not-exist")
        #expect(report.problems.map(\.code) == [.portUnavailable])
    }

    @Test func placeholderIMEIIsFlaggedNotAccepted() async throws {
        var id = Self.identity
        id.imei = "000000000000000"
        let (report, _) = try await Self.read(SimulatorOptions(identity: id))
        #expect(report.problems.contains { $0.code == .imeiPlaceholder && $0.severity == .error })
        #expect(!report.isValid)
    }

    @Test func badIMEIChecksumIsFlagged() async throws {
        var id = Self.identity
        let good = id.imei!
        let last = Int(String(good.last!))!
        id.imei = String(good.dropLast()) + String((last + 1) % 10)
        let (report, _) = try await Self.read(SimulatorOptions(identity: id))
        #expect(report.problems.contains { $0.code == .imeiChecksum })
        #expect(!report.isValid)
    }

    @Test func duplicateIMEIsAreReadIndependently() async throws {
        // Batches ship with one IMEI: two modems with the same IMEI are read as they are, each on its own.
        let a = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: Self.identity))
        let b = try ModemSimulator(SimulatorOptions(profile: .simcom, identity: Self.identity))
        defer { a.stop(); b.stop() }
        async let ra = Self.reader().read(port: a.path)
        async let rb = Self.reader().read(port: b.path)
        let (x, y) = await (ra, rb)
        #expect(x.isValid && y.isValid)
        #expect(x.imei == y.imei)
    }
}

/// Valid test identities, built with the project's own Luhn.
enum TestIdentities {
    static func imei(tac: String, serial: String) -> String {
        let payload = tac + serial
        return payload + String(Luhn.checkDigit(for: payload)!)
    }

    static func iccid(_ payload: String) -> String {
        payload + String(Luhn.checkDigit(for: payload)!)
    }
}
