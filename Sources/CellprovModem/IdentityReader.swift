import CellprovCore
import CellprovSerial
import Logging

/// Limits of one identity read.
public struct IdentityReadOptions: Sendable {
    /// The whole read, open to last answer.
    public var timeout: Duration = .seconds(10)
    /// One command's answer.
    public var commandTimeout: Duration = .seconds(3)
    /// Escalating waits for the first answer after open (the first command may be swallowed).
    public var wakeTimeouts: [Duration] = [.milliseconds(500), .seconds(1), .seconds(2)]
    /// How long a busy SIM (+CME ERROR: 14) is retried.
    public var simBusyLimit: Duration = .seconds(8)
    /// After a timeout: how long the line must stay quiet before the next command, and the most that wait takes.
    public var resyncQuiet: Duration = .milliseconds(150)
    public var resyncLimit: Duration = .seconds(1)
    public var serial = SerialSettings()

    public init() {}
}

/// Reads IMEI, IMSI, ICCID, manufacturer, model and revision from one AT port with as few commands as it can:
/// ATE0, AT+CMEE=2, AT+CGMI, AT+CGMM, AT+CGMR, AT+CGSN, AT+CIMI, AT+CCID on a healthy modem (8), fallbacks only when
/// an answer fails: AT+CGSN=1 and AT+GSN for the IMEI; a read of EF_IMSI (`AT+CRSM=176,28423,0,0,9`) for the IMSI;
/// the vendor's ICCID command, a read of EF_ICCID and AT+ICCID for the ICCID. It waits on no fixed timer except after
/// a timeout (to resynchronise) or a busy SIM (backoff).
///
/// Nothing here assumes an IMEI is unique or constant: each read stands alone.
public struct IdentityReader: Sendable {
    public var options: IdentityReadOptions
    public var logger: Logger

    public init(options: IdentityReadOptions = .init(), logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Opens `path`, reads, closes. Never throws: every failure is a problem in the report.
    public func read(port path: String) async -> IdentityReport {
        let clock = ContinuousClock()
        let start = clock.now
        let port: SerialPort
        do {
            port = try SerialPort.open(path, settings: options.serial)
        } catch {
            var report = IdentityReport(port: path)
            report.problems.append(Self.problem(for: error))
            report.elapsed = clock.now - start
            logger.warning("cannot open port", metadata: ["port": "\(path)", "reason": "\(error.code)"])
            return report
        }
        let channel = ATChannel(transport: port, logger: logger)
        channel.start()
        var report = await read(channel: channel, port: path, startedAt: start)
        channel.close()
        report.elapsed = clock.now - start
        return report
    }

    /// Reads over an open channel (the daemon keeps its channel; the probe opens one per read).
    public func read(channel: ATChannel, port: String, startedAt: ContinuousClock.Instant? = nil) async
        -> IdentityReport
    {
        let clock = ContinuousClock()
        let start = startedAt ?? clock.now
        let commandsBefore = channel.commandCount
        var session = Session(
            channel: channel, options: options, deadline: start.advanced(by: options.timeout), logger: logger)
        var report = IdentityReport(port: port)
        await session.run(into: &report)
        report.problems = session.problems
        report.commandCount = channel.commandCount - commandsBefore
        report.elapsed = clock.now - start
        return report
    }

    /// The problem a port that cannot be opened stands for.
    public static func problem(for error: SerialError) -> Problem {
        switch error.code {
        case .busy:
            Problem(.portBusy, field: .port, message: "the port is held by another process")
        case .notFound:
            Problem(.portUnavailable, field: .port, message: "the port does not exist")
        case .permissionDenied:
            Problem(.portUnavailable, field: .port, message: "no permission to open the port")
        case .notATTY:
            Problem(.portUnavailable, field: .port, message: "the path is not a serial port")
        default:
            Problem(.portUnavailable, field: .port, message: "the port cannot be used: \(error.detail)")
        }
    }
}

/// One read's state: the channel, the deadline and the problems found so far.
struct Session {
    let channel: ATChannel
    let options: IdentityReadOptions
    let deadline: ContinuousClock.Instant
    let logger: Logger
    var problems: [Problem] = []
    var simCondition: CMEError.SIMCondition?
    var stopped = false
    /// The EID a vendor's ICCID answer carried (Sequans `+SQNCCID`), raw.
    var vendorEIDDigits: String?
    let clock = ContinuousClock()
    /// The channel's counters when this read began (the daemon's channel outlives reads).
    let droppedBefore: Int
    let answeredBefore: Int
    let answerLinesBefore: Int

    init(channel: ATChannel, options: IdentityReadOptions, deadline: ContinuousClock.Instant, logger: Logger) {
        self.channel = channel
        self.options = options
        self.deadline = deadline
        self.logger = logger
        droppedBefore = channel.droppedByteCount
        answeredBefore = channel.answeredCount
        answerLinesBefore = channel.answerLineCount
    }

    enum Outcome {
        case answer(ATAnswer)
        case failed  // timeout: already recorded; try a fallback if any
    }

    mutating func run(into report: inout IdentityReport) async {
        guard await wake() else { return }
        _ = await send("AT+CMEE=2")

        report.manufacturer = await text("AT+CGMI", fallback: "AT+GMI", tags: ["+CGMI:", "+GMI:", "Manufacturer:"])
        report.model = await text("AT+CGMM", fallback: "AT+GMM", tags: ["+CGMM:", "+GMM:", "Model:"])
        report.revision = await text("AT+CGMR", fallback: "AT+GMR", tags: ["+CGMR:", "+GMR:", "Revision:"])
        report.imei = await readIMEI()
        report.imsi = await readIMSI()
        report.iccid = await readICCID(dialect: VendorCatalog.dialect(forManufacturer: report.manufacturer))
        (report.eid, report.eidStatus) = await readEID(iccid: report.iccid, imsi: report.imsi)
    }

    // MARK: - Steps

    /// ATE0 until the modem answers, with escalating waits; false (and `no_response`) if it never does.
    mutating func wake() async -> Bool {
        for (attempt, wait) in options.wakeTimeouts.enumerated() {
            guard !stopped else { return false }
            switch await send("ATE0", timeout: wait, recordTimeout: false) {
            case .answer:
                if attempt > 0 { logger.debug("modem answered after retries", metadata: ["attempts": "\(attempt + 1)"]) }
                return true
            case .failed:
                continue
            }
        }
        stop(unansweredPortProblem())
        return false
    }

    /// Why a port that never completed a trusted answer is unusable. A port that sent only noise (unreadable or
    /// implausible lines, answers cut at the size cap) is not a modem, whatever random text it happened to frame;
    /// one that began answering (echoes, answer lines) but never finished timed out; one that sent nothing, or
    /// only URCs (a module still booting), did not respond.
    func unansweredPortProblem() -> Problem {
        let answering = channel.answerLineCount > answerLinesBefore
        let noisy = channel.droppedByteCount > droppedBefore
            || problems.contains { $0.code == .garbage || $0.code == .answerTooLong }
        if noisy {
            return Problem(
                .notAModem, field: .port,
                message: "the port sends data but no readable AT answer: not a modem, or the wrong baud rate")
        }
        if answering {
            return Problem(.timeout, field: .port, message: "the port never completed an answer in time")
        }
        return Problem(.noResponse, field: .port, message: "the modem did not answer AT commands")
    }

    mutating func text(_ command: String, fallback: String, tags: [String]) async -> String? {
        for cmd in [command, fallback] {
            guard case .answer(let a)? = await sendIfRunning(cmd), a.result.isSuccess else { continue }
            if let value = ATResponse.text(in: a.lines, tags: tags) {
                if Self.isPlausibleModuleText(value) { return value }
                logger.debug(
                    "implausible module text",
                    metadata: ["command": "\(ATChannel.loggable(cmd))", "length": "\(value.count)"])
            }
        }
        return nil
    }

    /// Manufacturer, model and revision are short names (the longest in the vendor manuals: a Sierra revision of
    /// about 70 characters); they go into the store and the backend payload, so a module's wall of text does not.
    static func isPlausibleModuleText(_ value: String) -> Bool {
        value.utf8.count <= 128 && value.contains { $0.isLetter || $0.isNumber }
    }

    mutating func readIMEI() async -> IMEI? {
        var firstProblems: [Problem]?
        for cmd in ["AT+CGSN", "AT+CGSN=1", "AT+GSN"] {
            guard case .answer(let a)? = await sendIfRunning(cmd), a.result.isSuccess,
                let v = IdentityAnswer.imei(in: a.lines)
            else { continue }
            if let value = v.value {
                problems += v.problems
                return value
            }
            if firstProblems == nil { firstProblems = v.problems }
        }
        guard !stopped else { return nil }
        problems += firstProblems ?? [Problem(.imeiMissing, field: .imei, message: "the modem reported no IMEI")]
        return nil
    }

    /// AT+CIMI; when it fails (ERROR, an error other than a SIM state, no or no valid value), the IMSI is read
    /// from EF_IMSI instead. A SIM condition (absent, PIN, PUK) ends the read: EF_IMSI needs the PIN too.
    mutating func readIMSI() async -> IMSI? {
        var firstProblems: [Problem]?
        if let a = await sendSIMCommand("AT+CIMI") {
            if a.result.isSuccess, let v = IdentityAnswer.imsi(answering: "AT+CIMI", in: a.lines) {
                if let value = v.value {
                    problems += v.problems
                    return value
                }
                firstProblems = v.problems
            } else if a.result == .error, simCondition == nil {
                // Without verbose errors the modem says only ERROR: ask the SIM state.
                await querySIMState()
            }
        }
        guard simCondition == nil, !stopped else { return nil }
        if let a = await sendSIMCommand(crsmReadIMSICommand), a.result.isSuccess,
            let v = IdentityAnswer.imsi(answering: crsmReadIMSICommand, in: a.lines)
        {
            if let value = v.value {
                logger.debug("IMSI read from EF_IMSI")
                problems += v.problems
                return value
            }
            if firstProblems == nil { firstProblems = v.problems }
        }
        guard simCondition == nil, !stopped else { return nil }
        problems += firstProblems ?? [Problem(.imsiMissing, field: .imsi, message: "the modem reported no IMSI")]
        return nil
    }

    mutating func readICCID(dialect: VendorDialect?) async -> ICCID? {
        if simCondition == .notInserted || simCondition == .failure || simCondition == .wrong { return nil }
        var commands = ["AT+CCID"]
        if let vendor = dialect?.iccidCommand { commands.append(vendor) }
        commands.append(crsmReadICCIDCommand)
        if !commands.contains(plusICCIDCommand) { commands.append(plusICCIDCommand) }
        var firstProblems: [Problem]?
        for cmd in commands {
            guard let a = await sendSIMCommand(cmd) else {
                if simCondition == .notInserted || simCondition == .failure || stopped { return nil }
                continue
            }
            guard a.result.isSuccess, let v = IdentityAnswer.iccid(answering: cmd, in: a.lines) else { continue }
            vendorEIDDigits = EUICCAccess.vendorEIDDigits(answering: cmd, in: a.lines)
            if let value = v.value {
                problems += v.problems
                return value
            }
            if firstProblems == nil { firstProblems = v.problems }
        }
        guard !stopped else { return nil }
        if let firstProblems {
            problems += firstProblems
        } else if simCondition == nil {
            problems.append(Problem(.iccidMissing, field: .iccid, message: "the modem reported no ICCID"))
        }
        return nil
    }

    /// A command that needs the SIM: retried while the SIM is busy; a SIM condition becomes a problem once.
    /// Returns nil if the command could not be answered (timeout, closed, SIM condition).
    mutating func sendSIMCommand(_ command: String) async -> ATAnswer? {
        var backoff = Duration.milliseconds(100)
        let busyUntil = clock.now.advanced(by: options.simBusyLimit)
        while true {
            guard case .answer(let a)? = await sendIfRunning(command) else { return nil }
            guard case .cmeError(let e) = a.result, let condition = e.simCondition else { return a }
            if condition == .busy {
                let now = clock.now
                if now + backoff < busyUntil && now + backoff < deadline {
                    logger.debug("SIM busy, retrying", metadata: ["command": "\(ATChannel.loggable(command))"])
                    try? await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(1))
                    continue
                }
            }
            // PIN/PUK: the ICCID can still be read, the IMSI (AT+CIMI or EF_IMSI) cannot.
            if condition == .pinRequired || condition == .pukRequired, command != "AT+CIMI",
                command != crsmReadIMSICommand
            {
                record(condition)
                return a
            }
            record(condition)
            return nil
        }
    }

    mutating func querySIMState() async {
        guard case .answer(let a)? = await sendIfRunning("AT+CPIN?", expecting: "+CPIN:") else { return }
        if case .cmeError(let e) = a.result, let c = e.simCondition {
            record(c)
            return
        }
        guard let state = ATResponse.pinState(in: a.lines)?.uppercased() else { return }
        switch state {
        case "READY": break
        case let s where s.contains("PUK"): record(.pukRequired)
        case let s where s.contains("PIN"): record(.pinRequired)
        default: break
        }
    }

    mutating func record(_ condition: CMEError.SIMCondition) {
        guard simCondition != condition else { return }
        if simCondition == nil || condition != .busy { simCondition = condition }
        let p: Problem
        switch condition {
        case .notInserted: p = Problem(.simNotInserted, field: .sim, message: "no SIM card is inserted")
        case .pinRequired:
            p = Problem(.simPINRequired, field: .sim, message: "the SIM waits for its PIN; the IMSI cannot be read")
        case .pukRequired:
            p = Problem(.simPUKRequired, field: .sim, message: "the SIM is blocked and waits for its PUK")
        case .failure: p = Problem(.simFailure, field: .sim, message: "the SIM card failed")
        case .wrong: p = Problem(.simWrong, field: .sim, message: "the modem rejects this SIM card")
        case .busy: p = Problem(.simBusy, field: .sim, message: "the SIM stayed busy for the whole retry window")
        }
        if !problems.contains(where: { $0.code == p.code }) { problems.append(p) }
    }

    // MARK: - Sending

    mutating func sendIfRunning(_ command: String, expecting prefix: String? = nil) async -> Outcome? {
        guard !stopped else { return nil }
        return await send(command, expecting: prefix)
    }

    /// Sends within the deadline. A timeout is recorded (once) and followed by a wait for the line to go quiet;
    /// a closed port stops the session.
    mutating func send(
        _ command: String, expecting prefix: String? = nil, timeout: Duration? = nil, recordTimeout: Bool = true
    ) async -> Outcome {
        let remaining = deadline - clock.now
        guard remaining > .zero else {
            stopAtDeadline()
            return .failed
        }
        do {
            let answer = try await channel.send(
                command, expecting: prefix, timeout: min(timeout ?? options.commandTimeout, remaining))
            return .answer(answer)
        } catch let error as ATChannelError {
            switch error.code {
            case .timeout:
                logger.debug("no answer", metadata: ["command": "\(ATChannel.loggable(command))"])
                if clock.now >= deadline {
                    stopAtDeadline()
                    return .failed
                }
                if recordTimeout && !problems.contains(where: { $0.code == .timeout }) {
                    problems.append(Problem(
                        .timeout, field: .modem, severity: .warning, message: "a command got no answer in time"))
                }
                await channel.waitForQuiet(options.resyncQuiet, limit: options.resyncLimit)
            case .answerTooLong:
                logger.debug("answer too long", metadata: ["command": "\(ATChannel.loggable(command))"])
                note(Problem(
                    .answerTooLong, field: .modem, severity: .warning,
                    message: "an answer grew past the size cap without ending; the command failed"))
                await channel.waitForQuiet(options.resyncQuiet, limit: options.resyncLimit)
            case .unreadable:
                logger.debug("unreadable answer", metadata: ["command": "\(ATChannel.loggable(command))"])
                note(Problem(
                    .garbage, field: .modem, severity: .warning,
                    message: "an answer came mixed with unreadable input and was discarded"))
                await channel.waitForQuiet(options.resyncQuiet, limit: options.resyncLimit)
            case .closed, .writeFailed:
                stop(Problem(.portClosed, field: .port, message: "the port closed during the read (unplugged?)"))
            case .cancelled:
                stopped = true
            }
            return .failed
        } catch {
            stopped = true
            return .failed
        }
    }

    /// Ends the read with `problem`, which replaces a milder problem of the same code (a command's `timeout`
    /// warning becomes the read's `timeout` error: a port that cannot finish a read is a port problem).
    mutating func stop(_ problem: Problem) {
        guard !stopped else { return }
        problems.removeAll { $0.code == problem.code && $0.severity < problem.severity }
        if !problems.contains(where: { $0.code == problem.code }) { problems.append(problem) }
        stopped = true
    }

    /// Out of time: a port that never completed an answer is unusable, one that answered too slowly too.
    mutating func stopAtDeadline() {
        if channel.answeredCount == answeredBefore {
            stop(unansweredPortProblem())
        } else {
            stop(Problem(.timeout, field: .port, message: "the read did not finish within its time limit"))
        }
    }

    /// Records `problem` once per code.
    mutating func note(_ problem: Problem) {
        if !problems.contains(where: { $0.code == problem.code }) { problems.append(problem) }
    }
}
