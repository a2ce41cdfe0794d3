import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryHTTP
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// The pages: sign-in, the session cookie's attributes, CSRF on every POST, roles, HTML escaping; against SQLite and
/// PostgreSQL (`StoreBackend`).
@Suite(.serialized) struct HTTPPagesTests {
    /// `name=value` of the Set-Cookie headers, and the full header lines.
    struct Cookies {
        var values: [String: String] = [:]
        var lines: [String: String] = [:]

        init(_ headers: HTTPFields) {
            for line in headers[values: .setCookie] {
                let pair = line.split(separator: ";", maxSplits: 1)[0]
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = String(parts[0]).trimmingCharacters(in: .whitespaces)
                values[name] = parts.count > 1 ? String(parts[1]) : ""
                lines[name] = line
            }
        }
    }

    static func csrf(in html: String) -> String? {
        guard let r = html.range(of: "name=\"csrf\" value=\"") else { return nil }
        return String(html[r.upperBound...].prefix { $0 != "\"" })
    }

    static func form(_ fields: [String: String]) -> ByteBuffer {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return ByteBuffer(
            string: fields.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)" }
                .joined(separator: "&"))
    }

    /// Signs in with `token` through the sign-in form; returns the session cookie and a page's CSRF token.
    static func signIn(_ client: any TestClientProtocol, token: String) async throws -> (cookie: String, csrf: String) {
        let (pre, csrf) = try await client.execute(uri: "/", method: .get) { r in
            (Cookies(r.headers).values["cellprov_presession"] ?? "", Self.csrf(in: String(buffer: r.body)) ?? "")
        }
        let session = try await client.execute(
            uri: "/signin", method: .post,
            headers: [.contentType: "application/x-www-form-urlencoded", .cookie: "cellprov_presession=\(pre)"],
            body: form(["csrf": csrf, "token": token])
        ) { r in
            #expect(r.status == .seeOther)
            // Sign-in lands on the fleet overview (with the search box at its top).
            #expect(r.headers[.location] == "/overview")
            return Cookies(r.headers).values["cellprov_session"] ?? ""
        }
        let pageCSRF = try await client.execute(
            uri: "/", method: .get, headers: [.cookie: "cellprov_session=\(session)"]
        ) { r in Self.csrf(in: String(buffer: r.body)) ?? "" }
        return ("cellprov_session=\(session)", pageCSRF)
    }

    @Test(arguments: StoreBackend.available)
    func signInSetsAStrictHttpOnlySessionCookieAndChecksCSRF(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                // The first page is the sign-in form, with a CSRF token bound to a pre-session nonce.
                let (pre, csrf, html) = try await client.execute(uri: "/", method: .get) { r in
                    (
                        Cookies(r.headers).values["cellprov_presession"] ?? "",
                        Self.csrf(in: String(buffer: r.body)) ?? "", String(buffer: r.body)
                    )
                }
                #expect(html.contains("id=\"token\""))
                #expect(html.contains("id=\"signin\""))
                #expect(!html.contains("<script"))
                // Without the CSRF token, or with another nonce: refused.
                for (cookie, token) in [(pre, ""), ("other", csrf)] {
                    let status = try await client.execute(
                        uri: "/signin", method: .post,
                        headers: [.contentType: "application/x-www-form-urlencoded", .cookie: "cellprov_presession=\(cookie)"],
                        body: Self.form(["csrf": token, "token": f.adminToken])
                    ) { $0.status }
                    #expect(status == .forbidden)
                }
                // A wrong token: 401; a device token is not an operator token either.
                for token in ["cpo_nope", f.deviceToken] {
                    let status = try await client.execute(
                        uri: "/signin", method: .post,
                        headers: [.contentType: "application/x-www-form-urlencoded", .cookie: "cellprov_presession=\(pre)"],
                        body: Self.form(["csrf": csrf, "token": token])
                    ) { $0.status }
                    #expect(status == .unauthorized)
                }
                // The right one: a session cookie, HttpOnly, SameSite=Strict, not Secure over plain HTTP.
                let line = try await client.execute(
                    uri: "/signin", method: .post,
                    headers: [.contentType: "application/x-www-form-urlencoded", .cookie: "cellprov_presession=\(pre)"],
                    body: Self.form(["csrf": csrf, "token": f.adminToken])
                ) { r in Cookies(r.headers).lines["cellprov_session"] ?? "" }
                #expect(line.contains("HttpOnly"))
                #expect(line.contains("SameSite=Strict"))
                #expect(!line.contains("Secure"))
                #expect(!line.contains(f.adminToken))
                // A forged cookie is no session.
                let forged = try await client.execute(
                    uri: "/flags", method: .get, headers: [.cookie: "cellprov_session=YWxpY2U.YWRtaW4"]
                ) { $0.status }
                #expect(forged == .seeOther)
            }
        }
        // Served over TLS, the cookie is Secure.
        try await RegistryFixture.with(backend, options: RegistryHTTPOptions(tls: true)) { f in
            try await f.test { client in
                let (pre, csrf) = try await client.execute(uri: "/", method: .get) { r in
                    (Cookies(r.headers).values["cellprov_presession"] ?? "", Self.csrf(in: String(buffer: r.body)) ?? "")
                }
                let line = try await client.execute(
                    uri: "/signin", method: .post,
                    headers: [.contentType: "application/x-www-form-urlencoded", .cookie: "cellprov_presession=\(pre)"],
                    body: Self.form(["csrf": csrf, "token": f.viewerToken])
                ) { r in Cookies(r.headers).lines["cellprov_session"] ?? "" }
                #expect(line.contains("Secure"))
            }
        }
    }

    /// Issue 19 row 3: a session is bound to the token that signed in. A demotion (a new token) or a revocation ends
    /// it at the next request, a re-issued token revives none, and two sign-ins get different cookies and CSRF tokens.
    @Test(arguments: StoreBackend.available)
    func aRevokedOperatorsSessionEndsAtTheNextRequest(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                let admin = try await Self.signIn(client, token: f.adminToken)
                let second = try await Self.signIn(client, token: f.adminToken)
                #expect(admin.cookie != second.cookie && admin.csrf != second.csrf)
                func status(_ uri: String, _ cookie: String) async throws -> HTTPResponse.Status {
                    try await client.execute(uri: uri, method: .get, headers: [.cookie: cookie]) { $0.status }
                }
                #expect(try await status("/flags", admin.cookie) == .ok)
                // Demoted: a new viewer token for the same name ends the admin's sessions; the viewer token's own
                // session cannot reveal.
                let viewerToken = Tokens.generate(.operator)
                try await f.store.putOperatorToken(
                    name: "alice", role: .viewer, tokenHash: Tokens.hash(viewerToken), at: Date())
                #expect(try await status("/flags", admin.cookie) == .seeOther)
                let viewer = try await Self.signIn(client, token: viewerToken)
                #expect(try await status("/units/GW-000100?reveal=true", viewer.cookie) == .forbidden)
                // Revoked: the session is gone (redirected to sign in), and so is the API token.
                #expect(try await f.store.revokeOperator(name: "alice", by: "test", at: Date()))
                #expect(try await status("/flags", viewer.cookie) == .seeOther)
                let api = try await client.execute(
                    uri: "/v1/flags", method: .get, headers: [.authorization: "Bearer \(f.adminToken)"]
                ) { $0.status }
                #expect(api == .unauthorized || api == .forbidden)
                // Added again (the documented answer to a leaked token): no old cookie comes back to life.
                try await f.store.putOperatorToken(
                    name: "alice", role: .admin, tokenHash: Tokens.hash(Tokens.generate(.operator)), at: Date())
                for cookie in [admin.cookie, second.cookie, viewer.cookie] {
                    #expect(try await status("/flags", cookie) == .seeOther)
                }
            }
        }
    }

    /// Issue 19 row 4: sign-out ends the session on the server; replaying its cookie signs nobody in.
    @Test(arguments: StoreBackend.available)
    func signOutEndsTheSessionForGood(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                let admin = try await Self.signIn(client, token: f.adminToken)
                let other = try await Self.signIn(client, token: f.adminToken)
                let out = try await client.execute(
                    uri: "/signout", method: .post,
                    headers: [.contentType: "application/x-www-form-urlencoded", .cookie: admin.cookie],
                    body: Self.form(["csrf": admin.csrf])
                ) { $0.status }
                #expect(out == .seeOther)
                let replay = try await client.execute(uri: "/flags", method: .get, headers: [.cookie: admin.cookie]) {
                    $0.status
                }
                #expect(replay == .seeOther)
                let kept = try await client.execute(uri: "/flags", method: .get, headers: [.cookie: other.cookie]) {
                    $0.status
                }
                #expect(kept == .ok, "another session of the same operator stays")
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func adminMarksLostThroughThePagesOnlyWithCSRF(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                let admin = try await Self.signIn(client, token: f.adminToken)
                let viewer = try await Self.signIn(client, token: f.viewerToken)
                // Search by IMEI, masked.
                let results = try await client.execute(
                    uri: "/?q=\(RegistryFixture.imeiA)", method: .get, headers: [.cookie: viewer.cookie]
                ) { String(buffer: $0.body) }
                #expect(results.contains("href=\"/units/GW-000100\""))
                #expect(identifierDigitRuns(results.replacingOccurrences(of: RegistryFixture.imeiA, with: "")).isEmpty)
                // The viewer's unit page has no lost button; the admin's has.
                let viewerPage = try await client.execute(
                    uri: "/units/GW-000100", method: .get, headers: [.cookie: viewer.cookie]
                ) { String(buffer: $0.body) }
                #expect(viewerPage.contains("class=\"timeline-entry\""))
                #expect(!viewerPage.contains("id=\"mark-lost\""))
                #expect(identifierDigitRuns(viewerPage).isEmpty)
                let adminPage = try await client.execute(
                    uri: "/units/GW-000100", method: .get, headers: [.cookie: admin.cookie]
                ) { String(buffer: $0.body) }
                #expect(adminPage.contains("id=\"mark-lost\""))
                let headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded", .cookie: admin.cookie]
                // No CSRF token, a wrong one, the viewer's with the admin's cookie: refused, nothing changes.
                for token in ["", "AAAA", viewer.csrf] {
                    let status = try await client.execute(
                        uri: "/units/GW-000100/lost", method: .post, headers: headers, body: Self.form(["csrf": token])
                    ) { $0.status }
                    #expect(status == .forbidden)
                }
                #expect(try await f.store.unit(serial: RegistryFixture.serial)?.lost == nil)
                // The viewer, with its own valid CSRF token: 403 (role).
                let viewerStatus = try await client.execute(
                    uri: "/units/GW-000100/lost", method: .post,
                    headers: [.contentType: "application/x-www-form-urlencoded", .cookie: viewer.cookie],
                    body: Self.form(["csrf": viewer.csrf])
                ) { $0.status }
                #expect(viewerStatus == .forbidden)
                // The admin with the right token: done.
                let status = try await client.execute(
                    uri: "/units/GW-000100/lost", method: .post, headers: headers,
                    body: Self.form(["csrf": admin.csrf, "note": "left in a taxi"])
                ) { $0.status }
                #expect(status == .seeOther)
                #expect(try await f.store.unit(serial: RegistryFixture.serial)?.lost?.markedBy == "alice")
                // Its next report is refused and raises the flag the flags page shows.
                let later = RegistryFixture.event(type: "sim_removed", sequence: 2, severity: "warning")
                #expect(try await client.post(later, token: f.deviceToken) == .forbidden)
                let flagsPage = try await client.execute(uri: "/flags", method: .get, headers: [.cookie: admin.cookie]) {
                    String(buffer: $0.body)
                }
                #expect(flagsPage.contains("class=\"flag\" data-kind=\"lost_unit_seen\""))
                // Found through the page: the new token is shown once.
                let found = try await client.execute(
                    uri: "/units/GW-000100/found", method: .post, headers: headers,
                    body: Self.form(["csrf": admin.csrf])
                ) { String(buffer: $0.body) }
                #expect(found.contains("id=\"new-token\">cpd_"))
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func reconciliationAndResolveThroughThePages(_ backend: StoreBackend) async throws {
        let hook: ReconcileHook = { csv, _ in
            // A stand-in engine (the real one is tested by ReconciliationTests and the API test): one finding per
            // data row, so the page's report and flags can be checked.
            let rows = String(decoding: csv, as: UTF8.self).split(separator: "\n").dropFirst()
            return ReconcileResult(
                flags: rows.enumerated().map { i, _ in
                    NewFlag(
                        kind: .simActiveUnassigned, severity: .warning, serial: nil, summary: "row \(i + 1)",
                        evidence: FlagEvidence(), dedupeKey: "test:\(i)")
                }, summary: [("rows read", "\(rows.count)")])
        }
        try await RegistryFixture.with(backend, options: RegistryHTTPOptions(reconcile: hook)) { f in
            try await f.test { client in
                let admin = try await Self.signIn(client, token: f.adminToken)
                let headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded", .cookie: admin.cookie]
                let page = try await client.execute(
                    uri: "/reconcile", method: .post, headers: headers,
                    body: Self.form(["csrf": admin.csrf, "csv": "ICCID\na\nb\n"])
                ) { String(buffer: $0.body) }
                #expect(page.contains("<th>rows read</th><td>2</td>"))
                #expect(page.contains("Flags raised (2)"))
                // Without CSRF: refused, nothing raised.
                let refused = try await client.execute(
                    uri: "/reconcile", method: .post, headers: headers, body: Self.form(["csv": "ICCID\nc\n"])
                ) { $0.status }
                #expect(refused == .forbidden)
                let flags = try await f.store.flags(openOnly: true, limit: 10)
                #expect(flags.count == 2)
                // Resolve one from the flags page's form.
                let resolved = try await client.execute(
                    uri: "/flags/\(flags[0].id)/resolve", method: .post, headers: headers,
                    body: Self.form(["csrf": admin.csrf, "note": "spare SIM, in the drawer"])
                ) { $0.status }
                #expect(resolved == .seeOther)
                #expect(try await f.store.flags(openOnly: true, limit: 10).count == 1)
                #expect(try await f.store.flag(id: flags[0].id)?.resolutionNote == "spare SIM, in the drawer")
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func pagesEscapeWhatDevicesSend(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            let serial = "<script>alert(1)</script>"
            let token = Tokens.generate(.device)
            try await f.store.putDeviceToken(serial: serial, tokenHash: Tokens.hash(token), at: Date())
            try await f.test { client in
                let event = RegistryFixture.event(serial: serial, imei: RegistryFixture.imeiB, iccid: RegistryFixture.iccid2)
                #expect(try await client.post(event, token: token) == .created)
                let admin = try await Self.signIn(client, token: f.adminToken)
                let page = try await client.execute(
                    uri: "/units/%3Cscript%3Ealert(1)%3C%2Fscript%3E", method: .get, headers: [.cookie: admin.cookie]
                ) { String(buffer: $0.body) }
                #expect(!page.contains("<script>"))
                #expect(page.contains("&lt;script&gt;"))
            }
        }
    }
}
