import CellprovCore
import CellprovRegistryCore
import Foundation
import Hummingbird

/// The affected-units question (issue 20, docs/registry-api.yaml `GET /v1/affected`): the units carrying a module of
/// a manufacturer, model or firmware revision (exact or by prefix) or of a TAC, seen since a moment
/// (``ModuleFilter``), as JSON, as CSV (``CSV``, the unit export's neutralised fields) and as the `/affected` page.
/// One row per matching field slot; identifiers masked unless an admin reveals them (audited, one entry per unit).
enum AffectedUnits {
    static let defaultLimit = 100
    /// A page of at most this many units (the advisory's list for the carrier or the field team, in one CSV).
    static let maxLimit = 10_000
    /// Paging goes no further than this (a fleet is up to 1 M units).
    static let maxOffset = 10_000_000

    /// Every value of a query parameter as a form sends it (``OperatorAPI/formQueryValue(_:_:)``: `+` is a blank).
    static func formQueryValues(_ request: Request, _ name: String) -> [String] {
        guard let query = request.uri.query else { return [] }
        var out: [String] = []
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts[0] == name else { continue }
            let raw = parts.count > 1 ? String(parts[1]) : ""
            let spaced = raw.replacingOccurrences(of: "+", with: " ")
            out.append(spaced.removingPercentEncoding ?? spaced)
        }
        return out
    }

    /// The filter of a request, or a 400 naming the parameter at fault.
    static func filter(_ request: Request) -> Result<ModuleFilter, OperatorAPI.Refusal> {
        ModuleFilter.parse { formQueryValues(request, $0) }.mapError {
            OperatorAPI.Refusal(jsonError(.badRequest, $0.description))
        }
    }

    /// One page: the units (the store's order, serial), each with only its matching slots, and the offset of the
    /// next page when there is one.
    struct Page {
        var units: [UnitSummary]
        var nextOffset: Int?
    }

    static func page(_ store: any RegistryStore, _ filter: ModuleFilter, limit: Int, offset: Int) async throws -> Page {
        let found = try await store.affectedUnits(filter, limit: limit + 1, offset: offset)
        let units = found.prefix(limit).map { u -> UnitSummary in
            var v = u
            v.slots = filter.matchingSlots(u)
            return v
        }
        return Page(units: Array(units), nextOffset: found.count > limit ? offset + limit : nil)
    }

    static let csvHeader = "serial,slot,manufacturer,model,revision,imei,imsi,iccid,eid,last_seen,lost\r\n"

    /// The CSV: one row per matching slot, every field through ``CSV/field(_:)`` (a model starting with `=` is no
    /// formula in a spreadsheet), identifiers masked unless `reveal`.
    static func csv(_ units: [UnitSummary], reveal: Bool) -> String {
        var out = csvHeader
        for u in units {
            for s in u.slots {
                let v = SlotView(s, reveal: reveal)
                out += [
                    u.serial, v.slot, v.manufacturer ?? "", v.model ?? "", v.revision ?? "", v.imei ?? "", v.imsi ?? "",
                    v.iccid ?? "", v.eid ?? "", RFC3339.string(u.lastSeen) ?? "", u.lost ? "true" : "false",
                ].map(CSV.field).joined(separator: ",") + "\r\n"
            }
        }
        return out
    }

    static func csvResponse(_ units: [UnitSummary], reveal: Bool) -> Response {
        var response = text(.ok, csv(units, reveal: reveal), contentType: "text/csv; charset=utf-8")
        response.headers[.contentDisposition] = "attachment; filename=\"affected-units.csv\""
        return response
    }

    /// The filter, limit and offset as a query string for links (`?` included), each value percent-encoded.
    static func query(_ filter: ModuleFilter, limit: Int? = nil, offset: Int? = nil, extra: [(String, String)] = [])
        -> String
    {
        var items = filter.queryItems.map { ($0.name, $0.value) }
        if let limit { items.append(("limit", "\(limit)")) }
        if let offset, offset > 0 { items.append(("offset", "\(offset)")) }
        items += extra
        return "?" + items.map { "\($0.0)=\(Pages.pathComponent($0.1))" }.joined(separator: "&")
    }

    struct Body: Codable {
        var units: [UnitSummaryView]
        var limit: Int
        var offset: Int
        /// The offset of the next page, absent on the last.
        var nextOffset: Int?

        enum CodingKeys: String, CodingKey {
            case units, limit, offset
            case nextOffset = "next_offset"
        }
    }
}

extension QueryParameter {
    /// `offset`: absent (0) or a whole number from 0 to `max`.
    static func offset(_ request: Request, max: Int) -> Result<Int, Refusal> {
        let values = request.uri.queryParameters[values: "offset"]
        guard let value = values.first else { return .success(0) }
        guard values.count == 1, value.utf8.count <= 9, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let n = Int(value), (0...max).contains(n)
        else {
            return .failure(Refusal(jsonError(.badRequest, "offset: must be a whole number from 0 to \(max)")))
        }
        return .success(n)
    }

    /// `format`: absent or `json` (false), `csv` (true).
    static func csvFormat(_ request: Request) -> Result<Bool, Refusal> {
        let values = request.uri.queryParameters[values: "format"]
        guard let value = values.first else { return .success(false) }
        guard values.count == 1, value == "json" || value == "csv" else {
            return .failure(Refusal(jsonError(.badRequest, "format: must be json or csv")))
        }
        return .success(value == "csv")
    }
}

extension OperatorAPI {
    /// `GET /v1/affected`: viewers and admins; `reveal=true` admins only, audited per unit.
    func affected(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let who: OperatorIdentity
        let reveal: Bool
        switch await authenticateReading(request) {
        case .failure(let r): return r.response
        case .success(let (w, v)): (who, reveal) = (w, v)
        }
        let filter: ModuleFilter
        let limit: Int
        let offset: Int
        let csv: Bool
        switch AffectedUnits.filter(request) {
        case .failure(let r): return r.response
        case .success(let f): filter = f
        }
        switch QueryParameter.limit(request, fallback: AffectedUnits.defaultLimit, max: AffectedUnits.maxLimit) {
        case .failure(let r): return r.response
        case .success(let n): limit = n
        }
        switch QueryParameter.offset(request, max: AffectedUnits.maxOffset) {
        case .failure(let r): return r.response
        case .success(let n): offset = n
        }
        switch QueryParameter.csvFormat(request) {
        case .failure(let r): return r.response
        case .success(let c): csv = c
        }
        do {
            let page = try await AffectedUnits.page(state.store, filter, limit: limit, offset: offset)
            if reveal {
                try await Self.auditReveal(
                    state, who: who, serials: page.units.map(\.serial), what: "affected units", remote: context.remote)
            }
            if csv { return AffectedUnits.csvResponse(page.units, reveal: reveal) }
            return json(
                .ok,
                AffectedUnits.Body(
                    units: page.units.map { UnitSummaryView($0, reveal: reveal) }, limit: limit, offset: offset,
                    nextOffset: page.nextOffset))
        } catch {
            return state.storeFailure(error, "affected units")
        }
    }
}

extension Pages {
    /// `GET /affected`: the form, and with a filter the matching units (masked; an admin's `reveal=true` shows the
    /// identifiers and is audited), a link to the same list as CSV and to the next page.
    func affectedPage(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        guard let signed = await session(request) else { return redirect("/") }
        let reveal = OperatorAPI.wantsReveal(request)
        if reveal && !signed.who.isAdmin {
            return message("Forbidden", "Only admins may reveal identifiers.", signed: signed, status: .forbidden)
        }
        var values: [String: Any] = [:]
        for name in ModuleFilter.parameters {
            values[name] = String((AffectedUnits.formQueryValues(request, name).first ?? "").prefix(100))
        }
        let given = ModuleFilter.parameters.contains { !AffectedUnits.formQueryValues(request, $0).isEmpty }
        guard given else { return page("affected", title: "Affected units", values, signed: signed) }
        let filter: ModuleFilter
        switch ModuleFilter.parse({ AffectedUnits.formQueryValues(request, $0) }) {
        case .failure(let e):
            values["error"] = e.description
            return page("affected", title: "Affected units", values, signed: signed, status: .badRequest)
        case .success(let f): filter = f
        }
        let offset: Int
        switch QueryParameter.offset(request, max: AffectedUnits.maxOffset) {
        case .failure:
            values["error"] = "offset: must be a whole number"
            return page("affected", title: "Affected units", values, signed: signed, status: .badRequest)
        case .success(let n): offset = n
        }
        let limit = AffectedUnits.defaultLimit
        do {
            let found = try await AffectedUnits.page(state.store, filter, limit: limit, offset: offset)
            if reveal {
                try await OperatorAPI.auditReveal(
                    state, who: signed.who, serials: found.units.map(\.serial), what: "affected units page",
                    remote: context.remote)
            }
            values["searched"] = true
            values["revealed"] = reveal
            values["count"] = found.units.count
            values["from"] = offset + 1
            values["hasUnits"] = !found.units.isEmpty
            values["rows"] = found.units.flatMap { u in
                u.slots.map { s -> [String: Any] in
                    let v = SlotView(s, reveal: reveal)
                    return [
                        "serial": u.serial, "serialPath": Self.pathComponent(u.serial), "slot": v.slot,
                        "manufacturer": v.manufacturer ?? "", "model": v.model ?? "", "revision": v.revision ?? "",
                        "imei": v.imei ?? "-", "imsi": v.imsi ?? "-", "iccid": v.iccid ?? "-",
                        "lastSeen": RFC3339.string(u.lastSeen) ?? "-", "lost": u.lost,
                    ]
                }
            }
            let revealQuery: [(String, String)] = reveal ? [("reveal", "true")] : []
            values["csvQuery"] = AffectedUnits.query(
                filter, limit: AffectedUnits.maxLimit, offset: offset, extra: revealQuery)
            values["revealQuery"] = AffectedUnits.query(filter, offset: offset, extra: [("reveal", "true")])
            if let next = found.nextOffset {
                values["nextQuery"] = AffectedUnits.query(filter, offset: next, extra: revealQuery)
            }
            return page("affected", title: "Affected units", values, signed: signed)
        } catch {
            return state.storeFailure(error, "affected units page")
        }
    }

    /// `GET /affected.csv`: the page's list as CSV for a signed-in operator (the API's needs a bearer token).
    func affectedCSV(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        guard let signed = await session(request) else { return redirect("/") }
        let reveal = OperatorAPI.wantsReveal(request)
        if reveal && !signed.who.isAdmin {
            return message("Forbidden", "Only admins may reveal identifiers.", signed: signed, status: .forbidden)
        }
        let filter: ModuleFilter
        switch ModuleFilter.parse({ AffectedUnits.formQueryValues(request, $0) }) {
        case .failure(let e):
            return message("Bad request", e.description, back: "/affected", signed: signed, status: .badRequest)
        case .success(let f): filter = f
        }
        guard case .success(let limit) = QueryParameter.limit(
                request, fallback: AffectedUnits.defaultLimit, max: AffectedUnits.maxLimit),
            case .success(let offset) = QueryParameter.offset(request, max: AffectedUnits.maxOffset)
        else {
            return message(
                "Bad request", "limit and offset must be whole numbers", back: "/affected", signed: signed,
                status: .badRequest)
        }
        do {
            let found = try await AffectedUnits.page(state.store, filter, limit: limit, offset: offset)
            if reveal {
                try await OperatorAPI.auditReveal(
                    state, who: signed.who, serials: found.units.map(\.serial), what: "affected units CSV",
                    remote: context.remote)
            }
            return AffectedUnits.csvResponse(found.units, reveal: reveal)
        } catch {
            return state.storeFailure(error, "affected units CSV")
        }
    }
}
