import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryHTTP
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// Issue 19 row 9, the API's edges: a wrong method on a known path is a 405 with `Allow` and the JSON error body;
/// query parameters the API does not take are a 400 naming them; `reveal` has one spelling for every role; a token
/// past the bound is malformed.
extension HTTPOperatorTests {
    /// Status, `Allow`, body.
    static func answer(
        _ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, token: String?
    ) async throws -> (HTTPResponse.Status, String?, String) {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await client.execute(uri: uri, method: method, headers: headers, body: nil) {
            ($0.status, $0.headers[.allow], String(buffer: $0.body))
        }
    }

    @Test(arguments: StoreBackend.available)
    func aWrongMethodIs405WithAllow(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                for (method, uri, allow) in [
                    (HTTPRequest.Method.delete, "/v1/units/GW-000100", "GET"),
                    (.get, "/v1/units/GW-000100/lost", "POST"),
                    (.put, "/v1/enrollments", "POST"),
                    (.get, "/v1/enrollments", "POST"),
                    (.post, "/v1/units", "GET"),
                    (.post, "/healthz", "GET"),
                    (.delete, "/v1/flags/7/resolve", "POST"),
                    (.put, "/reconcile", "GET, POST"),
                ] {
                    let (status, allowed, body) = try await Self.answer(client, method, uri, token: f.adminToken)
                    #expect(status == .methodNotAllowed, "\(method) \(uri)")
                    #expect(allowed == allow, "\(method) \(uri)")
                    #expect(body == #"{"error":"method not allowed"}"#, "\(method) \(uri)")
                }
                // Still 404 for a path no route has; the right method still reaches its route.
                #expect(try await Self.answer(client, .get, "/v1/nothing", token: f.adminToken).0 == .notFound)
                #expect(try await Self.answer(client, .delete, "/v1/units/a/b/c", token: f.adminToken).0 == .notFound)
                #expect(try await Self.answer(client, .get, "/healthz", token: nil).0 == .ok)
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func invalidQueryParametersAre400NamingThem(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                for (uri, parameter) in [
                    ("/v1/audit?limit=abc", "limit"), ("/v1/audit?limit=0", "limit"), ("/v1/audit?limit=10001", "limit"),
                    ("/v1/audit?limit=-5", "limit"), ("/v1/audit?limit=", "limit"),
                    ("/v1/flags?status=bogus", "status"), ("/v1/flags?status=ALL", "status"),
                ] {
                    let (status, body) = try await client.call(.get, uri, token: f.adminToken)
                    #expect(status == .badRequest, "\(uri)")
                    #expect(body.hasPrefix("{\"error\":\"\(parameter): "), "\(uri): \(body)")
                }
                for uri in ["/v1/audit?limit=5", "/v1/audit", "/v1/flags?status=all", "/v1/flags?status=open"] {
                    #expect(try await client.call(.get, uri, token: f.adminToken).0 == .ok, "\(uri)")
                }
                // Without a token it is still 401 first.
                #expect(try await client.call(.get, "/v1/audit?limit=abc", token: nil).0 == .unauthorized)
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func revealHasOneSpellingForEveryRole(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                #expect(try await client.post(RegistryFixture.event(), token: f.deviceToken) == .created)
                for base in ["/v1/units/GW-000100?", "/v1/units?q=GW-000100&", "/v1/flags?"] {
                    for spelling in ["on", "1", "yes", "True", "false", "", "true&reveal=true"] {
                        for token in [f.viewerToken, f.adminToken] {
                            let uri = base + "reveal=" + spelling
                            let (status, body) = try await client.call(.get, uri, token: token)
                            #expect(status == .badRequest, "\(uri)")
                            #expect(body == #"{"error":"reveal: the only value is true"}"#, "\(uri)")
                        }
                    }
                    #expect(try await client.call(.get, base + "reveal=true", token: f.viewerToken).0 == .forbidden)
                    #expect(try await client.call(.get, base + "reveal=true", token: f.adminToken).0 == .ok)
                }
            }
            // The admin's reveals of the unit (by serial and by search) are audited.
            #expect(try await f.store.audit(limit: 100).filter { $0.action == "reveal" }.count >= 2)
        }
    }

    @Test(arguments: StoreBackend.available)
    func aTokenPastTheBoundIsMalformed(_ backend: StoreBackend) async throws {
        try await RegistryFixture.with(backend) { f in
            try await f.test { client in
                let token = String(repeating: "x", count: 600)
                for uri in ["/v1/units?q=GW-000100", "/v1/audit", "/v1/flags"] {
                    let (status, body) = try await client.call(.get, uri, token: token)
                    #expect(status == .unauthorized)
                    #expect(body == #"{"error":"malformed token"}"#, "\(uri)")
                }
                #expect(
                    try await client.call(.get, "/v1/audit", token: nil).1 == #"{"error":"missing bearer token"}"#)
                #expect(RegistryTokens.credential("Bearer " + token) == .malformed)
                #expect(RegistryTokens.credential("bearer abc") == .token("abc"))
                #expect(RegistryTokens.credential("Basic " + token) == .missing)
                #expect(RegistryTokens.credential(nil) == .missing)
                #expect(RegistryTokens.credential("Bearer ") == .missing)
            }
        }
    }
}
