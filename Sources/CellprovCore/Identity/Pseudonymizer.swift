import Crypto
import FoundationEssentials

/// Turns an identifier into a short, stable, keyed reference ("ref") that can be logged in its place.
///
/// The reference is the first 10 lowercase hex characters (40 bits) of HMAC-SHA256(key, kind + ":" + value).
/// With one key (one fleet, one process configuration) the same identifier always yields the same reference,
/// so log lines can be correlated; without the key a reference cannot be turned back into the identifier
/// (the identifier spaces are small, so an unkeyed hash could be brute-forced: the key is what protects it).
///
/// The key is never printed: `description` and `dump` show no key material.
public struct Pseudonymizer: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Length in bytes of the keys made by ``random()``; the recommended key length.
    public static let keyLength = 32

    private let key: [UInt8]

    /// A pseudonymizer with the given HMAC key (normally ``keyLength`` bytes; must not be empty).
    public init(key: [UInt8]) {
        precondition(!key.isEmpty, "a pseudonymizer key must not be empty")
        self.key = key
    }

    /// A pseudonymizer with a fresh random key from the system's cryptographic generator. References made
    /// with it are stable only for the life of this value (typically one process).
    public static func random() -> Pseudonymizer {
        var generator = SystemRandomNumberGenerator()
        var key = [UInt8]()
        key.reserveCapacity(keyLength)
        for _ in 0..<keyLength {
            key.append(UInt8.random(in: .min ... .max, using: &generator))
        }
        return Pseudonymizer(key: key)
    }

    /// 10 lowercase hex characters of HMAC-SHA256(key, `kind` + ":" + `value`).
    public func reference(kind: String, value: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data((kind + ":" + value).utf8),
            using: SymmetricKey(data: key)
        )
        let hexDigits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(10)
        for byte in mac.prefix(5) {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { "Pseudonymizer(key hidden)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
