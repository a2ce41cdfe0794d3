import CellprovRegistryCore
import Foundation

/// The fleet overview as last read, shared by `GET /v1/overview` and the `/overview` page of one registry instance
/// (docs/registry.md, "Fleet overview"; docs/decisions.md, "Fleet overview"). Reading the overview is five
/// fleet-wide statements (about a second of database time at 100 000 units, docs/performance.md): each request
/// answers from the snapshot instead, and at most one read runs at a time, whoever asks and however often.
///
/// - Younger than ``freshFor``: answered as it is.
/// - Older, but younger than ``staleFor``: answered as it is, and one read starts in the background
///   (stale-while-revalidate); the answer says when it was read (`as_of`).
/// - Older than that, or none yet: the request waits for the read (joining one already running). When that read
///   fails, the request fails (the caller answers 503), and the next request tries again.
///
/// A failed background read keeps the snapshot; it is retried by the next request after ``freshFor``.
actor OverviewSnapshot {
    typealias Load = @Sendable (_ now: Date) async throws -> FleetOverview

    /// The longest a stale overview is shown while a newer one is read. (``freshFor`` is the registry's
    /// `overviewFreshFor` option, 30 s: an operator reloading the page sees counts at most half a minute old, and
    /// the store reads the overview at most twice a minute per instance.)
    static let defaultStaleFor: TimeInterval = 15 * 60

    let freshFor: TimeInterval
    let staleFor: TimeInterval
    private let clock: @Sendable () -> Date
    private let load: Load
    private var current: FleetOverview?
    private var reading: Task<FleetOverview, any Error>?
    /// How many reads started (the tests count them).
    private(set) var reads = 0

    /// `freshFor` 0 reads the store on every request and never answers a stale overview (whatever `staleFor`
    /// says); otherwise a stale overview is shown for at least as long as a fresh one.
    init(
        freshFor: TimeInterval, staleFor: TimeInterval = defaultStaleFor,
        clock: @escaping @Sendable () -> Date = { Date() }, load: @escaping Load
    ) {
        self.freshFor = freshFor
        self.staleFor = freshFor > 0 ? max(staleFor, freshFor) : 0
        self.clock = clock
        self.load = load
    }

    /// The overview to answer with now.
    func overview() async throws -> FleetOverview {
        if let current {
            let age = clock().timeIntervalSince(current.asOf)
            if age < freshFor { return current }
            if age < staleFor {
                _ = startRead()
                return current
            }
        }
        return try await startRead().value
    }

    /// The running read, or a new one.
    private func startRead() -> Task<FleetOverview, any Error> {
        if let reading { return reading }
        reads += 1
        let (load, now) = (self.load, clock())
        let task = Task {
            do {
                let o = try await load(now)
                self.finished(o)
                return o
            } catch {
                self.finished(nil)
                throw error
            }
        }
        reading = task
        return task
    }

    /// Returns when no read is running (the tests wait for a background read with it).
    func settled() async {
        _ = try? await reading?.value
    }

    private func finished(_ o: FleetOverview?) {
        reading = nil
        if let o, o.asOf >= current?.asOf ?? .distantPast { current = o }
    }
}
