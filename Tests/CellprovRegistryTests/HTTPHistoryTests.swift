import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

// Every holder of an identifier and a unit as of a moment, through the operator API and the pages (issue 20): the
// SIM of StoreHistoryTests moves from GW-A to GW-B on 3 November at 09:30; GW-A's removal arrives two days late.

@Suite struct HTTPHistoryTests {
    static let imsi = StoreHistoryTests.imsi

    static func units(_ body: String) throws -> [[String: Any]] {
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return try #require(object?["units"] as? [[String: Any]])
    }

    static func held(_ unit: [String: Any]) -> [[String: Any]] { unit["held"] as? [[String: Any]] ?? [] }

    @Test(arguments: StoreBackend.available)
    func theAPIListsEveryHolderAndTheHolderAtAMoment(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await StoreHistoryTests.moveTheSIM(f.store, removalDelay: 2 * 86_400)
            try await f.test { client in
                // Without a moment: both units, the current holder first, each with its interval; masked.
                let (status, body) = try await client.call(.get, "/v1/units?q=\(Self.imsi)", token: f.viewerToken)
                #expect(status == .ok)
                let all = try Self.units(body)
                #expect(all.map { $0["serial"] as? String } == ["GW-B", "GW-A"])
                #expect(Self.held(all[0]).map { $0["current"] as? Bool } == [true])
                #expect(Self.held(all[0]).first?["from"] as? String == "2026-11-03T09:30:00Z")
                #expect(Self.held(all[0]).first?["until"] == nil)
                #expect(Self.held(all[0]).first?["slot"] as? String == "usb-2")
                let a = try #require(Self.held(all[1]).first)
                #expect(a["from"] as? String == "2026-11-01T08:00:00Z")
                #expect(a["until"] as? String == "2026-11-03T09:00:00Z")
                #expect(a["until_received_at"] as? String == "2026-11-05T09:00:00Z", "late: the receive time beside it")
                #expect(a["from_received_at"] == nil, "received 2 s after: no disagreement")
                #expect(a["kind"] as? String == "imsi")
                #expect((a["identifier"] as? String)?.hasPrefix("IMSI(262-01, ref ") == true)
                #expect(identifierDigitRuns(body).isEmpty)

                // At the incident (14:22 on 3 November, written with an offset): the second unit only.
                let (s2, b2) = try await client.call(
                    .get, "/v1/units?q=\(Self.imsi)&at=2026-11-03T15:22:00%2B01:00", token: f.viewerToken)
                #expect(s2 == .ok)
                #expect(try Self.units(b2).map { $0["serial"] as? String } == ["GW-B"])
                #expect(b2.contains("\"at\":\"2026-11-03T14:22:00Z\""))
                // On 2 November: the first.
                let (_, b3) = try await client.call(
                    .get, "/v1/units?q=\(Self.imsi)&at=2026-11-02T12:00:00Z", token: f.viewerToken)
                #expect(try Self.units(b3).map { $0["serial"] as? String } == ["GW-A"])
                // Between the removal and the move: nobody. A serial with a moment: that unit, as it is.
                let (_, b4) = try await client.call(
                    .get, "/v1/units?q=\(Self.imsi)&at=2026-11-03T09:15:00Z", token: f.viewerToken)
                #expect(try Self.units(b4).isEmpty)
                let (_, b5) = try await client.call(.get, "/v1/units?q=GW-A&at=2026-11-02T12:00:00Z", token: f.viewerToken)
                #expect(try Self.units(b5).map { $0["serial"] as? String } == ["GW-A"])
                #expect(try Self.units(b5).first?["held"] == nil)

                // An `at` the API cannot read: 400 naming the parameter, for the search and the unit.
                for uri in [
                    "/v1/units?q=\(Self.imsi)&at=yesterday", "/v1/units?q=\(Self.imsi)&at=2026-11-03",
                    "/v1/units?q=\(Self.imsi)&at=2026-11-03T14:22:00Z&at=2026-11-04T00:00:00Z",
                    "/v1/units/GW-A?at=2026-13-01T00:00:00Z",
                ] {
                    let (s, b) = try await client.call(.get, uri, token: f.viewerToken)
                    #expect(s == .badRequest, "\(uri)")
                    #expect(b.contains("at: must be one RFC 3339 time"), "\(uri)")
                }

                // Revealed (admins, audited): the digits.
                let (s6, b6) = try await client.call(
                    .get, "/v1/units?q=\(Self.imsi)&at=2026-11-02T12:00:00Z&reveal=true", token: f.adminToken)
                #expect(s6 == .ok)
                #expect(Self.held(try Self.units(b6)[0]).first?["identifier"] as? String == Self.imsi)
                #expect(try await f.store.audit(limit: 10).contains { $0.action == "reveal" && $0.serial == "GW-A" })
                let (s7, _) = try await client.call(
                    .get, "/v1/units?q=\(Self.imsi)&reveal=true", token: f.viewerToken)
                #expect(s7 == .forbidden)
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func theUnitAsOfAMoment(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await StoreHistoryTests.moveTheSIM(f.store)
            try await f.test { client in
                let (status, body) = try await client.call(
                    .get, "/v1/units/GW-A?at=2026-11-02T12:00:00Z", token: f.viewerToken)
                #expect(status == .ok)
                let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
                let unit = try #require(object?["unit"] as? [String: Any])
                #expect(unit["as_of"] as? String == "2026-11-02T12:00:00Z")
                let slots = try #require(unit["slots"] as? [[String: Any]])
                #expect(slots.map { $0["last_event_type"] as? String } == ["enrolled"])
                #expect((slots.first?["imsi"] as? String)?.hasPrefix("IMSI(262-01") == true)
                #expect((unit["timeline"] as? [Any])?.count == 1)
                #expect(identifierDigitRuns(body).isEmpty)

                let (_, incident) = try await client.call(
                    .get, "/v1/units/GW-A?at=2026-11-03T14:22:00Z", token: f.viewerToken)
                #expect(incident.contains("\"last_event_type\":\"sim_removed\""))
                let (_, now) = try await client.call(.get, "/v1/units/GW-A", token: f.viewerToken)
                #expect(!now.contains("as_of"))
                let (missing, _) = try await client.call(
                    .get, "/v1/units/GW-NONE?at=2026-11-03T14:22:00Z", token: f.viewerToken)
                #expect(missing == .notFound)
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func thePagesSearchAtAMomentAndShowTheUnitThen(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await StoreHistoryTests.moveTheSIM(f.store, removalDelay: 2 * 86_400)
            try await f.test { client in
                let viewer = try await HTTPPagesTests.signIn(client, token: f.viewerToken)
                func get(_ uri: String) async throws -> (HTTPResponse.Status, String) {
                    try await client.execute(uri: uri, method: .get, headers: [.cookie: viewer.cookie]) {
                        ($0.status, String(buffer: $0.body))
                    }
                }
                // Every holder, with the intervals; the late removal's receive time beside its end.
                let (s1, all) = try await get("/?q=\(Self.imsi)")
                #expect(s1 == .ok)
                #expect(all.contains("<input type=\"text\" id=\"at\" name=\"at\" value=\"\""))
                #expect(all.components(separatedBy: "class=\"unit-result\"").count == 3)
                let b = try #require(all.range(of: ">GW-B<"))
                let a = try #require(all.range(of: ">GW-A<"))
                #expect(b.lowerBound < a.lowerBound, "the current holder first")
                #expect(all.contains("held-current"))
                #expect(all.contains("<span class=\"held-until\">2026-11-03T09:00:00Z</span> (received 2026-11-05T09:00:00Z)"))
                // The one run of digits is the query itself, in the search box; the answer is masked.
                #expect(identifierDigitRuns(all.replacingOccurrences(of: "value=\"\(Self.imsi)\"", with: "")).isEmpty)

                // At the incident, as a form sends it (the offset's + escaped): GW-B, linked to its page then.
                let (s2, then) = try await get("/?q=\(Self.imsi)&at=2026-11-03T15%3A22%3A00%2B01%3A00")
                #expect(s2 == .ok)
                #expect(then.contains("value=\"2026-11-03T15:22:00+01:00\""))
                #expect(then.contains("holding it at <span id=\"as-of\">2026-11-03T14:22:00Z</span>"))
                #expect(then.components(separatedBy: "class=\"unit-result\"").count == 2)
                #expect(then.contains("href=\"/units/GW-B?at=2026-11-03T14%3A22%3A00Z\""))
                #expect(!then.contains(">GW-A<"))

                // An `at` it cannot read: 400 with the reason on the search page, nothing searched.
                let (s3, bad) = try await get("/?q=\(Self.imsi)&at=%3Cscript%3E")
                #expect(s3 == .badRequest)
                #expect(bad.contains("id=\"search-error\""))
                #expect(bad.contains("value=\"&lt;script&gt;\""), "escaped as every value")
                #expect(!bad.contains("<script>"))

                // The unit page as of a moment: the banner, the slots then, no admin action, and back to now.
                let (s4, unit) = try await get("/units/GW-A?at=2026-11-02T12%3A00%3A00Z")
                #expect(s4 == .ok)
                #expect(unit.contains("id=\"as-of-banner\""))
                #expect(unit.contains("<strong id=\"as-of\">2026-11-02T12:00:00Z</strong>"))
                #expect(unit.contains("enrolled"))
                #expect(!unit.contains("sim_removed"), "the later removal is not on the page of then")
                #expect(identifierDigitRuns(unit).isEmpty)
                let (_, now) = try await get("/units/GW-A")
                #expect(!now.contains("as-of-banner"))
                #expect(now.contains("sim_removed"))
                let (s5, badUnit) = try await get("/units/GW-A?at=soon")
                #expect(s5 == .badRequest)
                #expect(badUnit.contains("RFC 3339"))

                // An admin's page as of a moment offers no action (they act on the unit now) and keeps the moment in
                // the reveal link.
                let admin = try await HTTPPagesTests.signIn(client, token: f.adminToken)
                let adminPage = try await client.execute(
                    uri: "/units/GW-A?at=2026-11-02T12%3A00%3A00Z", method: .get, headers: [.cookie: admin.cookie]
                ) { String(buffer: $0.body) }
                #expect(!adminPage.contains("id=\"admin-actions\""))
                #expect(adminPage.contains("?reveal=true&amp;at=2026-11-02T12%3A00%3A00Z"))
            }
        }
    }
}
