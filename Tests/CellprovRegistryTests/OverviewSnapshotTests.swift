@testable import CellprovRegistryHTTP
import CellprovRegistryCore
import Foundation
import NIOConcurrencyHelpers
import Testing

// The overview's snapshot (OverviewSnapshot.swift): fresh answers without a read, stale ones with one read in the
// background, too old or none with the request waiting, one read at a time, a failed read retried.
@Suite struct OverviewSnapshotTests {
    /// A clock the test moves, and a loader that counts its reads and fails while told to.
    final class World: Sendable {
        let now = NIOLockedValueBox(Date(timeIntervalSince1970: 1_800_000_000))
        let failing = NIOLockedValueBox(false)
        let loads = NIOLockedValueBox(0)

        func advance(_ seconds: TimeInterval) { now.withLockedValue { $0 += seconds } }

        func snapshot(freshFor: TimeInterval = 30, staleFor: TimeInterval = 900) -> OverviewSnapshot {
            OverviewSnapshot(
                freshFor: freshFor, staleFor: staleFor, clock: { self.now.withLockedValue { $0 } },
                load: { now in
                    self.loads.withLockedValue { $0 += 1 }
                    // Long enough for concurrent callers to find the read running.
                    try await Task.sleep(for: .milliseconds(20))
                    if self.failing.withLockedValue({ $0 }) { throw RegistryStoreError("the database is gone") }
                    return FleetOverview.assemble(
                        OverviewCounts(total: self.loads.withLockedValue { $0 }),
                        OverviewQuery(now: now, silenceThreshold: 86_400))
                })
        }
    }

    @Test func freshThenStaleThenTooOld() async throws {
        let w = World()
        let s = w.snapshot()
        let first = try await s.overview()
        #expect(first.units.total == 1 && first.asOf == w.now.withLockedValue { $0 })
        w.advance(29)
        #expect(try await s.overview() == first)
        #expect(await s.reads == 1)
        // Stale: the old one at once, a read behind it.
        w.advance(2)
        #expect(try await s.overview() == first)
        await s.settled()
        #expect(await s.reads == 2)
        let second = try await s.overview()
        #expect(second.units.total == 2 && second.asOf > first.asOf)
        // Too old to show: the request waits for the read.
        w.advance(901)
        let third = try await s.overview()
        #expect(third.units.total == 3)
        #expect(w.loads.withLockedValue { $0 } == 3)
    }

    @Test func concurrentRequestsShareOneRead() async throws {
        let w = World()
        let s = w.snapshot()
        let answers = try await withThrowingTaskGroup(of: FleetOverview.self) { group in
            for _ in 0..<50 { group.addTask { try await s.overview() } }
            return try await group.reduce(into: [FleetOverview]()) { $0.append($1) }
        }
        #expect(answers.count == 50 && Set(answers.map(\.units.total)) == [1])
        #expect(w.loads.withLockedValue { $0 } == 1)
    }

    @Test func aFailedReadFailsTheWaitersAndIsRetried() async throws {
        let w = World()
        let s = w.snapshot()
        w.failing.withLockedValue { $0 = true }
        await #expect(throws: RegistryStoreError.self) { try await s.overview() }
        w.failing.withLockedValue { $0 = false }
        let o = try await s.overview()
        #expect(o.units.total == 2)
        // A failed background read keeps the snapshot.
        w.advance(60)
        w.failing.withLockedValue { $0 = true }
        #expect(try await s.overview() == o)
        await s.settled()
        #expect(try await s.overview() == o)
        #expect(await s.reads == 4)
    }

    @Test func zeroReadsEveryTime() async throws {
        let w = World()
        let s = w.snapshot(freshFor: 0, staleFor: 0)
        for i in 1...3 { #expect(try await s.overview().units.total == i) }
    }
}
