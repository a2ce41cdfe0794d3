import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

// Pages of the lists through the operator API and the pages: flags filtered and walked by cursor, a unit's
// timeline sub-resource and page, search results by offset; bad parameters answered 400 naming them.

@Suite struct HTTPPagingTests {
    static func object(_ body: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
    }

    /// Nine flags (ids in raise order): imei_changed critical 1, 4, 7; iccid_moved warning 2, 5, 8; unit_silent
    /// warning 3, 6, 9; 8 resolved.
    static func flags(_ store: any RegistryStore) async throws -> [Int64] {
        let kinds: [(FlagKind, EventSeverity)] = [(.imeiChanged, .critical), (.iccidMoved, .warning), (.unitSilent, .warning)]
        var ids: [Int64] = []
        for n in 1...9 {
            let (kind, severity) = kinds[(n - 1) % 3]
            let f = NewFlag(
                kind: kind, severity: severity, serial: "GW-\(n)", summary: "finding \(n)", evidence: FlagEvidence(),
                dedupeKey: "http-paging-\(n)")
            ids += try await store.raise([f], at: t0.addingTimeInterval(Double(n))).map(\.id)
        }
        #expect(try await store.resolveFlag(id: ids[7], by: "alice", note: "seen", at: t0))
        return ids
    }

    /// GW-1 with seven events a minute apart, and five units of TAC 35209900 (GW-T1 ... GW-T5).
    static func units(_ store: any RegistryStore) async throws {
        for n in 0..<7 {
            try await store.field(
                event(
                    n == 0 ? "enrolled" : "sim_changed", serial: "GW-1", imei: TestID.imei(1, tac: "86425104"),
                    iccid: TestID.iccid(n), at: t0.addingTimeInterval(Double(60 * n))), "GW-1")
        }
        for n in 1...5 {
            try await store.field(event(serial: "GW-T\(n)", imei: TestID.imei(10 + n), at: t0), "GW-T\(n)")
        }
    }

    @Test(arguments: StoreBackend.available)
    func theAPIPagesFlagsTimelinesAndSearches(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            let ids = try await Self.flags(f.store)
            try await Self.units(f.store)
            try await f.test { client in
                func get(_ uri: String) async throws -> [String: Any] {
                    let (status, body) = try await client.call(.get, uri, token: f.viewerToken)
                    #expect(status == .ok, "\(uri): \(body)")
                    return Self.object(body)
                }
                func flagIDs(_ o: [String: Any]) -> [Int64] {
                    (o["flags"] as? [[String: Any]] ?? []).compactMap { ($0["id"] as? NSNumber)?.int64Value }
                }
                // Open warnings, two a page: 9, 6 / 5, 3 / 2; and back.
                let p1 = try await get("/v1/flags?severity=warning&limit=2")
                #expect(flagIDs(p1) == [ids[8], ids[5]])
                #expect(p1["previous_after"] == nil)
                let next1 = try #require(p1["next_before"] as? String)
                let p2 = try await get("/v1/flags?severity=warning&limit=2&before=\(next1)")
                #expect(flagIDs(p2) == [ids[4], ids[2]])
                let p3 = try await get("/v1/flags?severity=warning&limit=2&before=\(try #require(p2["next_before"] as? String))")
                #expect(flagIDs(p3) == [ids[1]])
                #expect(p3["next_before"] == nil)
                let back = try await get("/v1/flags?severity=warning&limit=2&after=\(try #require(p3["previous_after"] as? String))")
                #expect(flagIDs(back) == [ids[4], ids[2]])
                #expect(flagIDs(try await get("/v1/flags?kind=imei_changed")) == [ids[6], ids[3], ids[0]])
                #expect(flagIDs(try await get("/v1/flags?kind=iccid_moved&status=resolved")) == [ids[7]])
                #expect(flagIDs(try await get("/v1/flags?kind=iccid_moved&status=all")) == [ids[7], ids[4], ids[1]])
                // Empty values are no filter (a form's "any").
                #expect(flagIDs(try await get("/v1/flags?kind=&severity=")).count == 8)
                #expect(try await get("/v1/flags")["limit"] as? Int == PageKeys.defaultLimit)

                // The timeline sub-resource: newest first, three a page, the cursors round-trip.
                let t1 = try await get("/v1/units/GW-1/timeline?limit=3")
                let entries = { (o: [String: Any]) in (o["timeline"] as? [[String: Any]] ?? []).compactMap { $0["occurred_at"] as? String } }
                let times = (0..<7).reversed().map { EnrollmentTimestamp.format(t0.addingTimeInterval(Double(60 * $0))) }
                #expect(entries(t1) == Array(times[0..<3]))
                let t2 = try await get("/v1/units/GW-1/timeline?limit=3&before=\(try #require(t1["next_before"] as? String))")
                #expect(entries(t2) == Array(times[3..<6]))
                let t3 = try await get("/v1/units/GW-1/timeline?limit=3&before=\(try #require(t2["next_before"] as? String))")
                #expect(entries(t3) == Array(times[6...]))
                #expect(t3["next_before"] == nil)
                let t2back = try await get("/v1/units/GW-1/timeline?limit=3&after=\(try #require(t3["previous_after"] as? String))")
                #expect(entries(t2back) == Array(times[3..<6]))
                #expect(identifierDigitRuns(String(describing: t1)).isEmpty)
                // A unit with no event: an empty page; an unknown one: 404.
                #expect(entries(try await get("/v1/units/\(RegistryFixture.serial)/timeline")).isEmpty)
                let (s404, _) = try await client.call(.get, "/v1/units/GW-404/timeline", token: f.viewerToken)
                #expect(s404 == .notFound)

                // Search by TAC, two a page by offset.
                let serials = { (o: [String: Any]) in (o["units"] as? [[String: Any]] ?? []).compactMap { $0["serial"] as? String } }
                let s1 = try await get("/v1/units?q=35209900&limit=2")
                #expect(serials(s1) == ["GW-T1", "GW-T2"])
                #expect(s1["next_offset"] as? Int == 2)
                let s3 = try await get("/v1/units?q=35209900&limit=2&offset=4")
                #expect(serials(s3) == ["GW-T5"])
                #expect(s3["next_offset"] == nil)
                #expect(s3["offset"] as? Int == 4)

                // Bad parameters: 400 naming them.
                for (uri, parameter) in [
                    ("/v1/flags?kind=bogus", "kind"), ("/v1/flags?kind=imei_changed&kind=unit_silent", "kind"),
                    ("/v1/flags?severity=high", "severity"), ("/v1/flags?status=ALL", "status"),
                    ("/v1/flags?status=closed", "status"), ("/v1/flags?limit=0", "limit"),
                    ("/v1/flags?limit=501", "limit"), ("/v1/flags?before=x1", "before"),
                    ("/v1/flags?before=-1", "before"), ("/v1/flags?after=1234567890123456789", "after"),
                    ("/v1/flags?before=1&after=2", "before, after"),
                    ("/v1/units/GW-1/timeline?before=123", "before"),
                    ("/v1/units/GW-1/timeline?after=1-2-3", "after"), ("/v1/units/GW-1/timeline?limit=x", "limit"),
                    ("/v1/units?q=35209900&limit=101", "limit"), ("/v1/units?q=35209900&offset=1000", "offset"),
                    ("/v1/units?q=35209900&offset=-1", "offset"),
                ] {
                    let (s, b) = try await client.call(.get, uri, token: f.viewerToken)
                    #expect(s == .badRequest, "\(uri)")
                    #expect(b.contains("\"\(parameter): "), "\(uri): \(b)")
                }
                let (s401, _) = try await client.call(.get, "/v1/units/GW-1/timeline", token: nil)
                #expect(s401 == .unauthorized)
                let (s403, _) = try await client.call(.get, "/v1/units/GW-1/timeline?reveal=true", token: f.viewerToken)
                #expect(s403 == .forbidden)
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func thePagesFilterFlagsAndLinkTheNeighbours(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            let ids = try await Self.flags(f.store)
            try await Self.units(f.store)
            try await f.test { client in
                let viewer = try await HTTPPagesTests.signIn(client, token: f.viewerToken)
                func get(_ uri: String) async throws -> (HTTPResponse.Status, String) {
                    try await client.execute(uri: uri, method: .get, headers: [.cookie: viewer.cookie]) {
                        ($0.status, String(buffer: $0.body))
                    }
                }
                func rows(_ page: String) -> [String] {
                    page.components(separatedBy: "id=\"flag-").dropFirst().map { String($0.prefix { $0 != "\"" }) }
                        .filter { $0.allSatisfy(\.isNumber) }
                }
                // The overview's link: open flags of one kind, the filter shown and selected.
                let (s1, kind) = try await get("/flags?kind=imei_changed")
                #expect(s1 == .ok)
                #expect(rows(kind) == [ids[6], ids[3], ids[0]].map { "\($0)" })
                #expect(kind.contains("<option value=\"imei_changed\" selected>"))
                #expect(kind.contains("Open flags of kind imei_changed, newest first."))
                #expect(!kind.contains("id=\"next-page\""))
                #expect(!kind.contains("<script"))

                // Two a page, filters kept in the links; next, then previous.
                let (_, w1) = try await get("/flags?severity=warning&status=all&limit=2")
                #expect(rows(w1) == [ids[8], ids[7]].map { "\($0)" })
                #expect(w1.contains("All warning flags, newest first."))
                #expect(w1.contains("href=\"/flags?severity=warning&amp;status=all&amp;limit=2&amp;before=\(ids[7])\""))
                #expect(!w1.contains("id=\"previous-page\""))
                let (_, w2) = try await get("/flags?severity=warning&status=all&limit=2&before=\(ids[7])")
                #expect(rows(w2) == [ids[5], ids[4]].map { "\($0)" })
                #expect(w2.contains("href=\"/flags?severity=warning&amp;status=all&amp;limit=2&amp;after=\(ids[5])\""))
                let (_, w1again) = try await get("/flags?severity=warning&status=all&limit=2&after=\(ids[5])")
                #expect(rows(w1again) == rows(w1))

                // A bad filter: 400 with the reason on the page.
                let (s400, bad) = try await get("/flags?kind=%3Cscript%3E")
                #expect(s400 == .badRequest)
                #expect(bad.contains("id=\"flags-error\""))
                #expect(bad.contains("kind: not a flag kind"))
                #expect(!bad.contains("<script>"))

                // The unit page's timeline, three a page, with links to older and newer events.
                let (u1s, u1) = try await get("/units/GW-1?limit=3")
                #expect(u1s == .ok)
                #expect(u1.components(separatedBy: "class=\"timeline-entry\"").count == 4)
                #expect(!u1.contains("id=\"timeline-previous\""))
                let nextHref = try #require(
                    u1.components(separatedBy: "id=\"timeline-next\" rel=\"next\" href=\"").dropFirst().first?
                        .prefix { $0 != "\"" })
                let (u2s, u2) = try await get(String(nextHref).replacingOccurrences(of: "&amp;", with: "&"))
                #expect(u2s == .ok)
                #expect(u2.components(separatedBy: "class=\"timeline-entry\"").count == 4)
                #expect(u2.contains("id=\"timeline-previous\""))
                let (u400, _) = try await get("/units/GW-1?before=nonsense")
                #expect(u400 == .badRequest)

                // Search results by offset, with both links on a middle page.
                let (_, r2) = try await get("/?q=35209900&limit=2&offset=2")
                #expect(r2.contains("href=\"/units/GW-T3\"") && r2.contains("href=\"/units/GW-T4\""))
                #expect(!r2.contains("href=\"/units/GW-T1\""))
                #expect(r2.contains("id=\"previous-page\" rel=\"prev\" href=\"/?q=35209900&amp;limit=2\""))
                #expect(r2.contains("id=\"next-page\" rel=\"next\" href=\"/?q=35209900&amp;limit=2&amp;offset=4\""))
                let (r400, rbad) = try await get("/?q=35209900&limit=1000")
                #expect(r400 == .badRequest)
                #expect(rbad.contains("limit: must be a whole number from 1 to 100"))
            }
        }
    }
}
