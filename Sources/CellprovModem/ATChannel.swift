import CellprovCore
import CellprovSerial
import Dispatch
import Logging
import Synchronization

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
    }

    public var code: Code
    public var command: String
    public var detail: String

    public var description: String { "\(command): \(detail)" }
}

/// A serialised AT command queue over a transport.
///
/// One command is on the wire at a time; callers queue in order. Lines are framed by ``ATFramer`` and sorted by
/// ``ATLineClassifier``: echoes are dropped, URCs go to ``unsolicited`` whenever they arrive, information lines
/// collect until the final result code. Each command has its own timeout; a timeout drops the partial line and
/// frees the queue for the next command.
///
/// Input is handled on the transport's delivery queue under a lock, and the waiting command is resumed from
/// there: no task or actor hop between the kernel's bytes and the caller.
public final class ATChannel: Sendable {
    public let unsolicited: AsyncStream<UnsolicitedLine>
    private let urcContinuation: AsyncStream<UnsolicitedLine>.Continuation
    private let transport: any ATTransport
    private let logger: Logger
    private let classifier = ATLineClassifier()
    private let state: Mutex<State>
    private static let timerQueue = DispatchQueue(label: "cellprov.at.timeouts")

    private struct Pending {
        let id: UInt64
        let command: String
        let expectedPrefix: String?
        var lines: [String]
        let continuation: CheckedContinuation<ATAnswer, any Error>
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
        var commandCount = 0
        var lastInput = ContinuousClock().now
    }

    public init(transport: any ATTransport, logger: Logger, maxLineLength: Int = 1024) {
        self.transport = transport
        self.logger = logger
        state = Mutex(State(framer: ATFramer(maxLineLength: maxLineLength)))
        (unsolicited, urcContinuation) = AsyncStream.makeStream(
            of: UnsolicitedLine.self, bufferingPolicy: .bufferingNewest(64))
    }

    /// Starts consuming the transport. Call once.
    public func start() {
        let first = state.withLock { s in
            defer { s.started = true }
            return !s.started
        }
        guard first else { return }
        transport.start { [weak self] event in self?.handle(event) }
    }

    public var isClosed: Bool { state.withLock { $0.closed } }
    /// Lines dropped as garbage (binary or overlong), for diagnostics.
    public var garbageCount: Int { state.withLock { $0.garbageCount } }
    /// Commands written so far.
    public var commandCount: Int { state.withLock { $0.commandCount } }

    /// Sends `command` (without the line end) and waits for its final result code, at most `timeout`.
    /// `expectedPrefix` is the information tag of the answer (`+CPIN:` for `AT+CPIN?`), so that a line that could
    /// also be a URC is taken as the answer.
    public func send(_ command: String, expecting expectedPrefix: String? = nil, timeout: Duration) async throws
        -> ATAnswer
    {
        await acquire()
        defer { release() }
        let id: UInt64 = state.withLock { s in
            s.nextID &+= 1
            return s.nextID
        }
        if Task.isCancelled { throw ATChannelError(code: .cancelled, command: command, detail: "cancelled") }
        logger.trace("AT command", metadata: ["command": "\(command)"])
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ATAnswer, any Error>) in
                let closedReason: String? = state.withLock { s in
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
                let nanoseconds = max(0, timeout.components.seconds * 1_000_000_000
                    + timeout.components.attoseconds / 1_000_000_000)
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
            let (closed, last) = state.withLock { ($0.closed, $0.lastInput) }
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
        let mustWait = state.withLock { s -> Bool in
            if !s.busy {
                s.busy = true
                return false
            }
            return true
        }
        guard mustWait else { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
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
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
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
        var garbage: [Int] = []
        var closing = false
        state.withLock { s in
            switch event {
            case .data(let bytes):
                s.lastInput = ContinuousClock().now
                for output in s.framer.feed(bytes) {
                    switch output {
                    case .line(let line):
                        let kind = classifier.classify(
                            line, pendingCommand: s.pending?.command, expectedPrefix: s.pending?.expectedPrefix)
                        switch kind {
                        case .echo:
                            break
                        case .unsolicited:
                            urcs.append(UnsolicitedLine(text: line, receivedAt: s.lastInput))
                        case .information:
                            s.pending?.lines.append(line)
                        case .final(let result):
                            if let p = s.pending {
                                s.pending = nil
                                completion = (p.continuation, .success(ATAnswer(lines: p.lines, result: result)))
                            }
                        }
                    case .garbage(let dropped):
                        s.garbageCount += 1
                        garbage.append(dropped)
                    case .prompt:
                        break
                    }
                }
            case .closed(let error):
                s.closed = true
                s.closedReason = error?.description ?? "port closed"
                closing = true
                if let p = s.pending {
                    s.pending = nil
                    completion = (p.continuation, .failure(ATChannelError(
                        code: .closed, command: p.command, detail: s.closedReason!)))
                }
            }
        }
        for dropped in garbage {
            logger.warning("dropped unreadable input from modem", metadata: ["bytes": "\(dropped)"])
        }
        for urc in urcs { urcContinuation.yield(urc) }
        if closing { urcContinuation.finish() }
        if let (continuation, result) = completion {
            continuation.resume(with: result.mapError { $0 as any Error })
        }
    }

    private func timedOut(id: UInt64) {
        let command: String? = state.withLock { s in
            guard let p = s.pending, p.id == id else { return nil }
            s.framer.reset()  // a half-received line belongs to the answer that never completed
            return p.command
        }
        guard let command else { return }
        finish(id: id, with: .failure(ATChannelError(code: .timeout, command: command, detail: "no answer in time")))
    }

    private func finish(id: UInt64, with result: Result<ATAnswer, ATChannelError>) {
        let continuation: CheckedContinuation<ATAnswer, any Error>? = state.withLock { s in
            guard let p = s.pending, p.id == id else { return nil }
            s.pending = nil
            return p.continuation
        }
        continuation?.resume(with: result.mapError { $0 as any Error })
    }
}
