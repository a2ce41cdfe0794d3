import CellprovCore
import CellprovModem
import CellprovSerial
import CellprovSimulator
import Logging
import NIOConcurrencyHelpers
import Testing

/// The EID step of the identity read over real PTYs served by the simulator (issue 15): an eUICC, a plain UICC, the
/// firmware quirks of lpac's users, the SIM states that forbid it, the command budget, the port session's memory of a
/// plain card, and that every channel opened is closed (also after timeouts).
@Suite struct EIDReaderTests {
    /// pySim's GetEuiccData vector and two of pmoerenhout/validator's Iso7064Test EIDs (all mod 97 == 1).
    static let eid = "89882119900000000000000000000005"
    static let otherEID = "89001012012341234012345678901224"
    static let imei = TestIdentities.imei(tac: "86695404", serial: "123456")
    static let profiles = [
        SimulatedProfile(iccid: TestIdentities.iccid("894920000000000101"), imsi: "262010000000101"),
        SimulatedProfile(iccid: TestIdentities.iccid("894430000000000202"), imsi: "234150000000202"),
    ]

    static func options(
        _ profile: VendorProfile = .quectel, euicc: Bool = true, quirks: SimulatorQuirks = .init(),
        _ change: (inout LogicalChannelOptions) -> Void = { _ in }
    ) -> SimulatorOptions {
        var o = SimulatorOptions(
            profile: profile,
            identity: SimulatedIdentity(
                imei: imei, imsi: "310260123456789", iccid: TestIdentities.iccid("891004234814455936")),
            quirks: quirks)
        if euicc { o.logicalChannels.euicc = SimulatedEUICC(eid: eid, profiles: profiles) }
        change(&o.logicalChannels)
        return o
    }

    static func reader(commandTimeout: Duration = .seconds(2)) -> IdentityReader {
        var options = IdentityReadOptions()
        options.wakeTimeouts = [.seconds(1), .seconds(2)]
        options.commandTimeout = commandTimeout
        options.resyncQuiet = .milliseconds(30)
        options.resyncLimit = .milliseconds(300)
        options.simBusyLimit = .seconds(6)
        return IdentityReader(options: options, logger: Logger(label: "test"))
    }

    /// One read as `cellprov probe` does it: open, read, close.
    static func probe(_ options: SimulatorOptions) async throws -> (IdentityReport, [String], ModemSimulator) {
        let sim = try ModemSimulator(options)
        let report = await reader().read(port: sim.path)
        return (report, sim.commandLog.map { $0.uppercased() }, sim)
    }

    /// A port session as the daemon keeps it: one channel, several reads.
    final class PortSession: Sendable {
        let sim: ModemSimulator
        let channel: ATChannel
        let reader: IdentityReader

        init(_ options: SimulatorOptions, commandTimeout: Duration = .seconds(2)) throws {
            sim = try ModemSimulator(options)
            channel = ATChannel(transport: try SerialPort.open(sim.path), logger: Logger(label: "test"))
            channel.start()
            reader = EIDReaderTests.reader(commandTimeout: commandTimeout)
        }

        func read() async -> (IdentityReport, [String]) {
            let before = sim.commandLog.count
            let report = await reader.read(channel: channel, port: sim.path)
            return (report, sim.commandLog.dropFirst(before).map { $0.uppercased() })
        }

        deinit {
            channel.close()
            sim.stop()
        }
    }

    static let eightCommands = [
        "ATE0", "AT+CMEE=2", "AT+CGMI", "AT+CGMM", "AT+CGMR", "AT+CGSN", "AT+CIMI", "AT+CCID",
    ]
    static let open = EUICCAccess.openCommand.uppercased()

    // MARK: - Budget and answers

    @Test func eUICCReadTakesElevenCommandsAndClosesItsChannel() async throws {
        let (report, log, sim) = try await Self.probe(Self.options())
        defer { sim.stop() }
        #expect(report.isValid, "\(report.problems)")
        #expect(report.eidStatus == .read)
        #expect(report.eid?.unredacted == Self.eid)
        #expect(report.iccid?.unredacted == Self.profiles[0].iccid, "the enabled profile's ICCID")
        #expect(report.imsi?.unredacted == Self.profiles[0].imsi)
        #expect(log == Self.eightCommands + [Self.open, "AT+CGLA=1,24,\"81E2910006BF3E035C015A00\"", "AT+CCHC=1"])
        #expect(report.commandCount == 11)
        #expect(sim.openLogicalChannels == 0)
        #expect(!log.contains { $0.hasSuffix("=?") }, "no test forms: several modules refuse them (lpac #300)")
    }

    @Test func plainSIMCostsOneCommandPerInsertion() async throws {
        let session = try PortSession(Self.options(euicc: false))
        let (first, firstLog) = await session.read()
        #expect(first.isValid, "\(first.problems)")
        #expect(first.eid == nil)
        #expect(first.eidStatus == .noEUICC)
        #expect(firstLog == Self.eightCommands + [Self.open])
        #expect(first.commandCount == 9)

        for _ in 0..<3 {
            let (again, log) = await session.read()
            #expect(again.eidStatus == .noEUICC)
            #expect(log == Self.eightCommands, "the same card is not asked again in this port session")
            #expect(again.commandCount == 8)
        }

        // Another card: asked once more.
        let newICCID = TestIdentities.iccid("894920000099999999")
        session.sim.swapSIM(SimulatedIdentity(imsi: "262019999999999", iccid: newICCID))
        let (swapped, swappedLog) = await session.read()
        #expect(swapped.iccid?.unredacted == TestIdentities.iccid("894920000099999999"))
        #expect(swappedLog.last == Self.open)
        #expect(swapped.eidStatus == .noEUICC)

        // The same card out and in again: a new insertion, one command again.
        session.sim.setSIMPresent(false)
        let (absent, absentLog) = await session.read()
        #expect(absent.eidStatus == .notAttempted)
        #expect(!absentLog.contains(Self.open))
        session.sim.setSIMPresent(true)
        let (back, backLog) = await session.read()
        #expect(backLog.last == Self.open)
        #expect(back.commandCount == 9)
    }

    struct RefusalCase: Sendable, CustomTestStringConvertible {
        var name: String
        var answer: String
        var unsupported = false
        var testDescription: String { name }
    }

    static let refusals: [RefusalCase] = [
        RefusalCase(name: "ERROR (openpilot #37847)", answer: "ERROR"),
        RefusalCase(name: "+CME ERROR: 13 (openpilot #37979)", answer: "+CME ERROR: 13"),
        RefusalCase(name: "+CME ERROR: Parameters error (lpac #187)", answer: "+CME ERROR: Parameters error"),
        RefusalCase(name: "no logical channels at all", answer: "ERROR", unsupported: true),
    ]

    @Test(arguments: refusals)
    func aRefusedOpenIsAPlainCardNotASIMFailure(_ c: RefusalCase) async throws {
        let (report, log, sim) = try await Self.probe(Self.options(euicc: false) {
            $0.plainUICCAnswer = c.answer
            $0.unsupported = c.unsupported
        })
        defer { sim.stop() }
        #expect(report.isValid, "\(report.problems)")
        #expect(report.problems.isEmpty, "+CME ERROR: 13 after AT+CCHO is no sim_failure: \(report.problems)")
        #expect(report.eidStatus == .noEUICC)
        #expect(log.last == Self.open)
        #expect(report.commandCount == 9)
    }

    struct QuirkCase: Sendable, CustomTestStringConvertible {
        var name: String
        var profile: VendorProfile
        var commands: Int
        var change: @Sendable (inout LogicalChannelOptions) -> Void
        var testDescription: String { name }
    }

    static let quirks: [QuirkCase] = [
        QuirkCase(name: "bare channel number (Fibocom FM350-GL, lpac #209)", profile: .fibocom, commands: 12) {
            $0.bareChannelNumber = true
        },
        QuirkCase(name: "session handle (Sierra MC7455, lpac #139)", profile: .sierra, commands: 11) {
            $0.sessionHandles = true
        },
        QuirkCase(name: "61xx and +CGLA: without blank (SIMCom A7908E, lpac #238)", profile: .simcom, commands: 12) {
            $0.getResponseNeeded = true
            $0.noBlankAfterColon = true
        },
        QuirkCase(name: "6Cxx: resend with the right Le", profile: .quectel, commands: 12) {
            $0.wrongLengthFirst = true
        },
    ]

    @Test(arguments: quirks)
    func firmwareQuirksStillYieldTheEID(_ c: QuirkCase) async throws {
        var options = Self.options(c.profile)
        c.change(&options.logicalChannels)
        let sim = try ModemSimulator(options)
        defer { sim.stop() }
        let report = await Self.reader().read(port: sim.path)
        let log = sim.commandLog.map { $0.uppercased() }
        #expect(report.isValid, "\(report.problems) after \(log)")
        #expect(report.eidStatus == .read, "\(log)")
        #expect(report.eid?.unredacted == Self.eid)
        #expect(report.commandCount == c.commands, "\(log)")
        #expect(sim.openLogicalChannels == 0, "\(log)")
        #expect(log.last?.hasPrefix("AT+CCHC=") == true)
    }

    @Test func channelThreeIsWrittenBackAndItsClassByteCarriesIt() async throws {
        // Two channels already open on the card (another user): ours is 3, a bare "3" (no NO CARRIER) and CLA 83.
        var options = Self.options(.fibocom) {
            $0.bareChannelNumber = true
            $0.maxChannels = 4
        }
        options.quirks = SimulatorQuirks()
        let session = try PortSession(options)
        // Hold channels 1 and 2 through the session's own port, as another user's would be.
        for _ in 0..<2 { _ = try await session.channel.send(EUICCAccess.openCommand, timeout: .seconds(2)) }
        #expect(session.sim.openLogicalChannels == 2)
        let (report, log) = await session.read()
        #expect(report.eid?.unredacted == Self.eid, "\(log)")
        #expect(log.contains("AT+CGLA=3,24,\"83E2910006BF3E035C015A00\""), "\(log)")
        #expect(log.last == "AT+CCHC=3")
        #expect(session.sim.openLogicalChannels == 2, "only ours is closed")
    }

    @Test func sequansGivesTheEIDWithTheICCID() async throws {
        // QuickSpot/walter-arduino PR #126: +SQNCCID: "<ICCID>","<EID>". No logical channel needed.
        let (report, log, sim) = try await Self.probe(Self.options(.sequans))
        defer { sim.stop() }
        #expect(report.isValid, "\(report.problems)")
        #expect(report.eid?.unredacted == Self.eid)
        #expect(report.eidStatus == .read)
        #expect(!log.contains(Self.open), "\(log)")
        #expect(report.commandCount == 9, "AT+CCID refused, then AT+SQNCCID: \(log)")
        #expect(sim.logicalChannelOpens == 0)

        // A plain SIM's empty EID field says nothing for sure: the standard way is tried (and refused) once.
        let (plain, plainLog, plainSim) = try await Self.probe(Self.options(.sequans, euicc: false))
        defer { plainSim.stop() }
        #expect(plain.eidStatus == .noEUICC)
        #expect(plainLog.last == Self.open)
    }

    // MARK: - When not to ask

    @Test func noChannelWithoutASIMOrWithALockedOne() async throws {
        var absent = SimulatorQuirks()
        absent.simAbsent = true
        var pin = SimulatorQuirks()
        pin.simPIN = true
        var puk = SimulatorQuirks()
        puk.simPUK = true
        for quirks in [absent, pin, puk] {
            let (report, log, sim) = try await Self.probe(Self.options(quirks: quirks))
            defer { sim.stop() }
            #expect(!log.contains { $0.hasPrefix("AT+CCH") || $0.hasPrefix("AT+CGLA") }, "\(log)")
            #expect(report.eidStatus == .notAttempted)
            #expect(report.eid == nil)
            #expect(sim.logicalChannelOpens == 0)
        }
    }

    // MARK: - Profile switch

    @Test func aProfileSwitchKeepsTheEIDAndChangesTheProfile() async throws {
        let session = try PortSession(Self.options())
        var urcs = session.channel.unsolicited.makeAsyncIterator()
        let (before, _) = await session.read()
        #expect(before.eid?.unredacted == Self.eid)
        #expect(before.iccid?.unredacted == Self.profiles[0].iccid)

        #expect(session.sim.enableProfile(1))
        var seen: [String] = []
        while seen.count < 2, let urc = await urcs.next() { seen.append(urc.text) }
        #expect(seen == ["+CPIN: READY", "+QUSIM: 1"], "the REFRESH's URCs, Quectel's +QUSIM included")
        #expect(seen.allSatisfy(VendorCatalog.isSIMEvent))

        let (after, log) = await session.read()
        #expect(after.eid?.unredacted == Self.eid, "same card")
        #expect(after.iccid?.unredacted == Self.profiles[1].iccid, "another profile")
        #expect(after.imsi?.unredacted == Self.profiles[1].imsi)
        #expect(log.count == 11)
        #expect(session.sim.openLogicalChannels == 0)
        #expect(!session.sim.enableProfile(7), "no such profile")
    }

    @Test func swapsBetweenPlainCardsAndEUICCsAreSeen() async throws {
        // The port session's memory is per card: a plain SIM's refusal must not hide the eUICC that replaces it.
        let session = try PortSession(Self.options(euicc: false))
        let (plain, _) = await session.read()
        #expect(plain.eidStatus == .noEUICC)
        let (plainAgain, _) = await session.read()
        #expect(plainAgain.commandCount == 8)

        session.sim.swapCard(SimulatedIdentity(), euicc: SimulatedEUICC(eid: Self.otherEID, profiles: Self.profiles))
        let (euicc, log) = await session.read()
        #expect(euicc.eid?.unredacted == Self.otherEID, "\(log)")
        #expect(euicc.iccid?.unredacted == Self.profiles[0].iccid)
        #expect(euicc.commandCount == 11)

        // Back to a plain card: no EID, and the refusal costs one command again.
        let plainICCID = TestIdentities.iccid("894920000077777777")
        session.sim.swapCard(SimulatedIdentity(imsi: "262017777777777", iccid: plainICCID), euicc: nil)
        let (back, backLog) = await session.read()
        #expect(back.eid == nil)
        #expect(back.eidStatus == .noEUICC)
        #expect(back.iccid?.unredacted == plainICCID)
        #expect(backLog.last == Self.open)
        #expect(session.sim.openLogicalChannels == 0)
    }

    // MARK: - Leaks

    @Test func noEIDDigitsInLogsReportsOrProblems() async throws {
        // Trace level, every message and its metadata, over the quirkiest reads, an invalid EID and a switch.
        let capture = MetadataLogCapture()
        var reader = Self.reader(commandTimeout: .milliseconds(200))
        reader.logger = capture.logger
        var texts: [String] = []
        var patterns: [String] = []
        let badEID = "89882119900000000000000000000006"  // pySim's EID with a wrong check digit
        let variants: [(inout SimulatorOptions) -> Void] = [
            { _ in },
            { $0.logicalChannels.sessionHandles = true },
            {
                $0.logicalChannels.getResponseNeeded = true
                $0.logicalChannels.wrongLengthFirst = true
            },
            { $0.logicalChannels.silentCGLA = 1 },
            { $0.logicalChannels.euicc?.eid = badEID },
        ]
        for variant in variants {
            var options = Self.options()
            variant(&options)
            let sim = try ModemSimulator(options)
            defer { sim.stop() }
            let report = await reader.read(port: sim.path)
            _ = sim.enableProfile(1)
            let again = await reader.read(port: sim.path)
            for r in [report, again] {
                texts.append(String(describing: r))
                texts.append(String(reflecting: r))
                texts += r.problems.map(\.description)
                if let eid = r.eid { texts.append("\(eid)") }
            }
            patterns += try #require(options.logicalChannels.euicc).leakPatterns
            patterns += options.identity.leakPatterns
        }
        texts += capture.texts
        #expect(capture.texts.contains { $0.contains("AT+CGLA") }, "the trace level was captured")
        #expect(texts.contains { $0.contains("eid_invalid") }, "the invalid EID was reported")
        for pattern in Set(patterns) {
            for text in texts where text.contains(pattern) {
                Issue.record("identifier digits in output: \(Redaction.scrub(text))")
            }
        }
    }


    @Test func noChannelLeaksAfter100ReReadsAnd20Timeouts() async throws {
        // A card with 3 channels: a leak of one per read would exhaust it within 3 reads.
        let session = try PortSession(
            Self.options {
                $0.maxChannels = 3
                $0.silentCGLA = 20
                $0.silentCCHC = 2
            }, commandTimeout: .milliseconds(250))
        var timedOut = 0
        var read = 0
        for _ in 0..<120 {
            let (report, log) = await session.read()
            #expect(report.imei != nil && report.iccid != nil, "\(report.problems)")
            switch report.eidStatus {
            case .read:
                read += 1
                #expect(report.eid?.unredacted == Self.eid)
            case .failed:
                timedOut += 1
                #expect(report.problems.map(\.code) == [.timeout], "a warning, the read stays valid")
                #expect(report.isValid)
            default:
                Issue.record("unexpected \(report.eidStatus) after \(log)")
            }
            #expect(log.contains { $0.hasPrefix("AT+CCHC=") } || report.eidStatus == .noEUICC, "\(log)")
            #expect(session.sim.openLogicalChannels <= 1, "at most the one left by a swallowed close")
        }
        // 20 swallowed by the card; a loaded machine may add a late answer or two, never fewer.
        #expect(timedOut >= 20 && timedOut <= 23, "\(timedOut) timeouts")
        #expect(read + timedOut == 120)
        #expect(session.sim.logicalChannelOpens == 120)
        let (last, _) = await session.read()
        #expect(last.eidStatus == .read)
        #expect(session.sim.openLogicalChannels == 0, "channels leaked: \(session.sim.openLogicalChannels)")
    }
}

/// Keeps every log record with its metadata, for leak scans.
final class MetadataLogCapture: Sendable {
    private let records = NIOLockedValueBox<[String]>([])
    var texts: [String] { records.withLockedValue { $0 } }

    var logger: Logger {
        var logger = Logger(label: "capture") { _ in Handler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    fileprivate func append(_ text: String) { records.withLockedValue { $0.append(text) } }

    struct Handler: LogHandler {
        let capture: MetadataLogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append("\(event.message) \(all.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        }
    }
}
