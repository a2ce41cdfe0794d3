import Dispatch

/// One deadline that can be moved: ``schedule(after:)`` replaces the pending deadline, ``cancel()`` ends the timer.
/// The handler runs on `queue` once per deadline reached.
///
/// One dispatch timer source for the timer's whole life, re-armed in place. The obvious alternative,
/// `asyncAfter` of a new `DispatchWorkItem` each time with `cancel()` on the previous one, keeps every cancelled
/// item (a dispatch timer source, the block and its group, about 500 bytes of heap) alive until its own deadline:
/// a slot session re-arms its re-probe timer (15 minutes by default) at every read, so each SIM swap held about
/// 0.7 KB for 15 minutes (docs/robustness.md, "The 2 KB per swap").
///
/// Armed only for its deadline (the manager thread's timerfd): no periodic wake-up. Thread-safe.
final class OneShotTimer: @unchecked Sendable {
    private let source: DispatchSourceTimer

    init(queue: DispatchQueue, handler: @escaping @Sendable () -> Void) {
        source = DispatchSource.makeTimerSource(queue: queue)
        source.setEventHandler(handler: handler)
        source.schedule(deadline: .distantFuture, repeating: .never)
        source.activate()
    }

    /// Fires once `delay` from now, instead of at any deadline set before. No effect after ``cancel()``.
    func schedule(after delay: Duration) {
        let nanoseconds = Self.nanoseconds(delay)
        source.schedule(
            deadline: .now() + .nanoseconds(nanoseconds), repeating: .never,
            leeway: .nanoseconds(Self.leeway(nanoseconds)))
    }

    /// Ends the timer: the pending deadline does not fire, and later ``schedule(after:)`` calls do nothing.
    func cancel() {
        source.cancel()
    }

    deinit {
        source.cancel()
    }

    /// `delay` in nanoseconds, from 0 to about 292 years (what DispatchTime can hold).
    static func nanoseconds(_ delay: Duration) -> Int {
        let (seconds, attoseconds) = delay.components
        guard seconds >= 0 else { return 0 }
        guard seconds < Int64(Int.max / 1_000_000_000) / 2 else { return Int.max / 2 }
        return Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
    }

    /// The slack the kernel may add: a tenth of the delay, from 1 ms to 60 s (what `asyncAfter` allowed, so
    /// that wake-ups can still be coalesced).
    static func leeway(_ nanoseconds: Int) -> Int {
        min(max(nanoseconds / 10, 1_000_000), 60_000_000_000)
    }
}
