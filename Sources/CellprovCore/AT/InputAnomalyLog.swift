/// Decides when a misbehaving port's input is worth a log line: the first occurrence of each kind at once, then at
/// most one summary per kind per ``interval`` with what was dropped in between.
///
/// A modem is untrusted input: one log line per chunk of noise is about 100 MB of log in 10 s from a port streaming
/// random bytes, and under journald its rate limit then drops the daemon's real messages too. The caller (one per
/// port, so per slot) feeds every anomaly here and logs only the reports it gets back. Pure: the caller passes the
/// time, so the tests drive hours of noise in microseconds.
public struct InputAnomalyLog: Sendable {
    public enum Kind: String, Sendable, CaseIterable, Comparable {
        /// Binary or overlong lines the framer dropped.
        case unreadable
        /// Information lines too long or with control characters for any answer.
        case implausible
        /// Echoes of a command we did not send.
        case foreignEcho
        /// Answers past the per-command cap.
        case answerTooLong

        public static func < (lhs: Kind, rhs: Kind) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }
    }

    /// One log line's worth: the first occurrence, or the total since the previous line of that kind.
    public struct Report: Sendable, Equatable, CustomStringConvertible {
        public var kind: Kind
        /// The first occurrence on this port (otherwise a summary).
        public var isFirst: Bool
        public var bytes: Int
        public var lines: Int
        /// Time covered by a summary (zero for a first occurrence).
        public var span: Duration

        /// The log message: digit-free apart from the counts (the dropped bytes themselves are never shown).
        public var description: String {
            let what: String
            switch kind {
            case .unreadable: what = "dropped \(bytes) unreadable bytes, \(lines) lines"
            case .implausible: what = "dropped \(lines) implausible answer lines, \(bytes) bytes"
            case .foreignEcho: what = "ignored \(lines) echoes of commands we did not send"
            case .answerTooLong: what = "cut \(lines) answers past the size cap"
            }
            if isFirst { return what + " (first occurrence; further ones are summarised at most once a minute)" }
            return what + " since the previous report (\(span.components.seconds) s)"
        }
    }

    public let interval: Duration
    private var windows: [Kind: Window] = [:]

    private struct Window: Sendable {
        var start: ContinuousClock.Instant
        var bytes = 0
        var lines = 0
    }

    public init(interval: Duration = .seconds(60)) {
        self.interval = interval
    }

    /// Records `lines` anomalies of `kind` holding `bytes` bytes, seen at `now`. Returns the report to log, if any:
    /// the first occurrence of the kind, or a summary once `interval` has passed since the previous report.
    public mutating func record(_ kind: Kind, bytes: Int, lines: Int = 1, at now: ContinuousClock.Instant)
        -> Report?
    {
        guard lines > 0 || bytes > 0 else { return nil }
        guard var w = windows[kind] else {
            windows[kind] = Window(start: now)
            return Report(kind: kind, isFirst: true, bytes: bytes, lines: lines, span: .zero)
        }
        w.bytes += bytes
        w.lines += lines
        if now - w.start >= interval {
            windows[kind] = Window(start: now)
            return Report(kind: kind, isFirst: false, bytes: w.bytes, lines: w.lines, span: now - w.start)
        }
        windows[kind] = w
        return nil
    }

    /// The summaries not yet reported (when the port closes), in a fixed order; counts reset.
    public mutating func flush(at now: ContinuousClock.Instant) -> [Report] {
        var out: [Report] = []
        for kind in windows.keys.sorted() {
            guard var w = windows[kind], w.lines > 0 || w.bytes > 0 else { continue }
            out.append(Report(kind: kind, isFirst: false, bytes: w.bytes, lines: w.lines, span: now - w.start))
            w = Window(start: now)
            windows[kind] = w
        }
        return out
    }
}

/// A token bucket over the bytes a port delivers: how long the reader should pause so that a port never costs more
/// than `bytesPerSecond` of parsing, whatever the device sends.
///
/// An AT port carries little: answers of a few hundred bytes and rare URCs; a serial line at 115200 baud cannot
/// exceed 11.5 kB/s. A faulty module on USB can push megabytes a second of noise or endless lines, and each byte
/// costs framing and classification: paced reads leave the rest in the kernel's buffer (which then throttles or
/// drops it), so a garbage port costs a bounded share of a core. Pure: the caller passes the time.
public struct InputRateLimit: Sendable {
    public let bytesPerSecond: Int
    public let burst: Int
    private var tokens: Double
    private var last: ContinuousClock.Instant?

    public init(bytesPerSecond: Int = 32 * 1024, burst: Int = 128 * 1024) {
        precondition(bytesPerSecond > 0 && burst > 0)
        self.bytesPerSecond = bytesPerSecond
        self.burst = burst
        tokens = Double(burst)
    }

    /// Takes `bytes` read at `now`; returns how long to wait before reading more (zero within the budget).
    public mutating func delay(after bytes: Int, at now: ContinuousClock.Instant) -> Duration {
        if let last {
            let elapsed = now - last
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            tokens = min(Double(burst), tokens + seconds * Double(bytesPerSecond))
        }
        last = now
        tokens -= Double(bytes)
        guard tokens < 0 else { return .zero }
        return .nanoseconds(Int64((-tokens / Double(bytesPerSecond) * 1e9).rounded(.up)))
    }
}
