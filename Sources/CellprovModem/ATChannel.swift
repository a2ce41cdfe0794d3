import CellprovCore
import CellprovSerial
import Logging

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
public actor ATChannel {
    public nonisolated let unsolicited: AsyncStream<UnsolicitedLine>
    private let urcContinuation: AsyncStream<UnsolicitedLine>.Continuation
    private let transport: any ATTransport
    private let logger: Logger
    private var framer: ATFramer
    private let classifier = ATLineClassifier()

    private struct Pending {
        let id: UInt64
        let command: String
        let expectedPrefix: String?
        var lines: [String]
        let continuation: CheckedContinuation<ATAnswer, any Error>
        var timer: Task<Void, Never>?
    }

    private var pending: Pending?
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var busy = false
    private var nextID: UInt64 = 0
    private var closedError: SerialError??  // nil: open; .some: closed (with the reason, if any)
    private var readerTask: Task<Void, Never>?
    private var lastInput = ContinuousClock().now
    /// Lines dropped as garbage (binary or overlong), for diagnostics.
    public private(set) var garbageCount = 0
    /// Commands written so far.
    public private(set) var commandCount = 0

    public init(transport: any ATTransport, logger: Logger, maxLineLength: Int = 1024) {
        self.transport = transport
        self.logger = logger
        self.framer = ATFramer(maxLineLength: maxLineLength)
        (unsolicited, urcContinuation) = AsyncStream.makeStream(
            of: UnsolicitedLine.self, bufferingPolicy: .bufferingNewest(64))
    }

    /// Starts consuming the transport. Call once.
    public func start() {
        guard readerTask == nil else { return }
        let events = transport.events
        readerTask = Task { [weak self] in
            for await event in events {
                guard let self else { return }
                await self.handle(event)
            }
        }
    }

    public var isClosed: Bool { closedError != nil }

    /// Sends `command` (without the line end) and waits for its final result code, at most `timeout`.
    /// `expectedPrefix` is the information tag of the answer (`+CPIN:` for `AT+CPIN?`), so that a line that could
    /// also be a URC is taken as the answer.
    public func send(_ command: String, expecting expectedPrefix: String? = nil, timeout: Duration) async throws
        -> ATAnswer
    {
        try await acquire()
        defer { release() }
        if let closedError {
            throw ATChannelError(code: .closed, command: command, detail: closedError?.description ?? "port closed")
        }
        if Task.isCancelled { throw ATChannelError(code: .cancelled, command: command, detail: "cancelled") }
        nextID &+= 1
        let id = nextID
        commandCount += 1
        logger.trace("AT command", metadata: ["command": "\(command)"])
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ATAnswer, any Error>) in
                pending = Pending(
                    id: id, command: command, expectedPrefix: expectedPrefix, lines: [], continuation: continuation)
                do {
                    try transport.write(Array((command + "\r").utf8))
                } catch {
                    finish(id: id, with: .failure(ATChannelError(
                        code: .writeFailed, command: command, detail: "\(error)")))
                    return
                }
                pending?.timer = Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    guard !Task.isCancelled else { return }
                    await self?.timedOut(id: id)
                }
            }
        } onCancel: {
            Task { await self.cancel(id: id) }
        }
    }

    /// Waits until no byte has arrived for `quiet` (at most `limit`): after a timeout, so that a late answer to the
    /// abandoned command is not taken for the answer to the next one. Never used on the healthy path.
    public func waitForQuiet(_ quiet: Duration, limit: Duration) async {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: limit)
        while clock.now < end, closedError == nil {
            let since = clock.now - lastInput
            if since >= quiet { return }
            try? await Task.sleep(for: min(quiet - since, end - clock.now))
        }
    }

    /// Closes the transport; a pending command fails with `.closed`.
    public func close() {
        transport.close()
    }

    // MARK: - Queue

    private func acquire() async throws {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }

    // MARK: - Input

    private func handle(_ event: SerialEvent) {
        switch event {
        case .data(let bytes):
            lastInput = ContinuousClock().now
            for output in framer.feed(bytes) {
                switch output {
                case .line(let line): handleLine(line)
                case .garbage(let dropped):
                    garbageCount += 1
                    logger.warning("dropped unreadable input from modem", metadata: ["bytes": "\(dropped)"])
                case .prompt:
                    break
                }
            }
        case .closed(let error):
            closedError = .some(error)
            urcContinuation.finish()
            if let p = pending {
                finish(id: p.id, with: .failure(ATChannelError(
                    code: .closed, command: p.command, detail: error?.description ?? "port closed")))
            }
        }
    }

    private func handleLine(_ line: String) {
        let kind = classifier.classify(line, pendingCommand: pending?.command, expectedPrefix: pending?.expectedPrefix)
        switch kind {
        case .echo:
            break
        case .unsolicited:
            urcContinuation.yield(UnsolicitedLine(text: line, receivedAt: lastInput))
        case .information:
            pending?.lines.append(line)
        case .final(let result):
            guard let p = pending else { return }
            finish(id: p.id, with: .success(ATAnswer(lines: p.lines, result: result)))
        }
    }

    private func timedOut(id: UInt64) {
        guard let p = pending, p.id == id else { return }
        framer.reset()  // a half-received line belongs to the answer that never completed
        finish(id: id, with: .failure(ATChannelError(code: .timeout, command: p.command, detail: "no answer in time")))
    }

    private func cancel(id: UInt64) {
        guard let p = pending, p.id == id else { return }
        finish(id: id, with: .failure(ATChannelError(code: .cancelled, command: p.command, detail: "cancelled")))
    }

    private func finish(id: UInt64, with result: Result<ATAnswer, ATChannelError>) {
        guard let p = pending, p.id == id else { return }
        pending = nil
        p.timer?.cancel()
        p.continuation.resume(with: result.mapError { $0 as any Error })
    }
}
