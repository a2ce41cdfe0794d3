import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

// The affected units through the operator API and the pages (issue 20), on the fleet of StoreAffectedTests plus a
// unit whose module names a spreadsheet would run as a formula.

@Suite struct HTTPAffectedTests {
    static let advisory = StoreAffectedTests.advisory

    static func fleet(_ store: any RegistryStore) async throws {
        try await StoreAffectedTests.fleet(store)
        try await store.field(
            StoreAffectedTests.report(
                "GW-8", n: 9, manufacturer: "@SUM(1+1)", model: "=HYPERLINK(\"http://x\")", revision: "EC25EFAR06A06M4G",
                at: StoreAffectedTests.nov5), "GW-8", at: StoreAffectedTests.nov5)
    }

    static func units(_ body: String) throws -> [[String: Any]] {
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return try #require(object?["units"] as? [[String: Any]])
    }

    static func object(_ body: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
    }

    @Test(arguments: StoreBackend.available)
    func theAPIListsTheUnitsAsJSONAndCSV(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await Self.fleet(f.store)
            try await f.test { client in
                // JSON, masked: the units carrying the revision, each with its matching slot only.
                let (status, body) = try await client.call(
                    .get, "/v1/affected?revision=\(Self.advisory)", token: f.viewerToken)
                #expect(status == .ok)
                let units = try Self.units(body)
                #expect(units.map { $0["serial"] as? String } == ["GW-1", "GW-4", "GW-7", "GW-8"])
                let gw4 = try #require(units.first { $0["serial"] as? String == "GW-4" })
                let slots = try #require(gw4["slots"] as? [[String: Any]])
                #expect(slots.map { $0["slot"] as? String } == ["usb-2"])
                #expect(slots.first?["revision"] as? String == Self.advisory)
                #expect((slots.first?["imsi"] as? String)?.hasPrefix("IMSI(262-01, ref ") == true)
                #expect((slots.first?["iccid"] as? String)?.hasPrefix("ICCID(") == true)
                #expect(identifierDigitRuns(body).isEmpty)
                #expect(Self.object(body)["next_offset"] == nil)

                // Paging, prefix, seen since, TAC: as the store.
                let (_, p1) = try await client.call(
                    .get, "/v1/affected?revision_prefix=EC25EFAR06&limit=2", token: f.viewerToken)
                #expect(try Self.units(p1).map { $0["serial"] as? String } == ["GW-1", "GW-2"])
                #expect(Self.object(p1)["next_offset"] as? Int == 2)
                let (_, p2) = try await client.call(
                    .get, "/v1/affected?revision_prefix=EC25EFAR06&limit=2&offset=4", token: f.viewerToken)
                #expect(try Self.units(p2).map { $0["serial"] as? String } == ["GW-8"])
                #expect(Self.object(p2)["next_offset"] == nil)
                let (_, since) = try await client.call(
                    .get, "/v1/affected?revision=\(Self.advisory)&seen_since=2026-11-05T09:00:00%2B01:00&tac=86425104",
                    token: f.viewerToken)
                #expect(try Self.units(since).map { $0["serial"] as? String } == ["GW-7", "GW-8"])
                // A form's encoding: + is a blank.
                let (_, sierra) = try await client.call(
                    .get, "/v1/affected?manufacturer=Sierra+Wireless", token: f.viewerToken)
                #expect(try Self.units(sierra).map { $0["serial"] as? String } == ["GW-4"])

                // CSV: one row per matching slot, every field neutralised as the unit export's, masked.
                let csv = try await client.execute(
                    uri: "/v1/affected?revision=\(Self.advisory)&format=csv", method: .get,
                    headers: [.authorization: "Bearer \(f.viewerToken)"]
                ) { r in (r.status, r.headers[.contentType], r.headers[.contentDisposition], String(buffer: r.body)) }
                #expect(csv.0 == .ok)
                #expect(csv.1 == "text/csv; charset=utf-8")
                #expect(csv.2 == "attachment; filename=\"affected-units.csv\"")
                let lines = csv.3.components(separatedBy: "\r\n").filter { !$0.isEmpty }
                #expect(lines.first == "serial,slot,manufacturer,model,revision,imei,imsi,iccid,eid,last_seen,lost")
                #expect(lines.count == 5)
                let gw8 = try #require(lines.first { $0.hasPrefix("GW-8,") })
                #expect(gw8.hasPrefix("GW-8,usb-1,'@SUM(1+1),\"'=HYPERLINK(\"\"http://x\"\")\",EC25EFAR06A06M4G,"))
                #expect(csv.3.contains("GW-4,usb-2,Quectel,EC25,EC25EFAR06A06M4G,"))
                #expect(identifierDigitRuns(csv.3).isEmpty)
                #expect(!csv.3.contains(",=") && !csv.3.contains(",@") && !csv.3.contains("\"="))
                #expect(try await f.store.audit(limit: 50).filter { $0.action == "reveal" }.isEmpty)

                // Bad parameters: 400 naming them.
                for (uri, parameter) in [
                    ("/v1/affected", "manufacturer"),
                    ("/v1/affected?seen_since=2026-11-01T00:00:00Z", "manufacturer"),
                    ("/v1/affected?revision_prefix=EC", "revision_prefix"),
                    ("/v1/affected?revision=A&revision_prefix=EC25", "revision_prefix"),
                    ("/v1/affected?model=EC25%0A", "model"),
                    ("/v1/affected?tac=1234", "tac"),
                    ("/v1/affected?revision=A&seen_since=last+week", "seen_since"),
                    ("/v1/affected?revision=A&format=xlsx", "format"),
                    ("/v1/affected?revision=A&limit=0", "limit"),
                    ("/v1/affected?revision=A&limit=10001", "limit"),
                    ("/v1/affected?revision=A&offset=-1", "offset"),
                    ("/v1/affected?revision=A&reveal=1", "reveal"),
                ] {
                    let (s, b) = try await client.call(.get, uri, token: f.viewerToken)
                    #expect(s == .badRequest, "\(uri)")
                    #expect(b.contains("\"\(parameter): "), "\(uri): \(b)")
                }

                // Reveal: a viewer is refused; an admin gets the digits, one audit entry per unit listed.
                let (s403, _) = try await client.call(
                    .get, "/v1/affected?revision=\(Self.advisory)&reveal=true", token: f.viewerToken)
                #expect(s403 == .forbidden)
                let (unauthorized, _) = try await client.call(.get, "/v1/affected?revision=\(Self.advisory)", token: nil)
                #expect(unauthorized == .unauthorized)
                let (s6, revealed) = try await client.call(
                    .get, "/v1/affected?revision=\(Self.advisory)&tac=35209900&reveal=true&format=csv",
                    token: f.adminToken)
                #expect(s6 == .ok)
                #expect(revealed.contains("GW-4,usb-2,Quectel,EC25,EC25EFAR06A06M4G,\(TestID.imei(5, tac: "35209900")),\(TestID.imsi(5)),\(TestID.iccid(5)),"))
                let audit = try await f.store.audit(limit: 50).filter { $0.action == "reveal" }
                #expect(audit.map(\.serial) == ["GW-4"])
                #expect(audit.first?.detail == "affected units")
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func thePageListsTheUnitsWithACSVLink(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await Self.fleet(f.store)
            try await f.test { client in
                let viewer = try await HTTPPagesTests.signIn(client, token: f.viewerToken)
                func get(_ uri: String, _ cookie: String) async throws -> (HTTPResponse.Status, String) {
                    try await client.execute(uri: uri, method: .get, headers: [.cookie: cookie]) {
                        ($0.status, String(buffer: $0.body))
                    }
                }
                // Linked from the search page; the empty form.
                let (_, search) = try await get("/", viewer.cookie)
                #expect(search.contains("<a href=\"/affected\" id=\"affected-link\">"))
                let (s0, empty) = try await get("/affected", viewer.cookie)
                #expect(s0 == .ok)
                #expect(empty.contains("id=\"affected-form\""))
                #expect(!empty.contains("affected-results"))
                #expect(!empty.contains("<script"))

                // As a form sends it (every field, most empty): the rows, escaped, masked, and the CSV link.
                let (s1, page) = try await get(
                    "/affected?manufacturer=&manufacturer_prefix=&model=&model_prefix=&revision=\(Self.advisory)&revision_prefix=&tac=&seen_since=",
                    viewer.cookie)
                #expect(s1 == .ok)
                #expect(page.components(separatedBy: "class=\"affected-row\"").count == 5)
                #expect(page.contains("href=\"/units/GW-4\""))
                #expect(page.contains("&#61;HYPERLINK(&quot;http://x&quot;)") || page.contains("=HYPERLINK(&quot;http://x&quot;)"))
                #expect(!page.contains("\"http://x\""), "escaped")
                #expect(page.contains("href=\"/affected.csv?revision=EC25EFAR06A06M4G&amp;limit=10000\""))
                #expect(!page.contains("id=\"reveal\""), "a viewer is offered no reveal")
                #expect(identifierDigitRuns(page).isEmpty)

                // The CSV link works with the session, neutralised and masked.
                let (s2, csv) = try await get("/affected.csv?revision=EC25EFAR06A06M4G&limit=10000", viewer.cookie)
                #expect(s2 == .ok)
                #expect(csv.hasPrefix(AffectedUnitsCSVHeader.value))
                #expect(csv.contains("'=HYPERLINK"))
                #expect(identifierDigitRuns(csv).isEmpty)

                // A bad field: 400 with the reason on the page, the value kept escaped.
                let (s3, bad) = try await get("/affected?revision_prefix=%3Cb", viewer.cookie)
                #expect(s3 == .badRequest)
                #expect(bad.contains("id=\"affected-error\""))
                #expect(bad.contains("revision_prefix: a prefix needs at least 3 characters"))
                #expect(bad.contains("value=\"&lt;b\""))
                let (s4, _) = try await get("/affected?revision=A&reveal=true", viewer.cookie)
                #expect(s4 == .forbidden)
                let (s5, _) = try await get("/affected.csv?revision=A&reveal=true", viewer.cookie)
                #expect(s5 == .forbidden)

                // An admin reveals: the digits, audited.
                let admin = try await HTTPPagesTests.signIn(client, token: f.adminToken)
                let (_, offered) = try await get("/affected?revision=\(Self.advisory)&tac=35209900", admin.cookie)
                #expect(offered.contains("id=\"reveal\" href=\"/affected?revision=EC25EFAR06A06M4G&amp;tac=35209900&amp;reveal=true\""))
                let (s6, shown) = try await get("/affected?revision=\(Self.advisory)&tac=35209900&reveal=true", admin.cookie)
                #expect(s6 == .ok)
                #expect(shown.contains(TestID.imsi(5)))
                #expect(shown.contains("id=\"revealed\""))
                #expect(try await f.store.audit(limit: 50).contains {
                    $0.action == "reveal" && $0.serial == "GW-4" && $0.detail == "affected units page"
                })
            }
        }
    }
}

/// The CSV's header, as the API writes it.
enum AffectedUnitsCSVHeader {
    static let value = "serial,slot,manufacturer,model,revision,imei,imsi,iccid,eid,last_seen,lost\r\n"
}
