import CellprovCore
import CellprovModem
import CellprovSerial
import Dispatch
import Logging

/// What makes a slot read its identities again.
public enum ReadTrigger: Sendable, Equatable {
    case start
    case udevAdd
    /// A SIM-related URC (+CPIN, +QUSIM, ^SIMST, ...), with its arrival time.
    case simEvent(String, at: ContinuousClock.Instant)
    /// SIGHUP.
    case reload
    /// The re-probe interval elapsed (or a retry after a port could not be opened).
    case timer
    /// The port closed under the session (unplug).
    case portClosed(generation: Int)

    var reason: String {
        switch self {
        case .start: "start"
        case .udevAdd: "udev add"
        case .simEvent: "SIM event"
        case .reload: "SIGHUP"
        case .timer: "re-probe"
        case .portClosed: "port closed"
        }
    }
}

/// One module slot's life: open its AT port, read, hand the observation on, then sleep until a trigger (a SIM
/// URC, SIGHUP, udev add, the re-probe timer). No polling: between triggers the task is parked on a stream and
/// one timer.
///
/// The port stays open between reads (exclusively) so SIM URCs reach us; if it closes (unplug), the session
/// retries with a capped backoff until the supervisor stops it (udev remove) or the port comes back.
actor SlotSession {
    let slot: ModuleSlot
    private let reader: IdentityReader
    private let interval: Duration
    private let logger: Logger
    /// Hands the observation on; false if it could not be recorded (the store failed: a full disk).
    private let onObservation: @Sendable (Observation) async -> Bool
    private let triggers: AsyncStream<ReadTrigger>
    private let continuation: AsyncStream<ReadTrigger>.Continuation
    private var task: Task<Void, Never>?
    /// The re-probe/retry timer: one dispatch timer source on ``DaemonExecutor/queue``, re-armed at each read (armed
    /// for its deadline only; never a global queue, whose first worker starts libdispatch's 1 Hz pool monitor).
    private let timer: OneShotTimer
    private var channel: ATChannel?
    private var urcTask: Task<Void, Never>?
    private var generation = 0
    private var lastReadEnd: ContinuousClock.Instant?
    private var retryDelay: Duration = .seconds(1)
    private var lastOpenError: SerialError.Code?
    /// SIM hot-swap reports: the port session (``generation``) they were set up for, and the outcome.
    private var reportingGeneration = 0
    private var reporting: SIMReportingState = .notApplicable
    /// The notice "swaps show at the next re-probe" is logged once per slot.
    private var toldHotSwapUnavailable = false

    init(
        slot: ModuleSlot, reader: IdentityReader, interval: Duration, logger: Logger,
        onObservation: @escaping @Sendable (Observation) async -> Bool
    ) {
        self.slot = slot
        self.reader = reader
        self.interval = interval
        var logger = logger
        logger[metadataKey: "slot"] = "\(slot.key)"
        self.logger = logger
        self.onObservation = onObservation
        let (triggers, continuation) = AsyncStream.makeStream(
            of: ReadTrigger.self, bufferingPolicy: .bufferingNewest(16))
        (self.triggers, self.continuation) = (triggers, continuation)
        timer = OneShotTimer(queue: DaemonExecutor.queue) { continuation.yield(.timer) }
    }

    func start(_ first: ReadTrigger = .start) {
        guard task == nil else { return }
        continuation.yield(first)
        task = Task { await self.loop() }
    }

    nonisolated func trigger(_ trigger: ReadTrigger) {
        continuation.yield(trigger)
    }

    /// Ends the session: closes the port, waits for the task.
    func stop() async {
        continuation.finish()
        timer.cancel()
        task?.cancel()
        await closeChannel()
        await task?.value
    }

    private func loop() async {
        for await trigger in triggers {
            if Task.isCancelled { break }
            switch trigger {
            case .simEvent(_, let at):
                // URCs that arrived during our own read describe what that read already saw.
                if let end = lastReadEnd, at < end { continue }
                // A swap arrives as a burst (+CPIN: NOT READY, +CPIN: READY, +QUSIM: 1 ...): let it settle.
                try? await Task.sleep(for: .milliseconds(300))
            case .portClosed(let g):
                guard g == generation else { continue }
                logger.warning("modem port closed", metadata: ["port": "\(slot.port)"])
                await closeChannel()
                scheduleTimer(after: retryDelay)
                continue
            default:
                break
            }
            await read(because: trigger)
        }
        timer.cancel()
        await closeChannel()
    }

    private func read(because trigger: ReadTrigger) async {
        guard let channel = await openChannel() else { return }
        var report = await reader.read(channel: channel, port: slot.port)
        if Task.isCancelled { return }
        if hotSwapUnavailable { report.problems.append(hotSwapProblem) }
        lastReadEnd = ContinuousClock().now
        if report.problems.contains(where: { $0.code == .portClosed }) {
            await closeChannel()
            scheduleTimer(after: retryDelay)
        } else {
            retryDelay = .seconds(1)
            scheduleTimer(after: interval)
        }
        let observation = Observation(slot: slot, report: report, reason: trigger.reason)
        let recorded = await onObservation(observation)
        if !recorded {
            // Nothing is lost (the store still holds the last committed record, so the change is detected again),
            // but it must not wait for the re-probe interval: read again soon.
            scheduleTimer(after: min(interval, Self.unrecordedRetry))
        }
        if reportingGeneration != generation, !report.portUnusable, report.manufacturer != nil {
            // Once per port session, after the read is committed (neither its command count nor the time to the
            // first identities grows): the vendor's SIM reports on.
            reportingGeneration = generation
            // (`lastReadEnd` stays the read's: a SIM URC that arrives during the setup is a change the read did not
            // see, and reads again.)
            guard let state = await SIMReportingSetup.run(on: channel, manufacturer: report.manufacturer),
                !Task.isCancelled
            else {
                // Interrupted (shutdown, unplug): the module said nothing; the next port session asks again.
                reportingGeneration = 0
                return
            }
            reporting = state
            if hotSwapUnavailable {
                if !toldHotSwapUnavailable {
                    toldHotSwapUnavailable = true
                    logger.notice(
                        "the module does not report SIM swaps as they happen; they show at the next re-probe",
                        metadata: ["port": "\(slot.port)", "sim_reports": "\(reporting.rawValue)"])
                }
                // The same read once more with the warning, so that `cellprov status` shows it now (same
                // identity: no event).
                var warned = observation
                warned.report.problems.append(hotSwapProblem)
                _ = await onObservation(warned)
            }
        }
    }

    private var hotSwapUnavailable: Bool { reporting == .detectionOff || reporting == .refused }

    private var hotSwapProblem: Problem {
        Problem(
            .simHotSwapUnavailable, field: .sim, severity: .warning,
            message: reporting == .detectionOff
                ? "the module's SIM card detection is off: swaps show at the next re-probe"
                : "the module refused to report SIM swaps: they show at the next re-probe")
    }

    static let unrecordedRetry: Duration = .seconds(30)

    private func openChannel() async -> ATChannel? {
        if let channel, !channel.isClosed { return channel }
        do {
            let port = try SerialPort.open(slot.port, settings: reader.options.serial)
            let channel = ATChannel(transport: port, logger: logger)
            channel.start()
            generation += 1
            let g = generation
            let me = continuation
            urcTask = Task {
                for await urc in channel.unsolicited where VendorCatalog.isSIMEvent(urc.text) {
                    me.yield(.simEvent(urc.text, at: urc.receivedAt))
                }
                me.yield(.portClosed(generation: g))
            }
            self.channel = channel
            if lastOpenError != nil { logger.notice("port usable again", metadata: ["port": "\(slot.port)"]) }
            lastOpenError = nil
            return channel
        } catch {
            if lastOpenError != error.code {
                // Reported once per change of reason, not at every retry.
                logger.warning(
                    "cannot open modem port", metadata: ["port": "\(slot.port)", "reason": "\(error.description)"])
                lastOpenError = error.code
                _ = await onObservation(Observation(
                    slot: slot, report: IdentityReport(port: slot.port, problems: [IdentityReader.problem(for: error)]),
                    reason: "open failed"))
            }
            // Busy or absent: try again later, sooner than the re-probe interval but without spinning.
            scheduleTimer(after: retryDelay)
            retryDelay = min(retryDelay * 2, min(interval, .seconds(60)))
            return nil
        }
    }

    private func closeChannel() async {
        urcTask?.cancel()
        urcTask = nil
        if let channel {
            channel.close()
            self.channel = nil
        }
    }

    private func scheduleTimer(after delay: Duration) {
        timer.schedule(after: delay)
    }
}
