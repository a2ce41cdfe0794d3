import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
@_spi(Bench) import CellprovRegistryStore
import Foundation
import Logging

// cellprov-registry-bench: the registry storage with many units loaded, on SQLite and (with --postgres URL)
// PostgreSQL (docs/performance.md). Build it in release: swift build -c release --product cellprov-registry-bench.
//
//   cellprov-registry-bench [MODE] [--units N] [--postgres URL] [--no-sqlite] [--dir DIR] [mode options]
//
// Modes:
//   lookups   (the default) today's lookups by IMEI, ICCID and serial, then the ingest rate at 1, 16 and 64
//             concurrent tasks; figures printed, not asserted. Options: --lookups N, --events N, --no-settle (no
//             VACUUM ANALYZE after the load, as builds before it did, for an A/B against them).
//   incident  the incident questions of issue 20 on BenchFleet's units of ten events each: who held an ICCID at a
//             moment, a unit as of a moment, the affected-units list of one firmware revision. Every answer is
//             checked against the load (a wrong one exits 1); p99s are compared with the targets (50 ms, 500 ms),
//             and --require-targets exits 2 when one is missed. Options: --samples N (as-of queries of each
//             kind, default 1000), --affected-runs N (default 20).
//   overview  the fleet overview on BenchFleet's units: the store's read of it (--reads N times, default 10, each
//             answer checked against the load) and GET /v1/overview through the real HTTP layer on loopback
//             (--requests N, default 1000, after a first one that waits for the read); the answers' p99 is
//             compared with the target (200 ms), --require-targets exits 2 when it is missed.
//
// --postgres names a server (e.g. scripts/pg-test-server.sh's URL): the benchmark creates its own database on it
// and drops it at the end. The SQLite database is made in --dir (default: a new temporary directory), removed at
// the end.

struct Options {
    var mode = "lookups"
    var units = 1_000_000
    var lookups = 2000
    var events = 3000
    var samples = 1000
    var affectedRuns = 20
    var reads = 10
    var requests = 1000
    var requireTargets = false
    var sqlite = true
    var settle = true
    var postgres: String?
    var dir: String?

    static let modes = ["lookups", "incident", "overview"]

    init(_ args: [String]) throws {
        var i = 0
        if let first = args.first, !first.hasPrefix("-") {
            guard Self.modes.contains(first) else {
                throw RegistryStoreError("unknown mode \(first) (modes: \(Self.modes.joined(separator: ", ")))")
            }
            mode = first
            i = 1
        }
        func value() throws -> String {
            i += 1
            guard i < args.count else { throw RegistryStoreError("\(args[i - 1]) needs a value") }
            return args[i]
        }
        func number() throws -> Int {
            let text = try value()
            guard let n = Int(text), n > 0 else { throw RegistryStoreError("\(args[i - 1]) needs a positive number") }
            return n
        }
        while i < args.count {
            switch args[i] {
            case "--units": units = try number()
            case "--lookups": lookups = try number()
            case "--events": events = try number()
            case "--samples": samples = try number()
            case "--affected-runs": affectedRuns = try number()
            case "--reads": reads = try number()
            case "--requests": requests = try number()
            case "--require-targets": requireTargets = true
            case "--no-sqlite": sqlite = false
            case "--no-settle": settle = false
            case "--postgres": postgres = try value()
            case "--dir": dir = try value()
            default: throw RegistryStoreError("unknown argument \(args[i])")
            }
            i += 1
        }
    }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)
    return sorted[max(0, index)]
}

func ms(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
}

func fmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }

func lookups(_ store: any RegistryStore, _ name: String, _ options: Options) async throws {
    let clock = ContinuousClock()
    var rng = SystemRandomNumberGenerator()
    let kinds: [(String, (Int) -> String)] = [
        ("IMEI", BenchUnits.imei), ("ICCID", BenchUnits.iccid), ("serial", BenchUnits.serial),
    ]
    for (kind, value) in kinds {
        var samples = [Double]()
        samples.reserveCapacity(options.lookups)
        for _ in 0..<options.lookups {
            let n = Int.random(in: 0..<options.units, using: &rng)
            let terms = SearchTerms(parsing: value(n))
            let started = clock.now
            let found = try await store.searchUnits(terms, limit: 20)
            samples.append(ms(clock.now - started))
            guard found.contains(where: { $0.serial == BenchUnits.serial(n) }) else {
                throw RegistryStoreError("lookup by \(kind) did not find unit \(n)")
            }
        }
        samples.sort()
        print(
            "\(name) lookup by \(kind): p50 \(fmt(percentile(samples, 0.5))) ms, p99 \(fmt(percentile(samples, 0.99))) ms"
                + " (\(samples.count) lookups, \(options.units) units)")
    }
}

/// Events at `concurrency` tasks: each event enrols a new slot of a new serial (so no flag rules fire beyond their
/// lookups), with a durable commit per event.
func ingest(_ store: any RegistryStore, _ name: String, _ options: Options, concurrency: Int, run: Int) async throws {
    let clock = ContinuousClock()
    let total = options.events
    let started = clock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for task in 0..<concurrency {
            group.addTask {
                var i = task
                while i < total {
                    let serial = "ING-\(run)-\(i)"
                    let body = "86000000" + String(format: "%06d", (run * total + i) % 1_000_000)
                    let imei = body + String(Luhn.checkDigit(for: body) ?? 0)
                    let request = EnrollmentRequest(
                        eventID: UUID().uuidString.lowercased(), type: "enrolled",
                        occurredAt: EnrollmentRequest.timestamp(Date()), sequence: 1, severity: "info",
                        device: .init(serial: serial), module: .init(slot: "usb-1", model: "EG25"),
                        identity: .init(imei: imei, imsi: "26202" + String(format: "%010d", run * total + i),
                            iccid: "8949227" + String(format: "%012d", run * total + i)))
                    let outcome = try await store.ingest(
                        request, serial: serial, origin: .device, references: [], receivedAt: Date())
                    guard case .stored = outcome else { throw RegistryStoreError("event not stored") }
                    i += concurrency
                }
            }
        }
        try await group.waitForAll()
    }
    let seconds = ms(clock.now - started) / 1000
    print("\(name) ingest at \(concurrency) concurrent: \(fmt(Double(total) / seconds, 0)) events/s (\(total) events)")
}

func bench(_ store: any RegistryStore & BulkLoadable, _ name: String, _ options: Options) async throws {
    let started = ContinuousClock.now
    try await BenchUnits.load(store, count: options.units, at: Date(), settle: options.settle)
    print("\(name) loaded \(options.units) units in \(fmt(ms(ContinuousClock.now - started) / 1000, 1)) s")
    try await lookups(store, name, options)
    for (run, concurrency) in [1, 16, 64].enumerated() {
        try await ingest(store, name, options, concurrency: concurrency, run: run)
    }
}

/// Runs `body` on a fresh SQLite database (unless --no-sqlite) and, with --postgres, on a fresh PostgreSQL database,
/// removing each afterwards (also when `body` fails).
func onEachBackend(
    _ options: Options, logger: Logger,
    _ body: (any RegistryStore & BulkLoadable, String) async throws -> Void
) async throws {
    if options.sqlite {
        let dir =
            options.dir
            ?? FileManager.default.temporaryDirectory.appendingPathComponent(
                "registry-bench-\(UUID().uuidString.prefix(8))"
            ).path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/registry-bench-\(UUID().uuidString.prefix(8)).db"
        func remove() {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            if options.dir == nil { try? FileManager.default.removeItem(atPath: dir) }
        }
        let sqlite: SQLiteRegistryStore
        do {
            sqlite = try SQLiteRegistryStore(path: path, logger: logger)
        } catch {
            remove()
            throw error
        }
        do {
            try await sqlite.migrate()
            try await body(sqlite, "sqlite")
        } catch {
            await sqlite.close()
            remove()
            throw error
        }
        await sqlite.close()
        remove()
    }
    if let url = options.postgres {
        guard case .postgres(let admin) = try RegistryDatabase.parse(url) else {
            throw RegistryStoreError("--postgres needs a postgres:// URL")
        }
        let name = "bench_" + String(UUID().uuidString.lowercased().prefix(8))
        try await PostgresRegistryStore.createDatabase(name, on: admin, logger: logger)
        let pg = PostgresRegistryStore(location: admin.with(database: name), logger: logger)
        do {
            try await pg.migrate()
            try await body(pg, "postgresql")
        } catch {
            await pg.close()
            try? await PostgresRegistryStore.dropDatabase(name, on: admin, logger: logger)
            throw error
        }
        await pg.close()
        try await PostgresRegistryStore.dropDatabase(name, on: admin, logger: logger)
    }
}

let logger = Logger(label: "cellprov.registry.bench")
do {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    switch options.mode {
    case "incident", "overview":
        let fleet = try BenchFleet(units: options.units)
        var met = true
        try await onEachBackend(options, logger: logger) { store, name in
            let ok =
                options.mode == "incident"
                ? try await IncidentBench.run(
                    store, name, fleet: fleet, samples: options.samples, affectedRuns: options.affectedRuns)
                : try await OverviewBench.run(
                    store, name, fleet: fleet, reads: options.reads, requests: options.requests)
            met = ok && met
        }
        if options.requireTargets && !met { exit(2) }
    default:
        try await onEachBackend(options, logger: logger) { store, name in
            try await bench(store, name, options)
        }
    }
} catch {
    FileHandle.standardError.write(Data("cellprov-registry-bench: \(error)\n".utf8))
    exit(1)
}
