import CellprovRegistryCore
import Foundation
import PostgresNIO

// The fleet overview (StoreOverview): reads only, in one read-only snapshot.
extension PostgresRegistryStore {
    public func overviewCounts(_ query: OverviewQuery) async throws -> OverviewCounts {
        let seen = StoreSupport.ms(query.seenSince)
        let silent = StoreSupport.ms(query.silentBefore)
        let days = query.daysStartMilliseconds
        let weeks = query.weeksStartMilliseconds
        let logger = logger
        func q(_ sql: String, _ values: [Int64]) -> PostgresQuery {
            var b = PostgresBindings()
            for v in values { b.append(v) }
            return PostgresQuery(unsafeSQL: sql, binds: b)
        }
        let dollar: (Int) -> String = { "$\($0)" }
        let unitsQuery = q(StoreOverview.unitsSQL(dollar), [seen, silent])
        let flagsQuery = q(StoreOverview.openFlagsSQL, [])
        let daysQuery = q(StoreOverview.eventsPerDaySQL(dollar), [days])
        let weeksQuery = q(StoreOverview.swapsPerWeekSQL(dollar), [weeks])
        let firmwareQuery = q(StoreOverview.firmwareSQL(collate: " COLLATE \"C\""), [])
        return try await read { conn in
            try await conn.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            do {
                var c = OverviewCounts()
                for try await (t, s, si, l) in try await conn.query(
                    unitsQuery, logger: logger
                ).decode((Int64, Int64, Int64, Int64).self) {
                    (c.total, c.seen24h, c.silent, c.lost) = (Int(t), Int(s), Int(si), Int(l))
                }
                for try await (kind, severity, n) in try await conn.query(
                    flagsQuery, logger: logger
                ).decode((String, String, Int64).self) {
                    if let f = StoreOverview.openFlag(kind: kind, severity: severity, count: Int(n)) {
                        c.openFlags.append(f)
                    }
                }
                for try await (d, n) in try await conn.query(
                    daysQuery, logger: logger
                ).decode((Int64, Int64).self) {
                    c.eventsByDay[d] = Int(n)
                }
                for try await (type, w, n) in try await conn.query(
                    weeksQuery, logger: logger
                ).decode((String, Int64, Int64).self) {
                    StoreOverview.addSwap(&c, type: type, week: w, count: Int(n))
                }
                for try await (m, model, r, n) in try await conn.query(
                    firmwareQuery, logger: logger
                ).decode((String?, String?, String?, Int64).self) {
                    c.firmware.append(FirmwareCount(manufacturer: m, model: model, revision: r, units: Int(n)))
                }
                try await conn.query("COMMIT", logger: logger)
                return c
            } catch {
                _ = try? await conn.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }
}
