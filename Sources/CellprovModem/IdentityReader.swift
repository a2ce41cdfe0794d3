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
/// an answer fails. It waits on no fixed timer except after a timeout (to resynchronise) or a busy SIM (backoff).
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
    let clock = ContinuousClock()

    init(channel: ATChannel, options: IdentityReadOptions, deadline: ContinuousClock.Instant, logger: Logger) {
        self.channel = channel
        self.options = options
        self.deadline = deadline
        self.logger = logger
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
        if !stopped {
            problems.append(Problem(.noResponse, field: .port, message: "the modem did not answer AT commands"))
            stopped = true
        }
        return false
    }

    mutating func text(_ command: String, fallback: String, tags: [String]) async -> String? {
        for cmd in [command, fallback] {
            guard case .answer(let a)? = await sendIfRunning(cmd), a.result.isSuccess else { continue }
            if let value = ATResponse.text(in: a.lines, tags: tags) { return value }
        }
        return nil
    }

    mutating func readIMEI() async -> IMEI? {
        var firstProblems: [Problem]?
        for cmd in ["AT+CGSN", "AT+CGSN=1", "AT+GSN"] {
            guard case .answer(let a)? = await sendIfRunning(cmd), a.result.isSuccess,
                let raw = ATResponse.imei(in: a.lines)
            else { continue }
            let v = IMEI.validate(raw)
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

    mutating func readIMSI() async -> IMSI? {
        guard let a = await sendSIMCommand("AT+CIMI") else { return nil }
        if a.result.isSuccess, let raw = ATResponse.imsi(in: a.lines) {
            let v = IMSI.validate(raw)
            problems += v.problems
            return v.value
        }
        if a.result == .error, simCondition == nil {
            // Without verbose errors the modem says only ERROR: ask the SIM state.
            await querySIMState()
        }
        if simCondition == nil && !stopped {
            problems.append(Problem(.imsiMissing, field: .imsi, message: "the modem reported no IMSI"))
        }
        return nil
    }

    mutating func readICCID(dialect: VendorDialect?) async -> ICCID? {
        if simCondition == .notInserted || simCondition == .failure || simCondition == .wrong { return nil }
        var commands = ["AT+CCID"]
        if let vendor = dialect?.iccidCommand { commands.append(vendor) }
        commands.append(crsmReadICCIDCommand)
        var firstProblems: [Problem]?
        for cmd in commands {
            guard let a = await sendSIMCommand(cmd) else {
                if simCondition == .notInserted || simCondition == .failure || stopped { return nil }
                continue
            }
            guard a.result.isSuccess else { continue }
            let raw = cmd == crsmReadICCIDCommand ? ATResponse.crsmData(in: a.lines) : ATResponse.iccid(in: a.lines)
            guard let raw else { continue }
            let v = ICCID.validate(raw)
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
                    logger.debug("SIM busy, retrying", metadata: ["command": "\(command)"])
                    try? await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(1))
                    continue
                }
            }
            // PIN/PUK: the ICCID can still be read, the IMSI cannot.
            if condition == .pinRequired || condition == .pukRequired, command != "AT+CIMI" {
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
            stop(Problem(.timeout, field: .port, message: "the read did not finish within its time limit"))
            return .failed
        }
        do {
            let answer = try await channel.send(
                command, expecting: prefix, timeout: min(timeout ?? options.commandTimeout, remaining))
            return .answer(answer)
        } catch let error as ATChannelError {
            switch error.code {
            case .timeout:
                logger.debug("no answer", metadata: ["command": "\(command)"])
                if recordTimeout && !problems.contains(where: { $0.code == .timeout }) {
                    problems.append(Problem(
                        .timeout, field: .modem, severity: .warning, message: "a command got no answer in time"))
                }
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

    mutating func stop(_ problem: Problem) {
        if !problems.contains(where: { $0.code == problem.code }) { problems.append(problem) }
        stopped = true
    }
}
