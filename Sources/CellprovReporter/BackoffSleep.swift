/// The backoff wait of a sender that retries (the enrollment reporter, the hawkBit updater): a reload (new
/// credentials) ends the wait in progress at once, or, when none is in progress, lets the next one pass.
/// Written once for both senders: each keeps the two variables as its own actor state.
protocol BackoffSleeping: Actor {
    /// The wait in progress.
    var sleeper: CheckedContinuation<Void, Never>? { get set }
    /// A reload came while no wait was in progress: the next wait returns at once.
    var interrupted: Bool { get set }
}

extension BackoffSleeping {
    /// Waits `d`, or less: until a reload (``interruptSleep()``) or the task's cancellation.
    func sleep(_ d: Duration) async {
        if interrupted {
            interrupted = false
            return
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: d)
            await self?.endSleep()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in sleeper = c }
        } onCancel: {
            Task { await self.endSleep() }
        }
        timer.cancel()
    }

    /// Ends the wait in progress; with none, the next wait returns at once.
    func interruptSleep() {
        if let sleeper {
            self.sleeper = nil
            sleeper.resume()
        } else {
            interrupted = true
        }
    }

    func endSleep() {
        sleeper?.resume()
        sleeper = nil
    }
}
