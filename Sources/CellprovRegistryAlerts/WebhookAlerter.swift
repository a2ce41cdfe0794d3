import AsyncHTTPClient
import CellprovCore
import CellprovRegistryCore
import Foundation
import Logging
import NIOCore
import NIOConcurrencyHelpers

/// Where and how critical flags are sent.
public struct WebhookConfiguration: Sendable {
    /// The webhook (http or https).
    public var url: String
    /// Flags at this severity and above are sent (the issue: critical flags).
    public var minimumSeverity: EventSeverity
    /// Extra request headers (e.g. `Authorization` for the receiving service). Never logged.
    public var headers: [(String, String)]
    /// Alerts waiting while the webhook is down; beyond it the oldest are dropped (counted, logged).
    public var queueCapacity: Int
    /// Attempts per alert before it is given up (counted, logged).
    public var maxAttempts: Int
    /// The backoff before the second attempt; doubled each attempt up to ``maxBackoff``, with jitter.
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// One request's deadline.
    public var requestTimeout: Duration

    public init(
        url: String, minimumSeverity: EventSeverity = .critical, headers: [(String, String)] = [],
        queueCapacity: Int = 1000, maxAttempts: Int = 12, initialBackoff: Duration = .seconds(2),
        maxBackoff: Duration = .seconds(300), requestTimeout: Duration = .seconds(10)
    ) {
        self.url = url
        self.minimumSeverity = minimumSeverity
        self.headers = headers
        self.queueCapacity = max(1, queueCapacity)
        self.maxAttempts = max(1, maxAttempts)
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.requestTimeout = requestTimeout
    }
}

/// What the alerter has done, for `/metrics` and tests.
public struct WebhookAlerterStatistics: Sendable, Equatable {
    public var delivered = 0
    /// Failed attempts that were retried.
    public var retries = 0
    /// Alerts given up: refused for good (4xx but 408/429) or out of attempts.
    public var givenUp = 0
    /// Alerts dropped because the queue was full.
    public var droppedOverflow = 0
    /// Alerts waiting (the one being sent not counted).
    public var queued = 0
}

/// POSTs critical flags to a webhook.
///
/// ``enqueue(_:)`` never waits: it appends to a bounded in-memory queue and returns, so ingest (which calls it
/// after its transaction) is never slowed by the webhook. One worker (``run()``) sends the alerts in order, one at
/// a time; a failure (connection error, timeout, 5xx, 408, 429) is retried with exponential backoff and jitter
/// (``backoff(attempt:initial:maximum:jitter:)``; a `Retry-After` in seconds is honoured up to the maximum), up to
/// ``WebhookConfiguration/maxAttempts``; any other 4xx is final. While the webhook is down, new alerts wait; when
/// more than ``WebhookConfiguration/queueCapacity`` wait, the oldest are dropped and counted, with one warning per
/// overflow episode (not one per alert). The queue is not persistent: the flags themselves are in the store
/// (`GET /v1/flags`), the webhook is a notification.
///
/// The body carries no identifier digits: identifiers only in their masked forms (``AlertPayload``).
public final class WebhookAlerter: Sendable {
    struct State {
        /// Flags as raised: masking (HMAC references) happens in the worker, so that `enqueue` stays cheap.
        var queue: [RegistryFlag] = []
        var statistics = WebhookAlerterStatistics()
        /// Overflow drops not yet logged (logged by the worker, so `enqueue` never logs per alert).
        var unreportedDrops = 0
    }

    public let configuration: WebhookConfiguration
    private let state = NIOLockedValueBox(State())
    private let client: HTTPClient
    private let logger: Logger
    private let wake: AsyncStream<Void>.Continuation
    private let wakeups: AsyncStream<Void>

    public init(configuration: WebhookConfiguration, client: HTTPClient = .shared, logger: Logger) {
        self.configuration = configuration
        self.client = client
        self.logger = logger
        (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    public var statistics: WebhookAlerterStatistics {
        state.withLockedValue { s in
            var stats = s.statistics
            stats.queued = s.queue.count
            return stats
        }
    }

    /// Queues the flags at or above the configured severity; returns at once (never blocks, never throws).
    public func enqueue(_ flags: [RegistryFlag]) {
        let wanted = flags.filter { Self.rank($0.flag.severity) >= Self.rank(configuration.minimumSeverity) }
        guard !wanted.isEmpty else { return }
        state.withLockedValue { s in
            s.queue.append(contentsOf: wanted)
            let excess = s.queue.count - configuration.queueCapacity
            if excess > 0 {
                s.queue.removeFirst(excess)
                s.statistics.droppedOverflow += excess
                s.unreportedDrops += excess
            }
        }
        wake.yield()
    }

    /// Sends queued alerts until the task is cancelled or ``finish()`` is called (then returns; what is still queued
    /// is not sent). Run it once, in one task (e.g. a service of the executable's ServiceGroup).
    public func run() async {
        for await _ in wakeups {
            reportDrops()
            while !Task.isCancelled, let next = pop() {
                await deliver(AlertPayload(next))
                reportDrops()
            }
            if Task.isCancelled { return }
        }
    }

    /// Stops ``run()`` once the current delivery ends.
    public func finish() { wake.finish() }

    private func pop() -> RegistryFlag? {
        state.withLockedValue { s in s.queue.isEmpty ? nil : s.queue.removeFirst() }
    }

    private func reportDrops() {
        let (dropped, total) = state.withLockedValue { s -> (Int, Int) in
            defer { s.unreportedDrops = 0 }
            return (s.unreportedDrops, s.statistics.droppedOverflow)
        }
        guard dropped > 0 else { return }
        logger.warning(
            "alert queue full: oldest alerts dropped (webhook down)",
            metadata: [
                AlertMessageID.metadataKey: .string(AlertMessageID.alertQueueOverflow.id),
                "dropped": "\(dropped)", "dropped_total": "\(total)",
                "capacity": "\(configuration.queueCapacity)",
            ])
    }

    enum Outcome: Equatable {
        case delivered
        case retry(after: Duration?, reason: String)
        case final(reason: String)
    }

    private func deliver(_ payload: AlertPayload) async {
        let body: [UInt8]
        do {
            body = try payload.jsonBytes()
        } catch {
            giveUp(["flag_id": "\(payload.id)", "kind": "\(payload.kind)"], reason: "the payload cannot be encoded")
            return
        }
        var attempt = 1
        while true {
            let outcome = await post(body)
            let meta: Logger.Metadata = ["flag_id": "\(payload.id)", "kind": "\(payload.kind)", "attempt": "\(attempt)"]
            switch outcome {
            case .delivered:
                state.withLockedValue { $0.statistics.delivered += 1 }
                logger.info(
                    "alert delivered",
                    metadata: meta.merging([AlertMessageID.metadataKey: .string(AlertMessageID.alertDelivered.id)]) {
                        $1
                    })
                return
            case .final(let reason):
                giveUp(meta, reason: reason)
                return
            case .retry(let retryAfter, let reason):
                guard attempt < configuration.maxAttempts else {
                    giveUp(meta, reason: "\(reason); no attempts left")
                    return
                }
                var delay = Self.backoff(
                    attempt: attempt, initial: configuration.initialBackoff, maximum: configuration.maxBackoff,
                    jitter: Double.random(in: 0...1))
                if let retryAfter { delay = min(max(delay, retryAfter), configuration.maxBackoff) }
                state.withLockedValue { $0.statistics.retries += 1 }
                logger.warning(
                    "alert delivery failed, retrying",
                    metadata: meta.merging([
                        AlertMessageID.metadataKey: .string(AlertMessageID.alertRetrying.id),
                        "reason": .string(reason), "retry_in_ms": "\(delay.milliseconds)",
                    ]) { $1 })
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    return  // cancelled: stop
                }
                attempt += 1
            }
        }
    }

    private func giveUp(_ meta: Logger.Metadata, reason: String) {
        state.withLockedValue { $0.statistics.givenUp += 1 }
        logger.error(
            "alert given up",
            metadata: meta.merging([
                RegistryMessageID.metadataKey: .string(RegistryMessageID.alertFailed.id), "reason": .string(reason),
            ]) { $1 })
    }

    private func post(_ body: [UInt8]) async -> Outcome {
        // Built and scrubbed as cellprovd's and the factory station's senders do (CellprovCore's JSONPost and
        // HTTPAnswer); the registry does not link their transport (a daemon edge).
        let post = JSONPost(
            url: configuration.url, body: body, userAgent: "cellprov-registry", extraHeaders: configuration.headers)
        var request = HTTPClientRequest(url: post.url)
        request.method = .POST
        for (name, value) in post.headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: post.body))
        do {
            let response = try await client.execute(
                request, timeout: .milliseconds(configuration.requestTimeout.milliseconds))
            // Read (and bound) the body so the connection can be reused.
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let code = Int(response.status.code)
            switch code {
            case 200..<300:
                return .delivered
            case 408, 429, 500...599:
                let retryAfter = response.headers.first(name: "Retry-After").flatMap(Int.init).map {
                    Duration.seconds(max(0, $0))
                }
                return .retry(after: retryAfter, reason: "HTTP \(code)")
            default:
                return .final(reason: "HTTP \(code)")
            }
        } catch {
            // Error texts of the HTTP client name hosts and states, never the body.
            return .retry(after: nil, reason: HTTPAnswer.failure(String(describing: error)))
        }
    }

    /// The wait before attempt `attempt + 1`: `initial × 2^(attempt-1)`, capped at `maximum`, then scaled into its
    /// upper half by `jitter` (0...1): "equal jitter", so that many registries retrying one webhook spread out
    /// while each still waits at least half the nominal backoff.
    public static func backoff(attempt: Int, initial: Duration, maximum: Duration, jitter: Double) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let nominalMS = min(Double(initial.milliseconds) * pow(2, Double(exponent)), Double(maximum.milliseconds))
        let scaled = nominalMS * (0.5 + 0.5 * min(max(jitter, 0), 1))
        return .milliseconds(Int64(scaled.rounded()))
    }

    static func rank(_ severity: EventSeverity) -> Int {
        switch severity {
        case .info: 0
        case .notice: 1
        case .warning: 2
        case .critical: 3
        }
    }
}
