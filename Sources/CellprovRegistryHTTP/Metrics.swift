import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Hummingbird
import Prometheus
import NIOConcurrencyHelpers

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

/// The store, with each call's latency recorded (`database_duration_seconds{operation}`) and bounded by a deadline
/// (docs/registry.md, "When the database does not answer"). A decorator, so that the HTTP layer measures and
/// bounds whichever backend it is given without either backend knowing about it.
///
/// A call that passes its deadline throws ``StoreDeadlineExceeded`` at once (the HTTP layer answers 503 with
/// `Retry-After`) and is cancelled: the pool's checkout and a query honour cancellation; a backend call that does
/// not is left to finish on its own, its answer dropped. Every request-path call gets `deadlines.request` (pool
/// checkout included); `/readyz` gets `deadlines.ready`; the whole-table reads of exports and reconciliation get
/// `deadlines.bulk`. Start-up calls (migrations, keys) have none: the executable waits for them.
struct TimedStore: RegistryStore {
    let base: any RegistryStore
    let metrics: RegistryMetrics
    var deadlines = StoreDeadlines()

    private func timed<T: Sendable>(
        _ op: String, deadline: Duration? = nil, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let clock = ContinuousClock()
        let start = clock.now
        defer { metrics.database(operation: op, duration: clock.now - start) }
        return try await withDeadline(deadline ?? deadlines.request, operation: op, body)
    }

    private func unbounded<T>(_ op: String, _ body: () async throws -> T) async rethrows -> T {
        let clock = ContinuousClock()
        let start = clock.now
        defer { metrics.database(operation: op, duration: clock.now - start) }
        return try await body()
    }

    func migrate() async throws { try await unbounded("migrate") { try await base.migrate() } }
    func checkReady() async throws {
        try await timed("check_ready", deadline: deadlines.ready) { [base] in try await base.checkReady() }
    }
    func pseudonymKey() async throws -> [UInt8] { try await unbounded("pseudonym_key") { try await base.pseudonymKey() } }
    func sessionKey() async throws -> [UInt8] { try await unbounded("session_key") { try await base.sessionKey() } }
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
    func startSession(idHash: String, tokenHash: String, expires: Date, at: Date) async throws {
        try await timed("start_session") {
            try await base.startSession(idHash: idHash, tokenHash: tokenHash, expires: expires, at: at)
        }
    }
    func session(idHash: String, at: Date) async throws -> (name: String, role: OperatorRole)? {
        try await timed("session") { try await base.session(idHash: idHash, at: at) }
    }
    func endSession(idHash: String) async throws {
        try await timed("end_session") { try await base.endSession(idHash: idHash) }
    }
    func ingest(
        _ request: EnrollmentRequest, serial: String, origin: EventOrigin, references: [String], receivedAt: Date,
        options: IngestOptions
    ) async throws -> IngestOutcome {
        try await timed("ingest") {
            try await base.ingest(
                request, serial: serial, origin: origin, references: references, receivedAt: receivedAt,
                options: options)
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
    func searchHolders(_ terms: SearchTerms, at: Date?, limit: Int) async throws -> [IdentifierHolder] {
        try await timed("search_holders") { try await base.searchHolders(terms, at: at, limit: limit) }
    }
    func unit(serial: String, at: Date) async throws -> UnitDetail? {
        try await timed("unit_as_of") { try await base.unit(serial: serial, at: at) }
    }
    func affectedUnits(_ filter: ModuleFilter, limit: Int, offset: Int) async throws -> [UnitSummary] {
        try await timed("affected_units") { try await base.affectedUnits(filter, limit: limit, offset: offset) }
    }
    func flags(_ query: FlagQuery, limit: Int) async throws -> [RegistryFlag] {
        try await timed("flags") { try await base.flags(query, limit: limit) }
    }
    func timeline(serial: String, cursor: PageCursor<TimelineKey>?, limit: Int) async throws -> [TimelineRow] {
        try await timed("timeline") { try await base.timeline(serial: serial, cursor: cursor, limit: limit) }
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
    func exportUnits() async throws -> [UnitExportRow] {
        try await timed("export_units", deadline: deadlines.bulk) { [base] in try await base.exportUnits() }
    }
    func simAssignments() async throws -> [SIMAssignment] {
        try await timed("sim_assignments", deadline: deadlines.bulk) { [base] in try await base.simAssignments() }
    }
    func silentUnits(lastSeenBefore before: Date) async throws -> [String] {
        try await timed("silent_units") { try await base.silentUnits(lastSeenBefore: before) }
    }
    func openFlagCounts() async throws -> [FlagKind: Int] {
        try await timed("open_flag_counts") { try await base.openFlagCounts() }
    }
    func overviewCounts(_ query: OverviewQuery) async throws -> OverviewCounts {
        try await timed("overview") { try await base.overviewCounts(query) }
    }
}

/// How long the HTTP layer waits for the database.
struct StoreDeadlines: Sendable {
    /// Any call on a request's path, pool checkout included: well under cellprovd's own 30 s read timeout, so a
    /// device gets 503 and keeps its event rather than timing out.
    var request: Duration = .seconds(5)
    /// `/readyz`: a load balancer's health check answers within this (plus the request's own handling).
    var ready: Duration = .milliseconds(1500)
    /// The whole-table reads of the CSV export and carrier reconciliation.
    var bulk: Duration = .seconds(60)
}

/// A store call that did not answer within its deadline.
struct StoreDeadlineExceeded: Error, CustomStringConvertible {
    var operation: String
    var deadline: Duration
    var description: String { "the database did not answer \(operation) within \(deadline)" }
}

/// Runs `body`, and throws ``StoreDeadlineExceeded`` if it has not finished after `deadline`; the body is then
/// cancelled but not waited for (a task group would wait for a body that ignores cancellation). Cancelling the
/// caller cancels the body.
func withDeadline<T: Sendable>(
    _ deadline: Duration, operation: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation, deadline: deadline, operation: operation, body)
        }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The body and the timer of ``withDeadline``: whichever ends first resumes the caller and cancels the other. The
/// timer is a dispatch timer source, not a task: under load the concurrency pool's threads are all busy with
/// requests, and a sleeping task woke seconds late (a 200 ms deadline fired after about 5 s in a test); a timer
/// source fires on its own thread, and a cancelled one is released at once.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        var timer: Timer?
        var started = false
        /// Cancelled before `start` ran.
        var cancelled = false
    }
    private let state = NIOLockedValueBox(State())

    /// A dispatch timer source; libdispatch's source calls are thread-safe (the type is not marked Sendable).
    private struct Timer: @unchecked Sendable {
        let source: any DispatchSourceTimer
        func cancel() { source.cancel() }
    }

    func start(
        _ continuation: CheckedContinuation<T, any Error>, deadline: Duration, operation: String,
        _ body: @escaping @Sendable () async throws -> T
    ) {
        let cancelledBefore = state.withLockedValue { s -> Bool in
            s.started = true
            if s.cancelled { return true }
            s.continuation = continuation
            return false
        }
        if cancelledBefore {
            continuation.resume(throwing: CancellationError())
            return
        }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.setEventHandler {
            self.finish(.failure(StoreDeadlineExceeded(operation: operation, deadline: deadline)))
        }
        timer.schedule(deadline: .now() + .nanoseconds(Int(clamping: deadline.nanoseconds)))
        let work = Task {
            do { self.finish(.success(try await body())) } catch { self.finish(.failure(error)) }
        }
        let finished = state.withLockedValue { s -> Bool in
            // Already finished (the body was quick, or the caller cancelled): nothing to keep.
            guard s.continuation != nil else { return true }
            s.work = work
            s.timer = Timer(source: timer)
            return false
        }
        // Always resumed: libdispatch traps when a source is released while suspended.
        timer.resume()
        if finished {
            work.cancel()
            timer.cancel()
        }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, work, timer) = state.withLockedValue { s in
            if !s.started { s.cancelled = true }
            let c = s.continuation
            s.continuation = nil
            defer { (s.work, s.timer) = (nil, nil) }
            return (c, s.work, s.timer)
        }
        guard let continuation else { return }
        work?.cancel()
        timer?.cancel()
        continuation.resume(with: result)
    }
}
