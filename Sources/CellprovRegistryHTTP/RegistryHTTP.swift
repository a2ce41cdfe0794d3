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
