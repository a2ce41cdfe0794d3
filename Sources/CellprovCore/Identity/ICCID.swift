/// An Integrated Circuit Card Identifier (ITU-T E.118): "89" (telecom major industry identifier), country
/// code, issuer, account number and, normally, a Luhn check digit; 18 to 20 characters.
///
/// Printing an `ICCID` shows only its issuer prefix and a keyed pseudonym: `ICCID(894420, ref 1a2b3c4d5e)`.
/// The only way to the characters is ``unredacted``. Deliberately not `Codable`.
public struct ICCID: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let text: String

    private init(text: String) { self.text = text }

    /// The first 6 characters: "89", country code and (part of) the issuer identifier.
    public var issuerPrefix: String { String(text.prefix(6)) }

    /// True when the account part holds hexadecimal digits (A-F), as some Chinese operators issue
    /// (898602F9..., 898602C0...). Such ICCIDs are accepted as read, with no check digit expectation.
    public var hasHexDigits: Bool { text.unicodeScalars.contains { $0.value >= 0x41 && $0.value <= 0x46 } }

    /// The normalised characters (upper case, no padding). The only accessor to them.
    public var unredacted: String { text }

    /// The keyed pseudonym of this ICCID under the current ``Redaction/pseudonymizer``.
    public var reference: String { Redaction.pseudonymizer.reference(kind: "iccid", value: text) }

    public var description: String { "ICCID(\(issuerPrefix), ref \(reference))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description], displayStyle: .struct) }

    /// Validates the value of an ICCID answer (`AT+CCID`, `AT+QCCID`, `AT+ICCID`, or the hex body of
    /// `AT+CRSM=176,12258,...` reading EF_ICCID), once its tag is stripped.
    ///
    /// Normalisation: an `ICCID:` label dropped and the first of several comma-separated fields kept
    /// (``IdentifierText/field(_:labels:)``), whitespace anywhere and quotes removed (or, when that leaves other
    /// characters, only the first token kept: `<iccid> <junk>`), upper-cased. A value starting "98"
    /// of even length 18-20 is the raw nibble-swapped BCD of EF_ICCID: each pair of characters is swapped
    /// back (ModemManager's test vectors: "984402003576012594F9" → "8944200053671052499"). Trailing "F"
    /// padding is then removed.
    ///
    /// Checks, in order: empty → `iccid_missing`; characters other than 0-9/A-F → `iccid_format`; length not
    /// 18-20 → `iccid_length`; not starting "89" → `iccid_prefix`; hex digits inside the issuer prefix (first
    /// 6) → `iccid_format`. The account part may hold A-F (including an interior F: the vectors' China Mobile
    /// value "898602F9091830030220" is accepted as read, so only *trailing* F is padding). All-decimal values
    /// whose Luhn check over all their digits fails are returned with the warning `iccid_checksum`: the
    /// ICCID is still the SIM's identity, and issuers are not consistent about the check digit (the
    /// ModemManager test values in our vectors, 19 and 20 digits, pass neither Luhn over all digits nor over
    /// the first 19; ModemManager itself does not check it).
    public static func validate(_ raw: String) -> Validated<ICCID> {
        let field = IdentifierText.field(raw, labels: ["ICCID", "CCID"])
        var s = String(field.filter { !$0.isWhitespace && $0 != "\"" }).uppercased()
        if !IdentifierText.isUpperHex(s) {
            // "<iccid> <junk>": keep the first token if it alone is well formed.
            let token = IdentifierText.leadingToken(field).uppercased()
            if !token.isEmpty && IdentifierText.isUpperHex(token) { s = token }
        }
        if s.isEmpty {
            return Validated(value: nil, problems: [problem(.iccidMissing, .error, "the modem returned no ICCID")])
        }
        guard IdentifierText.isUpperHex(s) else {
            return Validated(
                value: nil,
                problems: [problem(.iccidFormat, .error, "the ICCID contains characters other than hexadecimal digits")]
            )
        }
        let rawCount = s.utf8.count
        if s.hasPrefix("98"), (18...20).contains(rawCount), rawCount.isMultiple(of: 2) {
            var bytes = Array(s.utf8)
            for pair in stride(from: 0, to: bytes.count, by: 2) { bytes.swapAt(pair, pair + 1) }
            s = String(decoding: bytes, as: UTF8.self)
        }
        while s.hasSuffix("F") { s.removeLast() }

        let count = s.utf8.count
        guard (18...20).contains(count) else {
            return Validated(
                value: nil,
                problems: [problem(.iccidLength, .error, "the ICCID has \(count) characters, expected 18 to 20")]
            )
        }
        guard s.hasPrefix("89") else {
            return Validated(
                value: nil,
                problems: [
                    problem(.iccidPrefix, .error, "the ICCID does not start with the telecom industry identifier")
                ]
            )
        }
        guard IdentifierText.isDecimal(s.prefix(6)) else {
            return Validated(
                value: nil,
                problems: [problem(.iccidFormat, .error, "the ICCID issuer prefix contains non-decimal characters")]
            )
        }
        let iccid = ICCID(text: s)
        var problems: [Problem] = []
        if !iccid.hasHexDigits, !Luhn.isValid(s) {
            problems.append(problem(.iccidChecksum, .warning, "the ICCID check digit does not match (Luhn)"))
        }
        return Validated(value: iccid, problems: problems)
    }

    private static func problem(_ code: Problem.Code, _ severity: Severity, _ message: String) -> Problem {
        Problem(code, field: .iccid, severity: severity, message: message)
    }
}
