import AsyncHTTPClient
import CellprovCore
import CellprovEnrollmentAPI
import FoundationEssentials
import NIOCore
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

    /// One POST, within `timeout`.
    public func send(_ post: JSONPost, timeout: Duration) async -> Result {
        var request = HTTPClientRequest(url: post.url)
        request.method = .POST
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
            return .failed(reason: HTTPAnswer.failure(Self.describe(error)))
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? HTTPClientError { return "\(e)" }
        if let e = error as? NIOSSLError { return "TLS: \(e)" }
        return "\(error)"
    }
}
