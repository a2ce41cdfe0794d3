import CellprovCore
import CellprovRegistryCore
import Foundation
import Hummingbird

// The pages of the registry's lists (docs/registry.md, "Pages of a list"), shared by the API and the pages: the
// parameters read and checked (a value the list does not take is a 400 naming the parameter), one page fetched
// (one row more than shown, to know whether there is a next), and the links to the neighbours.

/// A list parameter the request got wrong: the message names it.
struct ListParameterError: Error {
    var message: String
}

enum ListParameters {
    typealias Failure = ListParameterError

    /// The one value of `name`; nil when absent or empty (an empty form field, as a form's "any" choice sends).
    static func single(_ request: Request, _ name: String) -> Result<String?, Failure> {
        let values = request.uri.queryParameters[values: Substring(name)]
        guard let value = values.first else { return .success(nil) }
        guard values.count == 1 else { return .failure(Failure(message: "\(name): give it once")) }
        return .success(value.isEmpty ? nil : String(value))
    }

    /// A whole number of at most 9 digits within `range`; `fallback` when absent.
    static func number(_ request: Request, _ name: String, fallback: Int, range: ClosedRange<Int>) -> Result<Int, Failure> {
        let failure = Failure(message: "\(name): must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        switch single(request, name) {
        case .failure(let f): return .failure(f)
        case .success(nil): return .success(fallback)
        case .success(let value?):
            guard value.utf8.count <= 9, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(value),
                range.contains(n)
            else { return .failure(failure) }
            return .success(n)
        }
    }

    /// `limit` of a flags or timeline page.
    static func limit(_ request: Request) -> Result<Int, Failure> {
        number(request, "limit", fallback: PageKeys.defaultLimit, range: 1...PageKeys.maxLimit)
    }

    /// `before` or `after` (not both), each read by `parse`.
    static func cursor<Key>(_ request: Request, what: String, _ parse: (String) -> Key?) -> Result<PageCursor<Key>?, Failure> {
        let before: String?
        let after: String?
        switch (single(request, "before"), single(request, "after")) {
        case (.failure(let f), _), (_, .failure(let f)): return .failure(f)
        case (.success(let b), .success(let a)): (before, after) = (b, a)
        }
        if before != nil && after != nil { return .failure(Failure(message: "before, after: give one of them")) }
        if let before {
            guard let k = parse(before) else { return .failure(Failure(message: "before: must be \(what)")) }
            return .success(.before(k))
        }
        if let after {
            guard let k = parse(after) else { return .failure(Failure(message: "after: must be \(what)")) }
            return .success(.after(k))
        }
        return .success(nil)
    }

    /// The flags list's filters and page: `kind`, `severity`, `status` (`open`, `resolved`, `all`), `before`,
    /// `after` (a flag id from a previous answer), `limit`.
    static func flags(_ request: Request) -> Result<(FlagQuery, Int), Failure> {
        do throws(ListParameterError) {
            var q = FlagQuery()
            if let kind = try single(request, "kind").get() {
                guard let k = FlagKind(rawValue: kind) else {
                    return .failure(Failure(message: "kind: not a flag kind (docs/registry.md lists them)"))
                }
                q.kind = k
            }
            if let severity = try single(request, "severity").get() {
                guard let s = EventSeverity(rawValue: severity) else {
                    return .failure(Failure(message: "severity: must be info, notice, warning or critical"))
                }
                q.severity = s
            }
            if let status = try single(request, "status").get() {
                guard let s = FlagQuery.Status(rawValue: status) else {
                    return .failure(Failure(message: "status: must be open, resolved or all"))
                }
                q.status = s
            }
            q.cursor = try cursor(request, what: "a flag id from a previous page", PageKeys.flagID).get()
            return .success((q, try limit(request).get()))
        } catch {
            return .failure(error)
        }
    }

    /// A timeline's page: `before`, `after` (a cursor from a previous answer), `limit`.
    static func timeline(_ request: Request) -> Result<(PageCursor<TimelineKey>?, Int), Failure> {
        do throws(ListParameterError) {
            let c = try cursor(request, what: "a timeline cursor from a previous page", TimelineKey.init(text:)).get()
            return .success((c, try limit(request).get()))
        } catch {
            return .failure(error)
        }
    }

    /// A page of search results: `limit` (at most ``PageKeys/searchMaxLimit``) and `offset` (below
    /// ``PageKeys/searchMaxDepth``: the page ends there).
    static func search(_ request: Request) -> Result<(limit: Int, offset: Int), Failure> {
        do throws(ListParameterError) {
            let limit = try number(
                request, "limit", fallback: PageKeys.searchDefaultLimit, range: 1...PageKeys.searchMaxLimit
            ).get()
            let offset = try number(request, "offset", fallback: 0, range: 0...(PageKeys.searchMaxDepth - 1)).get()
            return .success((limit, offset))
        } catch {
            return .failure(error)
        }
    }

    /// A query string (`?` included, empty for none) from name-value pairs, values percent-encoded.
    static func query(_ items: [(String, String)]) -> String {
        let parts = items.map { "\($0.0)=\(Pages.pathComponent($0.1))" }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    /// The flags query's filters as pairs (not its cursor), for links.
    static func filterItems(_ q: FlagQuery) -> [(String, String)] {
        var items: [(String, String)] = []
        if let kind = q.kind { items.append(("kind", kind.rawValue)) }
        if let severity = q.severity { items.append(("severity", severity.rawValue)) }
        if q.status != .open { items.append(("status", q.status.rawValue)) }
        return items
    }

    static func cursorItem<Key>(_ c: PageCursor<Key>?, _ text: (Key) -> String) -> [(String, String)] {
        switch c {
        case .before(let k)?: return [("before", text(k))]
        case .after(let k)?: return [("after", text(k))]
        case nil: return []
        }
    }
}

/// One page of flags: the flags and the ids that start its neighbours.
enum FlagPages {
    static func page(_ store: any RegistryStore, _ q: FlagQuery, limit: Int) async throws
        -> KeysetPage<RegistryFlag, Int64>
    {
        let fetched = try await store.flags(q, limit: limit + 1)
        return KeysetPage(fetched: fetched, limit: limit, cursor: q.cursor, key: \.id)
    }
}

/// One page of a unit's timeline. With `at` (the unit as of a moment), only the events up to `at`: the first page
/// starts there, and a page going back towards it stops there.
enum TimelinePages {
    static func page(
        _ store: any RegistryStore, serial: String, cursor: PageCursor<TimelineKey>?, limit: Int, at: Date? = nil
    ) async throws -> KeysetPage<TimelineRow, TimelineKey> {
        guard let at else {
            let fetched = try await store.timeline(serial: serial, cursor: cursor, limit: limit + 1)
            return KeysetPage(fetched: fetched, limit: limit, cursor: cursor, key: \.key)
        }
        let end = TimelineKey(occurredAtMs: Int64((at.timeIntervalSince1970 * 1000).rounded(.down)), rowID: .max)
        let fetched = try await store.timeline(serial: serial, cursor: cursor ?? .before(end), limit: limit + 1)
        let kept = fetched.filter { $0.key < end }
        var page = KeysetPage(fetched: kept, limit: limit, cursor: cursor, key: \.key)
        if kept.count < fetched.count { page.previous = nil }
        return page
    }
}

extension OperatorAPI {
    struct FlagsPageBody: Codable {
        var flags: [FlagView]
        var limit: Int
        /// `before=` this for the next (older) page; absent on the last.
        var nextBefore: String?
        /// `after=` this for the previous (newer) page; absent on the first.
        var previousAfter: String?

        enum CodingKeys: String, CodingKey {
            case flags, limit
            case nextBefore = "next_before"
            case previousAfter = "previous_after"
        }
    }

    struct TimelineBody: Codable {
        var serial: String
        var timeline: [TimelineEntryView]
        var limit: Int
        var nextBefore: String?
        var previousAfter: String?

        enum CodingKeys: String, CodingKey {
            case serial, timeline, limit
            case nextBefore = "next_before"
            case previousAfter = "previous_after"
        }
    }

    static func cursorText<Key>(_ c: PageCursor<Key>?, _ text: (Key) -> String) -> String? {
        switch c {
        case .before(let k)?, .after(let k)?: return text(k)
        case nil: return nil
        }
    }

    /// `GET /v1/units/{serial}/timeline`: a page of the unit's events, newest first (viewers and admins;
    /// `reveal=true` admins only, audited).
    func timeline(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let who: OperatorIdentity
        let reveal: Bool
        switch await authenticateReading(request) {
        case .failure(let r): return r.response
        case .success(let (w, v)): (who, reveal) = (w, v)
        }
        let cursor: PageCursor<TimelineKey>?
        let limit: Int
        switch ListParameters.timeline(request) {
        case .failure(let f): return jsonError(.badRequest, f.message)
        case .success(let (c, l)): (cursor, limit) = (c, l)
        }
        guard let serial = context.parameters.get("serial")?.removingPercentEncoding else {
            return jsonError(.badRequest, "no serial")
        }
        do {
            let page = try await TimelinePages.page(state.store, serial: serial, cursor: cursor, limit: limit)
            if page.rows.isEmpty, try await state.store.unit(serial: serial) == nil {
                return jsonError(.notFound, "no such unit")
            }
            if reveal {
                try await Self.auditReveal(state, who: who, serials: [serial], what: "timeline", remote: context.remote)
            }
            return json(
                .ok,
                TimelineBody(
                    serial: serial, timeline: page.rows.map { TimelineEntryView($0.entry, reveal: reveal) },
                    limit: limit, nextBefore: Self.cursorText(page.next, \.text),
                    previousAfter: Self.cursorText(page.previous, \.text)))
        } catch {
            return state.storeFailure(error, "timeline")
        }
    }
}
