import AsyncHTTPClient
import CellprovCore
import CellprovEnrollmentAPI
import FoundationEssentials
import NIOCore
import NIOHTTP1
import NIOSSL

/// The enrollment senders' transport: cellprovd's ``Reporter`` and `cellprov probe --report`'s
/// ``EnrollmentPoster`` post through it. The request (``JSONPost``) and the scrubbing of answers and errors
/// (``HTTPAnswer``) are CellprovCore's, shared with the registry's webhook alerter.
public struct HTTPSender: Sendable {
    /// What one POST came to.
    public enum Result: Sendable, Equatable {
        /// An answer: its status and the first ``HTTPAnswer/bodyLimit`` bytes of its body (a longer body is cut, a
        /// body that fails half-way is kept as read: the status is the answer).
        case answered(status: Int, body: [UInt8])
        /// No answer (connection, TLS, timeout): the error, scrubbed.
        case failed(reason: String)
        /// The backend ended the TLS handshake with an alert about our client certificate (``refusalAlert(_:)``):
        /// it refuses our credentials, as a 401/403 says over HTTP. The reason starts with `TLS alert <name>`.
        case refused(reason: String)
    }

    let client: HTTPClient

    public init(client: HTTPClient) { self.client = client }

    /// The HTTP client's configuration for the backend at `url` (``BackendURL``: https, or plain http to loopback),
    /// trusting the CA file if given (else the system's store), presenting the client certificate if given; 10 s
    /// to connect, 30 s to read, no redirects, no silent connection retries.
    public static func clientConfiguration(
        url: URL, caFile: String?, clientCertificate: String? = nil, clientKey: String? = nil
    ) throws -> HTTPClient.Configuration {
        guard BackendURL.check(url) == .allowed else {
            throw ReporterError(description: "backend url: https is required (plain http only to loopback)")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
        }
        if let clientCertificate, let clientKey {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(clientCertificate).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: clientKey, format: .pem))
        }
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        config.timeout = .init(connect: .seconds(10), read: .seconds(30))
        config.redirectConfiguration = .disallow
        // A failed connection (refused, TLS handshake) fails the request at once, so that the caller classifies,
        // counts and retries it by its own backoff; the pool's default is to retry silently until the request
        // deadline, which hid the reason (and the attempt) for a whole request timeout.
        config.connectionPool.retryConnectionEstablishment = false
        return config
    }

    /// One request (a POST unless `method` says otherwise: hawkBit's configData is a PUT), within `timeout`.
    public func send(_ post: JSONPost, method: HTTPMethod = .POST, timeout: Duration) async -> Result {
        var request = HTTPClientRequest(url: post.url)
        request.method = method
        for (name, value) in post.headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: post.body))
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            var bytes: [UInt8] = []
            do {
                for try await chunk in response.body {
                    if !HTTPAnswer.append(chunk.readableBytesView, to: &bytes) { break }
                }
            } catch {}
            return .answered(status: Int(response.status.code), body: bytes)
        } catch {
            if let alert = Self.refusalAlert(error) {
                return .refused(
                    reason: "TLS alert \(alert.name): the backend refuses our client certificate (or its absence)")
            }
            return .failed(reason: HTTPAnswer.failure(Self.describe(error)))
        }
    }

    /// A TLS alert the backend sends when it will not accept the client certificate we presented (or the lack of
    /// one): RFC 8446 section 6.2 and RFC 5246 section 7.2.2. Received from the peer (BoringSSL reports an alert it
    /// received as the reason `1000 + description`, `SSL_AD_REASON_OFFSET`); an alert we send ourselves, such as
    /// when the backend's certificate is not trusted here, is reported by its own reason
    /// (`CERTIFICATE_VERIFY_FAILED`) and stays a network failure. `handshake_failure` (40) is not among them: it is
    /// also what a cipher or version mismatch gives.
    public struct RefusalAlert: Sendable, Equatable {
        public var code: Int
        public var name: String

        public static let all: [RefusalAlert] = [
            .init(code: 42, name: "bad_certificate"),
            .init(code: 43, name: "unsupported_certificate"),
            .init(code: 44, name: "certificate_revoked"),
            .init(code: 45, name: "certificate_expired"),
            .init(code: 46, name: "certificate_unknown"),
            .init(code: 48, name: "unknown_ca"),
            .init(code: 49, name: "access_denied"),
            .init(code: 116, name: "certificate_required"),
        ]
    }

    /// BoringSSL's library number of its SSL errors (`ERR_LIB_SSL`) and the offset of a received alert's reason.
    static let libSSL: UInt32 = 16
    static let receivedAlertOffset: UInt32 = 1000

    /// The refusal alert `error` carries, if any: a failed handshake (TLS 1.2, and TLS 1.3 when the server checks
    /// before the client's first write) or a read failing after it (TLS 1.3: the client's handshake is complete
    /// before the server has checked its certificate, so the alert comes as the answer to the request).
    public static func refusalAlert(_ error: any Error) -> RefusalAlert? {
        let stack: NIOBoringSSLErrorStack
        switch error {
        case NIOSSLError.handshakeFailed(.sslError(let s)): stack = s
        case BoringSSLError.sslError(let s): stack = s
        default: return nil
        }
        for entry in stack {
            // "Error: <packed code> error:<hex>:SSL routines:...": the packed code is (library << 24) | reason.
            let text = entry.description
            guard text.hasPrefix("Error: ") else { continue }
            let digits = text.dropFirst(7).prefix { $0 >= "0" && $0 <= "9" }
            guard let packed = UInt32(digits), packed >> 24 == libSSL else { continue }
            let reason = packed & 0xfff
            guard reason > receivedAlertOffset else { continue }
            let code = Int(reason - receivedAlertOffset)
            if let alert = RefusalAlert.all.first(where: { $0.code == code }) { return alert }
        }
        return nil
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? HTTPClientError { return "\(e)" }
        if let e = error as? NIOSSLError { return "TLS: \(e)" }
        return "\(error)"
    }
}
