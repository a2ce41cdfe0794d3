import CellprovCore
import CellprovEnrollmentAPI
import Foundation

/// The fleet overview (docs/registry.md, "Fleet overview"): units in total, seen in the last 24 hours, silent and
/// lost; open flags by kind and severity; events per UTC day; SIM swaps and profile switches per ISO week; the
/// firmware inventory (the current field modules by manufacturer, model and revision, with unit counts).
///
/// The store answers one ``OverviewQuery`` with sparse counts (``OverviewCounts``: only the days and weeks that had
/// events); ``FleetOverview/assemble(_:_:)`` turns them into the answer with every day and week present, zeros
/// included. Days and weeks are the registry's receive time (`received_at`, the clock "last seen" uses), not the
/// devices' clocks.
public struct OverviewQuery: Sendable, Equatable {
    /// How many UTC days `events_per_day` covers, today included.
    public static let days = 30
    /// How many ISO weeks (Monday to Sunday, UTC) `sim_swaps_per_week` covers, this week included.
    public static let weeks = 12
    /// At most this many firmware rows (most units first): the module texts come from devices, so their variety
    /// is bounded here, not by trust.
    public static let firmwareLimit = 500

    public static let dayMilliseconds: Int64 = 86_400_000
    public static let weekMilliseconds: Int64 = 7 * dayMilliseconds
    /// 1970-01-05T00:00:00Z, a Monday: week numbers count whole weeks from it (ISO weeks start on Monday).
    public static let mondayEpochMilliseconds: Int64 = 4 * dayMilliseconds

    public var now: Date
    /// `seen_24h`: units whose last field event was received at or after this.
    public var seenSince: Date
    /// `silent`: units not marked lost whose last field event was received before this (the `unit_silent` check's
    /// own rule, ``RegistryStore/silentUnits(lastSeenBefore:)``).
    public var silentBefore: Date
    /// Day number (whole UTC days since 1970-01-01) of the first day of `events_per_day`.
    public var firstDay: Int64
    /// Week number (whole weeks since ``mondayEpochMilliseconds``) of the first week of `sim_swaps_per_week`.
    public var firstWeek: Int64

    /// The query at `now`, units silent after `silenceThreshold` (the `[alerts] unit_silent_days` setting).
    public init(now: Date, silenceThreshold: TimeInterval) {
        self.now = now
        seenSince = now.addingTimeInterval(-86_400)
        silentBefore = now.addingTimeInterval(-silenceThreshold)
        let ms = Self.milliseconds(now)
        firstDay = Self.day(ms) - Int64(Self.days - 1)
        firstWeek = Self.week(ms) - Int64(Self.weeks - 1)
    }

    /// Milliseconds since the epoch, as the stores keep times.
    public static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    /// The UTC day number of a time in milliseconds (floored: correct before 1970 too).
    public static func day(_ ms: Int64) -> Int64 { floorDiv(ms, dayMilliseconds) }
    /// The week number of a time in milliseconds (weeks start on Monday 00:00 UTC).
    public static func week(_ ms: Int64) -> Int64 { floorDiv(ms - mondayEpochMilliseconds, weekMilliseconds) }

    /// The first millisecond of `events_per_day`'s window.
    public var daysStartMilliseconds: Int64 { firstDay * Self.dayMilliseconds }
    /// The first millisecond of `sim_swaps_per_week`'s window.
    public var weeksStartMilliseconds: Int64 { firstWeek * Self.weekMilliseconds + Self.mondayEpochMilliseconds }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }
}

/// Open flags of one kind and severity.
public struct OpenFlagCount: Sendable, Equatable {
    public var kind: FlagKind
    public var severity: EventSeverity
    public var count: Int

    public init(kind: FlagKind, severity: EventSeverity, count: Int) {
        self.kind = kind
        self.severity = severity
        self.count = count
    }
}

/// One row of the firmware inventory: current field slots with this manufacturer, model and revision (each as the
/// module reported it; nil when it did not), and how many units carry one.
public struct FirmwareCount: Sendable, Equatable, Encodable {
    public var manufacturer: String?
    public var model: String?
    public var revision: String?
    public var units: Int

    public init(manufacturer: String?, model: String?, revision: String?, units: Int) {
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision
        self.units = units
    }
}

/// What a store answers to an ``OverviewQuery``: sparse (days and weeks without events are absent).
public struct OverviewCounts: Sendable, Equatable {
    public var total: Int
    public var seen24h: Int
    public var silent: Int
    public var lost: Int
    public var openFlags: [OpenFlagCount]
    /// Events received per day number (``OverviewQuery/day(_:)``), from ``OverviewQuery/firstDay`` on.
    public var eventsByDay: [Int64: Int]
    /// `sim_changed` events received per week number (``OverviewQuery/week(_:)``).
    public var simSwapsByWeek: [Int64: Int]
    /// `profile_switched` events received per week number.
    public var profileSwitchesByWeek: [Int64: Int]
    /// At most ``OverviewQuery/firmwareLimit`` + 1 rows, most units first (ties by manufacturer, model, revision).
    public var firmware: [FirmwareCount]

    public init(
        total: Int = 0, seen24h: Int = 0, silent: Int = 0, lost: Int = 0, openFlags: [OpenFlagCount] = [],
        eventsByDay: [Int64: Int] = [:], simSwapsByWeek: [Int64: Int] = [:], profileSwitchesByWeek: [Int64: Int] = [:],
        firmware: [FirmwareCount] = []
    ) {
        self.total = total
        self.seen24h = seen24h
        self.silent = silent
        self.lost = lost
        self.openFlags = openFlags
        self.eventsByDay = eventsByDay
        self.simSwapsByWeek = simSwapsByWeek
        self.profileSwitchesByWeek = profileSwitchesByWeek
        self.firmware = firmware
    }
}

/// The overview as the API and the page show it: every day and week present, every flag kind present. It is the
/// `GET /v1/overview` body itself (docs/registry-api.yaml): encoded as it stands, with the API's names.
public struct FleetOverview: Sendable, Equatable, Encodable {
    public struct Units: Sendable, Equatable, Encodable {
        public var total: Int
        public var seen24h: Int
        public var silent: Int
        public var lost: Int

        enum CodingKeys: String, CodingKey {
            case total, silent, lost
            case seen24h = "seen_24h"
        }
    }

    public struct Day: Sendable, Equatable, Encodable {
        /// 00:00 UTC of the day.
        public var start: Date
        /// `YYYY-MM-DD`.
        public var day: String
        public var events: Int

        enum CodingKeys: String, CodingKey {
            case day, events
        }
    }

    public struct Week: Sendable, Equatable, Encodable {
        /// Monday 00:00 UTC.
        public var start: Date
        /// ISO 8601 week-numbering year and week, `2026-W50`.
        public var week: String
        /// The ISO week number alone (the chart's axis label).
        public var isoWeek: Int
        /// Its Monday, `YYYY-MM-DD`.
        public var monday: String
        public var simSwaps: Int
        public var profileSwitches: Int

        enum CodingKeys: String, CodingKey {
            case week
            case monday = "start"
            case simSwaps = "sim_swaps"
            case profileSwitches = "profile_switches"
        }
    }

    /// When the counts were read (the query's `now`): the page and the API say how old the overview is.
    public var asOf: Date
    public var units: Units
    /// Every ``FlagKind``, zero when none is open.
    public var openFlags: [FlagKind: Int]
    /// The open flags by kind and severity, non-zero counts only.
    public var openFlagsBySeverity: [FlagKind: [EventSeverity: Int]]
    /// ``OverviewQuery/days`` days, oldest first, today last.
    public var eventsPerDay: [Day]
    /// ``OverviewQuery/weeks`` weeks, oldest first, this week last.
    public var weeks: [Week]
    /// At most ``OverviewQuery/firmwareLimit`` rows, most units first.
    public var firmware: [FirmwareCount]
    /// More firmware rows exist than ``firmware`` lists.
    public var firmwareTruncated: Bool

    enum CodingKeys: String, CodingKey {
        case units, firmware
        case asOf = "as_of"
        case openFlags = "open_flags"
        case openFlagsBySeverity = "open_flags_by_severity"
        case eventsPerDay = "events_per_day"
        case weeks = "sim_swaps_per_week"
        case firmwareTruncated = "firmware_truncated"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(EnrollmentTimestamp.format(asOf), forKey: .asOf)
        try c.encode(units, forKey: .units)
        try c.encode(openFlags, forKey: .openFlags)
        try c.encode(openFlagsBySeverity, forKey: .openFlagsBySeverity)
        try c.encode(eventsPerDay, forKey: .eventsPerDay)
        try c.encode(weeks, forKey: .weeks)
        try c.encode(firmware, forKey: .firmware)
        try c.encode(firmwareTruncated, forKey: .firmwareTruncated)
    }

    /// `YYYY-MM-DD` of a UTC day.
    static func dayString(_ date: Date) -> String { String(EnrollmentTimestamp.format(date).prefix(10)) }

    /// The overview from the store's sparse counts.
    public static func assemble(_ counts: OverviewCounts, _ query: OverviewQuery) -> FleetOverview {
        var byKind = [FlagKind: Int]()
        for kind in FlagKind.allCases { byKind[kind] = 0 }
        var bySeverity = [FlagKind: [EventSeverity: Int]]()
        for f in counts.openFlags where f.count > 0 {
            byKind[f.kind, default: 0] += f.count
            bySeverity[f.kind, default: [:]][f.severity, default: 0] += f.count
        }
        let days = (0..<Int64(OverviewQuery.days)).map { i -> Day in
            let d = query.firstDay + i
            let start = Date(timeIntervalSince1970: TimeInterval(d * OverviewQuery.dayMilliseconds) / 1000)
            return Day(start: start, day: dayString(start), events: counts.eventsByDay[d] ?? 0)
        }
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let weeks = (0..<Int64(OverviewQuery.weeks)).map { i -> Week in
            let w = query.firstWeek + i
            let ms = w * OverviewQuery.weekMilliseconds + OverviewQuery.mondayEpochMilliseconds
            let start = Date(timeIntervalSince1970: TimeInterval(ms) / 1000)
            let parts = calendar.dateComponents([.yearForWeekOfYear, .weekOfYear], from: start)
            let (year, number) = (parts.yearForWeekOfYear ?? 0, parts.weekOfYear ?? 0)
            return Week(
                start: start, week: "\(year)-W" + (number < 10 ? "0" : "") + "\(number)", isoWeek: number,
                monday: dayString(start), simSwaps: counts.simSwapsByWeek[w] ?? 0,
                profileSwitches: counts.profileSwitchesByWeek[w] ?? 0)
        }
        return FleetOverview(
            asOf: query.now,
            units: Units(total: counts.total, seen24h: counts.seen24h, silent: counts.silent, lost: counts.lost),
            openFlags: byKind, openFlagsBySeverity: bySeverity, eventsPerDay: days, weeks: weeks,
            firmware: Array(counts.firmware.prefix(OverviewQuery.firmwareLimit)),
            firmwareTruncated: counts.firmware.count > OverviewQuery.firmwareLimit)
    }
}
