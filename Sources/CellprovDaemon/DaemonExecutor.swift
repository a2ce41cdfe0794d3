import CSwiftConcurrencyHooks
import Dispatch

/// The daemon's one executor for Swift concurrency's global jobs, so that an idle daemon has no periodic wake-up
/// (issue 8; measurements in docs/performance.md, decision in docs/decisions.md, "Idle without wake-ups").
///
/// Why: on Linux, libdispatch starts a 1 Hz timer (`_dispatch_workq_monitor_pools`, on its manager thread) the
/// first time a worker thread of a *non-overcommit* global root queue runs, and never stops it
/// (swift-corelibs-libdispatch, src/event/workqueue.c). Swift concurrency's default global executor enqueues every
/// task job on those queues (`dispatch_get_global_queue(qos, 0)`), as does `DispatchQueue.global()`. Workers of
/// the *overcommit* root queues (the targets of serial queues made with `DispatchQueue(label:)`) are not monitored.
///
/// What: ``install()`` sets the runtime's global-enqueue hooks (`swift_task_enqueueGlobal_hook` and the delayed
/// and deadline variants used by `Task.sleep`) so that every global job runs on ``queue``, one serial dispatch
/// queue. Its worker thread exits after libdispatch's idle timeout (5 s), the timers of sleeping tasks are
/// ordinary dispatch timers (the manager thread's timerfd, armed for the deadline only), and nothing ticks.
/// The daemon's own dispatch work (slot timers, signal sources, the memory release) uses ``queue`` too, never
/// `DispatchQueue.global()`.
///
/// The cost: the daemon's tasks run one at a time. Its work is I/O-bound (each serial port and the udev monitor
/// have their own queues, the sd-bus client its own thread, NIO its event loop), and no task blocks waiting on
/// another task (which would deadlock a serial executor); a blocking wait on a dispatch queue or thread of its
/// own (a serial port's close, the state store's opening queue) only delays the other tasks.
/// Only the daemon installs it; the CLI (`cellprov probe` reading many modems) keeps the default executor.
public enum DaemonExecutor {
    /// Where every global job, and the daemon's own dispatch work, runs: a serial queue (overcommit root).
    public static let queue = DispatchQueue(label: "cellprovd.executor")

    static let executor = QueueTaskExecutor(queue: queue)

    /// Whether ``install()`` has run in this process.
    public static var isInstalled: Bool { cellprov_global_executor_hooked() != 0 }

    /// Routes Swift concurrency's global jobs to ``queue``. Call first thing in `main`, before any task is
    /// created (jobs enqueued before stay where they were). Not undone: a process either has it or not.
    public static func install() {
        let global: GlobalHook = { job, _ in DaemonExecutor.executor.enqueue(job) }
        let delay: DelayHook = { nanoseconds, job, _ in
            DaemonExecutor.executor.enqueue(job, afterNanoseconds: Int64(clamping: nanoseconds))
        }
        let deadline: DeadlineHook = { seconds, nanoseconds, _, _, clock, job, _ in
            var nowSeconds: Int64 = 0
            var nowNanoseconds: Int64 = 0
            swiftGetTime(&nowSeconds, &nowNanoseconds, clock)
            DaemonExecutor.executor.enqueue(
                job,
                afterNanoseconds: DaemonExecutor.nanoseconds(
                    from: (nowSeconds, nowNanoseconds), to: (seconds, nanoseconds)))
        }
        cellprov_set_global_executor_hooks(
            unsafeBitCast(global, to: UnsafeMutableRawPointer.self),
            unsafeBitCast(delay, to: UnsafeMutableRawPointer.self),
            unsafeBitCast(deadline, to: UnsafeMutableRawPointer.self))
    }

    /// The time from `now` to `deadline` (seconds, nanoseconds) in nanoseconds: 0 if past, saturating at
    /// `Int64.max` (a deadline centuries away: the job waits for ever, as it would on the default executor).
    static func nanoseconds(from now: (Int64, Int64), to deadline: (Int64, Int64)) -> Int64 {
        let (seconds, o1) = deadline.0.subtractingReportingOverflow(now.0)
        if o1 { return deadline.0 > now.0 ? .max : 0 }
        let (scaled, o2) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if o2 { return seconds > 0 ? .max : 0 }
        let (total, o3) = scaled.addingReportingOverflow(deadline.1 - now.1)
        if o3 { return seconds > 0 ? .max : 0 }
        return max(total, 0)
    }
}

/// Runs jobs on a dispatch queue, as on the generic executor (not isolated to anything): a task executor.
final class QueueTaskExecutor: TaskExecutor, @unchecked Sendable {
    let queue: DispatchQueue

    init(queue: DispatchQueue) {
        self.queue = queue
    }

    func enqueue(_ job: consuming ExecutorJob) {
        enqueue(UnownedJob(job))
    }

    func enqueue(_ job: UnownedJob) {
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    func enqueue(_ job: UnownedJob, afterNanoseconds nanoseconds: Int64) {
        guard nanoseconds > 0 else { return enqueue(job) }
        // About 292 years saturate DispatchTime: a job that far away never runs, as with the default executor.
        let deadline: DispatchTime =
            nanoseconds >= Int64(Int.max) / 2 ? .distantFuture : .now() + .nanoseconds(Int(nanoseconds))
        queue.asyncAfter(deadline: deadline) { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

// The runtime's hook types (swift/Runtime/Concurrency.h): swiftcall function pointers, i.e. thin Swift functions.
typealias GlobalOriginal = @convention(thin) (UnownedJob) -> Void
typealias GlobalHook = @convention(thin) (UnownedJob, GlobalOriginal) -> Void
typealias DelayOriginal = @convention(thin) (UInt64, UnownedJob) -> Void
typealias DelayHook = @convention(thin) (UInt64, UnownedJob, DelayOriginal) -> Void
typealias DeadlineOriginal = @convention(thin) (Int64, Int64, Int64, Int64, Int32, UnownedJob) -> Void
typealias DeadlineHook = @convention(thin) (Int64, Int64, Int64, Int64, Int32, UnownedJob, DeadlineOriginal) -> Void

/// The runtime's clock reading for a `swift_clock_id` (1 continuous, 2 suspending): the clocks the deadline hook's
/// deadlines are expressed in.
@_silgen_name("swift_get_time")
func swiftGetTime(_ seconds: UnsafeMutablePointer<Int64>, _ nanoseconds: UnsafeMutablePointer<Int64>, _ clock: Int32)
