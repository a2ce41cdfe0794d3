import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryHTTP
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// The operator API and the pages against a real store (SQLite and PostgreSQL, `StoreBackend`): roles, masking and
/// audited reveals, sessions, CSRF, escaping, operations routes, and no identifier digits in the logs.
@Suite(.serialized) struct HTTPOperatorTests {
    @Test(arguments: StoreBackend.available)
    func rolesAndAuthentication(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                // No token, a device token: 401 on every operator route.
                for (method, uri) in [
                    (HTTPRequest.Method.get, "/v1/units?q=GW-000100"), (.get, "/v1/flags"), (.get, "/v1/audit"),
                    (.get, "/v1/units.csv"), (.get, "/v1/units/GW-000100"), (.post, "/v1/units/GW-000100/lost"),
                ] {
                    #expect(try await client.call(method, uri, token: nil).0 == .unauthorized, "\(uri)")
                    #expect(try await client.call(method, uri, token: f.deviceToken).0 == .unauthorized, "\(uri)")
                }
                // A viewer reads, and gets 403 on the admin routes and on reveal.
                #expect(try await client.call(.get, "/v1/units?q=GW-000100", token: f.viewerToken).0 == .ok)
                #expect(try await client.call(.get, "/v1/flags", token: f.viewerToken).0 == .ok)
                for (method, uri) in [
                    (HTTPRequest.Method.get, "/v1/audit"), (.get, "/v1/units.csv"),
                    (.post, "/v1/units/GW-000100/lost"), (.post, "/v1/units/GW-000100/found"),
                    (.get, "/v1/units/GW-000100?reveal=true"), (.get, "/v1/units?q=GW-000100&reveal=true"),
                    (.post, "/v1/flags/1/resolve"), (.post, "/v1/carrier-reconciliations"),
                ] {
                    #expect(try await client.call(method, uri, token: f.viewerToken).0 == .forbidden, "\(uri)")
                }
                // The admin exports: full identifiers, for asset systems.
                let (status, csv) = try await client.call(.get, "/v1/units.csv", token: f.adminToken)
                #expect(status == .ok)
                #expect(csv.hasPrefix("serial,slot,origin,imei,imsi,iccid,module,first_seen,last_seen"))
                #expect(csv.contains(RegistryFixture.imeiA))
                // No reconciliation engine given: 501.
                #expect(
                    try await client.call(.post, "/v1/carrier-reconciliations", token: f.adminToken, body: "ICCID\n").0
                        == .notImplemented)
            }
            #expect(try await f.store.audit(limit: 100).contains { $0.action == "export" })
        }
    }

    @Test(arguments: StoreBackend.available)
    func identifiersAreMaskedUnlessAnAdminRevealsThemAndEveryRevealIsAudited(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                // Found by the full IMEI, by its TAC, by its ICCID; answers masked.
                for q in [RegistryFixture.imeiA, String(RegistryFixture.imeiA.prefix(8)), RegistryFixture.iccid1] {
                    let (status, body) = try await client.call(.get, "/v1/units?q=\(q)", token: f.viewerToken)
                    #expect(status == .ok)
                    #expect(body.contains("\"serial\":\"GW-000100\""), "\(q.count) digits")
                    #expect(identifierDigitRuns(body).isEmpty, "\(body)")
                }
                let (_, masked) = try await client.call(.get, "/v1/units/GW-000100", token: f.viewerToken)
                #expect(masked.contains("IMEI(TAC \(RegistryFixture.imeiA.prefix(8)), ref "))
                #expect(masked.contains("\"timeline\":[{"))
                #expect(identifierDigitRuns(masked).isEmpty)
                // An admin reveals: digits, and an audit entry naming who and which unit.
                let (status, revealed) = try await client.call(
                    .get, "/v1/units/GW-000100?reveal=true", token: f.adminToken)
                #expect(status == .ok)
                #expect(revealed.contains(RegistryFixture.imeiA))
                #expect(revealed.contains(RegistryFixture.iccid1))
                let (_, audit) = try await client.call(.get, "/v1/audit", token: f.adminToken)
                #expect(audit.contains("\"action\":\"reveal\""))
                #expect(audit.contains("\"actor\":\"alice\""))
            }
            let reveals = try await f.store.audit(limit: 100).filter { $0.action == "reveal" }
            #expect(reveals.count == 1)
            #expect(reveals.first?.serial == RegistryFixture.serial)
            // The logs carry no identifier digits and no token.
            let logs = f.logs.all.joined(separator: "\n")
            #expect(identifierDigitRuns(logs).isEmpty)
            for token in [f.deviceToken, f.adminToken, f.viewerToken, f.stationToken] {
                #expect(!logs.contains(token))
                #expect(!logs.contains(String(token.dropFirst(4))))
            }
            #expect(logs.contains(RegistryMessageID.eventStored.id))
            #expect(logs.contains(RegistryMessageID.reveal.id))
        }
    }

    @Test(arguments: StoreBackend.available)
    func flagsListAndResolve(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                // The same IMEI enrolled by two units raises imei_on_two_units.
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                let other = RegistryFixture.event(serial: RegistryFixture.otherSerial, iccid: RegistryFixture.iccid2)
                #expect(try await client.post(other, token: f.otherDeviceToken) == .created)
                let flags = try await f.store.flags(openOnly: true, limit: 100)
                let flag = try #require(flags.first { $0.flag.kind == .imeiOnTwoUnits })
                let (_, listed) = try await client.call(.get, "/v1/flags", token: f.viewerToken)
                #expect(listed.contains("\"kind\":\"imei_on_two_units\""))
                #expect(identifierDigitRuns(listed).isEmpty)
                let uri = "/v1/flags/\(flag.id)/resolve"
                #expect(try await client.call(.post, uri, token: f.adminToken, body: "{}").0 == .badRequest)
                #expect(try await client.call(.post, uri, token: f.adminToken, body: "{\"note\": \"re-flashed\"}").0 == .ok)
                #expect(try await client.call(.post, uri, token: f.adminToken, body: "{\"note\": \"again\"}").0 == .conflict)
                #expect(
                    try await client.call(.post, "/v1/flags/999999/resolve", token: f.adminToken, body: "{\"note\": \"x\"}").0
                        == .notFound)
                let (_, open) = try await client.call(.get, "/v1/flags", token: f.viewerToken)
                #expect(!open.contains("\"id\":\(flag.id),"))
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func carrierReconciliationRaisesTheFindingsAsFlags(_ backend: StoreBackend) async throws {
        let hook: ReconcileHook = { csv, assignments in
            let report = try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: assignments)
            return ReconcileResult(flags: report.flags, summary: report.summaryLines)
        }
        var raised: [FlagKind] = []
        let seen = LogCapture()
        try await RegistryFixture.with(
            backend,
            options: RegistryHTTPOptions(reconcile: hook, onFlagsRaised: { flags in
                for f in flags { seen.append(f.flag.kind.rawValue) }
            })
        ) { f in
            try await f.test { client in
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                // The unit's SIM is active at the carrier; another SIM of the same issuer is active and in no unit.
                let csv = "ICCID,IMSI,Status\n\(RegistryFixture.iccid1),\(RegistryFixture.imsi1),active\n"
                    + "\(RegistryFixture.iccid2),262019999999999,active\n"
                let (status, body) = try await client.call(.post, "/v1/carrier-reconciliations", token: f.adminToken, body: csv)
                #expect(status == .ok, "\(body)")
                #expect(body.contains("\"kind\":\"sim_active_unassigned\""))
                #expect(body.contains("\"sim_unknown_to_carrier\":\"0\""))
                #expect(identifierDigitRuns(body).isEmpty)
                // Not CSV with an ICCID column: 422.
                let (bad, _) = try await client.call(.post, "/v1/carrier-reconciliations", token: f.adminToken, body: "x,y\n1,2\n")
                #expect(bad == .unprocessableContent)
            }
            raised = try await f.store.flags(openOnly: true, limit: 100).map(\.flag.kind)
        }
        #expect(raised == [.simActiveUnassigned])
        #expect(seen.all == ["sim_active_unassigned"])
    }

    @Test(arguments: StoreBackend.available)
    func operationsRoutes(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                #expect(try await client.call(.get, "/healthz", token: nil).0 == .ok)
                #expect(try await client.call(.get, "/readyz", token: nil).0 == .ok)
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                #expect(try await client.post(RegistryFixture.event(), token: nil) == .unauthorized)
                let (status, metrics) = try await client.call(.get, "/metrics", token: nil)
                #expect(status == .ok)
                #expect(metrics.contains("cellprov_registry_events_ingested_total{type=\"enrolled\",outcome=\"stored\"} 1"))
                #expect(metrics.contains("outcome=\"unauthorized\""))
                #expect(metrics.contains("cellprov_registry_open_flags{kind=\"lost_unit_seen\"} 0"))
                #expect(metrics.contains("cellprov_registry_http_request_duration_seconds_bucket"))
                #expect(metrics.contains("cellprov_registry_database_duration_seconds_bucket{operation=\"ingest\""))
            }
        }
    }
}
