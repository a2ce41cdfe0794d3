import CellprovCore
import CellprovRegistryCore
import Crypto
import Foundation

/// Reading bearer tokens from requests, and the base64url helpers of the session cookie. Tokens themselves are
/// CellprovRegistryCore's `Tokens` (generation, SHA-256 hashing).
public enum RegistryTokens {
    /// The bound on an `Authorization` header: nothing longer is hashed or looked up (a token is 36 characters).
    public static let maxAuthorizationBytes = 512

    /// What an `Authorization` header value holds.
    public enum Credential: Sendable, Equatable {
        /// No header, another scheme, or an empty token: "missing bearer token".
        case missing
        /// A bearer token past ``maxAuthorizationBytes``: "malformed token".
        case malformed
        case token(String)
    }

    public static func credential(_ header: String?) -> Credential {
        guard let header else { return .missing }
        guard header.utf8.count <= maxAuthorizationBytes else {
            let scheme = String(decoding: header.utf8.prefix(7), as: UTF8.self).lowercased()
            return scheme == "bearer " ? .malformed : .missing
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return .missing }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? .missing : .token(token)
    }

    /// The token of an `Authorization: Bearer ...` header value; nil when ``credential(_:)`` finds none (absent,
    /// another scheme, empty) or a malformed one.
    public static func bearer(_ header: String?) -> String? {
        if case .token(let token) = credential(header) { return token }
        return nil
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

/// The CSRF tokens of the pages. A page session's cookie is a random id (``Tokens/randomID()``) that the store
/// keeps hashed, bound to the operator token that signed in (`RegistryStore.startSession`): sign-out ends it, and
/// so does revoking that token or issuing the operator a new one. A session's CSRF token is an HMAC of its cookie
/// value under a key derived from the registry's session secret (`RegistryStore.sessionKey()`, one row of the
/// database), so every instance sharing the database accepts every other instance's forms and each session has
/// its own: a page's forms carry it, every POST checks it.
public struct SessionSigner: Sendable {
    // Raw bytes (SymmetricKey is not Sendable); a key is made per use, which costs a copy of 32 bytes.
    private let csrfKeyBytes: [UInt8]
    private var csrfKey: SymmetricKey { SymmetricKey(data: csrfKeyBytes) }

    public init(secret: [UInt8]) {
        // A key of its own from the secret: the secret itself never signs anything.
        let base = SymmetricKey(data: secret)
        csrfKeyBytes = Array(HMAC<SHA256>.authenticationCode(for: Data("cellprov-registry csrf v1".utf8), using: base))
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
    public static func eid(_ value: String?, reveal: Bool) -> String? { reveal ? value : Masking.eid(value) }
}
