import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOSSL

/// cellprov-registry's HTTP layer (docs/registry.md, docs/decisions.md "Registry HTTP layer"): the device API
/// (`POST /v1/enrollments`, docs/enrollment-api.yaml), the operator API (docs/registry-api.yaml), the pages, and
/// `/healthz` `/readyz` `/metrics`. It talks to storage only through `RegistryStore`.
public enum RegistryHTTP {
    /// The bound on an enrollment body: a real event is under 2 KiB; anything past 64 KiB is refused with 413
    /// before it is decoded.
    public static let maxEnrollmentBody = 64 * 1024
    /// The bound on a carrier export upload: the reconciliation's own limit (`ReconciliationLimits.maxExportBytes`,
    /// 32 MiB), so that the body's bound and the parser's agree; past it, 413.
    public static let maxReconciliationBody = ReconciliationLimits.maxExportBytes
    /// The bound on a form post of the pages (other than the reconciliation upload).
    static let maxFormBody = 64 * 1024
    /// `Retry-After` of a 503 when the database does not answer.
    static let retryAfterSeconds = "5"

    /// Builds the router of every route. `store` is wrapped so that its latency is measured.
    public static func makeRouter(
        store: any RegistryStore, options: RegistryHTTPOptions = RegistryHTTPOptions(),
        metrics: RegistryMetrics = RegistryMetrics(), logger: Logger
    ) async throws -> Router<RegistryRequestContext> {
        let timed = TimedStore(base: store, metrics: metrics)
        let signer = SessionSigner(secret: try await timed.sessionKey())
        let state = RegistryState(store: timed, options: options, metrics: metrics, signer: signer, logger: logger)
        let router = Router(context: RegistryRequestContext.self)
        router.add(middleware: MetricsMiddleware(metrics: metrics))
        router.add(middleware: SecurityHeadersMiddleware())
        DeviceAPI(state: state).register(on: router)
        OperatorAPI(state: state).register(on: router)
        OperationsRoutes(state: state).register(on: router)
        Pages(state: state).register(on: router)
        Overview.Routes(state: state).register(on: router)
        // After the last route: the table is what the groups registered, and the middleware wraps only the router's
        // not-found answer (a wrong method on a known path becomes a 405 with `Allow`).
        router.add(middleware: MethodNotAllowedMiddleware(table: RouteTable(router)))
        return router
    }
}

/// What the executable decides for the HTTP layer.
public struct RegistryHTTPOptions: Sendable {
    /// Served over TLS: the session cookie gets `Secure`.
    public var tls: Bool
    /// Client certificates are verified against a CA (`--tls-client-ca`): a device may authenticate with its
    /// certificate, whose subject common name is its serial.
    public var mutualTLS: Bool = false
    /// How long a page session lasts.
    public var sessionLifetime: TimeInterval
    /// Carrier reconciliation (CellprovRegistryCore's `Reconciliation`, wired by the executable); nil: the route
    /// answers 501.
    public var reconcile: ReconcileHook?
    /// Called with every flag this instance raises (ingest, refusals, reconciliation): the webhook alerter's
    /// `enqueue` (CellprovRegistryAlerts), wired by the executable. Must return at once.
    public var onFlagsRaised: @Sendable ([RegistryFlag]) -> Void
    /// How long without a field event makes a unit silent on the overview (`[alerts] unit_silent_days`, the
    /// `unit_silent` check's threshold).
    public var unitSilentThreshold: TimeInterval = 7 * 86_400
    /// How long the overview's snapshot is answered as read before a request refreshes it in the background
    /// (``OverviewSnapshot``, 30 s); 0 reads the store on every request.
    public var overviewFreshFor: TimeInterval = 30

    public init(
        tls: Bool = false, sessionLifetime: TimeInterval = 8 * 3600, reconcile: ReconcileHook? = nil,
        onFlagsRaised: @escaping @Sendable ([RegistryFlag]) -> Void = { _ in }
    ) {
        self.tls = tls
        self.sessionLifetime = sessionLifetime
        self.reconcile = reconcile
        self.onFlagsRaised = onFlagsRaised
    }
}

/// Compares a carrier export (the uploaded bytes) with the current SIM assignments: the flags to raise and the
/// report's lines (counts, column names; without identifier digits).
public typealias ReconcileHook = @Sendable (_ csv: [UInt8], _ assignments: [SIMAssignment]) throws
    -> ReconcileResult

public struct ReconcileResult: Sendable {
    public var flags: [NewFlag]
    /// Report lines, label and value ("rows read", "12000"), in order.
    public var summary: [(String, String)]

    public init(flags: [NewFlag], summary: [(String, String)]) {
        self.flags = flags
        self.summary = summary
    }
}

/// The request context: Hummingbird's core storage, and the client's address (for the audit log).
public struct RegistryRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// The connection, for the client certificate of mutual TLS.
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }

    /// The device serial of a verified client certificate (its subject CN), or nil.
    func clientCertificateSerial() async -> String? {
        guard let cert = try? await channel.nioSSL_peerCertificate().get(), let der = try? cert.toDERBytes() else {
            return nil
        }
        return ClientCertificate.commonName(der: der).flatMap { DeviceSerial.isValid($0) ? $0 : nil }
    }

    /// Bodies are collected explicitly with a per-route bound; this is the outer bound.
    public var maxUploadSize: Int { RegistryHTTP.maxReconciliationBody }

    /// The client's address as the audit log records it (`127.0.0.1`), or nil.
    var remote: String? { remoteAddress?.ipAddress }
}

/// Shared by the route groups.
struct RegistryState: Sendable {
    let store: any RegistryStore
    let options: RegistryHTTPOptions
    let metrics: RegistryMetrics
    let signer: SessionSigner
    let logger: Logger

    /// Logs a store failure (its message carries no identifier digits) and answers 503 with `Retry-After`: the
    /// database did not answer in time, is down, or refused the write (a full disk); the request may succeed later
    /// and a device keeps its event for that (docs/registry.md, "When the database does not answer").
    func storeFailure(_ error: any Error, _ what: String) -> Response {
        logger.error("store failure: \(what)", metadata: ["error": "\(error)"])
        let message = error is StoreDeadlineExceeded ? "storage did not answer in time" : "storage unavailable"
        return jsonError(.serviceUnavailable, message, headers: [.retryAfter: RegistryHTTP.retryAfterSeconds])
    }

    func logFlags(_ flags: [RegistryFlag]) {
        if !flags.isEmpty { options.onFlagsRaised(flags) }
        for f in flags {
            metrics.flagRaised(kind: f.flag.kind)
            logger.warning(
                "flag raised: \(f.flag.summary)",
                metadata: [
                    "MESSAGE_ID": "\(RegistryMessageID.flagRaised(f.flag.kind).id)", "kind": "\(f.flag.kind.rawValue)",
                    "severity": "\(f.flag.severity.rawValue)", "flag_id": "\(f.id)",
                    "serial": "\(f.flag.serial ?? "-")",
                ])
        }
    }
}

// MARK: - Responses

let jsonEncoder: JSONEncoder = {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return e
}()

func json(_ status: HTTPResponse.Status = .ok, _ value: some Encodable, headers: HTTPFields = [:]) -> Response {
    var fields = headers
    fields[.contentType] = "application/json"
    fields[.cacheControl] = "no-store"
    let data = (try? jsonEncoder.encode(value)) ?? Data("{}".utf8)
    return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

struct ErrorBody: Codable {
    var error: String
}

func jsonError(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:]) -> Response {
    json(status, ErrorBody(error: message), headers: headers)
}

func text(_ status: HTTPResponse.Status, _ body: String, contentType: String = "text/plain; charset=utf-8")
    -> Response
{
    Response(
        status: status, headers: [.contentType: contentType, .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(string: body)))
}

/// Every answer: no sniffing, no framing, no referrer, and a content security policy that allows nothing but the
/// page itself (the pages use no script at all).
struct SecurityHeadersMiddleware: RouterMiddleware {
    typealias Context = RegistryRequestContext
    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.init("X-Frame-Options")!] = "DENY"
        response.headers[.init("Referrer-Policy")!] = "no-referrer"
        response.headers[.contentSecurityPolicy] =
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
        return response
    }
}

// MARK: - Device API

/// `POST /v1/enrollments` (docs/enrollment-api.yaml): who may post what, in the order of the checks.
struct DeviceAPI {
    let state: RegistryState

    func register(on router: Router<RegistryRequestContext>) {
        router.post("/v1/enrollments") { request, context in
            await enroll(request, context)
        }
    }

    private func refused(_ status: HTTPResponse.Status, _ message: String, type: String?, outcome: String) -> Response {
        state.metrics.eventIngested(type: type, outcome: outcome)
        state.logger.notice(
            "enrollment refused: \(message)",
            metadata: ["MESSAGE_ID": "\(RegistryMessageID.eventRefused.id)", "status": "\(status.code)"])
        return jsonError(status, message)
    }

    func enroll(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        // 1. Credentials: a token we know (valid or revoked), and/or a verified client certificate (mutual TLS,
        //    the device serial in its subject CN). With both, they must name the same device.
        let certificateSerial = state.options.mutualTLS ? await context.clientCertificateSerial() : nil
        let credential = RegistryTokens.credential(request.headers[.authorization])
        if credential == .malformed {
            return refused(.unauthorized, "malformed token", type: nil, outcome: "unauthorized")
        }
        let tokenHash = RegistryTokens.bearer(request.headers[.authorization]).map(Tokens.hash)
        if tokenHash == nil && certificateSerial == nil {
            return refused(.unauthorized, "missing bearer token", type: nil, outcome: "unauthorized")
        }

        // The body, bounded, is read before the token is looked up: a device's event naming its own serial is then
        // stored in one store call that checks the token in the same transaction (one round trip on PostgreSQL;
        // docs/decisions.md). Anything else, and any refusal, goes through the checks below in their order, so
        // what a request without a valid credential learns is unchanged.
        let body = await Self.readBody(request)
        let decoded = body.map {
            IngestValidation.decode(
                $0.readableBytesView, idempotencyKey: request.headers[.init("Idempotency-Key")!], receivedAt: Date())
        }
        if let tokenHash, certificateSerial == nil, let body, case .success(let event)? = decoded,
            event.type != APIEventType.manufactured.rawValue, let serial = event.device.serial
        {
            let options = IngestOptions(payload: Array(body.readableBytesView), deviceTokenHash: tokenHash)
            let stored = await store(event, serial: serial, origin: .device, actor: "device:\(serial)", options)
            if !stored.refusedCredential { return stored.response }
        }

        let record: CredentialRecord?
        if let tokenHash {
            do {
                record = try await state.store.credential(tokenHash: tokenHash)
            } catch {
                return state.storeFailure(error, "credential lookup")
            }
            if let certificateSerial, let record, record.principal != .device(serial: certificateSerial) {
                return refused(.forbidden, "token and client certificate disagree", type: nil, outcome: "forbidden")
            }
        } else {
            record = certificateSerial.map { CredentialRecord(principal: .device(serial: $0)) }
        }
        guard let record else {
            return refused(.unauthorized, "unknown token", type: nil, outcome: "unauthorized")
        }

        // 2. The body: within 64 KiB, and a valid event.
        guard let body, let decoded else {
            return refused(.contentTooLarge, "body larger than 64 KiB", type: nil, outcome: "too_large")
        }
        let event: EnrollmentRequest
        switch decoded {
        case .success(let e): event = e
        case .failure(.notAnEvent(let message)):
            return refused(.badRequest, message, type: nil, outcome: "invalid")
        case .failure(.invalid(let violation)):
            return refused(.unprocessableContent, violation.description, type: nil, outcome: "invalid")
        }

        // 3. Who may post this event.
        let serial: String
        let origin: EventOrigin
        let actor: String
        switch record.principal {
        case .device(let tokenSerial):
            actor = "device:\(tokenSerial)"
            if record.revokedAt != nil {
                await refuse(serial: tokenSerial, actor: actor, reason: "revoked device token", context)
                return refused(.forbidden, "token revoked", type: event.type, outcome: "forbidden")
            }
            if let claimed = event.device.serial, claimed != tokenSerial {
                await refuse(serial: claimed, actor: actor, reason: "device token used for another serial", context)
                return refused(.forbidden, "token is not this device's", type: event.type, outcome: "forbidden")
            }
            if event.type == APIEventType.manufactured.rawValue {
                await refuse(serial: tokenSerial, actor: actor, reason: "device token posted a factory record", context)
                return refused(.forbidden, "devices may not post manufactured", type: event.type, outcome: "forbidden")
            }
            serial = tokenSerial
            origin = .device
        case .station(let name):
            actor = "station:\(name)"
            guard record.revokedAt == nil else {
                return refused(.forbidden, "token revoked", type: event.type, outcome: "forbidden")
            }
            guard event.type == APIEventType.manufactured.rawValue else {
                return refused(.forbidden, "stations may post manufactured only", type: event.type, outcome: "forbidden")
            }
            guard let claimed = event.device.serial, DeviceSerial.isValid(claimed) else {
                return refused(
                    .unprocessableContent, "a factory record needs device.serial", type: event.type, outcome: "invalid")
            }
            serial = claimed
            origin = .factory
        case .operator:
            return refused(.forbidden, "operator tokens may not post events", type: event.type, outcome: "forbidden")
        }

        // 4. Store it, with the flags it raises. A device token is checked again in the write's transaction (it
        //    may have been revoked since the lookup).
        var options = IngestOptions(payload: Array(body.readableBytesView))
        if origin == .device, certificateSerial == nil { options.deviceTokenHash = tokenHash }
        let stored = await store(event, serial: serial, origin: origin, actor: actor, options)
        if stored.refusedCredential {
            return refused(.forbidden, "token revoked", type: event.type, outcome: "forbidden")
        }
        return stored.response
    }

    /// The body, or nil when it is larger than ``RegistryHTTP/maxEnrollmentBody`` (by its `Content-Length` or as
    /// read).
    static func readBody(_ request: Request) async -> ByteBuffer? {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > RegistryHTTP.maxEnrollmentBody {
            return nil
        }
        return try? await request.body.collect(upTo: RegistryHTTP.maxEnrollmentBody)
    }

    /// Stores an authorised event (or one whose device token the store checks: ``IngestOptions``) and makes the
    /// answer: 201, 409 for a duplicate, the store failure's answer; `refusedCredential` when the store refused the
    /// token (nothing stored, no answer made yet).
    private func store(
        _ event: EnrollmentRequest, serial: String, origin: EventOrigin, actor: String, _ options: IngestOptions
    ) async -> (response: Response, refusedCredential: Bool) {
        let outcome: IngestOutcome
        do {
            // The payload's `references` are the store's to check and index (one place: StoreSupport.references).
            outcome = try await state.store.ingest(
                event, serial: serial, origin: origin, references: [], receivedAt: Date(), options: options)
        } catch {
            state.metrics.eventIngested(type: event.type, outcome: "error")
            return (state.storeFailure(error, "ingest"), false)
        }
        switch outcome {
        case .credentialRefused:
            return (jsonError(.forbidden, "token refused"), true)
        case .duplicate:
            state.metrics.eventIngested(type: event.type, outcome: "duplicate")
            return (json(.conflict, ErrorBody(error: "event_id already stored")), false)
        case .stored(let raised):
            state.metrics.eventIngested(type: event.type, outcome: "stored")
            // One line per stored event at debug only (it cost 3.5 % of the CPU per event at info); the count is in
            // /metrics (`cellprov_registry_events_ingested_total`), and refusals and flags are logged at notice and
            // above.
            state.logger.debug(
                "event stored",
                metadata: [
                    "MESSAGE_ID": "\(RegistryMessageID.eventStored.id)", "type": "\(event.type)",
                    "serial": "\(serial)", "actor": "\(actor)", "flags": "\(raised.count)",
                ])
            state.logFlags(raised)
            return (json(.created, StoredBody(eventID: event.eventID, flagsRaised: raised.count)), false)
        }
    }

    private func refuse(serial: String, actor: String, reason: String, _ context: RegistryRequestContext) async {
        do {
            let flags = try await state.store.recordRefusal(
                serial: serial, actor: actor, reason: reason, remote: context.remote, at: Date())
            state.logFlags(flags)
        } catch {
            state.logger.error("store failure: record refusal", metadata: ["error": "\(error)"])
        }
    }

    struct StoredBody: Codable {
        var eventID: String
        var flagsRaised: Int
        enum CodingKeys: String, CodingKey {
            case eventID = "event_id"
            case flagsRaised = "flags_raised"
        }
    }
}

/// An enrollment body as the registry accepts it: the wire module's rules (``EnrollmentValidation``: duplicate keys,
/// the schema's shape, every field's pattern, `occurred_at`'s window, `Idempotency-Key`), the same for devices and
/// factory stations, with the registry's time parser (``IngestTime``, which also reads the rarer RFC 3339 forms
/// the stores read). A `.notAnEvent` is a 400, an `.invalid` a 422 naming the field: the payload is wrong and
/// resending it cannot help.
enum IngestValidation {
    static func decode(
        _ bytes: some Collection<UInt8>, idempotencyKey: String?, receivedAt: Date
    ) -> Result<EnrollmentRequest, EnrollmentValidation.BodyError> {
        Result { () throws(EnrollmentValidation.BodyError) in
            try EnrollmentValidation.decode(
                bytes, receivedAt: receivedAt, idempotencyKey: idempotencyKey, parseTime: IngestTime.parse)
        }
    }
}

// MARK: - Operations

/// `/healthz` (the process answers), `/readyz` (the database answers and is migrated), `/metrics`.
struct OperationsRoutes {
    let state: RegistryState

    func register(on router: Router<RegistryRequestContext>) {
        router.get("/healthz") { _, _ in text(.ok, "ok\n") }
        router.get("/readyz") { _, _ in
            do {
                try await state.store.checkReady()
                return text(.ok, "ready\n")
            } catch {
                state.logger.warning("not ready", metadata: ["error": "\(error)"])
                var response = text(.serviceUnavailable, "not ready\n")
                response.headers[.retryAfter] = RegistryHTTP.retryAfterSeconds
                return response
            }
        }
        router.get("/metrics") { _, _ in
            if let counts = try? await state.store.openFlagCounts() {
                state.metrics.setOpenFlags(counts)
            }
            return text(.ok, state.metrics.text(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
    }
}
