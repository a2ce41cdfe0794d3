import CellprovRegistryCore
import Foundation
import Hummingbird
import NIOCore

// The edges of the HTTP API (docs/registry-api.yaml, "Errors"): a wrong method on a known path is a 405 with `Allow`,
// query parameters are checked (a value the API does not know is a 400 naming the parameter, never silently
// ignored), and `reveal` has one spelling.

/// The routes as the router holds them (Hummingbird's `Router.routes`, read once every route group has registered):
/// which methods a path answers to, for the 405's `Allow`. Made by ``RegistryHTTP/makeRouter`` from the router
/// itself, so the table is never a copy to keep in step with the route groups.
struct RouteTable: Sendable {
    private struct Route: Sendable {
        var path: RouterPath
        var method: HTTPRequest.Method
    }

    private let routes: [Route]

    /// Every route of `router` (made after the last route group registered).
    init(_ router: Router<RegistryRequestContext>) {
        routes = router.routes.map { Route(path: $0.path, method: $0.method) }
    }

    /// The methods `path` (a request's path, percent-encoded as received) answers to, sorted; empty for an unknown
    /// path.
    func methods(path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var methods = Set<String>()
        for route in routes where Self.matches(route.path, segments) {
            methods.insert(route.method.rawValue)
        }
        return methods.sorted().compactMap { HTTPRequest.Method($0) }
    }

    private static func matches(_ path: RouterPath, _ segments: [Substring]) -> Bool {
        var i = 0
        for element in path.components {
            if element.description == "**" { return true }
            guard i < segments.count, element ~= segments[i] else { return false }
            i += 1
        }
        return i == segments.count
    }
}

/// Answers what no route matched: 405 with `Allow` and the JSON error body when the path is a route's with other
/// methods, the router's 404 otherwise. Added to the router after every route, so it wraps only its not-found
/// responder (Hummingbird applies a middleware to the routes added after it, and every middleware to not-found).
struct MethodNotAllowedMiddleware: RouterMiddleware {
    typealias Context = RegistryRequestContext
    let table: RouteTable

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = table.methods(path: request.uri.path)
            guard !allowed.isEmpty, !allowed.contains(request.method) else { throw error }
            var response = jsonError(.methodNotAllowed, "method not allowed")
            response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
            return response
        }
    }
}

/// The operator API's query parameters, checked: a value the API does not take is a 400 naming the parameter.
enum QueryParameter {
    /// `reveal`: absent (masked) or exactly `true` (the digits, admins only); any other value or spelling
    /// (`on`, `1`, `True`, empty) is a 400 for every role, before the role is looked at.
    static func reveal(_ request: Request) -> Result<Bool, Refusal> {
        let values = request.uri.queryParameters[values: "reveal"]
        guard let value = values.first else { return .success(false) }
        guard values.count == 1, value == "true" else {
            return .failure(Refusal(jsonError(.badRequest, "reveal: the only value is true")))
        }
        return .success(true)
    }

    /// `limit`: absent (`fallback`) or a whole number from 1 to `max`.
    static func limit(_ request: Request, fallback: Int, max: Int) -> Result<Int, Refusal> {
        let values = request.uri.queryParameters[values: "limit"]
        guard let value = values.first else { return .success(fallback) }
        guard values.count == 1, value.utf8.count <= 9, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let n = Int(value), (1...max).contains(n)
        else {
            return .failure(Refusal(jsonError(.badRequest, "limit: must be a whole number from 1 to \(max)")))
        }
        return .success(n)
    }

    /// `at`: absent (now) or one RFC 3339 time (`2026-11-03T14:22:00Z`, an offset or a fraction allowed: the
    /// forms an event's `occurred_at` may take, ``IngestTime``).
    static func at(_ request: Request) -> Result<Date?, Refusal> {
        let values = request.uri.queryParameters[values: "at"]
        guard let value = values.first else { return .success(nil) }
        return at(values.count == 1 ? String(value) : nil)
    }

    /// An `at` value as given (nil: given more than once); an empty one is absent (an empty form field).
    static func at(_ value: String?) -> Result<Date?, Refusal> {
        if let value, value.trimmingCharacters(in: .whitespaces).isEmpty { return .success(nil) }
        guard let value, value.utf8.count <= 64,
            let date = IngestTime.parse(value.trimmingCharacters(in: .whitespaces))
        else {
            return .failure(
                Refusal(jsonError(.badRequest, "at: must be one RFC 3339 time, such as 2026-11-03T14:22:00Z")))
        }
        return .success(date)
    }

    typealias Refusal = OperatorAPI.Refusal
}
