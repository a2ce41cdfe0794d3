import CellprovCore
import CellprovSerial
import Dispatch
import Logging
import NIOConcurrencyHelpers

/// The complete answer to one command: its information lines and its final result code.
public struct ATAnswer: Sendable, Equatable {
    public var lines: [String]
    public var result: ATFinalResult

    public init(lines: [String], result: ATFinalResult) {
        self.lines = lines
        self.result = result
    }
}

/// An unsolicited result code and when it arrived.
public struct UnsolicitedLine: Sendable, Equatable {
    public var text: String
    public var receivedAt: ContinuousClock.Instant
}

/// Why a command got no answer.
public struct ATChannelError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// No final result code within the command's timeout.
        case timeout
        /// The port closed or failed (unplug, EIO) before the answer was complete.
        case closed
        /// Writing the command failed.
        case writeFailed
        /// The caller's task was cancelled.
        case cancelled
        /// The answer grew past ``ATAnswerLimits`` without a final result code; the rest of it is skipped.
        case answerTooLong
        /// The answer ended, but unreadable or implausible lines came among its own: none of it is trusted.
        case unreadable
    }

    public var code: Code
    public var command: String
    public var detail: String

    /// The command scrubbed (``ATChannel/loggable(_:)``): the error's text goes to logs and problem messages.
    public var description: String { "\(ATChannel.loggable(command)): \(detail)" }
}

/// What one command's answer may hold. A modem that never ends an answer (information lines forever) must not
/// grow our memory: past either cap the command fails with ``ATChannelError/Code/answerTooLong``.
public struct ATAnswerLimits: Sendable, Equatable {
    /// Information lines in one answer. The identity answers have one to three; ATI banners about ten.
    public var maxLines: Int
    /// Bytes of information lines in one answer.
    public var maxBytes: Int
    /// One information line (longer ones are implausible for any answer and are not stored).
    public var maxLineLength: Int

    public init(maxLines: Int = 256, maxBytes: Int = 64 * 1024, maxLineLength: Int = 512) {
        self.maxLines = maxLines
        self.maxBytes = maxBytes
        self.maxLineLength = maxLineLength
    }
}

/// A serialised AT command queue over a transport.
///
/// One command is on the wire at a time; callers queue in order. Lines are framed by ``ATFramer`` and sorted by
/// ``ATLineClassifier``: echoes are dropped, URCs go to ``unsolicited`` whenever they arrive, information lines
/// collect until the final result code. Each command has its own timeout; a timeout drops the partial line and
/// frees the queue for the next command.
///
/// The modem is untrusted input. An echo of any command (ours or another's) is never an answer line; an answer
/// with unreadable or implausible lines among its own fails as `.unreadable` (no line of it is trusted); an
/// answer past ``ATAnswerLimits`` fails as `.answerTooLong` and the channel skips the rest of it up to its final
/// result code (or the next timeout). Dropped input is logged through ``InputAnomalyLog``: the first occurrence,
/// then at most one summary per kind per minute, never a line per chunk.
///
/// Input is handled on the transport's delivery queue under a lock, and the waiting command is resumed from
/// there: no task or actor hop between the kernel's bytes and the caller.
public final class ATChannel: Sendable {
    public let unsolicited: AsyncStream<UnsolicitedLine>
    private let urcContinuation: AsyncStream<UnsolicitedLine>.Continuation
    private let transport: any ATTransport
    private let logger: Logger
    private let classifier: ATLineClassifier
    private let limits: ATAnswerLimits
    private let state: NIOLockedValueBox<State>
    private static let timerQueue = DispatchQueue(label: "cellprov.at.timeouts")

    /// A command as logs and error messages show it: scrubbed like any free text (``Redaction/scrub(_:)``), because
    /// a command can carry what the modem told us: `AT+CGLA` and `AT+CCHC` write back the session handle `AT+CCHO`
    /// answered, and a hostile modem can answer an IMSI there (found by the `identity` fuzz target).
    public static func loggable(_ command: String) -> String { Redaction.scrub(command) }

    private struct Pending {
        let id: UInt64
        let command: String
        let expectedPrefix: String?
        var lines: [String]
        let continuation: CheckedContinuation<ATAnswer, any Error>
        /// Bytes of `lines`.
        var bytes = 0
        /// Unreadable or implausible lines seen while this command waited.
        var noise = 0
    }

    private struct State {
        var framer: ATFramer
        var pending: Pending?
        var waiters: [CheckedContinuation<Void, Never>] = []
        var busy = false
        var nextID: UInt64 = 0
        var closedReason: String?
        var closed = false
        var started = false
        var garbageCount = 0
        var droppedBytes = 0
        var receivedBytes = 0
        var answeredCount = 0
        var answerLineCount = 0
        var commandCount = 0
        var lastInput = ContinuousClock().now
        /// After a cut answer: drop lines up to the next final result code, which belongs to the cut answer.
        var skippingCutAnswer = false
        var anomalies = InputAnomalyLog()
        var rateLimit: InputRateLimit
        var pausedTime = Duration.zero
    }

    /// `rateLimit` paces reading (see ``InputRateLimit``): the default is far above what an AT port carries.
    public init(
        transport: any ATTransport, logger: Logger, maxLineLength: Int = 1024, limits: ATAnswerLimits = .init(),
        rateLimit: InputRateLimit = .init()
    ) {
        self.transport = transport
        self.logger = logger
        self.limits = limits
        classifier = ATLineClassifier(maxInformationLength: limits.maxLineLength)
        state = NIOLockedValueBox(State(framer: ATFramer(maxLineLength: maxLineLength), rateLimit: rateLimit))
        (unsolicited, urcContinuation) = AsyncStream.makeStream(
            of: UnsolicitedLine.self, bufferingPolicy: .bufferingNewest(64))
    }

    /// Starts consuming the transport. Call once.
    public func start() {
        let first = state.withLockedValue { s in
            defer { s.started = true }
            return !s.started
        }
        guard first else { return }
        transport.start { [weak self] event in self?.handle(event) }
    }

    public var isClosed: Bool { state.withLockedValue { $0.closed } }
    /// Lines dropped as garbage (binary or overlong), for diagnostics.
    public var garbageCount: Int { state.withLockedValue { $0.garbageCount } }
    /// Commands written so far.
    public var commandCount: Int { state.withLockedValue { $0.commandCount } }
    /// Bytes dropped as unreadable (binary or overlong lines).
    public var droppedByteCount: Int { state.withLockedValue { $0.droppedBytes } }
    /// Bytes received so far.
    public var receivedByteCount: Int { state.withLockedValue { $0.receivedBytes } }
    /// Readable lines that were not URCs (echoes, answer lines, final result codes), trusted or not.
    public var answerLineCount: Int { state.withLockedValue { $0.answerLineCount } }
    /// Commands that got a complete, trusted answer (any final result code, ERROR included).
    public var answeredCount: Int { state.withLockedValue { $0.answeredCount } }
    /// Bytes held for the pending command's answer (at most ``ATAnswerLimits/maxBytes``), for tests and diagnostics.
    public var heldAnswerByteCount: Int { state.withLockedValue { $0.pending?.bytes ?? 0 } }
    /// Time reading was paused because the port sent more than an AT port carries.
    public var pausedTime: Duration { state.withLockedValue { $0.pausedTime } }

    /// Sends `command` (without the line end) and waits for its final result code, at most `timeout`.
    /// `expectedPrefix` is the information tag of the answer (`+CPIN:` for `AT+CPIN?`), so that a line that could
    /// also be a URC is taken as the answer.
    public func send(_ command: String, expecting expectedPrefix: String? = nil, timeout: Duration) async throws
        -> ATAnswer
    {
        await acquire()
        defer { release() }
        let id: UInt64 = state.withLockedValue { s in
            s.nextID &+= 1
            return s.nextID
        }
        if Task.isCancelled { throw ATChannelError(code: .cancelled, command: command, detail: "cancelled") }
        logger.trace("AT command", metadata: ["command": "\(Self.loggable(command))"])
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ATAnswer, any Error>) in
                let closedReason: String? = state.withLockedValue { s in
                    if s.closed { return s.closedReason ?? "port closed" }
                    s.commandCount += 1
                    s.pending = Pending(
                        id: id, command: command, expectedPrefix: expectedPrefix, lines: [], continuation: continuation)
                    return nil
                }
                if let closedReason {
                    continuation.resume(throwing: ATChannelError(code: .closed, command: command, detail: closedReason))
                    return
                }
                do {
                    try transport.write(Array((command + "\r").utf8))
                } catch {
                    finish(id: id, with: .failure(ATChannelError(
                        code: .writeFailed, command: command, detail: "\(error)")))
                    return
                }
                let nanoseconds = max(0, timeout.nanoseconds)
                Self.timerQueue.asyncAfter(deadline: .now() + .nanoseconds(Int(nanoseconds))) { [weak self] in
                    self?.timedOut(id: id)
                }
            }
        } onCancel: {
            finish(id: id, with: .failure(ATChannelError(code: .cancelled, command: command, detail: "cancelled")))
        }
    }

    /// Waits until no byte has arrived for `quiet` (at most `limit`): after a timeout, so that a late answer to the
    /// abandoned command is not taken for the answer to the next one. Never used on the healthy path.
    public func waitForQuiet(_ quiet: Duration, limit: Duration) async {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: limit)
        while clock.now < end {
            let (closed, last) = state.withLockedValue { ($0.closed, $0.lastInput) }
            if closed { return }
            let since = clock.now - last
            if since >= quiet { return }
            try? await Task.sleep(for: min(quiet - since, end - clock.now))
        }
    }

    /// Closes the transport; a pending command fails with `.closed`.
    public func close() {
        transport.close()
    }

    // MARK: - Queue

    private func acquire() async {
        let mustWait = state.withLockedValue { s -> Bool in
            if !s.busy {
                s.busy = true
                return false
            }
            return true
        }
        guard mustWait else { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLockedValue { s -> Bool in
                if !s.busy {
                    s.busy = true
                    return true
                }
                s.waiters.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    private func release() {
        let next = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.busy = false
                return nil
            }
            return s.waiters.removeFirst()  // stays busy: ownership passes to the next caller
        }
        next?.resume()
    }

    // MARK: - Input (on the transport's queue)

    private func handle(_ event: SerialEvent) {
        var urcs: [UnsolicitedLine] = []
        var completion: (CheckedContinuation<ATAnswer, any Error>, Result<ATAnswer, ATChannelError>)?
        var reports: [InputAnomalyLog.Report] = []
        var closing = false
        var pause = Duration.zero
        state.withLockedValue { s in
            switch event {
            case .data(let bytes):
                s.lastInput = ContinuousClock().now
                s.receivedBytes += bytes.count
                // Counted per chunk and handed to the anomaly log once per chunk: noise costs no log call and no
                // allocation per dropped line.
                var unreadable = (lines: 0, bytes: 0)
                var implausible = (lines: 0, bytes: 0)
                var foreignEchoes = 0
                var cut = 0
                for output in s.framer.feed(bytes) {
                    switch output {
                    case .line(let line):
                        if s.skippingCutAnswer {
                            // The cut answer's tail is dropped up to its final result code; a URC in it (a SIM
                            // swap) still counts.
                            if ATFinalResult(line: line) != nil {
                                s.skippingCutAnswer = false
                            } else if ATLineClassifier.isURC(line) {
                                urcs.append(UnsolicitedLine(text: line, receivedAt: s.lastInput))
                            }
                            continue
                        }
                        let kind = classifier.classify(
                            line, pendingCommand: s.pending?.command, expectedPrefix: s.pending?.expectedPrefix)
                        if kind != .unsolicited { s.answerLineCount += 1 }
                        switch kind {
                        case .echo:
                            break
                        case .foreignEcho:
                            foreignEchoes += 1
                        case .unsolicited:
                            urcs.append(UnsolicitedLine(text: line, receivedAt: s.lastInput))
                        case .implausible:
                            implausible.lines += 1
                            implausible.bytes += line.utf8.count
                            s.pending?.noise += 1
                        case .information:
                            guard s.pending != nil else { break }
                            // Mutated in place: a copy of the pending answer per line would be quadratic.
                            s.pending!.lines.append(line)
                            s.pending!.bytes += line.utf8.count
                            if s.pending!.lines.count > limits.maxLines || s.pending!.bytes > limits.maxBytes {
                                let p = s.pending!
                                s.pending = nil
                                s.skippingCutAnswer = true
                                cut += 1
                                completion = (p.continuation, .failure(ATChannelError(
                                    code: .answerTooLong, command: p.command,
                                    detail: "answer past \(limits.maxLines) lines or \(limits.maxBytes) bytes")))
                            }
                        case .final(let result):
                            guard let p = s.pending else { break }
                            s.pending = nil
                            if p.noise > 0 {
                                completion = (p.continuation, .failure(ATChannelError(
                                    code: .unreadable, command: p.command,
                                    detail: "answer mixed with \(p.noise) unreadable lines")))
                            } else {
                                s.answeredCount += 1
                                completion = (p.continuation, .success(ATAnswer(lines: p.lines, result: result)))
                            }
                        }
                    case .garbage(let dropped):
                        unreadable.lines += 1
                        unreadable.bytes += dropped
                        s.pending?.noise += 1
                    case .prompt:
                        break
                    }
                }
                s.garbageCount += unreadable.lines
                s.droppedBytes += unreadable.bytes
                let now = s.lastInput
                for (kind, lines, bytes) in [
                    (InputAnomalyLog.Kind.unreadable, unreadable.lines, unreadable.bytes),
                    (.implausible, implausible.lines, implausible.bytes), (.foreignEcho, foreignEchoes, 0),
                    (.answerTooLong, cut, 0),
                ] where lines > 0 {
                    if let r = s.anomalies.record(kind, bytes: bytes, lines: lines, at: now) { reports.append(r) }
                }
                // At most half a second per chunk, so that a close waits at most that long; a larger debt stays in
                // the bucket and is paid by the next chunks.
                pause = min(s.rateLimit.delay(after: bytes.count, at: now), .milliseconds(500))
                s.pausedTime += pause
            case .closed(let error):
                s.closed = true
                s.closedReason = error?.description ?? "port closed"
                closing = true
                reports = s.anomalies.flush(at: ContinuousClock().now)
                if let p = s.pending {
                    s.pending = nil
                    completion = (p.continuation, .failure(ATChannelError(
                        code: .closed, command: p.command, detail: s.closedReason!)))
                }
            }
        }
        for report in reports {
            logger.warning("\(report)", metadata: ["anomaly": "\(report.kind.rawValue)"])
        }
        for urc in urcs { urcContinuation.yield(urc) }
        if closing { urcContinuation.finish() }
        if let (continuation, result) = completion {
            continuation.resume(with: result.mapError { $0 as any Error })
        }
        if pause > .zero {
            // Blocks the transport's own delivery queue (one per port): no more bytes are read, framed or
            // classified meanwhile; the kernel holds (or drops) the flood.
            _ = DispatchSemaphore(value: 0).wait(timeout: .now() + .nanoseconds(Int(pause.nanoseconds)))
        }
    }

    private func timedOut(id: UInt64) {
        let command: String? = state.withLockedValue { s in
            guard let p = s.pending, p.id == id else { return nil }
            s.framer.reset()  // a half-received line belongs to the answer that never completed
            s.skippingCutAnswer = false  // whatever comes next is not the cut answer's tail any more
            return p.command
        }
        guard let command else { return }
        finish(id: id, with: .failure(ATChannelError(code: .timeout, command: command, detail: "no answer in time")))
    }

    private func finish(id: UInt64, with result: Result<ATAnswer, ATChannelError>) {
        let continuation: CheckedContinuation<ATAnswer, any Error>? = state.withLockedValue { s in
            guard let p = s.pending, p.id == id else { return nil }
            s.pending = nil
            return p.continuation
        }
        continuation?.resume(with: result.mapError { $0 as any Error })
    }
}
