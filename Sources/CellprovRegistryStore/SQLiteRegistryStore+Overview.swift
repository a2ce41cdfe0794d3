import CellprovRegistryCore
import Foundation
import GRDB

// The fleet overview (StoreOverview): reads only, in one snapshot.
extension SQLiteRegistryStore {
    public func overviewCounts(_ query: OverviewQuery) async throws -> OverviewCounts {
        let seen = StoreSupport.ms(query.seenSince)
        let silent = StoreSupport.ms(query.silentBefore)
        let days = query.daysStartMilliseconds
        let weeks = query.weeksStartMilliseconds
        return try await read { db in
            var c = OverviewCounts()
            if let row = try Row.fetchOne(
                db, sql: StoreOverview.unitsSQL { _ in "?" }, arguments: [seen, silent])
            {
                (c.total, c.seen24h, c.silent, c.lost) = (row[0], row[1], row[2], row[3])
            }
            for row in try Row.fetchAll(db, sql: StoreOverview.openFlagsSQL) {
                if let f = StoreOverview.openFlag(kind: row[0], severity: row[1], count: row[2]) {
                    c.openFlags.append(f)
                }
            }
            for row in try Row.fetchAll(db, sql: StoreOverview.eventsPerDaySQL { _ in "?" }, arguments: [days]) {
                c.eventsByDay[row[0]] = row[1]
            }
            for row in try Row.fetchAll(db, sql: StoreOverview.swapsPerWeekSQL { _ in "?" }, arguments: [weeks]) {
                StoreOverview.addSwap(&c, type: row[0], week: row[1], count: row[2])
            }
            for row in try Row.fetchAll(db, sql: StoreOverview.firmwareSQL(collate: "")) {
                c.firmware.append(
                    FirmwareCount(manufacturer: row[0], model: row[1], revision: row[2], units: row[3]))
            }
            return c
        }
    }
}
