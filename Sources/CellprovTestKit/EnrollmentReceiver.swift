import Foundation
import NIOCore
import NIOSSL
import NIOConcurrencyHelpers

/// Test kit: a real HTTP(S) server on loopback that plays the fleet backend's enrollment endpoint.
///
/// It records every request (headers and JSON body), counts each Idempotency-Key, and answers as told: a status,
/// or not at all (`.hang`). With TLS it can require a client certificate (mTLS). Used by the tests, the benchmark
/// and `make demo` (through `cellprov-receiver`).
public final class EnrollmentReceiver: Sendable {
    public enum Behaviour: Sendable, Equatable {
        case status(Int)
        /// Accept the request and never answer.
        case hang
        /// A receiver of an older API version: an event whose `type` is in `types` gets `status` with the
        /// registry's body for an unknown type (`{"error": "type: unknown event type"}`), any other 201.
        case refuseTypes(Set<String>, status: Int)
    }

    /// Faults drawn per request on top of a `.status` behaviour: a share of the requests is answered with
    /// `failStatus`, another share is never answered. For soak tests of the reporter's retries (scripts/soak.sh).
    public struct Faults: Sendable, Equatable {
        public var failFraction: Double
        public var hangFraction: Double
        public var failStatus: Int

        public init(failFraction: Double = 0, hangFraction: Double = 0, failStatus: Int = 503) {
            self.failFraction = failFraction
            self.hangFraction = hangFraction
            self.failStatus = failStatus
        }
    }

    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var headers: [String: String]
        public var body: Data
        /// The status answered; nil when the request was never answered (`.hang`, or a hang fault).
        public var status: Int? = nil
        public var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
        }
    }

    public struct TLS: Sendable {
        public var certificateFile: String
        public var keyFile: String
        /// When set, clients must present a certificate signed by this CA.
        public var clientCAFile: String?

        public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) {
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.clientCAFile = clientCAFile
        }
    }

    struct State {
        var behaviour: Behaviour = .status(201)
        var faults: Faults?
        /// Answers for the next requests, in order, before `behaviour` applies again.
        var script: [Behaviour] = []
        /// The body of every answer instead of the default JSON (nil: `{"status":"ok"}` / `{"error":...}`).
        var responseBody: String?
        var requests: [Request] = []
        var handshakeFailures = 0
    }

    private let box = StateBox()
    private let channel: any Channel
    public let port: Int

    /// Starts listening on 127.0.0.1 (port 0: any free port).
    public init(port: Int = 0, tls: TLS? = nil, behaviour: Behaviour = .status(201), faults: Faults? = nil) throws {
        let sslContext: NIOSSLContext? = try tls.map { tls in
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificateFile).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.keyFile, format: .pem)))
            if let ca = tls.clientCAFile {
                config.certificateVerification = .noHostnameVerification
                config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            }
            return try NIOSSLContext(configuration: config)
        }
        let box = self.box
        box.state.withLockedValue {
            $0.behaviour = behaviour
            $0.faults = faults
        }
        channel = try LoopbackHTTPServer.listen(
            port: port, tls: sslContext, tlsFailed: { box.state.withLockedValue { $0.handshakeFailures += 1 } },
            serve: { Self.serve($0, box: box) })
        self.port = channel.localAddress?.port ?? port
    }

    public var url: String { "127.0.0.1:\(port)" }

    public func setBehaviour(_ behaviour: Behaviour) {
        box.state.withLockedValue { $0.behaviour = behaviour }
    }

    /// Replaces the faults (nil: none).
    public func setFaults(_ faults: Faults?) {
        box.state.withLockedValue { $0.faults = faults }
    }

    /// Answers the next requests with these, one each and in order; then `behaviour` again. For retry tests
    /// (503, 503, 201).
    public func enqueue(_ behaviours: [Behaviour]) {
        box.state.withLockedValue { $0.script += behaviours }
    }

    /// Answers with this body (for example one that echoes identifiers, as a careless backend might); nil: the
    /// default bodies.
    public func setResponseBody(_ body: String?) {
        box.state.withLockedValue { $0.responseBody = body }
    }

    public var requests: [Request] { box.state.withLockedValue { $0.requests } }

    /// TLS handshakes that failed (e.g. a client without the required certificate).
    public var handshakeFailures: Int { box.state.withLockedValue { $0.handshakeFailures } }

    /// How many requests carried each Idempotency-Key.
    public var idempotencyKeyCounts: [String: Int] {
        var counts: [String: Int] = [:]
        for r in requests { counts[r.headers["idempotency-key"] ?? "", default: 0] += 1 }
        return counts
    }

    /// Distinct event ids the receiver answered with a 2xx or 409 (what a deduplicating backend would keep).
    public var acceptedEventIDs: Set<String> {
        box.state.withLockedValue { s in Set(s.requests.compactMap { $0.headers["x-accepted"] == "1" ? $0.headers["idempotency-key"] : nil }) }
    }

    public func stop() {
        try? channel.close().wait()
    }

    deinit { try? channel.close().wait() }

    // MARK: - Answers

    final class StateBox: Sendable {
        let state = NIOLockedValueBox(State())
    }

    /// Records the request and answers it as the behaviour (or the next scripted one, or a drawn fault) says.
    static func serve(_ received: LoopbackHTTPServer.Received, box: StateBox) -> LoopbackHTTPServer.Answer {
        var behaviour = box.state.withLockedValue { s in s.script.isEmpty ? s.behaviour : s.script.removeFirst() }
        if case .status = behaviour, let faults = box.state.withLockedValue({ $0.faults }) {
            let draw = Double.random(in: 0..<1)
            if draw < faults.hangFraction {
                behaviour = .hang
            } else if draw < faults.hangFraction + faults.failFraction {
                behaviour = .status(faults.failStatus)
            }
        }
        var request = Request(
            method: received.method, path: received.path, headers: received.headers, body: received.body)
        var unknownType = false
        if case .refuseTypes(let types, let status) = behaviour {
            unknownType = (request.json?["type"] as? String).map(types.contains) ?? false
            behaviour = .status(unknownType ? status : 201)
        }
        if case .status(let code) = behaviour {
            request.status = code
            if (200..<300).contains(code) || code == 409 { request.headers["x-accepted"] = "1" }
        }
        box.state.withLockedValue { $0.requests.append(request) }
        guard case .status(let code) = behaviour else { return .hang }
        let text = unknownType ? "{\"error\":\"type: unknown event type\"}" : box.state.withLockedValue { $0.responseBody }
            ?? (code < 300 ? "{\"status\":\"ok\"}" : "{\"error\":\"status \(code)\"}")
        return .respond(status: code, body: text)
    }
}
