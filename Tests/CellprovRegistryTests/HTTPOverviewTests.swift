import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
@testable import CellprovRegistryHTTP
import Foundation
import Hummingbird
import HummingbirdTesting
import Mustache
import Testing

// The fleet overview through the operator API (`GET /v1/overview`) and the `/overview` page (issue 17 item 6,
// issue 20's firmware inventory), on each backend.

@Suite struct HTTPOverviewTests {
    static func object(_ body: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
    }

    /// GW-1 seen an hour ago (EC25, a SIM swap), GW-2 seen five hours ago (EG25, no revision), GW-3 marked lost; one
    /// open `imei_changed` flag raised by hand, critical. Returns the moment the hours count from.
    @discardableResult
    static func fleet(_ store: any RegistryStore) async throws -> Date {
        let now = Date()
        let hourAgo = now.addingTimeInterval(-3600)
        let fiveHours = now.addingTimeInterval(-5 * 3600)
        let a06 = "EC25EFAR06A06M4G"
        try await store.field(StoreOverviewTests.report("GW-1", n: 21, model: "EC25", revision: a06, at: hourAgo),
            "GW-1", at: hourAgo)
        try await store.field(
            StoreOverviewTests.report("GW-1", type: "sim_changed", n: 22, model: "EC25", revision: a06, at: hourAgo), "GW-1",
            at: hourAgo)
        try await store.field(
            StoreOverviewTests.report("GW-2", n: 23, model: "EG25", revision: nil, at: fiveHours), "GW-2", at: fiveHours)
        try await store.field(
            StoreOverviewTests.report("GW-3", n: 24, model: "EC25", revision: a06, at: fiveHours), "GW-3", at: fiveHours)
        #expect(try await store.markLost(serial: "GW-3", by: "alice", note: nil, at: now))
        _ = try await store.raise(
            [
                NewFlag(
                    kind: .imeiChanged, severity: .critical, serial: "GW-1", summary: "IMEI changed",
                    evidence: FlagEvidence(), dedupeKey: "overview-http-1")
            ], at: now)
        return now
    }

    @Test(arguments: StoreBackend.available)
    func theAPIAnswersViewersAndAdminsWithTheIssuesShape(_ backend: StoreBackend) async throws {
        // Silent after 3 hours: GW-2 (five hours) is silent, GW-1 is not, GW-3 is lost (never silent).
        var options = RegistryHTTPOptions()
        options.unitSilentThreshold = 3 * 3600
        try await RegistryFixture.with(backend, options: options) { f in
            try await Self.fleet(f.store)
            try await f.test { client in
                let (s0, _) = try await client.call(.get, "/v1/overview", token: nil)
                #expect(s0 == .unauthorized)
                let (s1, _) = try await client.call(.get, "/v1/overview", token: f.deviceToken)
                #expect(s1 == .unauthorized)
                let (s2, admin) = try await client.call(.get, "/v1/overview", token: f.adminToken)
                #expect(s2 == .ok)
                let (s3, body) = try await client.call(.get, "/v1/overview", token: f.viewerToken)
                #expect(s3 == .ok)
                let o = Self.object(body)
                #expect(
                    Set(o.keys)
                        == [
                            "as_of", "units", "open_flags", "open_flags_by_severity", "events_per_day",
                            "sim_swaps_per_week", "firmware", "firmware_truncated",
                        ])
                let asOf = try #require(EnrollmentTimestamp.parse(o["as_of"] as? String ?? ""))
                #expect(abs(asOf.timeIntervalSinceNow) < 60)
                let units = try #require(o["units"] as? [String: Int])
                // The fixture's two devices have tokens and no event: units, neither seen nor silent.
                #expect(units["total"] == 5)
                #expect(units["seen_24h"] == 3)
                #expect(units["silent"] == 1)
                #expect(units["lost"] == 1)
                let flags = try #require(o["open_flags"] as? [String: Int])
                #expect(Set(flags.keys) == Set(FlagKind.allCases.map(\.rawValue)))
                #expect(flags["imei_changed"] == 1)
                #expect(flags.values.reduce(0, +) == 1)
                let severity = try #require(o["open_flags_by_severity"] as? [String: [String: Int]])
                #expect(severity == ["imei_changed": ["critical": 1]])
                let days = try #require(o["events_per_day"] as? [[String: Any]])
                #expect(days.count == 30)
                #expect(days.compactMap { $0["events"] as? Int }.reduce(0, +) == 4)
                let today = String(EnrollmentTimestamp.format(Date()).prefix(10))
                #expect(days.last?["day"] as? String == today)
                let weeks = try #require(o["sim_swaps_per_week"] as? [[String: Any]])
                #expect(weeks.count == 12)
                #expect(weeks.compactMap { $0["sim_swaps"] as? Int }.reduce(0, +) == 1)
                #expect((weeks.last?["week"] as? String)?.contains("-W") == true)
                let firmware = try #require(o["firmware"] as? [[String: Any]])
                #expect(firmware.count == 2)
                #expect(firmware.first?["model"] as? String == "EC25")
                #expect(firmware.first?["units"] as? Int == 2)
                #expect(firmware.last?["model"] as? String == "EG25")
                #expect(firmware.last?["revision"] is NSNull || firmware.last?["revision"] == nil)
                #expect(o["firmware_truncated"] as? Bool == false)
                #expect(identifierDigitRuns(body).isEmpty)
                #expect(Self.object(admin)["units"] as? [String: Int] == units)
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func thePageDrawsChartsWithoutScriptAndLinksEveryCount(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            let now = try await Self.fleet(f.store)
            try await f.test { client in
                // Not signed in: back to the sign-in page.
                let status = try await client.execute(uri: "/overview", method: .get) { r in
                    #expect(r.headers[.location] == "/")
                    return r.status
                }
                #expect(status == .seeOther)
                let viewer = try await HTTPPagesTests.signIn(client, token: f.viewerToken)
                let searchCSP = try await client.execute(uri: "/", method: .get, headers: [.cookie: viewer.cookie]) {
                    $0.headers[.contentSecurityPolicy]
                }
                let (s, csp, html) = try await client.execute(
                    uri: "/overview", method: .get, headers: [.cookie: viewer.cookie]
                ) { r in (r.status, r.headers[.contentSecurityPolicy], String(buffer: r.body)) }
                #expect(s == .ok)
                // The same policy as every page: nothing but the page itself, no script.
                #expect(csp != nil && csp == searchCSP)
                #expect(!html.lowercased().contains("<script"))
                // The search box first (sign-in lands here), then how old the counts are.
                #expect(html.contains("id=\"q\" name=\"q\""))
                #expect(html.contains("<time id=\"as-of\" datetime=\""))
                #expect(html.contains("<svg id=\"chart-events\""))
                #expect(html.contains("<svg id=\"chart-swaps\""))
                #expect(html.contains("id=\"units-total\">5<"))
                #expect(html.contains("id=\"units-lost\">1<"))
                // Every open-flag count links to its list; a firmware row to the affected units, all three exact.
                #expect(html.contains("href=\"/flags?kind=imei_changed\""))
                #expect(html.contains("href=\"/flags?kind=unit_silent\""))
                #expect(
                    html.contains(
                        "href=\"/affected?manufacturer=Quectel&amp;model=EC25&amp;revision=EC25EFAR06A06M4G\""))
                // The EG25 row reported no revision: no exact list to link to.
                #expect(!html.contains("model=EG25"))
                // The bars hold the four events on their UTC days: two an hour ago, two five hours ago (one day, or
                // two between 00:00 and 05:00 UTC).
                var perDay = [String: Int]()
                for hours in [1.0, 1, 5, 5] {
                    perDay[String(EnrollmentTimestamp.format(now.addingTimeInterval(-hours * 3600)).prefix(10)), default: 0] += 1
                }
                for (day, count) in perDay {
                    #expect(html.contains("data-day=\"\(day)\" data-count=\"\(count)\""), "\(day): \(count)")
                }
                #expect(identifierDigitRuns(html).isEmpty)
                for id in [TestID.imei(21), TestID.imsi(21), TestID.iccid(21)] { #expect(!html.contains(id)) }
            }
        }
    }

    /// The overview is read once per `overviewFreshFor` whoever asks: a second answer within it shows the same
    /// snapshot (same `as_of`, the new event not counted); with 0, every answer reads the store.
    @Test(arguments: StoreBackend.available)
    func answersComeFromOneSnapshotUntilItIsStale(_ backend: StoreBackend) async throws {
        for fresh in [30.0, 0] {
            var options = RegistryHTTPOptions()
            options.overviewFreshFor = fresh
            try await RegistryFixture.with(backend, options: options) { f in
                try await Self.fleet(f.store)
                try await f.test { client in
                    let (_, first) = try await client.call(.get, "/v1/overview", token: f.viewerToken)
                    let later = Date().addingTimeInterval(-60)
                    try await f.store.field(
                        StoreOverviewTests.report("GW-9", n: 29, model: "EC25", revision: nil, at: later), "GW-9",
                        at: later)
                    let (_, second) = try await client.call(.get, "/v1/overview", token: f.viewerToken)
                    let (a, b) = (Self.object(first), Self.object(second))
                    let totals = [a, b].map { ($0["units"] as? [String: Int])?["total"] }
                    if fresh > 0 {
                        #expect(totals == [5, 5])
                        #expect(a["as_of"] as? String == b["as_of"] as? String)
                    } else {
                        #expect(totals == [5, 6])
                    }
                }
            }
        }
    }

    @Test func chartsScaleAndTheTemplateEscapes() throws {
        #expect(OverviewCharts.niceMax(0) == 1)
        #expect(OverviewCharts.niceMax(3) == 5)
        #expect(OverviewCharts.niceMax(11) == 20)
        #expect(OverviewCharts.niceMax(500) == 500)
        #expect(OverviewCharts.niceMax(501) == 1000)
        // The chart's texts are escaped by the template, not by hand.
        var library = MustacheLibrary()
        try library.register(OverviewTemplates.barChart, named: "barChart")
        let svg =
            library.render(
                [
                    "id": "c", "label": "<a href=\"x\">&", "grid": [Any](), "legend": [Any](),
                    "bars": [["x": "1", "dataName": "day", "dataValue": "\"><script>", "count": 1, "title": "<b>"]],
                ] as [String: Any], withTemplate: "barChart") ?? ""
        #expect(svg.contains("aria-label=\"&lt;a href=&quot;x&quot;&gt;&amp;\""))
        #expect(svg.contains("<title>&lt;b&gt;</title>"))
        #expect(!svg.contains("<script") && !svg.contains("<b>"))
        let chart = OverviewCharts.eventsPerDay(
            FleetOverview.assemble(OverviewCounts(eventsByDay: [20_000: 3]), OverviewQuery(
                now: Date(timeIntervalSince1970: 20_000 * 86_400 + 3600), silenceThreshold: 86_400)).eventsPerDay, total: 3)
        let drawn = library.render(chart, withTemplate: "barChart") ?? ""
        #expect(drawn.contains("data-day=\"2024-10-04\" data-count=\"3\"><title>2024-10-04: 3 event(s)</title>"))
        #expect(drawn.components(separatedBy: "<rect class=\"bar\"").count == 31)
        #expect(
            OverviewPage.affectedLink(FirmwareCount(manufacturer: "Quectel", model: "EC25", revision: " A", units: 1))
                == nil)
        #expect(
            OverviewPage.affectedLink(FirmwareCount(manufacturer: "Quectel", model: "EC 25", revision: "A+B", units: 1))
                == "/affected?manufacturer=Quectel&model=EC%2025&revision=A%2BB")
    }
}
