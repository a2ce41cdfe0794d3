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
    private let pages: Pages
    private let library: MustacheLibrary

    init(state: RegistryState) {
        self.state = state
        pages = Pages(state: state)
        var library = MustacheLibrary()
        // Literals of this module: a parse error is a programming error, caught by any test that renders the page.
        try! library.register(Templates.layout, named: "layout")
        try! library.register(OverviewTemplates.overview, named: "overview")
        self.library = library
    }

    func render(_ request: Request) async -> Response {
        guard let signed = await pages.session(request) else { return pages.redirect("/") }
        let overview: FleetOverview
        do {
            overview = try await Overview.load(state)
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

    /// The template's values (the charts already rendered; their text is numbers and dates only, escaped anyway).
    static func values(_ o: FleetOverview) -> [String: Any] {
        let severities: [EventSeverity] = [.critical, .warning, .notice, .info]
        var bySeverity = [FlagKind: [EventSeverity: Int]]()
        for f in o.openFlagsBySeverity { bySeverity[f.kind, default: [:]][f.severity, default: 0] += f.count }
        let flagRows: [[String: Any]] = FlagKind.allCases.compactMap { kind in
            let n = o.openFlags[kind] ?? 0
            guard n > 0 else { return nil }
            let s = bySeverity[kind] ?? [:]
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
            "total": o.total, "seen24h": o.seen24h, "silent": o.silent, "lost": o.lost,
            "silentHref": "/flags?kind=\(FlagKind.unitSilent.rawValue)",
            "hasFlags": !flagRows.isEmpty, "flags": flagRows,
            "openTotal": o.openFlags.values.reduce(0, +),
            "days": OverviewQuery.days, "weeks": OverviewQuery.weeks,
            "eventsTotal": eventsTotal, "swapsTotal": swapsTotal, "switchesTotal": switchesTotal,
            "eventsChart": OverviewCharts.eventsPerDay(o.eventsPerDay),
            "swapsChart": OverviewCharts.swapsPerWeek(o.weeks),
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

/// The overview's charts as inline SVG: bars with a `<title>` each (the browser shows it on hover, no script),
/// axis labels and a text summary for screen readers (`role="img"`, `aria-label`). Pure: values in, markup out.
enum OverviewCharts {
    static let width = 720
    static let height = 200
    static let left = 44
    static let bottom = 26
    static let top = 24

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

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

    private static func frame(_ id: String, label: String, yMax: Int, content: String, legend: String = "") -> String {
        let plotH = height - bottom - top
        var s = """
            <svg id="\(id)" role="img" aria-label="\(escape(label))" viewBox="0 0 \(width) \(height)" \
            width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" \
            font-family="system-ui, sans-serif" font-size="11">
            """
        s += "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"#fff\"/>"
        for (i, v) in [0, yMax / 2, yMax].enumerated() where i == 0 || v > 0 {
            let y = Double(top + plotH) - Double(plotH) * Double(v) / Double(yMax)
            s += "<line x1=\"\(left)\" y1=\"\(fmt(y))\" x2=\"\(width - 4)\" y2=\"\(fmt(y))\" stroke=\"#e3e6eb\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(fmt(y + 4))\" text-anchor=\"end\" fill=\"#555\">\(v)</text>"
        }
        s += content + legend + "</svg>"
        return s
    }

    /// Events per day: one bar a day, a date label every fifth day and on the last.
    static func eventsPerDay(_ days: [FleetOverview.Day]) -> String {
        let yMax = niceMax(days.map(\.events).max() ?? 0)
        let plotW = Double(width - left - 4)
        let plotH = Double(height - bottom - top)
        let slot = plotW / Double(max(days.count, 1))
        var content = ""
        for (i, d) in days.enumerated() {
            let day = Overview.dayString(d.start)
            let h = plotH * Double(d.events) / Double(yMax)
            let x = Double(left) + Double(i) * slot + slot * 0.15
            content += "<rect class=\"bar\" x=\"\(fmt(x))\" y=\"\(fmt(Double(top) + plotH - h))\" "
            content += "width=\"\(fmt(slot * 0.7))\" height=\"\(fmt(h))\" fill=\"#3b6fb6\" data-day=\"\(day)\" "
            content += "data-count=\"\(d.events)\"><title>\(day): \(d.events) event(s)</title></rect>"
            if i % 5 == 0 || i == days.count - 1 {
                content += "<text x=\"\(fmt(x + slot * 0.35))\" y=\"\(height - 8)\" text-anchor=\"middle\" "
                content += "fill=\"#555\">\(escape(String(day.dropFirst(5))))</text>"
            }
        }
        let total = days.reduce(0) { $0 + $1.events }
        return frame(
            "chart-events", label: "Events per day, last \(days.count) days: \(total) in total", yMax: yMax,
            content: content)
    }

    /// SIM swaps and profile switches per ISO week: two bars a week.
    static func swapsPerWeek(_ weeks: [FleetOverview.Week]) -> String {
        let yMax = niceMax(weeks.map { max($0.simSwaps, $0.profileSwitches) }.max() ?? 0)
        let plotW = Double(width - left - 4)
        let plotH = Double(height - bottom - top)
        let slot = plotW / Double(max(weeks.count, 1))
        var content = ""
        for (i, w) in weeks.enumerated() {
            let x0 = Double(left) + Double(i) * slot + slot * 0.12
            let bw = slot * 0.36
            for (j, (n, color, what, cls)) in [
                (w.simSwaps, "#a1001c", "SIM swap(s)", "bar-swaps"),
                (w.profileSwitches, "#e0a100", "profile switch(es)", "bar-switches"),
            ].enumerated() {
                let h = plotH * Double(n) / Double(yMax)
                let x = x0 + Double(j) * bw
                content += "<rect class=\"\(cls)\" x=\"\(fmt(x))\" y=\"\(fmt(Double(top) + plotH - h))\" "
                content += "width=\"\(fmt(bw))\" height=\"\(fmt(h))\" fill=\"\(color)\" data-week=\"\(w.label)\" "
                content += "data-count=\"\(n)\"><title>\(w.label): \(n) \(what)</title></rect>"
            }
            content += "<text x=\"\(fmt(x0 + bw))\" y=\"\(height - 8)\" text-anchor=\"middle\" fill=\"#555\">"
            content += "W\(w.isoWeek < 10 ? "0" : "")\(w.isoWeek)</text>"
        }
        let legend = """
            <rect x="\(width - 250)" y="4" width="10" height="10" fill="#a1001c"/>\
            <text x="\(width - 236)" y="13" fill="#333">SIM swaps</text>\
            <rect x="\(width - 150)" y="4" width="10" height="10" fill="#e0a100"/>\
            <text x="\(width - 136)" y="13" fill="#333">profile switches</text>
            """
        let swaps = weeks.reduce(0) { $0 + $1.simSwaps }
        let switches = weeks.reduce(0) { $0 + $1.profileSwitches }
        return frame(
            "chart-swaps",
            label: "SIM swaps and profile switches per week, last \(weeks.count) weeks: \(swaps) swaps, "
                + "\(switches) profile switches",
            yMax: yMax, content: content, legend: legend)
    }
}
