/// An eUICC Identifier (GSMA SGP.29): the identity of the card itself (the soldered or plug-in eUICC), which
/// stays the same when the enabled profile (and with it ICCID and IMSI) changes. 32 decimal digits: "89"
/// (telecom), a 3-digit country code, a 3-digit issuer identifier, 5 digits of version information, 17 digits
/// of individual identification and 2 check digits chosen so that the whole 32-digit number mod 97 equals 1
/// (the ISO 7064 MOD 97-10 rule that IBAN uses).
///
/// Printing an `EID` shows only its first 8 digits ("89", country, issuer: the card maker, shared by millions
/// of cards) and a keyed pseudonym: `EID(89049032, ref 1a2b3c4d5e)`. The only way to the digits is
/// ``unredacted``. Deliberately not `Codable`.
public struct EID: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let text: String

    private init(text: String) { self.text = text }

    /// The first 8 digits: "89", the country code and the issuer identifier (SGP.29 §2.2).
    public var issuerPrefix: String { String(text.prefix(8)) }

    /// The 32 digits. The only accessor to them.
    public var unredacted: String { text }

    /// The keyed pseudonym of this EID under the current ``Redaction/pseudonymizer``.
    public var reference: String { Redaction.pseudonymizer.reference(kind: "eid", value: text) }

    public var description: String { "EID(\(issuerPrefix), ref \(reference))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description], displayStyle: .struct) }

    /// The number of digits of an EID.
    public static let length = 32

    /// Validates an EID as read from the card (the value of tag 5A of GetEUICCData, as hexadecimal digits) or
    /// from a vendor answer once its tag is stripped.
    ///
    /// Normalisation: an `EID:` label dropped and the first of several comma-separated fields kept
    /// (``IdentifierText/field(_:labels:)``), whitespace and quotes removed. No nibble swapping: GetEUICCData
    /// returns the digits in order (pySim's GetEuiccData vector, `5A10 8988 2119 9000 ...` = "89882119900...").
    ///
    /// Every failure is the one problem `eid_invalid`, a **warning**: the EID is an addition to the read, and a
    /// card whose EID cannot be trusted leaves the IMEI/IMSI/ICCID read valid. No value is returned then: an EID
    /// that may be a misread must not decide whether a change is a profile switch or another card.
    /// Checks: empty, characters other than 0-9, length not 32, not starting "89", the number mod 97 not 1.
    public static func validate(_ raw: String) -> Validated<EID> {
        let field = IdentifierText.field(raw, labels: ["EID"])
        let s = String(field.filter { !$0.isWhitespace && $0 != "\"" })
        if s.isEmpty { return invalid("the eUICC returned an empty EID") }
        guard IdentifierText.isDecimal(s) else { return invalid("the EID contains characters other than digits") }
        let count = s.utf8.count
        guard count == length else { return invalid("the EID has \(count) digits, expected \(length)") }
        guard s.hasPrefix("89") else { return invalid("the EID does not start with the telecom industry identifier") }
        guard mod97(s) == 1 else { return invalid("the EID check digits do not match (mod 97)") }
        return Validated(value: EID(text: s), problems: [])
    }

    /// The decimal number `digits` modulo 97, digit by digit (32 digits do not fit any integer type).
    static func mod97(_ digits: String) -> Int {
        var r = 0
        for b in digits.utf8 { r = (r * 10 + Int(b - UInt8(ascii: "0"))) % 97 }
        return r
    }

    private static func invalid(_ message: String) -> Validated<EID> {
        Validated(value: nil, problems: [Problem(.eidInvalid, field: .eid, severity: .warning, message: message)])
    }
}
