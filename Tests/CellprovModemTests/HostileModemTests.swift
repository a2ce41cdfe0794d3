import CellprovCore
import CellprovModem
import CellprovSerial
import CellprovSimulator
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

/// Modems that send anything (issue "hardened against hostile modems"), over real PTYs served by the simulator's
/// hostile quirks: random bytes without pause, an answer that never ends, echoes of a command we did not send, one
/// byte per 100 ms. Bounds are asserted structurally (log lines, bytes held, problem codes), and the figures printed.
@Suite struct HostileModemTests {
    static let identity = IdentityReaderTests.identity

    static func reader(timeout: Duration, logger: Logger = Logger(label: "test")) -> IdentityReader {
        var r = IdentityReaderTests.reader(timeout: timeout)
        r.logger = logger
        return r
    }

    static func simulator(_ configure: (inout SimulatorQuirks) -> Void) throws -> ModemSimulator {
        var quirks = SimulatorQuirks()
        configure(&quirks)
        return try ModemSimulator(SimulatorOptions(profile: .quectel, identity: identity, quirks: quirks))
    }

    static func channel(
        _ path: String, logger: Logger = Logger(label: "test"), limits: ATAnswerLimits = .init(),
        rateLimit: InputRateLimit = .init()
    ) throws -> ATChannel {
        let channel = ATChannel(
            transport: try SerialPort.open(path), logger: logger, limits: limits, rateLimit: rateLimit)
        channel.start()
        return channel
    }

    /// Waits until the simulator has received `count` command lines (at most 5 s).
    static func waitForCommands(_ sim: ModemSimulator, _ count: Int) async {
        let end = ContinuousClock.now.advanced(by: .seconds(5))
        while sim.commandLog.count < count && ContinuousClock.now < end { try? await Task.sleep(for: .milliseconds(5)) }
    }

    @Test func randomBytesEndAsNotAModemWithAFewLogLines() async throws {
        let sim = try Self.simulator { $0.randomBytes = true }
        defer { sim.stop() }
        let capture = LogCapture()
        let opened = ContinuousClock.now
        let channel = try Self.channel(sim.path, logger: capture.logger)
        let report = await Self.reader(timeout: .seconds(4), logger: capture.logger)
            .read(channel: channel, port: sim.path)
        let (received, dropped, paused) = (channel.receivedByteCount, channel.droppedByteCount, channel.pausedTime)
        channel.close()
        let open = ContinuousClock.now - opened
        let warnings = capture.messages.filter { $0.level >= .warning }
        print("random bytes for \(report.elapsed): received \(received) B, dropped \(dropped) B, reads paused "
            + "\(paused), \(warnings.count) warning lines: \(warnings.map(\.text))")
        #expect(report.problems.contains { $0.code == .notAModem && $0.field == .port && $0.severity == .error })
        #expect(report.portUnusable)
        #expect(report.manufacturer == nil && report.model == nil && report.revision == nil)
        #expect(report.imei == nil && report.imsi == nil && report.iccid == nil)
        #expect(dropped > 0)
        // The first occurrence and the summary at close; nothing per chunk.
        #expect(warnings.count <= 3, "\(warnings.map(\.text))")
        #expect(warnings.first?.text.contains("first occurrence") == true)
        // The pacing bound: the burst plus 32 KiB per second the channel was open (plus one second of slack). The
        // read takes about 4 s on a quiet machine; on a loaded one it lasts longer, and so may the bytes.
        let seconds = Double(open.components.seconds) + Double(open.components.attoseconds) / 1e18 + 1
        #expect(Double(received) <= 128 * 1024 + 32 * 1024 * seconds, "reads are paced to the rate limit (\(open))")
    }

    /// A command carrying what the modem answered (a session handle written back in `AT+CGLA`/`AT+CCHC`) is logged
    /// and described scrubbed: a hostile modem can answer an IMSI as its session handle (an `identity` fuzz finding).
    @Test func aCommandIsLoggedScrubbed() async throws {
        let sim = try Self.simulator { _ in }
        defer { sim.stop() }
        let capture = MetadataLogCapture()
        let channel = try Self.channel(sim.path, logger: capture.logger)
        defer { channel.close() }
        let imsi = try #require(Self.identity.imsi)
        let answer = try await channel.send("AT+CCHC=\(imsi)", timeout: .seconds(2))
        #expect(!answer.result.isSuccess, "no such session")
        #expect(capture.texts.contains { $0.contains("AT+CCHC=") }, "\(capture.texts)")
        #expect(!capture.texts.contains { $0.contains(imsi) }, "\(capture.texts)")
        #expect(ATChannel.loggable("AT+CGSN") == "AT+CGSN")
    }

    @Test func endlessAnswerIsCutAtTheCapAndHoldsNoMore() async throws {
        let sim = try Self.simulator { $0.endlessAnswer = true }
        defer { sim.stop() }
        // The byte cap is the one reached (lines of ~10 bytes), and reads are paced slowly enough (16 KiB/s) that
        // the sampler sees the answer grow to the cap and stop there.
        let limits = ATAnswerLimits(maxLines: 100_000, maxBytes: 64 * 1024)
        let channel = try Self.channel(
            sim.path, limits: limits, rateLimit: InputRateLimit(bytesPerSecond: 16 * 1024, burst: 4096))
        defer { channel.close() }
        let peak = NIOLockedValueBox(0)
        let sampler = Task {
            while !Task.isCancelled {
                let held = channel.heldAnswerByteCount
                peak.withLockedValue { $0 = max($0, held) }
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
        var codes: [ATChannelError.Code] = []
        for (command, timeout) in [("AT+CGMI", Duration.seconds(20)), ("AT+CGMM", .seconds(2))] {
            do {
                _ = try await channel.send(command, timeout: timeout)
                Issue.record("an endless answer completed")
            } catch let e as ATChannelError {
                codes.append(e.code)
            }
        }
        sampler.cancel()
        let held = peak.withLockedValue { $0 }
        print("endless answer: \(channel.receivedByteCount) B received, peak held \(held) B "
            + "(cap \(limits.maxBytes) B), outcomes \(codes)")
        #expect(codes.first == .answerTooLong)
        // The next command finds the cut answer's tail still running: skipped up to its timeout (or cut again).
        #expect(codes.last == .timeout || codes.last == .answerTooLong)
        #expect(held > limits.maxBytes / 2, "the sampler saw the answer grow")
        #expect(held <= limits.maxBytes)
        #expect(channel.heldAnswerByteCount == 0)
    }

    @Test func endlessAnswerIsAPortProblem() async throws {
        let sim = try Self.simulator { $0.endlessAnswer = true }
        defer { sim.stop() }
        let report = await Self.reader(timeout: .seconds(4)).read(port: sim.path)
        #expect(report.problems.contains { $0.code == .answerTooLong })
        #expect(report.problems.contains { $0.code == .notAModem })
        #expect(report.portUnusable)
        #expect(report.manufacturer == nil)
    }

    @Test func channelResynchronisesAfterACutAnswer() async throws {
        let sim = try Self.simulator { $0.silent = true }  // the test writes the modem's side itself
        defer { sim.stop() }
        let channel = try Self.channel(sim.path, limits: ATAnswerLimits(maxLines: 8, maxBytes: 1024))
        defer { channel.close() }
        let first = Task { try await channel.send("AT+CGMI", timeout: .seconds(5)) }
        await Self.waitForCommands(sim, 1)
        for i in 0..<20 { sim.sendURC("Line \(i) of an answer too long") }
        await #expect(throws: ATChannelError.self) { _ = try await first.value }
        do {
            _ = try await first.value
        } catch let e as ATChannelError {
            #expect(e.code == .answerTooLong)
        }
        sim.sendURC("tail of the cut answer")
        sim.sendURC("+QUSIM: 1")  // a URC inside the tail is still delivered
        sim.sendURC("OK")  // the cut answer's own final result: skipped with it
        let second = Task { try await channel.send("AT+CGMM", timeout: .seconds(5)) }
        await Self.waitForCommands(sim, 2)
        sim.sendURC("EC25")
        sim.sendURC("OK")
        let answer = try await second.value
        #expect(answer == ATAnswer(lines: ["EC25"], result: .ok))
        var urcs = channel.unsolicited.makeAsyncIterator()
        #expect(await urcs.next()?.text == "+QUSIM: 1")
    }

    @Test func implausibleLineSpoilsTheWholeAnswer() async throws {
        let sim = try Self.simulator { $0.silent = true }
        defer { sim.stop() }
        let channel = try Self.channel(sim.path)
        defer { channel.close() }
        let pending = Task { try await channel.send("AT+CGMI", timeout: .seconds(5)) }
        await Self.waitForCommands(sim, 1)
        sim.sendURC(String(repeating: "Q", count: 600))
        sim.sendURC("Quectel")
        sim.sendURC("OK")
        do {
            let a = try await pending.value
            Issue.record("accepted \(a.lines.count) lines")
        } catch let e as ATChannelError {
            #expect(e.code == .unreadable)
        }
        #expect(channel.answeredCount == 0)
    }

    @Test(arguments: [false, true])
    func foreignEchoIsNeverTakenAsAnAnswer(echoAlways: Bool) async throws {
        let sim = try Self.simulator {
            $0.foreignEcho = "AT+CFUN=0"
            $0.echoAlways = echoAlways
        }
        defer { sim.stop() }
        let report = await Self.reader(timeout: .seconds(10)).read(port: sim.path)
        #expect(report.isValid, "\(report.problems)")
        #expect(report.manufacturer == "Quectel")
        #expect(report.model == "EC25")
        #expect(report.imsi?.unredacted == Self.identity.imsi)
        #expect(report.imei?.unredacted == Self.identity.imei)
        #expect(report.iccid?.unredacted == Self.identity.iccid)
    }

    @Test func implausibleModuleTextIsNotStored() async throws {
        var id = Self.identity
        id.manufacturer = String(repeating: "Quectel ", count: 40)  // 320 characters: a line, but no name
        let sim = try ModemSimulator(SimulatorOptions(profile: .quectel, identity: id))
        defer { sim.stop() }
        let report = await Self.reader(timeout: .seconds(10)).read(port: sim.path)
        #expect(report.manufacturer == nil)
        #expect(report.model == "EC25")
        #expect(report.isValid, "the identities are still read: \(report.problems)")
    }

    @Test func portSendingOnlyURCsIsNoResponseNotNoise() async throws {
        let sim = try Self.simulator { $0.silent = true }
        defer { sim.stop() }
        let urcs = Task {
            while !Task.isCancelled {
                sim.sendURC("RDY")
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        defer { urcs.cancel() }
        let report = await Self.reader(timeout: .seconds(4)).read(port: sim.path)
        #expect(report.problems.map(\.code) == [.noResponse], "a module still booting is not a hostile one")
    }

    @Test func trickleThatNeverFinishesIsAPortProblem() async throws {
        let sim = try Self.simulator { $0.trickleMilliseconds = 100 }
        defer { sim.stop() }
        let report = await Self.reader(timeout: .seconds(3)).read(port: sim.path)
        print("trickle: \(report.commandCount) commands, problems \(report.problems.map(\.code))")
        #expect(report.problems.contains { $0.code == .timeout && $0.field == .port && $0.severity == .error })
        #expect(!report.problems.contains { $0.code == .timeout && $0.severity == .warning })
        #expect(report.portUnusable)
    }
}

/// Keeps every log record, to count what a hostile port makes us log.
final class LogCapture: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var text: String
    }

    private let records = NIOLockedValueBox<[Record]>([])
    var messages: [Record] { records.withLockedValue { $0 } }

    var logger: Logger {
        var logger = Logger(label: "capture") { _ in Handler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    fileprivate func append(_ r: Record) { records.withLockedValue { $0.append(r) } }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            capture.append(Record(level: event.level, text: "\(event.message)"))
        }
    }
}
