import AsyncHTTPClient
import CellprovCore
import CellprovEnrollmentAPI
import FoundationEssentials
import Logging
import NIOCore
import NIOHTTP1

/// Where and how to keep a hawkBit target's attributes: `[hawkbit]` of cellprovd's configuration, resolved (the
/// token read from its file by the caller, under ``TokenFile``'s rule).
public struct HawkBitConfiguration: Sendable {
    /// hawkBit's base URL (its DDI API is under `{url}/{tenant}/controller/v1/`): https, or plain http to loopback.
    public var url: URL
    public var tenant: String
    public var controllerID: String
    /// The target security token (`Authorization: TargetToken ...`); nil with a client certificate only.
    public var token: String?
    public var caFile: String?
    public var clientCertificate: String?
    public var clientKey: String?
    public var userAgent: String
    public var requestTimeout: Duration = .seconds(30)
    /// Backoff after a failure: base * 2^n, capped, with ±50 % jitter (the reporter's rule, ``RetryBackoff``).
    public var backoffBase: Duration = .seconds(1)
    public var backoffCap: Duration = .seconds(300)
    /// The least time between the starts of two requests: changes that come closer are sent together.
    public var minimumInterval: Duration = .seconds(1)

    public init(
        url: URL, tenant: String, controllerID: String, token: String?, caFile: String? = nil,
        clientCertificate: String? = nil, clientKey: String? = nil, userAgent: String = "cellprovd/0.1.0"
    ) {
        self.url = url
        self.tenant = tenant
        self.controllerID = controllerID
        self.token = token
        self.caFile = caFile
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.userAgent = userAgent
    }

    /// `PUT` target: `{url}/{tenant}/controller/v1/{controllerID}/configData`.
    public var configDataURL: String {
        HawkBitDDI.configDataURL(base: url.absoluteString, tenant: tenant, controllerID: controllerID)
    }
}

/// The backoff of cellprov's senders: `base * 2^failures` (the exponent capped at 16), at most `cap`, times a random
/// factor in 0.5...1.5 so that a fleet does not retry in step.
public enum RetryBackoff {
    public static func delay(failures: Int, base: Duration, cap: Duration) -> Duration {
        let exponent = min(max(failures, 0), 16)
        return min(base * (1 << exponent), cap) * Double.random(in: 0.5...1.5)
    }
}

/// Keeps a hawkBit target's attributes equal to what `attributes` says, through the DDI `configData` resource
/// (``HawkBitDDI``), until the task running ``run()`` is cancelled.
///
/// It pulls: on ``changed()`` (and once at start) it asks `attributes` for the current set, and sends it when it
/// differs from the last set hawkBit accepted in this run (so the first set after a start is always sent). A change
/// that comes while a request is under way or while a failure's backoff runs is not queued: the next attempt pulls
/// the set again, so only the newest is ever sent and nothing is lost (the caller derives the set from durable
/// state). Failures are retried without end with ``RetryBackoff``; a set hawkBit refused as malformed (400, 413,
/// 415, 422) is not sent again until it changes or ``reload(_:)`` is called.
///
/// Costs a hostile or broken server can impose are bounded: one request at a time, 30 s each (10 s to connect), no
/// redirects, the answer read to ``HTTPAnswer/bodyLimit`` bytes and scrubbed to 200 characters before it is logged,
/// a failure logged at the first attempt and every tenth after (and once when it works again). Its own HTTP client,
/// made on the first request: nothing it waits for delays a read, a commit or an enrollment delivery.
public actor HawkBitUpdater: BackoffSleeping {
    public typealias Attributes = [String: String]

    private var config: HawkBitConfiguration
    private var clientConfig: HTTPClient.Configuration
    private var client: HTTPClient?
    private let logger: Logger
    private let attributes: @Sendable () throws -> Attributes
    private let onOutcome: @Sendable (HawkBitDDI.Outcome) -> Void
    private let wakeStream: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    /// The last set hawkBit accepted, and the last it refused as malformed.
    private var accepted: Attributes?
    private var rejected: Attributes?
    private var failures = 0
    private var lastStart: ContinuousClock.Instant?
    var sleeper: CheckedContinuation<Void, Never>?
    var interrupted = false

    /// Checks the URL (``BackendURL``: https, or plain http to loopback) and reads the CA file and the client
    /// certificate; throws ``ReporterError`` otherwise. `attributes` is called on this actor, for each attempt.
    public init(
        config: HawkBitConfiguration, logger: Logger, attributes: @escaping @Sendable () throws -> Attributes,
        onOutcome: @escaping @Sendable (HawkBitDDI.Outcome) -> Void = { _ in }
    ) throws {
        self.config = config
        self.logger = logger
        self.attributes = attributes
        self.onOutcome = onOutcome
        clientConfig = try Self.clientConfiguration(config)
        (wakeStream, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    static func clientConfiguration(_ config: HawkBitConfiguration) throws -> HTTPClient.Configuration {
        guard BackendURL.check(config.url) == .allowed else {
            throw ReporterError(description: "hawkbit url: https is required (plain http only to loopback)")
        }
        return try HTTPSender.clientConfiguration(
            url: config.url, caFile: config.caFile, clientCertificate: config.clientCertificate,
            clientKey: config.clientKey)
    }

    /// The attributes may have changed: the next attempt pulls them again. Never blocks.
    public nonisolated func changed() {
        wakeContinuation.yield()
    }

    /// SIGHUP: new credentials (the token file, the CA file, the client certificate, read again by the caller). The
    /// next attempt uses them at once, without waiting out a backoff, and a set refused before is tried again. On an
    /// error the old credentials stay.
    public func reload(_ newConfig: HawkBitConfiguration) async throws {
        clientConfig = try Self.clientConfiguration(newConfig)
        let old = client
        client = nil
        config.token = newConfig.token
        config.caFile = newConfig.caFile
        config.clientCertificate = newConfig.clientCertificate
        config.clientKey = newConfig.clientKey
        failures = 0
        rejected = nil
        interruptSleep()
        changed()
        try? await old?.shutdown()
    }

    /// Sends the current attributes at start, then after every change, until cancelled; then shuts the client down.
    public func run() async {
        var wakes = wakeStream.makeAsyncIterator()
        var due = true  // at start: send what the state says now
        while !Task.isCancelled {
            if !due {
                guard await wakes.next() != nil else { break }
            }
            due = false
            await spaceRequests()
            if Task.isCancelled { break }
            let current: Attributes
            do {
                current = try attributes()
            } catch {
                failures += 1
                logFailure("cannot read the attributes from the state: \(HTTPAnswer.failure("\(error)"))")
                await sleep(RetryBackoff.delay(failures: failures, base: config.backoffBase, cap: config.backoffCap))
                due = true
                continue
            }
            if current == accepted || current == rejected { continue }
            let outcome = await send(current)
            if Task.isCancelled, case .retry = outcome { break }  // stopped mid-request: not a failure
            onOutcome(outcome)
            switch outcome {
            case .accepted:
                if failures > 0 {
                    logger.notice(
                        "hawkBit accepts the target's attributes again", metadata: ["attempts": "\(failures + 1)"])
                } else {
                    logger.debug("hawkBit attributes sent", metadata: ["attributes": "\(current.count)"])
                }
                accepted = current
                failures = 0
            case .rejected(let reason):
                rejected = current
                failures = 0
                logger.error(
                    """
                    hawkBit refuses the target's attributes (\(reason)); not sent again until they change or \
                    systemctl reload cellprovd
                    """)
            case .refused, .unknownTarget, .retry:
                failures += 1
                logFailure(Self.describe(outcome, config: config))
                await sleep(RetryBackoff.delay(failures: failures, base: config.backoffBase, cap: config.backoffCap))
                due = true
            }
        }
        try? await client?.shutdown()
    }

    /// One PUT of `attributes` (merge).
    public func send(_ attributes: Attributes) async -> HawkBitDDI.Outcome {
        let body: [UInt8]
        do {
            body = try HawkBitDDI.body(attributes, mode: .merge)
        } catch {
            return .rejected(reason: error.description)
        }
        lastStart = ContinuousClock().now
        var extra: [(String, String)] = []
        if let token = config.token { extra.append(("Authorization", HawkBitDDI.authorization(targetToken: token))) }
        let request = JSONPost(url: config.configDataURL, body: body, userAgent: config.userAgent, extraHeaders: extra)
        switch await HTTPSender(client: httpClient()).send(request, method: .PUT, timeout: config.requestTimeout) {
        case .answered(let status, let body): return HawkBitDDI.outcome(status: status, body: body)
        case .failed(let reason): return .retry(reason: reason)
        case .refused(let reason): return .refused(reason: reason)
        }
    }

    private func httpClient() -> HTTPClient {
        if let client { return client }
        let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfig)
        client = made
        return made
    }

    static func describe(_ outcome: HawkBitDDI.Outcome, config: HawkBitConfiguration) -> String {
        switch outcome {
        case .refused(let reason):
            return """
                hawkBit refuses the target token (\(reason)); retrying: check token_file against the target's security \
                token and that target token authentication is on for the tenant, then systemctl reload cellprovd
                """
        case .unknownTarget(let reason):
            return """
                hawkBit knows no target \(config.controllerID) in tenant \(config.tenant) (\(reason)); retrying: the \
                target appears when the update client first polls or when it is created in hawkBit
                """
        default:
            return "cannot send the attributes to hawkBit (\(outcome.reason ?? "")); retrying"
        }
    }

    /// A failure, logged at the first attempt and every tenth after: a server that keeps failing costs one line per
    /// ten attempts (at most one per five minutes once the backoff is capped).
    private func logFailure(_ text: String) {
        guard failures == 1 || failures % 10 == 0 else { return }
        logger.warning("\(text)", metadata: ["attempt": "\(failures)"])
    }

    /// At most one request per ``HawkBitConfiguration/minimumInterval``.
    private func spaceRequests() async {
        guard let lastStart else { return }
        let wait = lastStart + config.minimumInterval - ContinuousClock().now
        if wait > .zero { try? await Task.sleep(for: wait) }
    }
}
