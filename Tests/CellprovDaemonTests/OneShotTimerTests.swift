import Dispatch
import Foundation
import CellprovTestKit
import NIOConcurrencyHelpers
import Testing

@testable import CellprovDaemon

/// The slot sessions' re-probe timer and the memory release's quiet timer: a deadline moved at every read without
/// keeping anything per move (docs/robustness.md, "The 2 KB per swap").
@Suite(.serialized) struct OneShotTimerTests {
    final class Counter: Sendable {
        let value = NIOLockedValueBox(0)
        func add() { value.withLockedValue { $0 += 1 } }
        var count: Int { value.withLockedValue { $0 } }
    }

    static func wait(until condition: () -> Bool, timeout: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock().now + timeout
        while !condition(), ContinuousClock().now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    }

    @Test func firesOnceAtItsDeadline() async throws {
        let fired = Counter()
        let timer = OneShotTimer(queue: DispatchQueue(label: "test.timer")) { fired.add() }
        let start = ContinuousClock().now
        timer.schedule(after: .milliseconds(100))
        try await Self.wait { fired.count > 0 }
        #expect(fired.count == 1)
        #expect(ContinuousClock().now - start >= .milliseconds(100))
        try await Task.sleep(for: .milliseconds(300))
        #expect(fired.count == 1, "a one-shot timer fired again")
        // Armed again after it fired.
        timer.schedule(after: .milliseconds(20))
        try await Self.wait { fired.count > 1 }
        #expect(fired.count == 2)
    }

    @Test func aNewDeadlineReplacesThePendingOne() async throws {
        let fired = Counter()
        let timer = OneShotTimer(queue: DispatchQueue(label: "test.timer")) { fired.add() }
        // Moved later: the earlier deadline does not fire.
        timer.schedule(after: .milliseconds(50))
        timer.schedule(after: .seconds(3600))
        try await Task.sleep(for: .milliseconds(400))
        #expect(fired.count == 0)
        // Moved sooner: fires once, at the new deadline.
        timer.schedule(after: .milliseconds(30))
        try await Self.wait { fired.count > 0 }
        try await Task.sleep(for: .milliseconds(200))
        #expect(fired.count == 1)
    }

    @Test func cancelledItNeverFires() async throws {
        let fired = Counter()
        let timer = OneShotTimer(queue: DispatchQueue(label: "test.timer")) { fired.add() }
        timer.schedule(after: .milliseconds(50))
        timer.cancel()
        timer.schedule(after: .milliseconds(10))  // after cancel: nothing
        try await Task.sleep(for: .milliseconds(400))
        #expect(fired.count == 0)
    }

    @Test func delaysAndLeeway() {
        #expect(OneShotTimer.nanoseconds(.milliseconds(300)) == 300_000_000)
        #expect(OneShotTimer.nanoseconds(.seconds(900)) == 900_000_000_000)
        #expect(OneShotTimer.nanoseconds(.seconds(-1)) == 0)
        #expect(OneShotTimer.nanoseconds(.seconds(Int64.max)) == Int.max / 2)
        #expect(OneShotTimer.leeway(0) == 1_000_000)
        #expect(OneShotTimer.leeway(1_000_000_000) == 100_000_000)
        #expect(OneShotTimer.leeway(900_000_000_000) == 60_000_000_000)
    }

    /// What cellprovd did per read before: cancel the previous work item, `asyncAfter` a new one. Kept as the
    /// measurement's control: libdispatch holds every cancelled item (a timer source, the block, its group) until
    /// its deadline.
    static func oldWay(_ moves: Int, on queue: DispatchQueue) {
        var pending: DispatchWorkItem?
        for _ in 0..<moves {
            pending?.cancel()
            let item = DispatchWorkItem {}
            pending = item
            queue.asyncAfter(deadline: .now() + .seconds(3600), execute: item)
        }
        pending?.cancel()
    }

    /// (Needs glibc's allocator: under a sanitizer its runtime's allocator replaces it and malloc_info says nothing.)
    @Test(.enabled(if: !Sanitizers.active)) func movingTheDeadlineKeepsNothing() throws {
        let moves = 20_000
        let queue = DispatchQueue(label: "test.timer")
        let timer = OneShotTimer(queue: queue) {}
        timer.schedule(after: .seconds(3600))
        let before = try #require(HeapInUse.bytes())
        for _ in 0..<moves { timer.schedule(after: .seconds(3600)) }
        let after = try #require(HeapInUse.bytes())
        timer.cancel()

        // The control: the same number of moves the old way, each held for the hour.
        let controlQueue = DispatchQueue(label: "test.timer.control")
        let controlBefore = try #require(HeapInUse.bytes())
        Self.oldWay(moves, on: controlQueue)
        let controlAfter = try #require(HeapInUse.bytes())

        let grown = after - before
        let controlGrown = controlAfter - controlBefore
        #expect(
            controlGrown > moves * 200,
            "the measurement does not see the old way's growth (\(controlGrown) bytes for \(moves) moves)")
        #expect(grown < moves * 20, "\(grown) bytes kept for \(moves) moves of the deadline (old way: \(controlGrown))")
    }
}

/// glibc's heap in use (all arenas, mmapped chunks included), from malloc_info(3): the memory taken from the
/// system less the free chunks. nil with another C library.
enum HeapInUse {
    private typealias MallocInfo = @convention(c) (Int32, UnsafeMutablePointer<FILE>?) -> Int32

    static func bytes() -> Int? {
        guard let symbol = dlsym(nil, "malloc_info") else { return nil }
        let mallocInfo = unsafeBitCast(symbol, to: MallocInfo.self)
        var buffer: UnsafeMutablePointer<CChar>?
        var size = 0
        guard let stream = open_memstream(&buffer, &size) else { return nil }
        let rc = mallocInfo(0, stream)
        fclose(stream)
        defer { free(buffer) }
        guard rc == 0, let buffer else { return nil }
        let xml = String(cString: buffer)
        // The totals follow the last </heap>.
        guard let last = xml.range(of: "</heap>", options: .backwards) else { return nil }
        let totals = xml[last.upperBound...]
        func value(_ tag: String, _ type: String) -> Int? {
            guard let r = totals.range(of: "<\(tag) type=\"\(type)\"") else { return nil }
            let rest = totals[r.upperBound...]
            guard let s = rest.range(of: "size=\"") else { return nil }
            return Int(rest[s.upperBound...].prefix { $0.isNumber })
        }
        guard let system = value("system", "current"), let fast = value("total", "fast"),
            let rest = value("total", "rest"), let mmap = value("total", "mmap")
        else { return nil }
        return system - fast - rest + mmap
    }
}
