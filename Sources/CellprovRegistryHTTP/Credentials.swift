import CellprovCore
import CellprovRegistryCore
import Crypto
import Foundation

/// Reading bearer tokens from requests, and the base64url helpers of the session cookie. Tokens themselves are
/// CellprovRegistryCore's `Tokens` (generation, SHA-256 hashing).
public enum RegistryTokens {
    /// The token of an `Authorization: Bearer ...` header value; nil when the header is absent, of another
    /// scheme, empty, or implausibly long (a bound: nothing longer is hashed or looked up).
    public static func bearer(_ header: String?) -> String? {
        guard let header, header.utf8.count <= 512 else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    static func base64URL(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func fromBase64URL(_ text: Substring) -> [UInt8]? {
        guard text.utf8.count <= 4096 else { return nil }
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.utf8.count % 4 != 0 { s.append("=") }
        return Data(base64Encoded: s).map { [UInt8]($0) }
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A signed-in operator of the pages.
public struct OperatorSession: Sendable, Equatable {
    public var name: String
    public var role: OperatorRole
    public var expires: Date

    public init(name: String, role: OperatorRole, expires: Date) {
        self.name = name
        self.role = role
        self.expires = expires
    }
}

/// Stateless sessions: the cookie carries the operator's name, role and expiry, signed with HMAC-SHA256 under a
/// key derived from the registry's session secret (`RegistryStore.sessionKey()`, one row of the database), so that every instance sharing the
/// database accepts every other instance's sessions and nothing is stored per session. The CSRF token of a
/// session is another HMAC of the cookie value: a page's forms carry it, every POST checks it.
///
/// Nothing is stored per session, but a session is never worth more than its operator's token: the pages check on
/// every request that the name still holds a valid one (`Pages.session`), so `operator revoke` ends it at once. Its
/// lifetime is bounded too (8 h by default, `[server] session_hours`).
public struct SessionSigner: Sendable {
    // Raw bytes (SymmetricKey is not Sendable); a key is made per use, which costs a copy of 32 bytes.
    private let sessionKeyBytes: [UInt8]
    private let csrfKeyBytes: [UInt8]
    private var sessionKey: SymmetricKey { SymmetricKey(data: sessionKeyBytes) }
    private var csrfKey: SymmetricKey { SymmetricKey(data: csrfKeyBytes) }

    public init(secret: [UInt8]) {
        // Two keys from one secret, each for one purpose: the pseudonym key itself never signs anything.
        let base = SymmetricKey(data: secret)
        sessionKeyBytes = Array(
            HMAC<SHA256>.authenticationCode(for: Data("cellprov-registry session v1".utf8), using: base))
        csrfKeyBytes = Array(HMAC<SHA256>.authenticationCode(for: Data("cellprov-registry csrf v1".utf8), using: base))
    }

    /// The cookie value for `session`: `base64url(payload).base64url(mac)`.
    public func cookieValue(_ session: OperatorSession) -> String {
        let payload = [
            RegistryTokens.base64URL(Array(session.name.utf8)), session.role.rawValue,
            String(Int64(session.expires.timeIntervalSince1970)),
        ].joined(separator: ".")
        let payloadB64 = RegistryTokens.base64URL(Array(payload.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data(payloadB64.utf8), using: sessionKey)
        return payloadB64 + "." + RegistryTokens.base64URL(Array(mac))
    }

    /// The session a cookie value carries, if its signature verifies and it has not expired.
    public func session(fromCookie value: String, now: Date = Date()) -> OperatorSession? {
        let parts = value.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let mac = RegistryTokens.fromBase64URL(parts[1]),
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Data(parts[0].utf8), using: sessionKey),
            let payloadBytes = RegistryTokens.fromBase64URL(parts[0])
        else { return nil }
        let fields = String(decoding: payloadBytes, as: UTF8.self).split(separator: ".", omittingEmptySubsequences: false)
        guard fields.count == 3, let nameBytes = RegistryTokens.fromBase64URL(fields[0]),
            let role = OperatorRole(rawValue: String(fields[1])), let expiry = Int64(fields[2])
        else { return nil }
        let expires = Date(timeIntervalSince1970: TimeInterval(expiry))
        guard expires > now else { return nil }
        return OperatorSession(name: String(decoding: nameBytes, as: UTF8.self), role: role, expires: expires)
    }

    /// The CSRF token for a session cookie value (or, before sign-in, for the pre-session nonce cookie).
    public func csrfToken(for cookieValue: String) -> String {
        RegistryTokens.base64URL(
            Array(HMAC<SHA256>.authenticationCode(for: Data(("csrf:" + cookieValue).utf8), using: csrfKey)))
    }

    /// Whether `token` is the CSRF token of `cookieValue` (constant-time comparison of the MACs).
    public func checkCSRF(_ token: String?, cookieValue: String?) -> Bool {
        guard let token, let cookieValue, let mac = RegistryTokens.fromBase64URL(Substring(token)) else {
            return false
        }
        return HMAC<SHA256>.isValidAuthenticationCode(
            mac, authenticating: Data(("csrf:" + cookieValue).utf8), using: csrfKey)
    }
}

/// How identifiers are shown: masked by CellprovRegistryCore's `Masking` (the CellprovCore types' descriptions
/// under the registry's pseudonym key), or revealed (raw digits, admins only, audited by the caller).
public enum IdentifierMask {
    public static func imei(_ value: String?, reveal: Bool) -> String? { reveal ? value : Masking.imei(value) }
    public static func imsi(_ value: String?, reveal: Bool) -> String? { reveal ? value : Masking.imsi(value) }
    public static func iccid(_ value: String?, reveal: Bool) -> String? { reveal ? value : Masking.iccid(value) }
}
