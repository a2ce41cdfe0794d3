import CellprovCore
import CellprovRegistryCore
import Foundation
import Hummingbird
import NIOCore

/// An authenticated operator (API token or page session).
struct OperatorIdentity: Sendable {
    var name: String
    var role: OperatorRole
    var isAdmin: Bool { role == .admin }
}

/// The operator API (docs/registry-api.yaml): `Authorization: Bearer cpo_...`; no or unknown token 401, a viewer
/// on an admin route (or asking `reveal=true`) 403.
struct OperatorAPI {
    let state: RegistryState

    func register(on router: Router<RegistryRequestContext>) {
        router.get("/v1/units") { request, context in await searchUnits(request, context) }
        router.get("/v1/units.csv") { request, context in await exportCSV(request, context) }
        router.get("/v1/units/{serial}") { request, context in await unit(request, context) }
        router.get("/v1/units/{serial}/timeline") { request, context in await timeline(request, context) }
        router.get("/v1/affected") { request, context in await affected(request, context) }
        router.post("/v1/units/{serial}/lost") { request, context in await markLost(request, context) }
        router.post("/v1/units/{serial}/found") { request, context in await markFound(request, context) }
        router.get("/v1/flags") { request, context in await listFlags(request, context) }
        router.post("/v1/flags/{id}/resolve") { request, context in await resolve(request, context) }
        router.post("/v1/carrier-reconciliations") { request, context in await reconcile(request, context) }
        router.get("/v1/audit") { request, context in await audit(request, context) }
    }

    /// The operator behind a bearer token, or the response refusing the request.
    func authenticate(_ request: Request, admin: Bool) async -> Result<OperatorIdentity, Refusal> {
        let token: String
        switch RegistryTokens.credential(request.headers[.authorization]) {
        case .missing: return .failure(Refusal(jsonError(.unauthorized, "missing bearer token")))
        case .malformed: return .failure(Refusal(jsonError(.unauthorized, "malformed token")))
        case .token(let t): token = t
        }
        let record: CredentialRecord?
        do {
            record = try await state.store.credential(tokenHash: Tokens.hash(token))
        } catch {
            return .failure(Refusal(state.storeFailure(error, "credential lookup")))
        }
        guard let record, record.revokedAt == nil, case .operator(let name, let role) = record.principal else {
            return .failure(Refusal(jsonError(.unauthorized, "not an operator token")))
        }
        let who = OperatorIdentity(name: name, role: role)
        if admin && !who.isAdmin {
            return .failure(Refusal(jsonError(.forbidden, "admin role required")))
        }
        return .success(who)
    }

    struct Refusal: Error {
        var response: Response
        init(_ response: Response) { self.response = response }
    }

    /// A query parameter as a form sends it: `+` is a blank, then percent-decoding (Hummingbird's
    /// `queryParameters` decodes percent escapes but keeps `+`, so a `%2B` and a blank would be confused).
    static func formQueryValue(_ request: Request, _ name: String) -> String? {
        guard let query = request.uri.query else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts[0] == name else { continue }
            let raw = parts.count > 1 ? String(parts[1]) : ""
            let spaced = raw.replacingOccurrences(of: "+", with: " ")
            return spaced.removingPercentEncoding ?? spaced
        }
        return nil
    }

    /// `reveal=true`, the one spelling (``QueryParameter/reveal(_:)``): full identifiers, admins only. The pages
    /// read it so; the API refuses any other value with 400.
    static func wantsReveal(_ request: Request) -> Bool {
        (try? QueryParameter.reveal(request).get()) == true
    }

    /// The operator of a reading route and whether it reveals: 401 without an operator token, then 400 for a
    /// `reveal` other than `true` (for every role), then 403 for a viewer's `reveal=true`.
    func authenticateReading(_ request: Request) async -> Result<(OperatorIdentity, Bool), Refusal> {
        let who: OperatorIdentity
        switch await authenticate(request, admin: false) {
        case .failure(let r): return .failure(r)
        case .success(let w): who = w
        }
        switch QueryParameter.reveal(request) {
        case .failure(let r): return .failure(r)
        case .success(let reveal):
            if reveal && !who.isAdmin { return .failure(Refusal(jsonError(.forbidden, "admin role required"))) }
            return .success((who, reveal))
        }
    }

    /// ``authenticateReading(_:)``, then the `at` of a question asked as of a past time (nil: now).
    func authenticateReadingAsOf(_ request: Request) async -> Result<(OperatorIdentity, Bool, Date?), Refusal> {
        switch await authenticateReading(request) {
        case .failure(let r): return .failure(r)
        case .success(let (who, reveal)): return QueryParameter.at(request).map { (who, reveal, $0) }
        }
    }

    /// Appends a `reveal` audit entry per unit whose identifiers were shown in full, and logs it.
    static func auditReveal(
        _ state: RegistryState, who: OperatorIdentity, serials: [String?], what: String, remote: String?
    ) async throws {
        for serial in serials {
            try await state.store.appendAudit(
                AuditEntry(at: Date(), actor: who.name, action: "reveal", serial: serial, remote: remote, detail: what))
        }
        state.logger.notice(
            "identifiers revealed",
            metadata: [
                "MESSAGE_ID": "\(RegistryMessageID.reveal.id)", "operator": "\(who.name)", "what": "\(what)",
                "units": "\(serials.count)",
            ])
    }

    // MARK: Routes

    func searchUnits(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let (who, reveal, at): (OperatorIdentity, Bool, Date?)
        switch await authenticateReadingAsOf(request) {
        case .failure(let r): return r.response
        case .success(let v): (who, reveal, at) = v
        }
        let limit: Int
        let offset: Int
        switch ListParameters.search(request) {
        case .failure(let f): return jsonError(.badRequest, f.message)
        case .success(let p): (limit, offset) = p
        }
        let terms = SearchTerms(parsing: Self.formQueryValue(request, "q") ?? "")
        guard !terms.isEmpty else {
            return json(.ok, UnitsBody(units: [], at: RFC3339.string(at), limit: limit, offset: offset))
        }
        do {
            let (found, next) = try await Self.searchPage(state.store, terms, at: at, limit: limit, offset: offset)
            if reveal {
                try await Self.auditReveal(
                    state, who: who, serials: found.map(\.unit.serial), what: "search", remote: context.remote)
            }
            return json(
                .ok,
                UnitsBody(
                    units: found.map { UnitSummaryView($0.unit, reveal: reveal, held: $0.held) }, at: RFC3339.string(at),
                    limit: limit, offset: offset, nextOffset: next))
        } catch {
            return state.storeFailure(error, "search")
        }
    }

    /// A search's units, the API's and the page's: first the units that held a searched identifier (IMEI, IMSI,
    /// ICCID, EID) with their intervals, current holders first (``RegistryStore/searchHolders(_:at:limit:)``);
    /// then the other units found (by serial, TAC, reference), each once. With `at`, only the units that held the
    /// identifier at that moment, and the unit whose serial was typed.
    static func search(_ store: any RegistryStore, _ terms: SearchTerms, at: Date?, limit: Int) async throws
        -> [(unit: UnitSummary, held: [Holding]?)]
    {
        let holders = try await store.searchHolders(terms, at: at, limit: limit)
        var out: [(unit: UnitSummary, held: [Holding]?)] = holders.map { ($0.unit, $0.holdings) }
        var seen = Set(holders.map(\.unit.serial))
        let others = at == nil ? terms : SearchTerms(serial: terms.serial)
        guard !others.isEmpty, out.count < limit else { return out }
        for unit in try await store.searchUnits(others, limit: limit) where out.count < limit {
            if seen.insert(unit.serial).inserted { out.append((unit, nil)) }
        }
        return out
    }

    /// One page of a search (offset paging: the order, holders current first, has no key): the units from
    /// `offset`, at most `limit`, none past the ``PageKeys/searchMaxDepth``th, and the offset of the next page when
    /// there is one. The search runs to `offset + limit + 1` units at most.
    static func searchPage(
        _ store: any RegistryStore, _ terms: SearchTerms, at: Date?, limit: Int, offset: Int
    ) async throws -> (units: [(unit: UnitSummary, held: [Holding]?)], nextOffset: Int?) {
        let end = min(offset + limit, PageKeys.searchMaxDepth)
        guard end > offset else { return ([], nil) }
        let found = try await search(store, terms, at: at, limit: end + 1)
        let page = Array(found.dropFirst(offset).prefix(end - offset))
        let next = found.count > end && end < PageKeys.searchMaxDepth ? end : nil
        return (page, next)
    }

    func unit(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let (who, reveal, at): (OperatorIdentity, Bool, Date?)
        switch await authenticateReadingAsOf(request) {
        case .failure(let r): return r.response
        case .success(let v): (who, reveal, at) = v
        }
        guard let serial = context.parameters.get("serial")?.removingPercentEncoding else { return jsonError(.badRequest, "no serial") }
        do {
            let found = try await state.store.unit(serial: serial, asOf: at)
            guard let detail = found else {
                return jsonError(.notFound, "no such unit")
            }
            if reveal {
                try await Self.auditReveal(state, who: who, serials: [serial], what: "unit", remote: context.remote)
            }
            return json(.ok, UnitBody(unit: UnitDetailView(detail, reveal: reveal, asOf: at)))
        } catch {
            return state.storeFailure(error, "unit")
        }
    }

    func listFlags(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let who: OperatorIdentity
        let reveal: Bool
        switch await authenticateReading(request) {
        case .failure(let r): return r.response
        case .success(let (w, v)): (who, reveal) = (w, v)
        }
        let query: FlagQuery
        let limit: Int
        switch ListParameters.flags(request) {
        case .failure(let f): return jsonError(.badRequest, f.message)
        case .success(let (q, l)): (query, limit) = (q, l)
        }
        do {
            let page = try await FlagPages.page(state.store, query, limit: limit)
            let flags = page.rows
            if reveal {
                let serials = Array(Set(flags.map(\.flag.serial))).sorted { ($0 ?? "") < ($1 ?? "") }
                try await Self.auditReveal(state, who: who, serials: serials, what: "flags", remote: context.remote)
            }
            return json(
                .ok,
                FlagsPageBody(
                    flags: flags.map { FlagView($0, reveal: reveal) }, limit: limit,
                    nextBefore: Self.cursorText(page.next) { "\($0)" },
                    previousAfter: Self.cursorText(page.previous) { "\($0)" }))
        } catch {
            return state.storeFailure(error, "flags")
        }
    }

    func resolve(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let who: OperatorIdentity
        switch await authenticate(request, admin: true) {
        case .failure(let r): return r.response
        case .success(let w): who = w
        }
        guard let id = context.parameters.get("id", as: Int64.self) else {
            return jsonError(.badRequest, "flag id must be a number")
        }
        guard let note = await Self.decodeNote(request, required: true) else {
            return jsonError(.badRequest, "body must be {\"note\": \"...\"} with a non-empty note of at most 2000 characters")
        }
        return await Actions(state: state).resolve(id: id, note: note, who: who, remote: context.remote).json
    }

    func markLost(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let who: OperatorIdentity
        switch await authenticate(request, admin: true) {
        case .failure(let r): return r.response
        case .success(let w): who = w
        }
        guard let serial = context.parameters.get("serial")?.removingPercentEncoding else { return jsonError(.badRequest, "no serial") }
        let note = await Self.decodeNote(request, required: false)
        return await Actions(state: state).markLost(serial: serial, note: note, who: who, remote: context.remote).json
    }

    func markFound(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let who: OperatorIdentity
        switch await authenticate(request, admin: true) {
        case .failure(let r): return r.response
        case .success(let w): who = w
        }
        guard let serial = context.parameters.get("serial")?.removingPercentEncoding else { return jsonError(.badRequest, "no serial") }
        return await Actions(state: state).markFound(serial: serial, who: who, remote: context.remote).json
    }

    func reconcile(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let who: OperatorIdentity
        switch await authenticate(request, admin: true) {
        case .failure(let r): return r.response
        case .success(let w): who = w
        }
        // The body straight into one array (no ByteBuffer copy beside it), refused with 413 as soon as it is past
        // the reconciliation's limit (or says it will be).
        let limit = RegistryHTTP.maxReconciliationBody
        let tooLarge = jsonError(.contentTooLarge, Actions.tooLargeMessage)
        let announced = request.headers[.contentLength].flatMap { Int($0) }
        if let announced, announced > limit { return tooLarge }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(announced ?? 0, limit))
        do {
            for try await chunk in request.body {
                guard bytes.count + chunk.readableBytes <= limit else { return tooLarge }
                bytes.append(contentsOf: chunk.readableBytesView)
            }
        } catch {
            return jsonError(.badRequest, "the upload was not received whole")
        }
        return await Actions(state: state).reconcile(csv: bytes, who: who, remote: context.remote).json
    }

    func exportCSV(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let who: OperatorIdentity
        switch await authenticate(request, admin: true) {
        case .failure(let r): return r.response
        case .success(let w): who = w
        }
        do {
            let rows = try await state.store.exportUnits()
            try await state.store.appendAudit(
                AuditEntry(
                    at: Date(), actor: who.name, action: "export", remote: context.remote,
                    detail: "units.csv, \(rows.count) rows"))
            // eid and sim_slot last: readers of the columns before them keep working.
            var out = "serial,slot,origin,imei,imsi,iccid,module,first_seen,last_seen,eid,sim_slot\r\n"
            for r in rows {
                out += [
                    r.serial, r.slot, r.origin.rawValue, r.identity.imei ?? "", r.identity.imsi ?? "", r.identity.iccid ?? "",
                    r.module ?? "", RFC3339.string(r.firstSeen) ?? "", RFC3339.string(r.lastSeen) ?? "",
                    r.identity.eid ?? "", r.identity.simSlot.map { "\($0)" } ?? "",
                ].map(CSV.field).joined(separator: ",") + "\r\n"
            }
            var response = text(.ok, out, contentType: "text/csv; charset=utf-8")
            response.headers[.contentDisposition] = "attachment; filename=\"units.csv\""
            return response
        } catch {
            return state.storeFailure(error, "export")
        }
    }

    func audit(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        switch await authenticate(request, admin: true) {
        case .failure(let r): return r.response
        case .success: break
        }
        let limit: Int
        switch QueryParameter.limit(request, fallback: 1000, max: 10_000) {
        case .failure(let r): return r.response
        case .success(let n): limit = n
        }
        do {
            let entries = try await state.store.audit(limit: limit)
            return json(.ok, AuditBody(audit: entries.map(AuditView.init)))
        } catch {
            return state.storeFailure(error, "audit")
        }
    }

    /// A JSON body `{"note": "..."}` (absent or empty body: nil note). nil also when it does not decode or the
    /// note is too long; `required` makes an empty note nil.
    static func decodeNote(_ request: Request, required: Bool) async -> String?? {
        struct Body: Decodable { var note: String? }
        guard let buffer = try? await request.body.collect(upTo: RegistryHTTP.maxFormBody) else { return nil }
        if buffer.readableBytes == 0 { return required ? nil : .some(nil) }
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(buffer.readableBytesView)) else { return nil }
        let note = body.note?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let note, note.count > 2000 { return nil }
        if required && (note ?? "").isEmpty { return nil }
        return .some(note?.isEmpty == true ? nil : note)
    }

    struct UnitsBody: Codable {
        var units: [UnitSummaryView]
        /// The moment asked about (`at`), when one was.
        var at: String?
        var limit: Int
        var offset: Int
        /// The offset of the next page, absent on the last.
        var nextOffset: Int?

        enum CodingKeys: String, CodingKey {
            case units, at, limit, offset
            case nextOffset = "next_offset"
        }
    }
    struct UnitBody: Codable { var unit: UnitDetailView }
    struct AuditBody: Codable { var audit: [AuditView] }
}

/// RFC 4180 fields. A field that a spreadsheet would run as a formula is prefixed with a quote: one whose first
/// Unicode scalar is in OWASP's CSV-injection set (`=`, `+`, `-`, `@`, tab, carriage return). The first *scalar*,
/// not the first Character: `=` followed by a combining mark is one grapheme cluster that is not `=`, but the
/// spreadsheet still reads a formula.
enum CSV {
    static let formulaStarts: Set<Unicode.Scalar> = ["=", "+", "-", "@", "\t", "\r"]

    static func field(_ s: String) -> String {
        var v = s
        if let first = v.unicodeScalars.first, formulaStarts.contains(first) { v = "'" + v }
        if v.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + v.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return v
    }
}

/// The state-changing operations, shared by the API and the pages: each checks, acts, audits and logs once.
struct Actions {
    let state: RegistryState

    static let tooLargeMessage =
        "the export is larger than \(RegistryHTTP.maxReconciliationBody) bytes (32 MiB); split it"

    enum Outcome {
        case ok(any Encodable & Sendable)
        case failed(HTTPResponse.Status, String)
        case storeFailed(Response)

        var json: Response {
            switch self {
            case .ok(let body): return CellprovRegistryHTTP.json(.ok, body)
            case .failed(let status, let message): return jsonError(status, message)
            case .storeFailed(let r): return r
            }
        }
    }

    struct LostBody: Codable, Sendable { var serial: String; var lost: Bool }
    struct FoundBody: Codable, Sendable { var serial: String; var lost: Bool; var token: String }
    struct ResolvedBody: Codable, Sendable { var id: Int64; var resolved: Bool }
    struct ReconcileBody: Codable, Sendable {
        var summary: [String: String]
        var order: [String]
        var flagsRaised: [FlagView]
        enum CodingKeys: String, CodingKey {
            case summary, order
            case flagsRaised = "flags_raised"
        }
    }

    func markLost(serial: String, note: String??, who: OperatorIdentity, remote: String?) async -> Outcome {
        do {
            guard try await state.store.markLost(serial: serial, by: who.name, note: note ?? nil, at: Date()) else {
                return .failed(.notFound, "no such unit")
            }
            try await state.store.appendAudit(
                AuditEntry(at: Date(), actor: who.name, action: "mark_lost", serial: serial, remote: remote))
            state.logger.notice(
                "unit marked lost; device token revoked",
                metadata: [
                    "MESSAGE_ID": "\(RegistryMessageID.unitLost.id)", "serial": "\(serial)", "operator": "\(who.name)",
                ])
            return .ok(LostBody(serial: serial, lost: true))
        } catch {
            return .storeFailed(state.storeFailure(error, "mark lost"))
        }
    }

    func markFound(serial: String, who: OperatorIdentity, remote: String?) async -> Outcome {
        let token = Tokens.generate(.device)
        do {
            guard
                try await state.store.markFound(
                    serial: serial, by: who.name, newTokenHash: Tokens.hash(token), at: Date())
            else {
                if try await state.store.unit(serial: serial) == nil { return .failed(.notFound, "no such unit") }
                return .failed(.conflict, "unit is not marked lost")
            }
            try await state.store.appendAudit(
                AuditEntry(
                    at: Date(), actor: who.name, action: "mark_found", serial: serial, remote: remote,
                    detail: "new device token issued"))
            state.logger.notice(
                "unit found; new device token issued",
                metadata: [
                    "MESSAGE_ID": "\(RegistryMessageID.unitFound.id)", "serial": "\(serial)", "operator": "\(who.name)",
                ])
            return .ok(FoundBody(serial: serial, lost: false, token: token))
        } catch {
            return .storeFailed(state.storeFailure(error, "mark found"))
        }
    }

    func resolve(id: Int64, note: String?, who: OperatorIdentity, remote: String?) async -> Outcome {
        guard let note, !note.isEmpty else { return .failed(.badRequest, "a note is required") }
        do {
            guard let flag = try await state.store.flag(id: id) else { return .failed(.notFound, "no such flag") }
            guard try await state.store.resolveFlag(id: id, by: who.name, note: note, at: Date()) else {
                return .failed(.conflict, "flag already resolved")
            }
            try await state.store.appendAudit(
                AuditEntry(
                    at: Date(), actor: who.name, action: "resolve_flag", serial: flag.flag.serial, remote: remote,
                    detail: "flag \(id) (\(flag.flag.kind.rawValue))"))
            state.logger.notice(
                "flag resolved",
                metadata: [
                    "flag_id": "\(id)",
                    "kind": "\(flag.flag.kind.rawValue)", "operator": "\(who.name)",
                ])
            return .ok(ResolvedBody(id: id, resolved: true))
        } catch {
            return .storeFailed(state.storeFailure(error, "resolve flag"))
        }
    }

    func reconcile(csv: [UInt8], who: OperatorIdentity, remote: String?) async -> Outcome {
        guard let hook = state.options.reconcile else {
            return .failed(.notImplemented, "carrier reconciliation is not available in this build")
        }
        defer { ReconciliationWorker.returnMemoryLater() }
        do {
            let assignments = try await state.store.simAssignments()
            let result: ReconcileResult
            do {
                result = try await ReconciliationWorker.run { try hook(csv, assignments) }
            } catch let error as ReconciliationError {
                if case .tooLarge = error { return .failed(.contentTooLarge, Self.tooLargeMessage) }
                return .failed(.unprocessableContent, "\(error)")
            } catch {
                return .failed(.unprocessableContent, "\(error)")
            }
            // In batches, each its own transaction: the device events arriving meanwhile are stored between them
            // instead of waiting for one write of every finding.
            var raised: [RegistryFlag] = []
            let now = Date()
            for start in stride(from: 0, to: result.flags.count, by: ReconciliationWorker.flagBatch) {
                let end = min(start + ReconciliationWorker.flagBatch, result.flags.count)
                raised += try await state.store.raise(Array(result.flags[start..<end]), at: now)
            }
            state.logFlags(raised)
            try await state.store.appendAudit(
                AuditEntry(
                    at: Date(), actor: who.name, action: "reconcile", remote: remote,
                    detail: "\(result.flags.count) findings, \(raised.count) new flags"))
            var summary: [String: String] = [:]
            for (k, v) in result.summary { summary[k] = v }
            return .ok(
                ReconcileBody(
                    summary: summary, order: result.summary.map(\.0),
                    flagsRaised: raised.map { FlagView($0, reveal: false) }))
        } catch {
            return .storeFailed(state.storeFailure(error, "reconcile"))
        }
    }
}
