import AsyncHTTPClient
import CellprovCore
import CellprovStore
import CellprovSystemd
import Foundation
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
    /// Another 4xx: refused for good; kept with the reason, not retried.
    case rejected(reason: String)
    /// 5xx, timeout, connection or TLS failure: retried with backoff.
    case retry(reason: String)

    /// Classifies an HTTP status.
    public static func classify(status: Int, body: String) -> DeliveryOutcome {
        switch status {
        case 200..<300, 409: return .delivered(status: status)
        // 408 Request Timeout, 425 Too Early, 429 Too Many Requests: the backend asks to come back later.
        case 408, 425, 429: return .retry(reason: "HTTP \(status)")
        case 400..<500: return .rejected(reason: "HTTP \(status)" + (body.isEmpty ? "" : ": \(body)"))
        default: return .retry(reason: "HTTP \(status)")
        }
    }
}

/// Delivers outbox events to `POST {url}/v1/enrollments`, oldest first, one at a time (so each slot's events
/// arrive in order), until the task is cancelled. Retries without end on retryable failures; wakes when
/// ``wake()`` says new events were committed.
public actor Reporter {
    private let config: ReporterConfiguration
    private let store: StateStore
    private let logger: Logger
    /// Created on the first delivery, not at start: an idle daemon with an empty outbox never starts NIO's event
    /// loop threads nor a TLS context (issue 8: threads and memory at idle).
    private var client: HTTPClient?
    private let clientConfig: HTTPClient.Configuration
    private let wakeStream: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    private let onDelivery: @Sendable (IdentityEvent, DeliveryOutcome) -> Void
    private var failures = 0

    public init(
        config: ReporterConfiguration, store: StateStore, logger: Logger,
        onDelivery: @escaping @Sendable (IdentityEvent, DeliveryOutcome) -> Void = { _, _ in }
    ) throws {
        self.config = config
        self.store = store
        self.logger = logger
        self.onDelivery = onDelivery
        let scheme = config.url.scheme?.lowercased()
        guard scheme == "https" || (scheme == "http" && Self.isLoopback(config.url.host ?? "")) else {
            throw ReporterError(description: "backend url: https is required (plain http only to loopback)")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let ca = config.caFile {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
        }
        if let cert = config.clientCertificate, let key = config.clientKey {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        var clientConfig = HTTPClient.Configuration(tlsConfiguration: tls)
        clientConfig.timeout = .init(connect: .seconds(10), read: .seconds(30))
        clientConfig.redirectConfiguration = .disallow
        // A failed connection (refused, TLS handshake) fails the request at once, so that it is classified,
        // counted and retried by run()'s own backoff; the pool's default is to retry silently until the request
        // deadline, which hid the reason (and the attempt) for a whole requestTimeout.
        clientConfig.connectionPool.retryConnectionEstablishment = false
        self.clientConfig = clientConfig
        (wakeStream, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// New events are in the outbox.
    public nonisolated func wake() {
        wakeContinuation.yield()
    }

    /// Delivers until cancelled, then shuts the HTTP client down.
    public func run() async {
        var wakes = wakeStream.makeAsyncIterator()
        while !Task.isCancelled {
            let pending: [StoredEvent]
            do {
                pending = try store.pendingEvents(limit: 50)
            } catch {
                logger.error("cannot read the outbox: \(error)")
                await sleep(backoff())
                continue
            }
            if pending.isEmpty {
                guard await wakes.next() != nil else { break }
                continue
            }
            for stored in pending {
                if Task.isCancelled { break }
                let outcome = await deliver(stored.event)
                // Stopped mid-request: the request was cancelled, not failed; leave the outbox as it was.
                if Task.isCancelled, case .retry = outcome { break }
                record(stored.event, outcome)
                if case .retry = outcome {
                    await sleep(backoff())
                    break  // start again from the oldest
                }
                failures = 0
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
        var request = HTTPClientRequest(url: config.url.appendingPathComponent("v1/enrollments").absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: event.id.uuidString.lowercased())
        request.headers.add(name: "User-Agent", value: config.userAgent)
        if let token = config.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        do {
            let body = try EnrollmentPayload.encode(event, deviceSerial: config.deviceSerial)
            request.body = .bytes(ByteBuffer(bytes: body))
            let (seconds, attoseconds) = config.requestTimeout.components
            let timeout = TimeAmount.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
            let response = try await httpClient().execute(request, timeout: timeout)
            let bytes = try await response.body.collect(upTo: 4096)
            let text = Redaction.scrub(String(buffer: bytes).trimmingCharacters(in: .whitespacesAndNewlines))
            return DeliveryOutcome.classify(status: Int(response.status.code), body: String(text.prefix(200)))
        } catch {
            return .retry(reason: Redaction.scrub(Self.describe(error)))
        }
    }

    private func record(_ event: IdentityEvent, _ outcome: DeliveryOutcome) {
        var meta: Logger.Metadata = [
            "event_id": "\(event.id.uuidString.lowercased())", "event": "\(event.type.rawValue)", "slot": "\(event.slot)",
        ]
        do {
            switch outcome {
            case .delivered(let status):
                try store.markDelivered(event.id)
                meta["status"] = "\(status)"
                logger.info("event delivered", metadata: meta)
            case .rejected(let reason):
                try store.markRejected(event.id, reason: reason)
                meta["reason"] = "\(reason)"
                meta["MESSAGE_ID"] = "\(CellprovMessageID.deliveryFailed.id)"
                logger.error("backend rejected the event; kept, not retried", metadata: meta)
            case .retry(let reason):
                failures += 1
                try store.markAttemptFailed(event.id, error: reason)
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
        let exponent = min(failures, 16)
        let base = config.backoffBase * (1 << exponent)
        let capped = min(base, config.backoffCap)
        return capped * Double.random(in: 0.5...1.5)
    }

    private func sleep(_ d: Duration) async {
        try? await Task.sleep(for: d)
    }

    /// localhost, ::1, or a dotted quad in 127.0.0.0/8: where plain http is allowed.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h == "localhost" || h == "::1" { return true }
        // 127.0.0.0/8, as a dotted quad only ("127.example.com" is a name anyone can register).
        let octets = h.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.first == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? HTTPClientError { return "\(e)" }
        if let e = error as? NIOSSLError { return "TLS: \(e)" }
        return "\(error)"
    }
}

/// The enrollment API's request body (docs/enrollment-api.yaml).
public enum EnrollmentPayload {
    struct Body: Encodable {
        struct Device: Encodable { var serial: String? }
        struct Module: Encodable {
            var slot: String
            var usb_serial: String?
            var manufacturer: String?
            var model: String?
            var revision: String?
        }
        struct Identity: Encodable {
            var imei: String?
            var imsi: String?
            var iccid: String?
        }
        struct ProblemBody: Encodable {
            var code: String
            var field: String
            var severity: String
            var message: String
        }
        var event_id: String
        var type: String
        var occurred_at: String
        var sequence: Int
        var severity: String
        var device: Device
        var module: Module
        var identity: Identity
        var previous: Identity?
        var usb_serial_changed: Bool?
        var other_slots: [String]?
        var problems: [ProblemBody]

        func encode(to encoder: any Encoder) throws {
            enum K: String, CodingKey {
                case event_id, type, occurred_at, sequence, severity, device, module, identity, previous
                case usb_serial_changed, other_slots, problems
            }
            var c = encoder.container(keyedBy: K.self)
            try c.encode(event_id, forKey: .event_id)
            try c.encode(type, forKey: .type)
            try c.encode(occurred_at, forKey: .occurred_at)
            try c.encode(sequence, forKey: .sequence)
            try c.encode(severity, forKey: .severity)
            try c.encode(device, forKey: .device)
            try c.encode(module, forKey: .module)
            try c.encode(identity, forKey: .identity)
            try c.encode(previous, forKey: .previous)  // null when there is none
            try c.encodeIfPresent(usb_serial_changed, forKey: .usb_serial_changed)
            try c.encodeIfPresent(other_slots, forKey: .other_slots)
            try c.encode(problems, forKey: .problems)
        }
    }

    public static func encode(_ event: IdentityEvent, deviceSerial: String?) throws -> [UInt8] {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        func identity(_ s: IdentitySnapshot) -> Body.Identity { .init(imei: s.imei, imsi: s.imsi, iccid: s.iccid) }
        let body = Body(
            event_id: event.id.uuidString.lowercased(), type: event.type.rawValue,
            occurred_at: f.string(from: event.occurredAt), sequence: event.sequence,
            severity: event.severity.rawValue, device: .init(serial: deviceSerial),
            module: .init(
                slot: event.slot, usb_serial: event.module.usbSerial, manufacturer: event.module.manufacturer,
                model: event.module.model, revision: event.module.revision),
            identity: identity(event.identity), previous: event.previous.map(identity),
            usb_serial_changed: event.usbSerialChanged, other_slots: event.otherSlots,
            problems: event.problems.map {
                .init(code: $0.code.rawValue, field: $0.field.rawValue, severity: $0.severity.rawValue, message: $0.message)
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return [UInt8](try encoder.encode(body))
    }
}
