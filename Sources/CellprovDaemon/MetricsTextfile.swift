import CellprovCore
import CellprovReporter
import CellprovStore
import Dispatch
import FoundationEssentials
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// cellprovd's node_exporter textfile (`[metrics] textfile`): the slots' read state, SIM state and hot-swap
/// finding, the outbox, and deliveries by outcome, in Prometheus's text format. Names, types and meanings:
/// docs/operations.md ("Prometheus"); why timestamps rather than ages: docs/decisions.md.
///
/// Written on every change (a presence, a read, a delivery, an open store, SIGHUP), never more than once per
/// ``minimumInterval``: ``changed()`` only marks the file stale and arms one timer, so a flapping modem costs one
/// write a second at most. The write (a read of the store's views, a temporary file beside the target, then
/// rename(2): node_exporter never sees half a file) runs on a serial queue of its own, so a slow or full disk
/// delays only the file, never a read, a commit or a delivery. A failed write is logged once (again at most every
/// ``failureLogInterval`` while it keeps failing, and once when it works again), never fatal.
public final class MetricsTextfile: Sendable {
    public typealias Writer = @Sendable (_ path: String, _ contents: String) throws(MetricsWriteError) -> Void

    public let path: String
    private let logger: Logger
    private let minimumInterval: Duration
    private let failureLogInterval: Duration
    private let writer: Writer
    private let queue = DispatchQueue(label: "cellprovd.metrics")
    private let state = NIOLockedValueBox(State())

    private struct State {
        var store: StateStore?
        var dirty = false
        var scheduled = false
        var lastWriteStart: ContinuousClock.Instant?
        var deliveries: [String: Int] = Dictionary(uniqueKeysWithValues: MetricsTextfile.outcomes.map { ($0, 0) })
        var lastSuccess: [String: Date] = [:]
        var writes = 0
        var failing = false
        var lastFailureLog: ContinuousClock.Instant?
    }

    /// The delivery outcomes, as the `outcome` label says them.
    static let outcomes = ["delivered", "rejected", "refused", "failed"]

    public init(
        path: String, logger: Logger, minimumInterval: Duration = .seconds(1),
        failureLogInterval: Duration = .seconds(600), writer: @escaping Writer = MetricsTextfile.atomicWrite
    ) {
        self.path = path
        self.logger = logger
        self.minimumInterval = minimumInterval
        self.failureLogInterval = failureLogInterval
        self.writer = writer
    }

    /// The store, once open: the first write follows.
    public func attach(_ store: StateStore) {
        state.withLockedValue { $0.store = store }
        changed()
    }

    /// A read ended: remembered when it gave a full valid identity (the store keeps only the last read).
    public func observed(slot: String, valid: Bool, at date: Date) {
        guard valid else { return }
        state.withLockedValue { $0.lastSuccess[slot] = max(date, $0.lastSuccess[slot] ?? date) }
    }

    /// A delivery attempt's outcome (the reporter's `onDelivery`).
    public func delivered(_ outcome: DeliveryOutcome) {
        let name =
            switch outcome {
            case .delivered: "delivered"
            case .rejected: "rejected"
            case .refused: "refused"
            case .retry: "failed"
            }
        state.withLockedValue { $0.deliveries[name, default: 0] += 1 }
        changed()
    }

    /// Something the file shows changed: write it now, or one interval after the last write began. Never blocks.
    public func changed() {
        let delay = state.withLockedValue { s -> Duration? in
            s.dirty = true
            guard !s.scheduled else { return nil }
            s.scheduled = true
            return Self.delay(now: ContinuousClock().now, lastWriteStart: s.lastWriteStart, interval: minimumInterval)
        }
        if let delay { schedule(after: delay) }
    }

    /// How many times the file was written (tests, the benchmark).
    public var writes: Int { state.withLockedValue { $0.writes } }

    static func delay(now: ContinuousClock.Instant, lastWriteStart: ContinuousClock.Instant?, interval: Duration)
        -> Duration
    {
        guard let last = lastWriteStart else { return .zero }
        return max(.zero, last + interval - now)
    }

    private func schedule(after delay: Duration) {
        let work: @Sendable () -> Void = { [self] in flush() }
        if delay <= .zero {
            queue.async(execute: work)
        } else {
            queue.asyncAfter(deadline: .now() + .nanoseconds(Int(delay.nanoseconds)), execute: work)
        }
    }

    /// On ``queue``: one write of the file as it is now.
    private func flush() {
        let started = ContinuousClock().now
        let taken = state.withLockedValue { s -> (StateStore, [String: Int], [String: Date])? in
            guard let store = s.store else {
                s.scheduled = false  // attach() writes once the store is open
                return nil
            }
            s.dirty = false
            s.lastWriteStart = started
            return (store, s.deliveries, s.lastSuccess)
        }
        guard let (store, deliveries, lastSuccess) = taken else { return }
        var failure: String?
        do {
            let view = try StatusView(store: store, lastEvents: false)
            try writer(path, Self.render(view, lastSuccess: lastSuccess, deliveries: deliveries))
        } catch {
            failure = "\(error)"
        }
        let now = ContinuousClock().now
        let (again, log) = state.withLockedValue { s -> (Duration?, String?) in
            var log: String?
            if let failure {
                if !s.failing || s.lastFailureLog.map({ now - $0 >= failureLogInterval }) ?? true {
                    log = failure
                    s.lastFailureLog = now
                }
                s.failing = true
            } else {
                s.writes += 1
                if s.failing { log = "" }
                s.failing = false
                s.lastFailureLog = nil
            }
            s.scheduled = s.dirty
            return (
                s.dirty ? Self.delay(now: now, lastWriteStart: s.lastWriteStart, interval: minimumInterval) : nil, log
            )
        }
        if let log {
            if log.isEmpty {
                logger.notice("metrics file written again", metadata: ["path": "\(path)"])
            } else {
                logger.warning(
                    """
                    cannot write the metrics file (retried at the next change; logged again in 10 minutes if it \
                    still fails): \(log)
                    """,
                    metadata: ["path": "\(path)"])
            }
        }
        if let again { schedule(after: again) }
    }

    // MARK: - The text

    /// The file's text (Prometheus text exposition format 0.0.4). Labels carry slot names (physical positions)
    /// and fixed words, never an identifier.
    public static func render(_ view: StatusView, lastSuccess: [String: Date], deliveries: [String: Int]) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            guard !samples.isEmpty else { return }
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in samples { out += "\(name)\(s.labels.isEmpty ? "" : "{\(s.labels)}") \(s.value)\n" }
        }
        func slot(_ s: StatusView.Slot) -> String { "slot=\"\(escape(s.slot))\"" }
        func bool(_ b: Bool) -> String { b ? "1" : "0" }
        func time(_ d: Date) -> String { number(d.timeIntervalSince1970) }

        let slots = view.slots
        family(
            "cellprov_slot_present", "gauge",
            "Whether the slot's modem was present at cellprovd's last look (1) or not (0).",
            slots.map { (slot($0), bool($0.live?.present ?? false)) })
        family(
            "cellprov_slot_read_state", "gauge",
            "Outcome of the slot's last identity read: 1 for the current state, 0 for the others "
                + "(ok: full valid identity; warning: valid with warnings; error: no valid identity; not_read).",
            slots.flatMap { s in
                StatusView.ReadStatus.allCases.map { (slot(s) + ",state=\"\($0.rawValue)\"", bool(s.readStatus == $0)) }
            })
        family(
            "cellprov_slot_last_read_timestamp_seconds", "gauge",
            "When the slot's last identity read ended, in seconds since the Unix epoch.",
            slots.compactMap { s in s.live?.lastReadAt.map { (slot(s), time($0)) } })
        family(
            "cellprov_slot_last_successful_read_timestamp_seconds", "gauge",
            "When the slot's last read that gave a full valid identity ended, in seconds since the Unix epoch.",
            slots.compactMap { s in
                let known = [lastSuccess[s.slot], s.lastSuccessfulReadAt].compactMap { $0 }.max()
                return known.map { (slot(s), time($0)) }
            })
        family(
            "cellprov_slot_sim_state", "gauge",
            "The SIM's state at the slot's last read: 1 for the current state, 0 for the others.",
            slots.flatMap { s in
                StatusView.SIMState.allCases.map { (slot(s) + ",state=\"\($0.rawValue)\"", bool(s.simState == $0)) }
            })
        family(
            "cellprov_slot_sim_hotswap_unavailable", "gauge",
            "1 when the module is known not to report SIM swaps as they happen (card detection off, or the "
                + "report command refused: a swap shows at the next re-probe), else 0.",
            slots.compactMap { s in s.simHotSwapUnavailable.map { (slot(s), bool($0)) } })
        family(
            "cellprov_outbox_events", "gauge", "Events waiting for delivery to the backend.",
            [("", "\(view.outboxPending)")])
        family(
            "cellprov_outbox_oldest_event_timestamp_seconds", "gauge",
            "When the oldest event waiting for delivery occurred, in seconds since the Unix epoch "
                + "(no sample when the outbox is empty).",
            view.oldestPending.map { [("", time($0.event.occurredAt))] } ?? [])
        family(
            "cellprov_backend_credentials_refused", "gauge",
            "1 while the backend refuses cellprovd's credentials (HTTP 401 or 403 since the last delivery), else 0.",
            [("", bool(view.credentialsRefused != nil))])
        family(
            "cellprov_deliveries_total", "counter",
            "Delivery attempts since cellprovd started, by outcome (delivered: 2xx or 409; rejected: 400, 413 "
                + "or 422, kept and not retried; refused: 401 or 403; failed: any other answer, a timeout, a "
                + "connection or TLS error, retried).",
            outcomes.map { ("outcome=\"\($0)\"", "\(deliveries[$0] ?? 0)") })
        return out
    }

    /// A label value as the text format writes it: backslash, double quote and line feed escaped.
    static func escape(_ value: String) -> String {
        var out = ""
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// A number as Prometheus parses it: whole seconds without a fraction, else three decimals.
    static func number(_ value: Double) -> String {
        let millis = (value * 1000).rounded()
        if millis.truncatingRemainder(dividingBy: 1000) == 0 { return String(Int64(millis / 1000)) }
        let whole = Int64((millis / 1000).rounded(.towardZero))
        let fraction = Int64(abs(millis.truncatingRemainder(dividingBy: 1000)))
        let f = String(fraction)
        return "\(whole).\(String(repeating: "0", count: 3 - f.count))\(f)"
    }

    // MARK: - Writing

    /// Writes `contents` to `path` atomically: a dot file in the same directory (which node_exporter's `*.prom`
    /// glob skips), mode 0644 whatever the umask (node_exporter runs as another user), then rename(2) over the
    /// target. No fsync: the file is rewritten at the next change and after a crash the next start rewrites it.
    public static let atomicWrite: Writer = { (path: String, contents: String) throws(MetricsWriteError) in
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let directory = String(path[..<slash])
        let name = String(path[path.index(after: slash)...])
        let temporary = "\(directory)/.\(name).\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw MetricsWriteError("\(temporary): cannot create (\(MetricsTextfile.errnoText()))") }
        var bytes = Array(contents.utf8)[...]
        var failed: String?
        if fchmod(fd, 0o644) != 0 { failed = "chmod" }
        while failed == nil, !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                failed = "write"
                break
            }
            bytes = bytes.dropFirst(n)
        }
        let reason = failed.map { "\($0): \(MetricsTextfile.errnoText())" }
        if close(fd) != 0, failed == nil { failed = "close" }
        if let failed {
            unlink(temporary)
            throw MetricsWriteError("\(temporary): \(reason ?? "\(failed): \(MetricsTextfile.errnoText())")")
        }
        guard rename(temporary, path) == 0 else {
            let text = MetricsTextfile.errnoText()
            unlink(temporary)
            throw MetricsWriteError("\(path): cannot replace (\(text))")
        }
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

/// Why the metrics file could not be written: paths and the system's reason, nothing else.
public struct MetricsWriteError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
