import AsyncHTTPClient
import CellprovCore
import CellprovEnrollmentAPI
import FoundationEssentials
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What became of one record posted by ``EnrollmentPoster``: the JSON `report` object of `cellprov probe --json`.
/// Its `reason` is scrubbed of anything that could be an identifier.
public struct PostResult: Sendable, Codable, Equatable {
    public enum Outcome: String, Sendable, Codable {
        /// 2xx: the receiver stored the record.
        case stored
        /// 409: the receiver already has this event id (an answer lost on an earlier attempt). A success.
        case duplicate
        /// Another 4xx (400/413/422 a bad payload, 401/403 refused credentials, 404 a wrong URL ...), or a TLS
        /// alert refusing our client certificate (status null): retrying the same request cannot help; a person
        /// must act.
        case rejected
        /// No usable answer after the attempts allowed (5xx, 408/425/429, timeout, connection or TLS failure), or
        /// a 3xx (redirects are not followed).
        case failed
    }

    /// The last HTTP status answered; nil when no answer came (connection, TLS, timeout).
    public var status: Int?
    public var outcome: Outcome
    public var eventID: String
    /// Requests sent for this record (1 unless transient failures were retried).
    public var attempts: Int
    /// Why a record was not stored: `HTTP <status>: <body, scrubbed, 200 characters>` or the transport error.
    public var reason: String?

    public init(status: Int?, outcome: Outcome, eventID: String, attempts: Int, reason: String? = nil) {
        self.status = status
        self.outcome = outcome
        self.eventID = eventID
        self.attempts = attempts
        self.reason = reason
    }

    /// Stored now or before: the receiver holds the record.
    public var isSuccess: Bool { outcome == .stored || outcome == .duplicate }

    enum CodingKeys: String, CodingKey {
        case status, outcome, attempts, reason
        case eventID = "event_id"
    }

    /// `status` is written as null when no answer came, `reason` left out on success.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(status, forKey: .status)
        try c.encode(outcome, forKey: .outcome)
        try c.encode(eventID, forKey: .eventID)
        try c.encode(attempts, forKey: .attempts)
        try c.encodeIfPresent(reason, forKey: .reason)
    }
}

/// Posts single enrollment records and reports what became of each, for a caller that waits for the answer: the
/// factory station's `cellprov probe --report`. cellprovd's ``Reporter`` is the other sender: it owns an outbox
/// and retries without end; this one retries a transient failure only a few times within a short budget (a
/// station operator must not wait minutes), then says so.
///
/// Same transport as the daemon's (``HTTPSender``): https, plain http only to loopback, the system trust store (or a
/// CA file), 10 s to connect, 30 s per request, no redirects.
public final class EnrollmentPoster: Sendable {
    public struct Configuration: Sendable {
        /// The backend's base URL; records go to `url` + `/v1/enrollments`.
        public var url: URL
        public var token: String?
        public var caFile: String?
        public var userAgent: String
        /// Requests per record at most (the first and its retries).
        public var attempts = 3
        /// Wait before the n-th retry: base * 2^(n-1), ±25 % jitter.
        public var backoffBase: Duration = .milliseconds(500)
        /// Time limit of one request (connect included).
        public var requestTimeout: Duration = .seconds(30)
        /// No retry starts after this much time spent on a record, and a retry's time limit is cut to what is
        /// left of it: the worst case (a receiver that accepts and never answers) ends in about this long.
        public var budget: Duration = .seconds(60)

        public init(url: URL, token: String? = nil, caFile: String? = nil, userAgent: String) {
            self.url = url
            self.token = token
            self.caFile = caFile
            self.userAgent = userAgent
        }
    }

    private let config: Configuration
    private let client: HTTPClient
    private let sender: HTTPSender

    /// Checks the URL (https, or http to loopback) and reads the CA file; throws ``ReporterError`` otherwise.
    public init(_ config: Configuration) throws {
        self.config = config
        let clientConfig = try HTTPSender.clientConfiguration(url: config.url, caFile: config.caFile)
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfig)
        sender = HTTPSender(client: client)
    }

    /// Posts `request`, retrying transient failures; never throws (every failure is a result).
    public func post(_ request: EnrollmentRequest) async -> PostResult {
        let body: [UInt8]
        do {
            body = try request.jsonBytes()
        } catch {
            return PostResult(
                status: nil, outcome: .failed, eventID: request.eventID, attempts: 0,
                reason: "cannot encode the record")
        }
        let clock = ContinuousClock()
        let start = clock.now
        var attempt = 0
        var last = PostResult(status: nil, outcome: .failed, eventID: request.eventID, attempts: 0)
        while attempt < config.attempts {
            if attempt > 0 {
                let wait = config.backoffBase * (1 << (attempt - 1)) * Double.random(in: 0.75...1.25)
                if clock.now - start + wait >= config.budget { break }
                try? await Task.sleep(for: wait)
                if Task.isCancelled { break }
            }
            attempt += 1
            let remaining = config.budget - (clock.now - start)
            let timeout = min(config.requestTimeout, max(remaining, .seconds(1)))
            let (status, reason, transient) = await send(body, eventID: request.eventID, timeout: timeout)
            last = PostResult(
                status: status, outcome: Self.outcome(status: status, transient: transient), eventID: request.eventID,
                attempts: attempt, reason: reason)
            if !transient { break }
        }
        return last
    }

    /// One request: the status (nil without an answer), the reason when not stored, and whether a retry may help.
    private func send(_ body: [UInt8], eventID: String, timeout: Duration) async -> (Int?, String?, Bool) {
        let post = JSONPost(
            url: EnrollmentAPI.url(base: config.url).absoluteString, body: body, userAgent: config.userAgent,
            idempotencyKey: eventID, bearerToken: config.token)
        switch await sender.send(post, timeout: timeout) {
        case .answered(let status, let body):
            let stored = (200..<300).contains(status) || status == 409
            let reason = stored ? nil : HTTPAnswer.reason(status: status, body: body)
            return (status, reason, Self.isTransient(status: status))
        case .failed(let reason):
            return (nil, reason, true)
        case .refused(let reason):
            return (nil, reason, false)  // our credentials: a person must act, as for a 401/403
        }
    }

    /// 5xx and the 4xx that mean "later" (408 timeout, 425 too early, 429 back-pressure) are retried; every
    /// other answer is final.
    public static func isTransient(status: Int) -> Bool {
        status >= 500 || status == 408 || status == 425 || status == 429
    }

    static func outcome(status: Int?, transient: Bool) -> PostResult.Outcome {
        guard let status else { return transient ? .failed : .rejected }
        switch status {
        case 200..<300: return .stored
        case 409: return .duplicate
        case 400..<500 where !transient: return .rejected
        default: return .failed
        }
    }

    /// Closes the connections; call once, after the last post.
    public func shutdown() async {
        try? await client.shutdown()
    }
}

/// A bearer token file, read under the rules of cellprovd's `[backend] token_file`: a regular file, not writable
/// by its group nor readable by others (0600, or 0640 with a dedicated group), one line. Errors name the file and
/// the rule broken, never the content.
public enum TokenFile {
    /// The longest token accepted (the registry's are 48 characters).
    public static let maximumLength = 4096

    public static func read(path: String) throws(ReporterError) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let reason = String(cString: strerror(errno))
            throw ReporterError(description: "\(path): cannot read the token file (\(reason))")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw ReporterError(description: "\(path): the token file is not a regular file")
        }
        guard st.st_mode & 0o037 == 0 else {
            throw ReporterError(
                description: "\(path) is writable by its group or readable by others (mode "
                    + "\(String(st.st_mode & 0o777, radix: 8))); chmod 600 it (or 640 with a dedicated group)")
        }
        guard st.st_size <= maximumLength else {
            throw ReporterError(description: "\(path): the token file is longer than \(maximumLength) bytes")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReporterError(description: "\(path): cannot read the token file")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingWhitespace(newlines: true)
        guard !token.isEmpty else { throw ReporterError(description: "\(path): the token file is empty") }
        // Visible ASCII only: anything else (a second line, a control character) would corrupt the header.
        guard token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw ReporterError(
                description: "\(path): the token file must hold one token on one line (visible ASCII, no spaces)")
        }
        return token
    }
}
