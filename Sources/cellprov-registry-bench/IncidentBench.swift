import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
@_spi(Bench) import CellprovRegistryStore
import Foundation

/// The incident questions (issue 20) on a loaded fleet (``BenchFleet``): who held an ICCID at a moment
/// (`searchHolders` with `at`), a unit as of a moment (`unit(serial:at:)`), and the affected-units list of one
/// firmware revision (`affectedUnits`, 10 000 units at 1 000 000). Every answer is checked against what the load
/// wrote; a wrong one ends the benchmark with an error. Latencies are compared with the issue's targets.
enum IncidentBench {
    static let asOfTarget = 50.0
    static let affectedTarget = 500.0

    struct Result {
        var targetsMet = true
    }

    static func run(
        _ store: any RegistryStore & BulkLoadable, _ name: String, fleet: BenchFleet, samples: Int, affectedRuns: Int,
        load: Bool = true
    ) async throws -> Bool {
        let clock = ContinuousClock()
        if load { try await fleet.loadReporting(store, name) }
        try checkPayloads(fleet)
        try await checkAnswers(store, fleet)
        print("\(name) answers checked against the load: ok")

        var met = true
        var rng = SystemRandomNumberGenerator()
        // Who held this ICCID then?
        var holders = [Double]()
        for _ in 0..<samples {
            let n = Int.random(in: 0..<fleet.units, using: &rng)
            let k = [0, 3, 5, 6, 9].randomElement(using: &rng)!
            let sim = BenchFleet.script(n)[k].sim!
            let t = BenchFleet.occurredAt(n, k) + Int64.random(in: 0..<(BenchFleet.eventGap - 3_600_000), using: &rng)
            let started = clock.now
            let answer = try await store.searchHolders(
                SearchTerms(parsing: sim.iccid), at: BenchFleet.date(t), limit: 20)
            holders.append(ms(clock.now - started))
            let expected = Set(
                [n - 1, n, n + 1].filter { $0 >= 0 && $0 < fleet.units && BenchFleet.sim($0, at: t) == sim }
                    .map(BenchFleet.serial))
            guard Set(answer.map(\.unit.serial)) == expected else {
                throw BenchError("\(name): as-of holders of unit \(n)'s card at event \(k) differ from the load")
            }
        }
        met = report(name, "as-of holders by ICCID (searchHolders, at)", holders, target: asOfTarget) && met
        // What did this unit look like then?
        var units = [Double]()
        let end = BenchFleet.occurredAt(fleet.units, BenchFleet.eventsPerUnit)
        for _ in 0..<samples {
            let n = Int.random(in: 0..<fleet.units, using: &rng)
            let t = Int64.random(in: BenchFleet.occurredAt(n, 0)..<end, using: &rng)
            let started = clock.now
            let detail = try await store.unit(serial: BenchFleet.serial(n), at: BenchFleet.date(t))
            units.append(ms(clock.now - started))
            try checkUnit(detail, n, at: t, name)
        }
        met = report(name, "unit as of a moment (unit(serial:at:))", units, target: asOfTarget) && met
        // Which units carry this firmware revision?
        var affected = [Double]()
        var listed = 0
        for run in 0..<affectedRuns {
            let r = run == 0 ? 6 : Int.random(in: 0..<100, using: &rng)
            let started = clock.now
            let page = try await store.affectedUnits(
                ModuleFilter(revision: .exact(BenchFleet.revision(index: r))), limit: 10_000, offset: 0)
            affected.append(ms(clock.now - started))
            let expected = Array(stride(from: r, to: fleet.units, by: 100).prefix(10_000)).map(BenchFleet.serial)
            guard page.map(\.serial) == expected,
                page.allSatisfy({ $0.slots.first?.revision == BenchFleet.revision(index: r) })
            else {
                throw BenchError("\(name): the units of revision \(BenchFleet.revision(index: r)) differ from the load")
            }
            listed = page.count
        }
        met =
            report(name, "affected units of one revision (\(listed) units)", affected, target: affectedTarget) && met
        return met
    }

    /// Prints p50, p99 and the maximum of `samples` (ms), and whether p99 is under `target` (none: no target).
    static func report(_ name: String, _ what: String, _ samples: [Double], target: Double?) -> Bool {
        let sorted = samples.sorted()
        let p99 = percentile(sorted, 0.99)
        let met = target.map { p99 < $0 } ?? true
        let verdict = target.map { "; target p99 < \(fmt($0, 0)) ms: \(met ? "met" : "MISSED")" } ?? ""
        print(
            "\(name) \(what): p50 \(fmt(percentile(sorted, 0.5))) ms, p99 \(fmt(p99)) ms, max \(fmt(sorted.last ?? .nan)) ms"
                + " (\(samples.count) samples\(verdict))")
        return met
    }

    /// The unit's slot as of `t` is what the script says: the identity its last event by then reported (as the
    /// slot of today is the last event's: a failed read shows no card), the module of its events' payloads.
    static func checkUnit(_ detail: UnitDetail?, _ n: Int, at t: Int64, _ name: String) throws {
        guard let detail else { throw BenchError("\(name): unit \(n) not found as of a moment") }
        let slots = detail.summary.slots.filter { $0.origin == .device }
        guard t >= BenchFleet.occurredAt(n, 0) else {
            guard slots.isEmpty else { throw BenchError("\(name): unit \(n) has a slot before its first event") }
            return
        }
        let sim = BenchFleet.script(n).last { BenchFleet.occurredAt(n, $0.k) <= t }?.sim
        guard slots.count == 1, let slot = slots.first, slot.slot == "usb-1" else {
            throw BenchError("\(name): unit \(n) as of a moment has \(slots.count) field slots, not its one")
        }
        let differing = [
            ("ICCID", slot.identity.iccid == sim?.iccid), ("IMSI", slot.identity.imsi == sim?.imsi),
            ("IMEI", slot.identity.imei == BenchFleet.imei(n)), ("revision", slot.revision == BenchFleet.revision(n)),
            ("model", slot.model == BenchFleet.model(n)), ("manufacturer", slot.manufacturer == BenchFleet.manufacturer),
        ].filter { !$0.1 }.map(\.0)
        guard differing.isEmpty else {
            throw BenchError("\(name): unit \(n) as of a moment differs from the load in \(differing)")
        }
        let events = (0..<BenchFleet.eventsPerUnit).filter { BenchFleet.occurredAt(n, $0) <= t }.count
        guard detail.timeline.count == events else {
            throw BenchError("\(name): unit \(n) as of a moment has \(detail.timeline.count) events, not \(events)")
        }
    }

    /// The generated bodies are what cellprovd sends: they decode as the wire's `EnrollmentRequest` with the
    /// script's values, and the references are the device key's.
    static func checkPayloads(_ fleet: BenchFleet) throws {
        let key = Pseudonymizer(key: Array("check".utf8))
        for n in [0, 1, 6, fleet.units / 2, fleet.units - 1] {
            let rows = BenchFleet.rows(n, registryKey: key)
            let device = Pseudonymizer(key: Array(("bench-device-key-" + BenchFleet.serial(n)).utf8))
            for (e, row) in zip(BenchFleet.script(n), rows.events) {
                guard case .text(let payload) = row[row.count - 1] else { throw BenchError("no payload") }
                // As the registry's ingest decodes and validates a body.
                let r = try EnrollmentValidation.decode(
                    Array(payload.utf8), receivedAt: BenchFleet.date(BenchFleet.receivedAt(n, e.k)),
                    idempotencyKey: BenchFleet.eventID(n, e.k), parseTime: IngestTime.parse)
                let identity = EnrollmentRequest.Identity(
                    imei: BenchFleet.imei(n), imsi: e.sim?.imsi, iccid: e.sim?.iccid)
                guard r.eventID == BenchFleet.eventID(n, e.k), r.type == e.type, r.sequence == e.k + 1,
                    EnrollmentTimestamp.parse(r.occurredAt).map(ms) == BenchFleet.occurredAt(n, e.k),
                    r.device.serial == BenchFleet.serial(n), r.module.model == BenchFleet.model(n),
                    r.module.revision == BenchFleet.revision(n), r.identity == identity,
                    r.previous?.iccid == e.previousSIM?.iccid, (r.previous != nil) == e.hasPrevious,
                    r.references == EnrollmentRequest.References(identity, pseudonymizer: device)
                else {
                    throw BenchError("the generated body of unit \(n) event \(e.k) is not the script's")
                }
            }
        }
    }

    /// The SIM move between a giver and its receiver, as the issue's first incident: the holder then, the holder
    /// now, nobody while the card was out, both without a moment (today's first), and the giver as of then.
    static func checkAnswers(_ store: any RegistryStore, _ fleet: BenchFleet) async throws {
        for g in [0, (fleet.units - 2) / 20 * 20] {
            let r = g + 1
            let a = BenchFleet.sim1(g)
            let terms = SearchTerms(parsing: a.iccid)
            func holders(_ t: Int64?) async throws -> [String] {
                try await store.searchHolders(terms, at: t.map(BenchFleet.date), limit: 20).map(\.unit.serial)
            }
            let then = (BenchFleet.occurredAt(g, 0) + BenchFleet.occurredAt(g, 2)) / 2
            let out = (BenchFleet.occurredAt(g, 2) + BenchFleet.occurredAt(g, 3)) / 2
            let now = BenchFleet.occurredAt(r, 9) + 86_400_000
            let first = try await store.searchHolders(terms, at: BenchFleet.date(then), limit: 20)
            guard first.map(\.unit.serial) == [BenchFleet.serial(g)],
                first[0].holdings.map(\.from) == [BenchFleet.date(BenchFleet.occurredAt(g, 0))],
                first[0].holdings.map(\.until) == [BenchFleet.date(BenchFleet.occurredAt(g, 2))]
            else { throw BenchError("the holder of a moved SIM before the move is not its first unit") }
            guard try await holders(now) == [BenchFleet.serial(r)] else {
                throw BenchError("the holder of a moved SIM after the move is not its second unit")
            }
            guard try await holders(out).isEmpty else {
                throw BenchError("a SIM out of its unit has a holder")
            }
            guard try await holders(nil) == [BenchFleet.serial(r), BenchFleet.serial(g)] else {
                throw BenchError("every holder of a moved SIM is not its two units, today's first")
            }
            let today = try await store.searchUnits(terms, limit: 20).map(\.serial)
            guard today.contains(BenchFleet.serial(r)), !today.contains(BenchFleet.serial(g)) else {
                throw BenchError("today's search of a moved SIM does not find its new unit only")
            }
            try checkUnit(try await store.unit(serial: BenchFleet.serial(g), at: BenchFleet.date(then)), g, at: then, "")
            try checkUnit(try await store.unit(serial: BenchFleet.serial(g), at: BenchFleet.date(now)), g, at: now, "")
        }
        let prefix = try await store.affectedUnits(ModuleFilter(model: .prefix("EC2")), limit: 100, offset: 50)
        let expected = (0..<fleet.units).lazy.filter { [1, 2].contains(BenchFleet.revisionIndex($0) % 4) }
            .dropFirst(50).prefix(100).map(BenchFleet.serial)
        guard prefix.map(\.serial) == Array(expected) else {
            throw BenchError("the units of model prefix EC2 differ from the load")
        }
    }
}

extension BenchFleet {
    static func date(_ ms: Int64) -> Date { Date(timeIntervalSince1970: Double(ms) / 1000) }
}

func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
