// The pure half of cellprov's HTTP senders (cellprovd's reporter and `cellprov probe --report` in CellprovReporter,
// the registry's webhook alerter in CellprovRegistryAlerts): how a JSON POST is built and how an answer or a
// transport failure becomes a reason that may be stored and logged. The sending itself (async-http-client) stays in
// those edges; the registry cannot link the daemon's reporter, so what they share is here.

/// One JSON POST: its URL, headers (in the order sent) and body.
public struct JSONPost: Sendable {
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    /// `Content-Type: application/json`, then `Idempotency-Key` (when given), `User-Agent`, `Authorization: Bearer`
    /// (when a token is given) and the caller's extra headers.
    public init(
        url: String, body: [UInt8], userAgent: String, idempotencyKey: String? = nil, bearerToken: String? = nil,
        extraHeaders: [(String, String)] = []
    ) {
        self.url = url
        self.body = body
        var headers: [(name: String, value: String)] = [("Content-Type", "application/json")]
        if let idempotencyKey { headers.append(("Idempotency-Key", idempotencyKey)) }
        headers.append(("User-Agent", userAgent))
        if let bearerToken { headers.append(("Authorization", "Bearer \(bearerToken)")) }
        for (name, value) in extraHeaders { headers.append((name, value)) }
        self.headers = headers
    }
}

/// An answer's body and a transport error are untrusted text (a receiver may echo the payload; an error may name
/// what was sent): both are scrubbed of anything that could be an identifier before they become a reason.
public enum HTTPAnswer {
    /// The most of an answer's body that is read: a longer one is cut, not an error (the status is the answer).
    public static let bodyLimit = 4096
    /// The most of a scrubbed body a reason carries.
    public static let reasonLimit = 200

    /// The body as a reason's text: UTF-8, trimmed, scrubbed, cut to ``reasonLimit`` characters.
    public static func scrubbedBody(_ body: [UInt8]) -> String {
        let text = String(decoding: body, as: UTF8.self).trimmingWhitespace(newlines: true)
        return String(Redaction.scrub(text).prefix(reasonLimit))
    }

    /// `HTTP <status>`, and `: <body>` when the scrubbed body is not empty.
    public static func reason(status: Int, scrubbedBody: String) -> String {
        "HTTP \(status)" + (scrubbedBody.isEmpty ? "" : ": \(scrubbedBody)")
    }

    /// `HTTP <status>: <body, scrubbed>`.
    public static func reason(status: Int, body: [UInt8]) -> String {
        reason(status: status, scrubbedBody: scrubbedBody(body))
    }

    /// A transport failure (connection, TLS, timeout) as a reason, scrubbed.
    public static func failure(_ description: String) -> String {
        Redaction.scrub(description)
    }

    /// Appends what is left of `chunk` under ``bodyLimit`` to `bytes`; false once the limit is reached.
    public static func append(_ chunk: some Sequence<UInt8>, to bytes: inout [UInt8]) -> Bool {
        bytes += chunk.prefix(bodyLimit - bytes.count)
        return bytes.count < bodyLimit
    }
}
