import CellprovCore
import CellprovModem
import CellprovSerial
import CellprovSimulator
import Logging
import Testing

/// The SIM report setup over real PTYs served by the simulator: what each outcome means, and that an interrupted setup
/// (shutdown, unplug) concludes nothing, where it once recorded "refused" and logged a notice for a module that had
/// not been asked to the end.
@Suite struct SIMReportingSetupTests {
    static func session(_ quirks: SimulatorQuirks = .init(), profile: VendorProfile = .quectel) throws
        -> (ModemSimulator, ATChannel)
    {
        let sim = try ModemSimulator(
            SimulatorOptions(
                profile: profile,
                identity: SimulatedIdentity(
                    imei: TestIdentities.imei(tac: "86695404", serial: "123456"), imsi: "310260123456789",
                    iccid: TestIdentities.iccid("891004234814455936")),
                quirks: quirks))
        let channel = ATChannel(transport: try SerialPort.open(sim.path), logger: Logger(label: "test"))
        channel.start()
        return (sim, channel)
    }

    @Test func quectelReportsAreSwitchedOnOnceAndTheDetectionIsOnlyRead() async throws {
        let (sim, channel) = try Self.session()
        defer { channel.close(); sim.stop() }
        #expect(await SIMReportingSetup.run(on: channel, manufacturer: "Quectel") == .on)
        #expect(sim.commandLog.map { $0.uppercased() } == ["AT+QSIMSTAT?", "AT+QSIMSTAT=1", "AT+QSIMDET?"])
        // Already on: read, not written again (Quectel keeps it in NVM).
        #expect(await SIMReportingSetup.run(on: channel, manufacturer: "Quectel") == .on)
        #expect(sim.commandLog.suffix(2).map { $0.uppercased() } == ["AT+QSIMSTAT?", "AT+QSIMDET?"])
    }

    @Test func detectionOffIsSaid() async throws {
        var quirks = SimulatorQuirks()
        quirks.simDetectionOff = true
        let (sim, channel) = try Self.session(quirks)
        defer { channel.close(); sim.stop() }
        #expect(await SIMReportingSetup.run(on: channel, manufacturer: "Quectel") == .detectionOff)
    }

    @Test func aVendorWithoutASettingIsNotAsked() async throws {
        let (sim, channel) = try Self.session(profile: .ublox)
        defer { channel.close(); sim.stop() }
        #expect(await SIMReportingSetup.run(on: channel, manufacturer: "u-blox") == .notApplicable)
        #expect(sim.commandLog.isEmpty)
    }

    @Test func aSilentModuleRefuses() async throws {
        var quirks = SimulatorQuirks()
        quirks.silent = true
        let (sim, channel) = try Self.session(quirks)
        defer { channel.close(); sim.stop() }
        #expect(
            await SIMReportingSetup.run(on: channel, manufacturer: "Quectel", timeout: .milliseconds(200)) == .refused)
    }

    @Test func aCancelledSetupConcludesNothing() async throws {
        var quirks = SimulatorQuirks()
        quirks.responseDelayMilliseconds = 300
        let (sim, channel) = try Self.session(quirks)
        defer { channel.close(); sim.stop() }
        let setup = Task { await SIMReportingSetup.run(on: channel, manufacturer: "Quectel") }
        try await Task.sleep(for: .milliseconds(100))
        setup.cancel()
        #expect(await setup.value == nil)
    }

    @Test func aPortClosedDuringTheSetupConcludesNothing() async throws {
        var quirks = SimulatorQuirks()
        quirks.unplugAfterCommands = 2  // answers AT+QSIMSTAT?, goes away on AT+QSIMSTAT=1
        let (sim, channel) = try Self.session(quirks)
        defer { channel.close(); sim.stop() }
        #expect(await SIMReportingSetup.run(on: channel, manufacturer: "Quectel") == nil)
    }
}
