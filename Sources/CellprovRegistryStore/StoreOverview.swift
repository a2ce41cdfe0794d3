import CellprovCore
import CellprovRegistryCore
import Foundation

/// The fleet overview's SQL, shared by both backends (``RegistryStore/overviewCounts(_:)``). Every statement takes
/// its times as integers (milliseconds, day and week numbers), so both backends run the same text with their own
/// placeholders. Times are `received_at` (the registry's clock, as `units.last_seen`). The day and week windows have
/// no index of their own: the HTTP layer reads the overview at most twice a minute per instance, in the background
/// (OverviewSnapshot), and an index on `events (received_at, type)` would cost every event (docs/decisions.md,
/// "Fleet overview").
enum StoreOverview {
    /// total, seen since $1, silent before $2 (the `unit_silent` rule: not lost, seen, last seen before), lost.
    static func unitsSQL(_ p: (Int) -> String) -> String {
        """
        SELECT count(*),
            count(*) FILTER (WHERE last_seen >= \(p(1))),
            count(*) FILTER (WHERE lost_at IS NULL AND last_seen IS NOT NULL AND last_seen < \(p(2))),
            count(*) FILTER (WHERE lost_at IS NOT NULL)
        FROM units
        """
    }

    static let openFlagsSQL = "SELECT kind, severity, count(*) FROM flags WHERE resolved_at IS NULL GROUP BY kind, severity"

    /// Events received per UTC day from $1 (the window's first millisecond).
    static func eventsPerDaySQL(_ p: (Int) -> String) -> String {
        """
        SELECT received_at / \(OverviewQuery.dayMilliseconds) AS d, count(*) FROM events
        WHERE received_at >= \(p(1)) GROUP BY d
        """
    }

    /// `sim_changed` and `profile_switched` events received per week from $1.
    static func swapsPerWeekSQL(_ p: (Int) -> String) -> String {
        """
        SELECT type, (received_at - \(OverviewQuery.mondayEpochMilliseconds)) / \(OverviewQuery.weekMilliseconds) AS w,
            count(*)
        FROM events
        WHERE received_at >= \(p(1)) AND type IN ('sim_changed', 'profile_switched')
        GROUP BY type, w
        """
    }

    /// The current field slots by module, most units first, ties in byte order with absent values last; one row
    /// past the limit tells that the list goes on. `collate` spells the byte-order collation (PostgreSQL's
    /// `COLLATE "C"`; SQLite compares bytes already).
    static func firmwareSQL(collate: String) -> String {
        """
        SELECT manufacturer, model, revision, count(DISTINCT serial) AS n FROM slots
        WHERE origin = 'device'
        GROUP BY manufacturer, model, revision
        ORDER BY n DESC, manufacturer\(collate) NULLS LAST, model\(collate) NULLS LAST, revision\(collate) NULLS LAST
        LIMIT \(OverviewQuery.firmwareLimit + 1)
        """
    }

    static func addSwap(_ counts: inout OverviewCounts, type: String, week: Int64, count: Int) {
        switch type {
        case "sim_changed": counts.simSwapsByWeek[week, default: 0] += count
        case "profile_switched": counts.profileSwitchesByWeek[week, default: 0] += count
        default: break
        }
    }

    static func openFlag(kind: String, severity: String, count: Int) -> OpenFlagCount? {
        guard let k = FlagKind(rawValue: kind), let s = EventSeverity(rawValue: severity) else { return nil }
        return OpenFlagCount(kind: k, severity: s, count: count)
    }
}
