import AsyncHTTPClient
import CellprovCore
import CellprovEnrollmentAPI
import FoundationEssentials
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// Where and how to deliver: `[backend]` of the configuration, resolved.
public struct ReporterConfiguration: Sendable {
    public var url: URL
    public var token: String?
    public var caFile: String?
    public var clientCertificate: String?
    public var clientKey: String?
    public var deviceSerial: String?
    public var userAgent: String
    public var requestTimeout: Duration = .seconds(30)
    /// Backoff after a retryable failure: base * 2^n, capped, with ±50 % jitter.
    public var backoffBase: Duration = .seconds(1)
    public var backoffCap: Duration = .seconds(300)

    public init(
        url: URL, token: String? = nil, caFile: String? = nil, clientCertificate: String? = nil,
        clientKey: String? = nil, deviceSerial: String? = nil, userAgent: String = "cellprovd/0.1.0"
    ) {
        self.url = url
        self.token = token
        self.caFile = caFile
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.deviceSerial = deviceSerial
        self.userAgent = userAgent
    }
}

public struct ReporterError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// The outcome of one POST, as the outbox sees it.
public enum DeliveryOutcome: Sendable, Equatable {
    /// 2xx, or 409 (the backend has it already).
    case delivered(status: Int)
    /// 400, 413, 422: the payload itself is wrong; kept with the reason, not retried (an operator may requeue it).
    case rejected(reason: String)
    /// 401, 403, or a TLS alert refusing our client certificate (``HTTPSender/refusalAlert(_:)``): the backend
    /// refuses our credentials (a rotated token, an expired or foreign client certificate, a blocked unit).
    /// Nothing is wrong with the event: it stays waiting and is retried with backoff.
    case refused(reason: String)
    /// 5xx, other 4xx, timeout, connection or TLS failure: retried with backoff.
    case retry(reason: String)

    /// Classifies an HTTP status. Only an answer about the payload throws an event out of the outbox: anything
    /// that can be fixed on our side or the backend's (credentials, a wrong URL giving 404, back-pressure) keeps
    /// it waiting, so that fixing it delivers every event.
    public static func classify(status: Int, body: String) -> DeliveryOutcome {
        let reason = HTTPAnswer.reason(status: status, scrubbedBody: body)
        switch status {
        case 200..<300, 409: return .delivered(status: status)
        case 400, 413, 422: return .rejected(reason: reason)
        case 401, 403: return .refused(reason: reason)
        default: return .retry(reason: status >= 400 && status < 500 ? reason : "HTTP \(status)")
        }
    }
}

/// Delivers outbox events to `POST {url}/v1/enrollments`, oldest first, one at a time (so each slot's events
/// arrive in order), until the task is cancelled. Retries without end on retryable failures; wakes when
/// ``wake()`` says new events were committed.
public actor Reporter: BackoffSleeping {
    private var config: ReporterConfiguration
    private let outbox: any Outbox
    private let logger: Logger
    /// Created on the first delivery, not at start: an idle daemon with an empty outbox never starts NIO's event
    /// loop threads nor a TLS context (issue 8: threads and memory at idle).
    private var client: HTTPClient?
    private var clientConfig: HTTPClient.Configuration
    private let wakeStream: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    private let onDelivery: @Sendable (IdentityEvent, DeliveryOutcome) -> Void
    private var failures = 0
    private var refusals = 0
    /// The backoff sleep in progress, and whether a reload came while none was.
    var sleeper: CheckedContinuation<Void, Never>?
    var interrupted = false

    public init(
        config: ReporterConfiguration, outbox: any Outbox, logger: Logger,
        onDelivery: @escaping @Sendable (IdentityEvent, DeliveryOutcome) -> Void = { _, _ in }
    ) throws {
        self.config = config
        self.outbox = outbox
        self.logger = logger
        self.onDelivery = onDelivery
        clientConfig = try Self.makeClientConfiguration(config)
        (wakeStream, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The HTTP client's configuration for `config` (``HTTPSender/clientConfiguration(url:caFile:clientCertificate:clientKey:)``).
    /// Read (and checked) at start and on reload, so that a bad file is reported then; the client itself is made on
    /// the first delivery.
    static func makeClientConfiguration(_ config: ReporterConfiguration) throws -> HTTPClient.Configuration {
        try HTTPSender.clientConfiguration(
            url: config.url, caFile: config.caFile, clientCertificate: config.clientCertificate,
            clientKey: config.clientKey)
    }

    /// New events are in the outbox.
    public nonisolated func wake() {
        wakeContinuation.yield()
    }

    /// SIGHUP: new credentials (the token file, the CA file, the client certificate and key, read again by the
    /// caller and here). The next attempt uses them at once, without waiting out the backoff; on an error the
    /// old credentials stay.
    public func reload(_ newConfig: ReporterConfiguration) async throws {
        clientConfig = try Self.makeClientConfiguration(newConfig)
        let old = client
        client = nil  // the next delivery makes one with the new credentials
        config.token = newConfig.token
        config.caFile = newConfig.caFile
        config.clientCertificate = newConfig.clientCertificate
        config.clientKey = newConfig.clientKey
        failures = 0
        refusals = 0  // a refusal of the new credentials is logged again
        interruptSleep()
        wake()
        try? await old?.shutdown()
    }

    /// Delivers until cancelled, then shuts the HTTP client down.
    public func run() async {
        var wakes = wakeStream.makeAsyncIterator()
        while !Task.isCancelled {
            let pending: [IdentityEvent]
            do {
                pending = try outbox.pending(limit: 50)
            } catch {
                logger.error("cannot read the outbox: \(error)")
                await sleep(backoff())
                continue
            }
            if pending.isEmpty {
                guard await wakes.next() != nil else { break }
                continue
            }
            for event in pending {
                if Task.isCancelled { break }
                let outcome = await deliver(event)
                // Stopped mid-request: the request was cancelled, not failed; leave the outbox as it was.
                if Task.isCancelled, case .retry = outcome { break }
                record(event, outcome)
                switch outcome {
                case .retry, .refused:
                    await sleep(backoff())
                default:
                    failures = 0
                    interrupted = false  // a reload's interruption is for the backoff it came during
                    continue
                }
                break  // start again from the oldest
            }
        }
        try? await client?.shutdown()
    }

    private func httpClient() -> HTTPClient {
        if let client { return client }
        let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfig)
        client = made
        return made
    }

    /// One POST of one event.
    public func deliver(_ event: IdentityEvent) async -> DeliveryOutcome {
        let body: [UInt8]
        do {
            body = try EnrollmentPayload.encode(event, deviceSerial: config.deviceSerial)
        } catch {
            return .retry(reason: HTTPAnswer.failure(HTTPSender.describe(error)))
        }
        let post = JSONPost(
            url: EnrollmentAPI.url(base: config.url).absoluteString, body: body, userAgent: config.userAgent,
            idempotencyKey: event.id.uuidString.lowercased(), bearerToken: config.token)
        switch await HTTPSender(client: httpClient()).send(post, timeout: config.requestTimeout) {
        case .answered(let status, let body): return Self.outcome(status: status, body: body)
        case .failed(let reason): return .retry(reason: reason)
        case .refused(let reason): return .refused(reason: reason)
        }
    }

    /// The outcome of the backend's answer. Its body is untrusted text that may echo the payload: scrubbed of
    /// anything that could be an identifier and cut to 200 characters before it becomes a reason (stored, logged).
    public static func outcome(status: Int, body: [UInt8]) -> DeliveryOutcome {
        DeliveryOutcome.classify(status: status, body: HTTPAnswer.scrubbedBody(body))
    }

    private func record(_ event: IdentityEvent, _ outcome: DeliveryOutcome) {
        var meta: Logger.Metadata = [
            "event_id": "\(event.id.uuidString.lowercased())", "event": "\(event.type.rawValue)", "slot": "\(event.slot)",
        ]
        if case .refused = outcome {} else { refusals = 0 }
        do {
            switch outcome {
            case .delivered(let status):
                try outbox.delivered(event.id)
                meta["status"] = "\(status)"
                logger.info("event delivered", metadata: meta)
            case .rejected(let reason):
                try outbox.rejected(event.id, reason: reason)
                meta["reason"] = "\(reason)"
                meta["MESSAGE_ID"] = "\(CellprovMessageID.deliveryFailed.id)"
                logger.error(
                    "backend rejected the event as malformed; kept, not retried (cellprov events --requeue)",
                    metadata: meta)
            case .refused(let reason):
                failures += 1
                refusals += 1
                try outbox.refused(event.id, reason: reason)
                // No identifiers and no event: the cause is ours (or the backend's view of us), not the event's.
                if refusals == 1 || refusals % 10 == 0 {
                    let status = reason.prefix { $0 != ":" }
                    logger.error(
                        """
                        backend refuses our credentials (\(status)): events stay waiting and are retried; renew the \
                        token file or the client certificate (or ask why the backend blocks this unit), then \
                        systemctl reload cellprovd
                        """,
                        metadata: [
                            "status": "\(status)", "attempt": "\(refusals)",
                            "MESSAGE_ID": "\(CellprovMessageID.credentialsRefused.id)",
                        ])
                }
            case .retry(let reason):
                failures += 1
                try outbox.attemptFailed(event.id, error: reason)
                meta["reason"] = "\(reason)"
                meta["attempt"] = "\(failures)"
                if failures == 1 || failures % 10 == 0 {
                    meta["MESSAGE_ID"] = "\(CellprovMessageID.deliveryFailed.id)"
                    logger.warning("delivery failed; will retry", metadata: meta)
                }
            }
        } catch {
            logger.error("cannot update the outbox: \(error)")
        }
        onDelivery(event, outcome)
    }

    private func backoff() -> Duration {
        RetryBackoff.delay(failures: failures, base: config.backoffBase, cap: config.backoffCap)
    }
}

/// The enrollment API's request body (docs/enrollment-api.yaml): CellprovEnrollmentAPI's wire type, shared with
/// cellprov-registry's decoder.
public enum EnrollmentPayload {
    public static func encode(_ event: IdentityEvent, deviceSerial: String?) throws -> [UInt8] {
        try EnrollmentRequest(event, deviceSerial: deviceSerial).jsonBytes()
    }
}
