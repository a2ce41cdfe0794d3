import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Hummingbird
import Prometheus

/// `/metrics`: the registry's own Prometheus registry (swift-prometheus), not the process-wide MetricsSystem, so
/// that tests can build several applications in one process. Label values come from closed sets (event types,
/// outcomes, flag kinds, route patterns), never from request data: the series count stays bounded whatever
/// clients send.
public final class RegistryMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let requestBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    /// Event types counted by name; anything else is counted as `other`.
    static let knownTypes: Set<String> = EnrollmentAPI.eventTypes

    public init() {
        registry = PrometheusCollectorRegistry()
    }

    /// An enrollment attempt: `outcome` is `stored`, `duplicate`, `unauthorized`, `forbidden`, `invalid`,
    /// `too_large` or `error`.
    func eventIngested(type: String?, outcome: String) {
        let t = type.map { Self.knownTypes.contains($0) ? $0 : "other" } ?? "unknown"
        registry.makeCounter(
            descriptor: .init(
                namespace: "cellprov_registry", metricName: "events_ingested", unitName: "total",
                helpText: "Enrollment events received, by type and outcome"),
            labels: [("type", t), ("outcome", outcome)]
        ).increment()
    }

    func flagRaised(kind: FlagKind) {
        registry.makeCounter(
            descriptor: .init(
                namespace: "cellprov_registry", metricName: "flags_raised", unitName: "total",
                helpText: "Red flags raised by this instance, by kind"),
            labels: [("kind", kind.rawValue)]
        ).increment()
    }

    func setOpenFlags(_ counts: [FlagKind: Int]) {
        for kind in FlagKind.allCases {
            registry.makeGauge(
                descriptor: .init(
                    namespace: "cellprov_registry", metricName: "open_flags", unitName: "",
                    helpText: "Open red flags in the database, by kind"),
                labels: [("kind", kind.rawValue)]
            ).set(Double(counts[kind] ?? 0))
        }
    }

    func request(route: String, method: String, status: Int, duration: Duration) {
        registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "cellprov_registry", metricName: "http_request_duration", unitName: "seconds",
                helpText: "HTTP request latency, by route pattern, method and status class"),
            labels: [("route", route), ("method", method), ("status", "\(status / 100)xx")],
            buckets: requestBuckets
        ).record(duration)
    }

    func database(operation: String, duration: Duration) {
        registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "cellprov_registry", metricName: "database_duration", unitName: "seconds",
                helpText: "Database call latency, by store operation"),
            labels: [("operation", operation)],
            buckets: requestBuckets
        ).record(duration)
    }

    public func text() -> String { registry.emitToString() }
}

/// Records every request's latency under its route pattern (`/v1/units/{serial}`), not its path: the label set
/// stays bounded.
struct MetricsMiddleware: RouterMiddleware {
    typealias Context = RegistryRequestContext
    let metrics: RegistryMetrics

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let clock = ContinuousClock()
        let start = clock.now
        let method = request.method.rawValue
        do {
            let response = try await next(request, context)
            metrics.request(
                route: context.endpointPath ?? "unmatched", method: method, status: response.status.code,
                duration: clock.now - start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.request(
                route: context.endpointPath ?? "unmatched", method: method, status: status,
                duration: clock.now - start)
            throw error
        }
    }
}

/// The store, with each call's latency recorded (`database_duration_seconds{operation}`). A decorator, so that
/// the HTTP layer measures whichever backend it is given without either backend knowing about metrics.
struct TimedStore: RegistryStore {
    let base: any RegistryStore
    let metrics: RegistryMetrics

    private func timed<T>(_ op: String, _ body: () async throws -> T) async rethrows -> T {
        let clock = ContinuousClock()
        let start = clock.now
        defer { metrics.database(operation: op, duration: clock.now - start) }
        return try await body()
    }

    func migrate() async throws { try await timed("migrate") { try await base.migrate() } }
    func checkReady() async throws { try await timed("check_ready") { try await base.checkReady() } }
    func pseudonymKey() async throws -> [UInt8] { try await timed("pseudonym_key") { try await base.pseudonymKey() } }
    func sessionKey() async throws -> [UInt8] { try await timed("session_key") { try await base.sessionKey() } }
    func close() async { await base.close() }

    func putDeviceToken(serial: String, tokenHash: String, at: Date) async throws {
        try await timed("put_device_token") { try await base.putDeviceToken(serial: serial, tokenHash: tokenHash, at: at) }
    }
    func putStationToken(name: String, tokenHash: String, at: Date) async throws {
        try await timed("put_station_token") { try await base.putStationToken(name: name, tokenHash: tokenHash, at: at) }
    }
    func putOperatorToken(name: String, role: OperatorRole, tokenHash: String, at: Date) async throws {
        try await timed("put_operator_token") {
            try await base.putOperatorToken(name: name, role: role, tokenHash: tokenHash, at: at)
        }
    }
    func credential(tokenHash: String) async throws -> CredentialRecord? {
        try await timed("credential") { try await base.credential(tokenHash: tokenHash) }
    }
    func revokeOperator(name: String, by: String, at: Date) async throws -> Bool {
        try await timed("revoke_operator") { try await base.revokeOperator(name: name, by: by, at: at) }
    }
    func operatorRole(name: String) async throws -> OperatorRole? {
        try await timed("operator_role") { try await base.operatorRole(name: name) }
    }
    func ingest(
        _ request: EnrollmentRequest, serial: String, origin: EventOrigin, references: [String], receivedAt: Date
    ) async throws -> IngestOutcome {
        try await timed("ingest") {
            try await base.ingest(request, serial: serial, origin: origin, references: references, receivedAt: receivedAt)
        }
    }
    func recordRefusal(serial: String, actor: String, reason: String, remote: String?, at: Date) async throws
        -> [RegistryFlag]
    {
        try await timed("record_refusal") {
            try await base.recordRefusal(serial: serial, actor: actor, reason: reason, remote: remote, at: at)
        }
    }
    func searchUnits(_ terms: SearchTerms, limit: Int) async throws -> [UnitSummary] {
        try await timed("search_units") { try await base.searchUnits(terms, limit: limit) }
    }
    func unit(serial: String) async throws -> UnitDetail? {
        try await timed("unit") { try await base.unit(serial: serial) }
    }
    func flags(openOnly: Bool, limit: Int) async throws -> [RegistryFlag] {
        try await timed("flags") { try await base.flags(openOnly: openOnly, limit: limit) }
    }
    func flag(id: Int64) async throws -> RegistryFlag? { try await timed("flag") { try await base.flag(id: id) } }
    func resolveFlag(id: Int64, by: String, note: String, at: Date) async throws -> Bool {
        try await timed("resolve_flag") { try await base.resolveFlag(id: id, by: by, note: note, at: at) }
    }
    func raise(_ flags: [NewFlag], at: Date) async throws -> [RegistryFlag] {
        try await timed("raise") { try await base.raise(flags, at: at) }
    }
    func markLost(serial: String, by: String, note: String?, at: Date) async throws -> Bool {
        try await timed("mark_lost") { try await base.markLost(serial: serial, by: by, note: note, at: at) }
    }
    func markFound(serial: String, by: String, newTokenHash: String, at: Date) async throws -> Bool {
        try await timed("mark_found") {
            try await base.markFound(serial: serial, by: by, newTokenHash: newTokenHash, at: at)
        }
    }
    func appendAudit(_ entry: AuditEntry) async throws {
        try await timed("append_audit") { try await base.appendAudit(entry) }
    }
    func audit(limit: Int) async throws -> [AuditEntry] { try await timed("audit") { try await base.audit(limit: limit) } }
    func exportUnits() async throws -> [UnitExportRow] { try await timed("export_units") { try await base.exportUnits() } }
    func simAssignments() async throws -> [SIMAssignment] {
        try await timed("sim_assignments") { try await base.simAssignments() }
    }
    func silentUnits(lastSeenBefore before: Date) async throws -> [String] {
        try await timed("silent_units") { try await base.silentUnits(lastSeenBefore: before) }
    }
    func openFlagCounts() async throws -> [FlagKind: Int] {
        try await timed("open_flag_counts") { try await base.openFlagCounts() }
    }
}
