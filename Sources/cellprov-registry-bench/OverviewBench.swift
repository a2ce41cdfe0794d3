import AsyncHTTPClient
import CellprovRegistryCore
import CellprovRegistryHTTP
@_spi(Bench) import CellprovRegistryStore
import Foundation
import Hummingbird
import Logging

/// The fleet overview (issue 17: "the overview answers within 200 ms at 100 000 units") on a loaded fleet
/// (``BenchFleet``), in two parts:
///
/// - **Reading it**: the store's five fleet-wide statements and their assembly (`overviewCounts`), at a moment an
///   hour after the fleet's last event, so that the 30-day and 12-week windows hold about three events a unit.
///   Each answer is checked against what the load wrote. This is what one snapshot costs the database.
/// - **Answering it**: `GET /v1/overview` through the real HTTP layer (`RegistryHTTP.makeRouter` served by
///   Hummingbird on loopback, AsyncHTTPClient as the viewer), the first request (which waits for the first read)
///   apart from the rest (answered from the snapshot). The target applies to the rest, p99.
enum OverviewBench {
    static let target = 200.0

    static func run(
        _ store: any RegistryStore & BulkLoadable, _ name: String, fleet: BenchFleet, reads: Int, requests: Int
    ) async throws -> Bool {
        try await fleet.loadReporting(store, name)
        let clock = ContinuousClock()
        let lastReceived = BenchFleet.receivedAt(fleet.units - 1, BenchFleet.eventsPerUnit - 1)
        let query = OverviewQuery(
            now: BenchFleet.date(lastReceived + 3_600_000), silenceThreshold: 7 * 86_400)
        var readTimes = [Double]()
        for _ in 0..<reads {
            let started = clock.now
            let o = FleetOverview.assemble(try await store.overviewCounts(query), query)
            readTimes.append(ms(clock.now - started))
            try check(o, query, fleet, name)
        }
        print("\(name) overview answers checked against the load: ok")
        _ = IncidentBench.report(name, "overview read (overviewCounts, one snapshot)", readTimes, target: nil)

        let (cold, warm) = try await answer(store, requests: requests)
        print("\(name) overview, first GET /v1/overview (waits for the first read): \(fmt(cold)) ms")
        return IncidentBench.report(name, "overview answered (GET /v1/overview over HTTP)", warm, target: target)
    }

    /// Every figure the load determines: units, events per day and SIM swaps per week in their windows, firmware.
    static func check(_ o: FleetOverview, _ q: OverviewQuery, _ fleet: BenchFleet, _ name: String) throws {
        var (perDay, swaps, seen) = (0, 0, 0)
        let seenSince = OverviewQuery.milliseconds(q.seenSince)
        for n in 0..<fleet.units {
            for e in BenchFleet.script(n) {
                let received = BenchFleet.receivedAt(n, e.k)
                if received >= q.daysStartMilliseconds { perDay += 1 }
                if e.type == "sim_changed", received >= q.weeksStartMilliseconds { swaps += 1 }
            }
            if BenchFleet.receivedAt(n, BenchFleet.eventsPerUnit - 1) >= seenSince { seen += 1 }
        }
        let revisions = min(100, fleet.units)
        let got = (
            o.units.total, o.units.seen24h, o.eventsPerDay.reduce(0) { $0 + $1.events },
            o.weeks.reduce(0) { $0 + $1.simSwaps }, o.firmware.count, o.firmware.reduce(0) { $0 + $1.units }
        )
        guard got == (fleet.units, seen, perDay, swaps, revisions, fleet.units) else {
            throw BenchError(
                "\(name): the overview \(got) differs from the load "
                    + "\((fleet.units, seen, perDay, swaps, revisions, fleet.units))")
        }
    }

    /// The HTTP layer on loopback with a viewer token: the first answer's latency, then `requests` more.
    static func answer(_ store: any RegistryStore, requests: Int) async throws -> (Double, [Double]) {
        var quiet = Logger(label: "cellprov.registry.bench.http")
        quiet.logLevel = .critical  // Hummingbird logs its own shutdown on cancellation as errors
        let token = Tokens.generate(.operator)
        try await store.putOperatorToken(name: "bench", role: .viewer, tokenHash: Tokens.hash(token), at: Date())
        let router = try await RegistryHTTP.makeRouter(store: store, logger: quiet)
        let (ports, announce) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                announce.yield(channel.localAddress?.port ?? 0)
                announce.finish()
            }, logger: quiet)
        return try await withThrowingTaskGroup(of: (Double, [Double])?.self) { group in
            group.addTask {
                try await app.runService()
                return nil
            }
            var iterator = ports.makeAsyncIterator()
            guard let bound = await iterator.next(), bound > 0 else { throw BenchError("the HTTP layer did not start") }
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            let clock = ContinuousClock()
            var times = [Double]()
            do {
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(bound)/v1/overview")
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
                for _ in 0...requests {
                    let started = clock.now
                    let response = try await client.execute(request, timeout: .seconds(60))
                    let body = try await response.body.collect(upTo: 1 << 20)
                    times.append(ms(clock.now - started))
                    guard response.status == .ok, body.readableBytes > 0 else {
                        throw BenchError("GET /v1/overview answered \(response.status.code)")
                    }
                }
            } catch {
                try? await client.shutdown()
                group.cancelAll()
                throw error
            }
            try await client.shutdown()
            group.cancelAll()
            return (times[0], Array(times.dropFirst()))
        }
    }
}
