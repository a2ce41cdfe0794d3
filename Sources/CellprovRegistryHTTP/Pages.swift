import CellprovCore
import CellprovRegistryCore
import Foundation
import Hummingbird
import Mustache
import NIOCore

/// The support pages: server-rendered (swift-mustache), no script. Sign-in with an operator token gives a session
/// cookie: a random id the store keeps (hashed) bound to that token (``Pages/session(_:)``). Every form carries the
/// session's CSRF token (``SessionSigner``) and every POST checks it before anything else. A GET never changes
/// anything.
struct Pages {
    let state: RegistryState
    private let library: MustacheLibrary

    static let sessionCookie = "cellprov_session"
    /// Before sign-in there is no session to bind a CSRF token to: a random nonce cookie stands in for it.
    static let preSessionCookie = "cellprov_presession"

    init(state: RegistryState) {
        self.state = state
        var library = MustacheLibrary()
        // The templates are literals of this file's module: a parse error is a programming error, caught by any
        // test that renders a page.
        for (name, text) in [
            ("layout", Templates.layout), ("signin", Templates.signIn), ("searchForm", Templates.searchForm),
            ("search", Templates.search),
            ("unit", Templates.unit), ("flags", Templates.flags), ("reconcile", Templates.reconcile),
            ("message", Templates.message), ("affected", Templates.affected),
        ] {
            try! library.register(text, named: name)
        }
        self.library = library
    }

    func register(on router: Router<RegistryRequestContext>) {
        router.get("/") { request, context in await home(request, context) }
        router.post("/signin") { request, context in await signIn(request, context) }
        router.post("/signout") { request, context in await signOut(request, context) }
        router.get("/affected") { request, context in await affectedPage(request, context) }
        router.get("/affected.csv") { request, context in await affectedCSV(request, context) }
        router.get("/units/{serial}") { request, context in await unitPage(request, context) }
        router.post("/units/{serial}/lost") { request, context in await lostPage(request, context) }
        router.post("/units/{serial}/found") { request, context in await foundPage(request, context) }
        router.get("/flags") { request, context in await flagsPage(request, context) }
        router.post("/flags/{id}/resolve") { request, context in await resolvePage(request, context) }
        router.get("/reconcile") { request, context in await reconcilePage(request, context, report: nil) }
        router.post("/reconcile") { request, context in await reconcilePost(request, context) }
    }

    // MARK: Sessions

    struct Signed {
        var who: OperatorIdentity
        var cookieValue: String
        var csrf: String
    }

    /// The page session, if its cookie names a session the store knows, unexpired, whose operator token is still
    /// valid: sign-out, `operator revoke` and a new token for the operator (whatever its role) end it at the next
    /// request. A store that does not answer gives no session (the sign-in page then reports the failure).
    func session(_ request: Request) async -> Signed? {
        guard let value = request.cookies[Self.sessionCookie]?.value, Tokens.isRandomID(value) else { return nil }
        let found: (name: String, role: OperatorRole)?
        do {
            found = try await state.store.session(idHash: Tokens.hash(value), at: Date())
        } catch {
            state.logger.warning("cannot check a page session: \(error)")
            return nil
        }
        guard let found else { return nil }
        return Signed(
            who: OperatorIdentity(name: found.name, role: found.role), cookieValue: value,
            csrf: state.signer.csrfToken(for: value))
    }

    func cookie(_ name: String, _ value: String, maxAge: Int) -> Cookie {
        Cookie(
            name: name, value: value, maxAge: maxAge, path: "/", secure: state.options.tls, httpOnly: true,
            sameSite: .strict)
    }

    struct Form: Decodable {
        var csrf: String?
        var token: String?
        var note: String?
        var csv: String?
    }

    /// The form of a POST, if its CSRF token matches the session (or the pre-session nonce at sign-in).
    func form(_ request: Request, boundTo cookieValue: String?, limit: Int = RegistryHTTP.maxFormBody) async -> Form? {
        guard let buffer = try? await request.body.collect(upTo: limit) else { return nil }
        let text = String(buffer: buffer)
        guard let form = try? URLEncodedFormDecoder().decode(Form.self, from: text),
            state.signer.checkCSRF(form.csrf, cookieValue: cookieValue)
        else { return nil }
        return form
    }

    // MARK: Rendering

    func page(
        _ template: String, title: String, _ values: [String: Any], signed: Signed?,
        status: HTTPResponse.Status = .ok
    ) -> Response {
        var v = values
        if let signed {
            v["admin"] = signed.who.isAdmin
            v["csrf"] = signed.csrf
        }
        let body = library.render(v, withTemplate: template) ?? ""
        var layout: [String: Any] = ["title": title, "body": body]
        if let signed {
            layout["signedIn"] = true
            layout["admin"] = signed.who.isAdmin
            layout["operator"] = signed.who.name
            layout["role"] = signed.who.role.rawValue
            layout["csrf"] = signed.csrf
        }
        let html = library.render(layout, withTemplate: "layout") ?? ""
        return Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    func message(
        _ title: String, _ text: String, kind: String = "error", back: String = "/", signed: Signed?,
        status: HTTPResponse.Status
    ) -> Response {
        page("message", title: title, ["title": title, "message": text, "kind": kind, "back": back], signed: signed,
            status: status)
    }

    func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }

    static func pathComponent(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    // MARK: Sign-in

    func signInPage(_ error: String?, status: HTTPResponse.Status = .ok) -> Response {
        let nonce = RegistryTokens.base64URL((0..<16).map { _ in UInt8.random(in: .min ... .max) })
        var values: [String: Any] = ["csrf": state.signer.csrfToken(for: nonce)]
        if let error { values["error"] = error }
        var response = page("signin", title: "Sign in", values, signed: nil, status: status)
        response.setCookie(cookie(Self.preSessionCookie, nonce, maxAge: 3600))
        return response
    }

    func signIn(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        guard let form = await form(request, boundTo: request.cookies[Self.preSessionCookie]?.value) else {
            return signInPage("The form expired or did not come from this site; please sign in again.", status: .forbidden)
        }
        guard let token = form.token?.trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty,
            token.utf8.count <= 512
        else { return signInPage("Enter an operator token.", status: .unauthorized) }
        let record: CredentialRecord?
        do {
            record = try await state.store.credential(tokenHash: Tokens.hash(token))
        } catch {
            return state.storeFailure(error, "credential lookup")
        }
        guard let record, record.revokedAt == nil, case .operator(let name, let role) = record.principal else {
            state.logger.notice("page sign-in refused", metadata: ["remote": "\(context.remote ?? "-")"])
            return signInPage("That token is not a valid operator token.", status: .unauthorized)
        }
        let sessionID = Tokens.randomID()
        let now = Date()
        do {
            try await state.store.startSession(
                idHash: Tokens.hash(sessionID), tokenHash: Tokens.hash(token),
                expires: now.addingTimeInterval(state.options.sessionLifetime), at: now)
        } catch {
            return state.storeFailure(error, "start session")
        }
        // The fleet overview, with the search box at its top.
        var response = redirect("/overview")
        response.setCookie(cookie(Self.sessionCookie, sessionID, maxAge: Int(state.options.sessionLifetime)))
        response.setCookie(cookie(Self.preSessionCookie, "", maxAge: 0))
        state.logger.info("operator signed in", metadata: ["operator": "\(name)", "role": "\(role.rawValue)"])
        return response
    }

    func signOut(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        guard let signed = await session(request) else { return redirect("/") }
        guard await form(request, boundTo: signed.cookieValue) != nil else {
            return message("Refused", "Missing or wrong CSRF token.", signed: signed, status: .forbidden)
        }
        do {
            try await state.store.endSession(idHash: Tokens.hash(signed.cookieValue))
        } catch {
            return state.storeFailure(error, "end session")
        }
        var response = redirect("/")
        response.setCookie(cookie(Self.sessionCookie, "", maxAge: 0))
        return response
    }

    // MARK: Search

    func home(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        guard let signed = await session(request) else { return signInPage(nil) }
        let q = String((OperatorAPI.formQueryValue(request, "q") ?? "").prefix(200))
        let atText = String((OperatorAPI.formQueryValue(request, "at") ?? "").prefix(64))
        var values: [String: Any] = ["q": q, "at": atText]
        let at: Date?
        switch QueryParameter.at(atText) {
        case .failure:
            values["error"] = "The moment must be an RFC 3339 time, such as 2026-11-03T14:22:00Z."
            return page("search", title: "Search", values, signed: signed, status: .badRequest)
        case .success(let t): at = t
        }
        let limit: Int
        let offset: Int
        switch ListParameters.search(request) {
        case .failure(let f):
            values["error"] = f.message
            return page("search", title: "Search", values, signed: signed, status: .badRequest)
        case .success(let p): (limit, offset) = p
        }
        let terms = SearchTerms(parsing: q)
        if !terms.isEmpty {
            do {
                let (found, next) = try await OperatorAPI.searchPage(
                    state.store, terms, at: at, limit: limit, offset: offset)
                values["searched"] = true
                values["count"] = found.count
                values["from"] = offset + 1
                values["to"] = offset + found.count
                values["paged"] = offset > 0 || next != nil
                // The links keep the search and its moment; the page size only when asked for.
                var keep: [(String, String)] = [("q", q)]
                if !atText.isEmpty { keep.append(("at", atText)) }
                if limit != PageKeys.searchDefaultLimit { keep.append(("limit", "\(limit)")) }
                if let next { values["nextQuery"] = ListParameters.query(keep + [("offset", "\(next)")]) }
                if offset > 0 {
                    let previous = max(0, offset - limit)
                    values["previousQuery"] = ListParameters.query(keep + (previous > 0 ? [("offset", "\(previous)")] : []))
                }
                values["hasUnits"] = !found.isEmpty
                values["anyHeld"] = found.contains { $0.held != nil }
                if let at { values["asOf"] = RFC3339.string(at) ?? "" }
                let atQuery = at.flatMap { RFC3339.string($0) }.map { "?at=" + Self.pathComponent($0) } ?? ""
                values["units"] = found.map { f -> [String: Any] in
                    let v = UnitSummaryView(f.unit, reveal: false, held: f.held)
                    var u: [String: Any] = [
                        "serial": v.serial, "serialPath": Self.pathComponent(v.serial) + atQuery, "lost": v.lost,
                        "lastSeen": v.lastSeen ?? "", "openFlags": v.openFlags,
                        "slots": v.slots.map { ["slot": $0.slot, "imei": $0.imei ?? ""] },
                    ]
                    if let held = v.held { u["held"] = held.map(Self.holdingValues) }
                    return u
                }
            } catch {
                return state.storeFailure(error, "search")
            }
        }
        return page("search", title: "Search", values, signed: signed)
    }

    static func holdingValues(_ h: HoldingView) -> [String: Any] {
        var v: [String: Any] = [
            "kind": h.kind.uppercased(), "identifier": h.identifier ?? "", "slot": h.slot, "from": h.from ?? "",
            "current": h.current,
        ]
        // Absent, not empty, when there is nothing to say: an empty string is a true section.
        if let r = h.fromReceivedAt { v["fromReceived"] = r }
        if let u = h.until { v["until"] = u }
        if let r = h.untilReceivedAt { v["untilReceived"] = r }
        return v
    }

    // MARK: Unit

    func unitPage(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        guard let signed = await session(request) else { return redirect("/") }
        let reveal = OperatorAPI.wantsReveal(request)
        if reveal && !signed.who.isAdmin {
            return message("Forbidden", "Only admins may reveal identifiers.", signed: signed, status: .forbidden)
        }
        guard let serial = context.parameters.get("serial")?.removingPercentEncoding else { return redirect("/") }
        let atText = String((OperatorAPI.formQueryValue(request, "at") ?? "").prefix(64))
        guard case .success(let at) = QueryParameter.at(atText) else {
            return message(
                "Bad request", "The moment must be an RFC 3339 time, such as 2026-11-03T14:22:00Z.",
                back: "/units/\(Self.pathComponent(serial))", signed: signed, status: .badRequest)
        }
        let paging: TimelinePaging
        switch ListParameters.timeline(request) {
        case .failure(let f):
            return message(
                "Bad request", f.message, back: "/units/\(Self.pathComponent(serial))", signed: signed,
                status: .badRequest)
        case .success(let (c, l)): paging = TimelinePaging(cursor: c, limit: l)
        }
        return await renderUnit(
            serial: serial, reveal: reveal, newToken: nil, signed: signed, remote: context.remote, at: at,
            paging: paging)
    }

    /// Which page of the unit's timeline the unit page shows.
    struct TimelinePaging {
        var cursor: PageCursor<TimelineKey>? = nil
        var limit = PageKeys.defaultLimit
    }

    func renderUnit(
        serial: String, reveal: Bool, newToken: String?, signed: Signed, remote: String?, at: Date? = nil,
        paging: TimelinePaging = TimelinePaging()
    ) async -> Response {
        do {
            let found = try await state.store.unit(serial: serial, asOf: at)
            guard let detail = found else {
                return message("Not found", "No unit with that serial.", signed: signed, status: .notFound)
            }
            let timeline = try await TimelinePages.page(
                state.store, serial: serial, cursor: paging.cursor, limit: paging.limit, at: at)
            if reveal {
                try await OperatorAPI.auditReveal(state, who: signed.who, serials: [serial], what: "unit page", remote: remote)
            }
            let v = UnitDetailView(detail, reveal: reveal, asOf: at)
            var values: [String: Any] = [
                "serial": v.serial, "serialPath": Self.pathComponent(v.serial), "lost": v.lost,
                "firstSeen": v.firstSeen ?? "-", "lastSeen": v.lastSeen ?? "-", "revealed": reveal,
                "hasPlaybook": !v.playbook.isEmpty, "playbook": v.playbook,
                "slots": v.slots.map(Self.slotValues), "hasFlags": !v.flags.isEmpty,
                "flags": v.flags.map(Self.flagValues),
                "timeline": timeline.rows.map { Self.entryValues(TimelineEntryView($0.entry, reveal: reveal)) },
            ]
            // The neighbours' links keep the moment, the reveal and a page size other than the default.
            var keep: [(String, String)] = []
            if let asOf = v.asOf { keep.append(("at", asOf)) }
            if reveal { keep.append(("reveal", "true")) }
            if paging.limit != PageKeys.defaultLimit { keep.append(("limit", "\(paging.limit)")) }
            if let next = timeline.next {
                values["timelineNext"] = ListParameters.query(keep + ListParameters.cursorItem(next, \.text))
            }
            if let previous = timeline.previous {
                values["timelinePrevious"] = ListParameters.query(keep + ListParameters.cursorItem(previous, \.text))
            }
            if let lost = v.lostState {
                var l: [String: Any] = ["markedBy": lost.markedBy, "markedAt": lost.markedAt ?? ""]
                if let note = lost.note { l["note"] = note }
                values["lostState"] = l
            }
            if let newToken { values["newToken"] = newToken }
            if let asOf = v.asOf {
                values["asOf"] = asOf
                values["atQuery"] = "&at=" + Self.pathComponent(asOf)
            }
            return page("unit", title: "Unit \(serial)", values, signed: signed)
        } catch {
            return state.storeFailure(error, "unit page")
        }
    }

    static func slotValues(_ s: SlotView) -> [String: Any] {
        [
            "slot": s.slot, "imei": s.imei ?? "-", "imsi": s.imsi ?? "-", "iccid": s.iccid ?? "-",
            "eid": s.eid ?? "-", "simSlot": s.simSlot.map { "\($0)" } ?? "-",
            "manufacturer": s.manufacturer ?? "", "model": s.model ?? "", "lastEventType": s.lastEventType,
            "updatedAt": s.updatedAt ?? "",
        ]
    }

    static func flagValues(_ f: FlagView) -> [String: Any] {
        var v: [String: Any] = [
            "id": f.id, "kind": f.kind, "severity": f.severity, "summary": f.summary, "raisedAt": f.raisedAt ?? "",
            "open": f.open, "resolvedBy": f.resolvedBy ?? "",
        ]
        if let serial = f.serial {
            v["serial"] = serial
            v["serialPath"] = pathComponent(serial)
        }
        return v
    }

    static func entryValues(_ e: TimelineEntryView) -> [String: Any] {
        var v: [String: Any] = [
            "occurredAt": e.occurredAt ?? "", "origin": e.origin, "type": e.type, "severity": e.severity,
            "slot": e.slot, "rolledBack": e.reusesSequenceOf != nil,
            "identity": [
                "imei": e.identity.imei ?? "-", "imsi": e.identity.imsi ?? "-", "iccid": e.identity.iccid ?? "-",
                "eid": e.identity.eid ?? "-", "simSlot": e.identity.simSlot.map { "\($0)" } ?? "-",
            ],
        ]
        if let note = e.note { v["note"] = note }  // absent, not empty: an empty string is a true section
        return v
    }

    /// The admin POSTs of the pages: a session, an admin, a valid CSRF token, in that order.
    func adminForm(_ request: Request, limit: Int = RegistryHTTP.maxFormBody) async -> Result<(Signed, Form), Refusal> {
        guard let signed = await session(request) else { return .failure(Refusal(redirect("/"))) }
        guard let form = await form(request, boundTo: signed.cookieValue, limit: limit) else {
            return .failure(
                Refusal(message("Refused", "Missing or wrong CSRF token.", signed: signed, status: .forbidden)))
        }
        guard signed.who.isAdmin else {
            return .failure(
                Refusal(message("Forbidden", "This action needs the admin role.", signed: signed, status: .forbidden)))
        }
        return .success((signed, form))
    }

    struct Refusal: Error {
        var response: Response
        init(_ response: Response) { self.response = response }
    }

    func lostPage(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let (signed, form): (Signed, Form)
        switch await adminForm(request) {
        case .failure(let r): return r.response
        case .success(let s): (signed, form) = s
        }
        guard let serial = context.parameters.get("serial")?.removingPercentEncoding else { return redirect("/") }
        let note = form.note?.trimmingCharacters(in: .whitespacesAndNewlines)
        switch await Actions(state: state).markLost(
            serial: serial, note: .some(note?.isEmpty == false ? String(note!.prefix(2000)) : nil), who: signed.who,
            remote: context.remote)
        {
        case .ok: return redirect("/units/\(Self.pathComponent(serial))")
        case .failed(let status, let text): return message("Not done", text, signed: signed, status: status)
        case .storeFailed(let r): return r
        }
    }

    func foundPage(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let signed: Signed
        switch await adminForm(request) {
        case .failure(let r): return r.response
        case .success(let s): signed = s.0
        }
        guard let serial = context.parameters.get("serial")?.removingPercentEncoding else { return redirect("/") }
        switch await Actions(state: state).markFound(serial: serial, who: signed.who, remote: context.remote) {
        case .ok(let body):
            // The new token is shown once, on this answer (not behind a redirect that could be reloaded).
            let token = (body as? Actions.FoundBody)?.token
            return await renderUnit(serial: serial, reveal: false, newToken: token, signed: signed, remote: context.remote)
        case .failed(let status, let text): return message("Not done", text, signed: signed, status: status)
        case .storeFailed(let r): return r
        }
    }

    // MARK: Flags

    func flagsPage(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        guard let signed = await session(request) else { return redirect("/") }
        let query: FlagQuery
        let limit: Int
        switch ListParameters.flags(request) {
        case .failure(let f):
            var values = Self.flagFilterValues(FlagQuery())
            values["error"] = f.message
            return page("flags", title: "Flags", values, signed: signed, status: .badRequest)
        case .success(let (q, l)): (query, limit) = (q, l)
        }
        do {
            let result = try await FlagPages.page(state.store, query, limit: limit)
            var values = Self.flagFilterValues(query)
            values["hasFlags"] = !result.rows.isEmpty
            values["flags"] = result.rows.map { Self.flagValues(FlagView($0, reveal: false)) }
            var keep = ListParameters.filterItems(query)
            if limit != PageKeys.defaultLimit { keep.append(("limit", "\(limit)")) }
            if let next = result.next {
                values["nextQuery"] = ListParameters.query(keep + ListParameters.cursorItem(next) { "\($0)" })
            }
            if let previous = result.previous {
                values["previousQuery"] = ListParameters.query(keep + ListParameters.cursorItem(previous) { "\($0)" })
            }
            if request.uri.queryParameters["resolved"] != nil { values["message"] = "Flag resolved." }
            return page("flags", title: "Flags", values, signed: signed)
        } catch {
            return state.storeFailure(error, "flags page")
        }
    }

    /// The filter form's choices, the chosen ones selected, and the filter in words.
    static func flagFilterValues(_ q: FlagQuery) -> [String: Any] {
        var words: [String] = [q.status == .all ? "All" : q.status == .open ? "Open" : "Resolved"]
        if let severity = q.severity { words.append(severity.rawValue) }
        words.append("flags")
        if let kind = q.kind { words.append("of kind \(kind.rawValue)") }
        return [
            "filterText": words.joined(separator: " "),
            "filtered": q.kind != nil || q.severity != nil || q.status != .open,
            "kinds": FlagKind.allCases.map { ["value": $0.rawValue, "selected": $0 == q.kind] },
            "severities": [EventSeverity.info, .notice, .warning, .critical].map {
                ["value": $0.rawValue, "selected": $0 == q.severity]
            },
            "statuses": FlagQuery.Status.allCases.map { ["value": $0.rawValue, "selected": $0 == q.status] },
        ]
    }

    func resolvePage(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let (signed, form): (Signed, Form)
        switch await adminForm(request) {
        case .failure(let r): return r.response
        case .success(let s): (signed, form) = s
        }
        guard let id = context.parameters.get("id", as: Int64.self) else {
            return message("Not found", "No such flag.", signed: signed, status: .notFound)
        }
        let note = form.note?.trimmingCharacters(in: .whitespacesAndNewlines).prefix(2000)
        switch await Actions(state: state).resolve(
            id: id, note: note.map(String.init), who: signed.who, remote: context.remote)
        {
        case .ok: return redirect("/flags?resolved=\(id)")
        case .failed(let status, let text):
            return message("Not done", text, back: "/flags", signed: signed, status: status)
        case .storeFailed(let r): return r
        }
    }

    // MARK: Reconciliation

    func reconcilePage(
        _ request: Request, _ context: RegistryRequestContext, report: Actions.ReconcileBody?
    ) async -> Response {
        guard let signed = await session(request) else { return redirect("/") }
        guard signed.who.isAdmin else {
            return message("Forbidden", "Carrier reconciliation needs the admin role.", signed: signed, status: .forbidden)
        }
        return page("reconcile", title: "Carrier reconciliation", [:], signed: signed)
    }

    func reconcilePost(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        let (signed, form): (Signed, Form)
        switch await adminForm(request, limit: RegistryHTTP.maxReconciliationBody) {
        case .failure(let r): return r.response
        case .success(let s): (signed, form) = s
        }
        let csv = Array((form.csv ?? "").utf8)
        switch await Actions(state: state).reconcile(csv: csv, who: signed.who, remote: context.remote) {
        case .ok(let body):
            guard let report = body as? Actions.ReconcileBody else { return redirect("/reconcile") }
            let values: [String: Any] = [
                "hasReport": true,
                "summary": report.order.map { ["label": $0, "value": report.summary[$0] ?? ""] },
                "raisedCount": report.flagsRaised.count,
                "raised": report.flagsRaised.map { ["kind": $0.kind, "summary": $0.summary] },
            ]
            return page("reconcile", title: "Carrier reconciliation", values, signed: signed)
        case .failed(let status, let text):
            return page("reconcile", title: "Carrier reconciliation", ["error": text], signed: signed, status: status)
        case .storeFailed(let r): return r
        }
    }
}
