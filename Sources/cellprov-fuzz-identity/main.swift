import CellprovCore
import CellprovFuzzSupport
import CellprovModem
import CellprovSerial
import Dispatch
import Logging
import NIOConcurrencyHelpers

// Fuzz target: the whole identity read (IdentityReader over ATChannel) against a fuzzed modem.
//
// The modem is `ReplayModem`, an ATTransport that answers each command the reader writes with the next
// answer of the input, delivered on its own queue like a serial port's bytes, optionally split in two reads;
// when the answers run out it hangs up (the next write gets the port closed). So the fuzzer writes the modem's
// side of a whole session: echoes, URCs, partial lines, garbage, missing finals (timeouts), unplugs.
//
// Input: answers, each [length: 2 bytes] [split point: 1 byte, 0 = one read] [bytes...].
// Properties: the read ends (libFuzzer's -timeout catches a hang); it sends a bounded number of commands; its
// problems have distinct codes; a valid report has no error problem; no identifier read shows its digits in the
// report's description nor in any log line of the read (at trace level).

final class ReplayModem: ATTransport {
    private struct State {
        var answers: [(bytes: [UInt8], split: Int)]
        var next = 0
        var handler: (@Sendable (SerialEvent) -> Void)?
        var closed = false
    }

    private let state: NIOLockedValueBox<State>
    private let queue = DispatchQueue(label: "cellprov.fuzz.modem")

    init(answers: [(bytes: [UInt8], split: Int)]) {
        state = NIOLockedValueBox(State(answers: answers))
    }

    func start(_ handler: @escaping @Sendable (SerialEvent) -> Void) {
        state.withLockedValue { $0.handler = handler }
    }

    func write(_ bytes: [UInt8]) throws(SerialError) {
        typealias Delivery = (handler: (@Sendable (SerialEvent) -> Void)?, answer: (bytes: [UInt8], split: Int)?)
        let (handler, answer): Delivery = state.withLockedValue { s in
            guard !s.closed else { return (nil, nil) }
            guard s.next < s.answers.count else {
                s.closed = true  // out of answers: the modem is unplugged
                return (s.handler, nil)
            }
            defer { s.next += 1 }
            return (s.handler, s.answers[s.next])
        }
        guard let handler else { return }
        queue.async {
            guard let answer else { return handler(.closed(nil)) }
            if answer.split > 0 && answer.split < answer.bytes.count {
                handler(.data(Array(answer.bytes[..<answer.split])))
                handler(.data(Array(answer.bytes[answer.split...])))
            } else if !answer.bytes.isEmpty {
                handler(.data(answer.bytes))
            }
        }
    }

    func close() {
        let handler: (@Sendable (SerialEvent) -> Void)? = state.withLockedValue { s in
            defer { s.closed = true }
            return s.closed ? nil : s.handler
        }
        if let handler { queue.async { handler(.closed(nil)) } }
    }
}

final class LogBox: Sendable {
    let lines = NIOLockedValueBox<[String]>([])
}

/// Keeps every log line of the read, rendered with its metadata, to check them for identifier digits.
struct CollectingLogHandler: LogHandler {
    let box: LogBox
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let text = "\(event.message) \(all.map { "\($0.key)=\($0.value)" }.joined(separator: " "))"
        box.lines.withLockedValue { $0.append(text) }
    }
}

let logs = LogBox()
let logger = Logger(label: "fuzz") { _ in CollectingLogHandler(box: logs) }

/// Short limits: a missing final costs milliseconds, not seconds, so the fuzzer keeps its pace.
let options: IdentityReadOptions = {
    var o = IdentityReadOptions()
    o.timeout = .milliseconds(200)
    o.commandTimeout = .milliseconds(3)
    o.wakeTimeouts = [.milliseconds(2), .milliseconds(3)]
    o.simBusyLimit = .zero
    o.resyncQuiet = .milliseconds(1)
    o.resyncLimit = .milliseconds(5)
    return o
}()

final class ReportBox: Sendable {
    let report = NIOLockedValueBox<IdentityReport?>(nil)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    var answers: [(bytes: [UInt8], split: Int)] = []
    while !input.isEmpty && answers.count < 64 {
        let length = input.uint16()
        let split = Int(input.byte())
        answers.append((input.bytes(length), split))
    }
    logs.lines.withLockedValue { $0.removeAll(keepingCapacity: true) }

    let modem = ReplayModem(answers: answers)
    let channel = ATChannel(transport: modem, logger: logger)
    channel.start()
    let reader = IdentityReader(options: options, logger: logger)
    let box = ReportBox()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        let report = await reader.read(channel: channel, port: "/dev/fuzz")
        box.report.withLockedValue { $0 = report }
        done.signal()
    }
    done.wait()
    channel.close()
    guard let report = box.report.withLockedValue({ $0 }) else { return 0 }

    fuzzRequire(report.commandCount <= 32, "\(report.commandCount) commands in one read")
    let codes = report.problems.map(\.code)
    fuzzRequire(Set(codes).count == codes.count, "a problem reported twice: \(codes)")
    if report.isValid {
        fuzzRequire(!report.problems.contains { $0.severity == .error }, "valid with an error problem")
    }
    let texts = [report.description] + logs.lines.withLockedValue { $0 }
    for digits in [report.imei?.unredacted, report.imsi?.unredacted, report.iccid?.unredacted].compactMap({ $0 }) {
        for text in texts {
            // The text with the digits masked tells which line leaked them (the input is fuzz data, not a unit's).
            fuzzRequire(
                !text.contains(digits),
                "identifier digits in the report or a log line: \(text.replacingOccurrences(of: digits, with: "<ID>"))")
        }
    }
    for p in report.problems {
        fuzzRequire(!containsDigitRun(p.message), "problem message with a digit run (\(p.code))")
    }
    return 0
}

FuzzDriver.main(fuzzOne)
