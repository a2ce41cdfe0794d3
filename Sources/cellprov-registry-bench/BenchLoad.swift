import CellprovCore
import CellprovRegistryCore
@_spi(Bench) import CellprovRegistryStore
import Foundation

/// Bulk loading for the benchmark (through the store's `@_spi(Bench)` inserts): the rows `ingest` would have
/// written, without going through it (a million units through `ingest` would take longer than the queries the
/// benchmark measures).

/// The `lookups` mode's units: unit `n` (0-based) is serial `BENCH-%07d`, IMEI `35209900` + n (6 digits) + `0`,
/// IMSI `26201` + n (10 digits), ICCID `8949226` + n (12 digits), one field slot each and no events.
enum BenchUnits {
    static func serial(_ n: Int) -> String { "BENCH-" + BenchFleet.pad(n, 7) }
    static func imei(_ n: Int) -> String { "35209900" + BenchFleet.pad(n % 1_000_000, 6) + "0" }
    static func imsi(_ n: Int) -> String { "26201" + BenchFleet.pad(n, 10) }
    static func iccid(_ n: Int) -> String { "8949226" + BenchFleet.pad(n, 12) }

    /// Inserts units `0..<count`, 50 000 per transaction, then (unless `settle` is false) lets the store settle
    /// (`BulkLoadable.bulkSettle`: PostgreSQL's `VACUUM ANALYZE`).
    static func load(_ store: any BulkLoadable, count: Int, at: Date, settle: Bool = true) async throws {
        let t = Int64((at.timeIntervalSince1970 * 1000).rounded())
        var start = 0
        while start < count {
            let end = min(count, start + 50_000)
            var units = BulkRows(table: "units", columns: BenchFleet.unitColumns)
            var slots = BulkRows(
                table: "slots",
                columns: [
                    "serial", "origin", "slot", "imei", "imsi", "iccid", "last_iccid", "tac", "manufacturer", "model",
                    "source", "last_event_type", "occurred_at", "updated_at",
                ])
            for n in start..<end {
                let serial = serial(n)
                let iccid = iccid(n)
                units.rows.append([.text(serial), .integer(t), .integer(t), .integer(t)])
                slots.rows.append([
                    .text(serial), .text("device"), .text("usb-1"), .text(imei(n)), .text(imsi(n)), .text(iccid),
                    .text(iccid), .text("35209900"), .text("Quectel"), .text("EG25"), .text("at"), .text("enrolled"),
                    .integer(t), .integer(t),
                ])
            }
            try await store.bulkInsert([units, slots])
            start = end
        }
        if settle { try await store.bulkSettle() }
    }
}

extension BenchFleet {
    /// Units per transaction.
    static let chunk = 5000

    /// The rows of units `range`, one batch per table (refs sorted: their B-tree is filled in key order).
    func batches(_ range: Range<Int>, registryKey: Pseudonymizer) -> [BulkRows] {
        var units = BulkRows(table: "units", columns: Self.unitColumns)
        var slots = BulkRows(table: "slots", columns: Self.slotColumns)
        var events = BulkRows(table: "events", columns: Self.eventColumns)
        var refs = [(String, String)]()
        units.rows.reserveCapacity(range.count)
        slots.rows.reserveCapacity(range.count)
        events.rows.reserveCapacity(range.count * Self.eventsPerUnit)
        for n in range {
            let r = Self.rows(n, registryKey: registryKey)
            units.rows.append(r.unit)
            slots.rows.append(r.slot)
            events.rows += r.events
            for ref in r.refs { refs.append((ref, Self.serial(n))) }
        }
        refs.sort { $0 < $1 }
        let refRows = BulkRows(
            table: "refs", columns: ["ref", "serial"], rows: refs.map { [.text($0.0), .text($0.1)] })
        return [units, slots, events, refRows]
    }

    /// Loads the whole fleet, `chunk` units per transaction, generating the next chunk while the store writes one.
    /// Returns the payload bytes written.
    func load(_ store: any BulkLoadable, registryKey: [UInt8], progress: @Sendable (Int) -> Void) async throws
        -> Int
    {
        let key = Pseudonymizer(key: registryKey)
        let fleet = self
        func generate(_ start: Int) -> Task<[BulkRows], Never>? {
            guard start < units else { return nil }
            let range = start..<min(units, start + Self.chunk)
            return Task.detached { fleet.batches(range, registryKey: key) }
        }
        var payloadBytes = 0
        var start = 0
        var next = generate(0)
        while let current = next {
            let batches = await current.value
            start += Self.chunk
            next = generate(start)
            for case .text(let p) in batches[2].rows.map({ $0[$0.count - 1] }) { payloadBytes += p.utf8.count }
            try await store.bulkInsert(batches)
            progress(min(start, units))
        }
        try await store.bulkSettle()
        return payloadBytes
    }
}
