import Crypto
import Foundation

/// The kinds of bearer token the registry issues, told apart by their prefix so that a token pasted in the wrong
/// place (a device token in the operator API) is recognised without a database lookup.
public enum TokenKind: String, Sendable, CaseIterable {
    case device
    case station
    case `operator`

    /// `cpd_`, `cps_`, `cpo_`.
    public var prefix: String {
        switch self {
        case .device: "cpd_"
        case .station: "cps_"
        case .operator: "cpo_"
        }
    }
}

/// Bearer tokens: 32 random bytes from the system's cryptographic generator, base64url without padding, behind a
/// kind prefix. The registry stores only their SHA-256 (hex): a token has 256 bits of entropy, so an unsalted
/// fast hash is enough (nothing to brute-force), and looking a credential up by its hash needs no constant-time
/// comparison (the comparison is the database's index lookup of a value the caller cannot choose the hash of).
public enum Tokens {
    /// Random bytes per token.
    public static let entropyBytes = 32

    /// A new token of `kind`: the prefix and 43 base64url characters.
    public static func generate(_ kind: TokenKind) -> String {
        kind.prefix + randomID()
    }

    /// 32 random bytes as 43 base64url characters: a token's body, or a page session's id.
    public static func randomID() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<entropyBytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return base64URL(bytes)
    }

    /// Whether `text` has the shape of ``randomID()`` (checked before a session id is hashed and looked up).
    public static func isRandomID(_ text: String) -> Bool {
        text.utf8.count == 43 && text.utf8.allSatisfy(isBase64URL)
    }

    /// The stored form of a token: SHA-256 of its UTF-8 bytes, 64 lowercase hex digits.
    public static func hash(_ token: String) -> String {
        hex(SHA256.hash(data: Data(token.utf8)))
    }

    /// The kind a token's prefix names, nil for anything else. Only the shape is checked (prefix, length, alphabet):
    /// a token that passes still has to be found by its hash.
    public static func kind(of token: String) -> TokenKind? {
        guard let kind = TokenKind.allCases.first(where: { token.hasPrefix($0.prefix) }) else { return nil }
        let body = token.utf8.dropFirst(kind.prefix.utf8.count)
        guard body.count == 43,
            body.allSatisfy({ isBase64URL($0) })
        else { return nil }
        return kind
    }

    static func isBase64URL(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Lowercase hex of bytes.
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
