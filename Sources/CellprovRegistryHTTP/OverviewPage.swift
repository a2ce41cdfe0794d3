import CellprovCore
import CellprovRegistryCore
import Foundation
import Hummingbird
import Mustache
import NIOCore

/// `GET /overview`: the fleet overview for a signed-in operator (viewer or admin), with its charts drawn as inline
/// SVG on the server (``OverviewCharts``): no script, no image request, the pages' content security policy
/// unchanged. Every count links to its list where one exists: open flags of a kind to `/flags?kind=KIND`, a
/// firmware row to `/affected` with manufacturer, model and revision exact, silent units to their `unit_silent`
/// flags. No identifier is shown: counts, days, flag kinds and module names only.
struct OverviewPage {
    let state: RegistryState
    let snapshot: OverviewSnapshot
    private let pages: Pages
    private let library: MustacheLibrary

    init(state: RegistryState, snapshot: OverviewSnapshot) {
        self.state = state
        self.snapshot = snapshot
        pages = Pages(state: state)
        var library = MustacheLibrary()
        // Literals of this module: a parse error is a programming error, caught by any test that renders the page.
        try! library.register(Templates.layout, named: "layout")
        try! library.register(Templates.searchForm, named: "searchForm")
        try! library.register(OverviewTemplates.overview, named: "overview")
        try! library.register(OverviewTemplates.barChart, named: "barChart")
        self.library = library
    }

    func render(_ request: Request) async -> Response {
        guard let signed = await pages.session(request) else { return pages.redirect("/") }
        let overview: FleetOverview
        do {
            overview = try await snapshot.overview()
        } catch {
            return state.storeFailure(error, "overview page")
        }
        let body = library.render(Self.values(overview), withTemplate: "overview") ?? ""
        let layout: [String: Any] = [
            "title": "Fleet overview", "body": body, "signedIn": true, "admin": signed.who.isAdmin,
            "operator": signed.who.name, "role": signed.who.role.rawValue, "csrf": signed.csrf,
        ]
        let html = library.render(layout, withTemplate: "layout") ?? ""
        return Response(
            status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// The template's values: counts, rows and the charts' geometry (``OverviewCharts``); the template escapes
    /// every text.
    static func values(_ o: FleetOverview) -> [String: Any] {
        let severities: [EventSeverity] = [.critical, .warning, .notice, .info]
        let flagRows: [[String: Any]] = FlagKind.allCases.compactMap { kind in
            let n = o.openFlags[kind] ?? 0
            guard n > 0 else { return nil }
            let s = o.openFlagsBySeverity[kind] ?? [:]
            return [
                "kind": kind.rawValue, "count": n, "href": "/flags?kind=\(Pages.pathComponent(kind.rawValue))",
                "severities": severities.compactMap { sev -> [String: Any]? in
                    guard let c = s[sev], c > 0 else { return nil }
                    return ["severity": sev.rawValue, "count": c]
                },
            ]
        }
        let firmwareRows: [[String: Any]] = o.firmware.map { f in
            var row: [String: Any] = [
                "manufacturer": f.manufacturer ?? "-", "model": f.model ?? "-", "revision": f.revision ?? "-",
                "units": f.units,
            ]
            if let href = affectedLink(f) { row["href"] = href }
            return row
        }
        let eventsTotal = o.eventsPerDay.reduce(0) { $0 + $1.events }
        let swapsTotal = o.weeks.reduce(0) { $0 + $1.simSwaps }
        let switchesTotal = o.weeks.reduce(0) { $0 + $1.profileSwitches }
        return [
            "asOf": RFC3339.string(o.asOf) ?? "",
            "total": o.units.total, "seen24h": o.units.seen24h, "silent": o.units.silent, "lost": o.units.lost,
            "silentHref": "/flags?kind=\(FlagKind.unitSilent.rawValue)",
            "hasFlags": !flagRows.isEmpty, "flags": flagRows,
            "openTotal": o.openFlags.values.reduce(0, +),
            "days": OverviewQuery.days, "weeks": OverviewQuery.weeks,
            "eventsTotal": eventsTotal, "swapsTotal": swapsTotal, "switchesTotal": switchesTotal,
            "eventsChart": OverviewCharts.eventsPerDay(o.eventsPerDay, total: eventsTotal),
            "swapsChart": OverviewCharts.swapsPerWeek(o.weeks, swaps: swapsTotal, switches: switchesTotal),
            "hasFirmware": !firmwareRows.isEmpty, "firmware": firmwareRows,
            "firmwareTruncated": o.firmwareTruncated, "firmwareLimit": OverviewQuery.firmwareLimit,
        ]
    }

    /// `/affected` with the row's manufacturer, model and revision exact, when all three are values the filter
    /// accepts as given (a module that did not report one of them has no exact list to link to).
    static func affectedLink(_ f: FirmwareCount) -> String? {
        func exact(_ s: String?) -> ModuleMatch? {
            guard let s, !s.isEmpty, s.utf8.count <= ModuleFilter.maximumLength, ModuleFilter.allowed(s),
                s == s.trimmingCharacters(in: .whitespaces)
            else { return nil }
            return .exact(s)
        }
        guard let m = exact(f.manufacturer), let model = exact(f.model), let r = exact(f.revision) else { return nil }
        return "/affected" + AffectedUnits.query(ModuleFilter(manufacturer: m, model: model, revision: r))
    }
}

/// The overview's charts as the values of ``OverviewTemplates/barChart`` (inline SVG: bars with a `<title>` each,
/// which the browser shows on hover without script; axis labels; a text summary for screen readers). Pure: counts
/// in, geometry and texts out; the template escapes them.
enum OverviewCharts {
    static let width = 720
    static let height = 200
    static let left = 44
    static let bottom = 26
    static let top = 24

    /// A round upper bound for the y axis (1, 2, 5 times a power of ten), at least 1.
    static func niceMax(_ v: Int) -> Int {
        guard v > 1 else { return 1 }
        var p = 1
        while true {
            for m in [1, 2, 5] where m * p >= v { return m * p }
            p *= 10
        }
    }

    static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    static var plotWidth: Double { Double(width - left - 4) }
    static var plotHeight: Double { Double(height - bottom - top) }

    /// The chart's frame: its size, label and the y axis's grid lines (0, half and the top).
    private static func chart(id: String, label: String, yMax: Int) -> [String: Any] {
        let grid: [[String: Any]] = [0, yMax / 2, yMax].enumerated().compactMap { i, v in
            guard i == 0 || v > 0 else { return nil }
            let y = Double(top) + plotHeight - plotHeight * Double(v) / Double(yMax)
            return ["x1": left, "x2": width - 4, "y": fmt(y), "tx": left - 6, "ty": fmt(y + 4), "value": v]
        }
        return ["id": id, "label": label, "width": width, "height": height, "grid": grid, "labelY": height - 8]
    }

    private static func bar(
        _ cls: String, x: Double, width w: Double, count: Int, yMax: Int, color: String, data: (String, String),
        title: String
    ) -> [String: Any] {
        let h = plotHeight * Double(count) / Double(yMax)
        return [
            "cls": cls, "x": fmt(x), "y": fmt(Double(top) + plotHeight - h), "w": fmt(w), "h": fmt(h), "fill": color,
            "dataName": data.0, "dataValue": data.1, "count": count, "title": title,
        ]
    }

    /// Events per day: one bar a day, a date label every fifth day and on the last. `total` is the days' sum, which
    /// the page also prints: its caller adds it once.
    static func eventsPerDay(_ days: [FleetOverview.Day], total: Int) -> [String: Any] {
        let yMax = niceMax(days.map(\.events).max() ?? 0)
        let slot = plotWidth / Double(max(days.count, 1))
        var bars = [[String: Any]]()
        var labels = [[String: Any]]()
        for (i, d) in days.enumerated() {
            let x = Double(left) + Double(i) * slot + slot * 0.15
            bars.append(
                bar(
                    "bar", x: x, width: slot * 0.7, count: d.events, yMax: yMax, color: "#3b6fb6",
                    data: ("day", d.day), title: "\(d.day): \(d.events) event(s)"))
            if i % 5 == 0 || i == days.count - 1 {
                labels.append(["x": fmt(x + slot * 0.35), "text": String(d.day.dropFirst(5))])
            }
        }
        var c = chart(id: "chart-events", label: "Events per day, last \(days.count) days: \(total) in total", yMax: yMax)
        c["bars"] = bars
        c["labels"] = labels
        return c
    }

    /// SIM swaps and profile switches per ISO week: two bars a week. `swaps` and `switches` are the weeks' sums.
    static func swapsPerWeek(_ weeks: [FleetOverview.Week], swaps: Int, switches: Int) -> [String: Any] {
        let yMax = niceMax(weeks.map { max($0.simSwaps, $0.profileSwitches) }.max() ?? 0)
        let slot = plotWidth / Double(max(weeks.count, 1))
        var bars = [[String: Any]]()
        var labels = [[String: Any]]()
        for (i, w) in weeks.enumerated() {
            let x0 = Double(left) + Double(i) * slot + slot * 0.12
            let bw = slot * 0.36
            for (j, (n, color, what, cls)) in [
                (w.simSwaps, "#a1001c", "SIM swap(s)", "bar-swaps"),
                (w.profileSwitches, "#e0a100", "profile switch(es)", "bar-switches"),
            ].enumerated() {
                bars.append(
                    bar(
                        cls, x: x0 + Double(j) * bw, width: bw, count: n, yMax: yMax, color: color,
                        data: ("week", w.week), title: "\(w.week): \(n) \(what)"))
            }
            labels.append(["x": fmt(x0 + bw), "text": "W" + (w.isoWeek < 10 ? "0" : "") + "\(w.isoWeek)"])
        }
        var c = chart(
            id: "chart-swaps",
            label: "SIM swaps and profile switches per week, last \(weeks.count) weeks: \(swaps) swaps, "
                + "\(switches) profile switches",
            yMax: yMax)
        c["bars"] = bars
        c["labels"] = labels
        c["legend"] = [
            ["x": width - 250, "tx": width - 236, "fill": "#a1001c", "text": "SIM swaps"],
            ["x": width - 150, "tx": width - 136, "fill": "#e0a100", "text": "profile switches"],
        ]
        return c
    }
}
