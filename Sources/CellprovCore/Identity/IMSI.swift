/// An International Mobile Subscriber Identity (3GPP TS 23.003 §2.2, ITU-T E.212): MCC (3 digits), MNC
/// (2 or 3, see ``MNCTable``), MSIN; at most 15 digits.
///
/// Printing an `IMSI` shows only its network and a keyed pseudonym: `IMSI(310-260, ref 1a2b3c4d5e)`. The only
/// way to the digits is ``unredacted``. Deliberately not `Codable`.
public struct IMSI: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let digits: String
    private let mncLength: Int

    private init(digits: String, mncLength: Int) {
        self.digits = digits
        self.mncLength = mncLength
    }

    /// Mobile Country Code (3 digits).
    public var mcc: String { String(digits.prefix(3)) }
    /// Mobile Network Code (2 or 3 digits).
    public var mnc: String { String(digits.dropFirst(3).prefix(mncLength)) }

    /// The digits. The only accessor to them: use it only to put the IMSI on the data channel.
    public var unredacted: String { digits }

    /// The keyed pseudonym of this IMSI under the current ``Redaction/pseudonymizer``.
    public var reference: String { Redaction.pseudonymizer.reference(kind: "imsi", value: digits) }

    public var description: String { "IMSI(\(mcc)-\(mnc), ref \(reference))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description], displayStyle: .struct) }

    // Equality and hashing are on the digits; the MNC split follows from them (or from EF_AD).
    public static func == (lhs: IMSI, rhs: IMSI) -> Bool { lhs.digits == rhs.digits }
    public func hash(into hasher: inout Hasher) { hasher.combine(digits) }

    /// Validates the value of an `AT+CIMI` answer; the MNC length comes from ``MNCTable``.
    ///
    /// 6 to 15 decimal digits (whitespace and quotes trimmed, an `IMSI:` label dropped, the first of several
    /// comma-separated fields kept, a value followed by junk after a blank cut to its first token), else nil with
    /// `imsi_missing`, `imsi_format` or `imsi_length`. MCC 001 (test networks, 3GPP TS 34.108 test USIMs) and 999
    /// (private networks, E.212) return the value with the warning `imsi_test_network`.
    public static func validate(_ raw: String) -> Validated<IMSI> {
        validate(raw, knownMNCLength: nil)
    }

    /// As ``validate(_:)``, with the MNC length (2 or 3) read from the SIM's EF_AD (3GPP TS 31.102
    /// §4.2.18); any other value falls back to ``MNCTable``.
    public static func validate(_ raw: String, mncLength: Int) -> Validated<IMSI> {
        validate(raw, knownMNCLength: (2...3).contains(mncLength) ? mncLength : nil)
    }

    private static func validate(_ raw: String, knownMNCLength: Int?) -> Validated<IMSI> {
        var s = IdentifierText.field(raw, labels: ["IMSI"])
        if !IdentifierText.isDecimal(s) {
            let token = IdentifierText.leadingToken(s)
            if IdentifierText.isDecimal(token) && (6...15).contains(token.utf8.count) { s = token }
        }
        if s.isEmpty {
            return Validated(value: nil, problems: [problem(.imsiMissing, .error, "the modem returned no IMSI")])
        }
        guard IdentifierText.isDecimal(s) else {
            return Validated(
                value: nil,
                problems: [problem(.imsiFormat, .error, "the IMSI contains characters other than decimal digits")]
            )
        }
        let count = s.utf8.count
        guard (6...15).contains(count) else {
            return Validated(
                value: nil,
                problems: [problem(.imsiLength, .error, "the IMSI has \(count) digits, expected 6 to 15")]
            )
        }
        let imsi = IMSI(digits: String(s), mncLength: knownMNCLength ?? MNCTable.mncLength(forIMSI: s))
        var problems: [Problem] = []
        switch imsi.mcc {
        case "001":
            problems.append(problem(.imsiTestNetwork, .warning, "the SIM belongs to a test network (test MCC)"))
        case "999":
            problems.append(
                problem(.imsiTestNetwork, .warning, "the SIM belongs to a private network (MCC for internal use)"))
        default:
            break
        }
        return Validated(value: imsi, problems: problems)
    }

    private static func problem(_ code: Problem.Code, _ severity: Severity, _ message: String) -> Problem {
        Problem(code, field: .imsi, severity: severity, message: message)
    }
}

// MARK: - EF_IMSI

extension IMSI {
    /// The IMSI digits held in the contents of EF_IMSI (file 6F07, 3GPP TS 31.102 §4.2.2; TS 51.011 §10.3.2 for
    /// a GSM SIM), as hexadecimal text, the form `AT+CRSM=176,28423,0,0,9` answers with.
    ///
    /// Layout: byte 1 is the number of bytes that follow and hold the IMSI (1 to 8); byte 2 holds, in its low
    /// nibble, the identity type 001 and the parity bit 8 (set for an odd number of digits, so 9 for the usual
    /// 15 digits, 1 for 14), and the first digit in its high nibble; every further byte holds two digits, low
    /// nibble first ("swapped BCD"). An even count leaves the last high nibble at F; unused bytes are FF.
    /// Example (the Rust SIM simulator scenario and 3GPP layout): `081932547698103254` → `123456789012345`.
    ///
    /// Returns the digits, or nil and the reason the contents are not an IMSI (no digits in any reason).
    public static func digits(fromEFIMSI hex: String) -> Validated<String> {
        func refuse(_ code: Problem.Code, _ message: String) -> Validated<String> {
            Validated(value: nil, problems: [Problem(code, field: .imsi, message: message)])
        }
        let text = String(IdentifierText.trimmed(hex).filter { !$0.isWhitespace }).uppercased()
        guard !text.isEmpty else { return refuse(.imsiMissing, "the SIM returned no EF_IMSI contents") }
        guard IdentifierText.isUpperHex(text), text.utf8.count.isMultiple(of: 2) else {
            return refuse(.imsiFormat, "the EF_IMSI contents are not hexadecimal bytes")
        }
        let nibbles = text.compactMap(\.hexDigitValue)
        let bytes = stride(from: 0, to: nibbles.count, by: 2).map { nibbles[$0] << 4 | nibbles[$0 + 1] }
        let length = bytes[0]
        // 0xFF (or 0): an erased or never personalised file.
        if length == 0xFF || length == 0 || bytes.dropFirst().allSatisfy({ $0 == 0xFF }) {
            return refuse(.imsiMissing, "the SIM's EF_IMSI is empty")
        }
        guard length <= 8, bytes.count >= 1 + length else {
            return refuse(.imsiLength, "the EF_IMSI length byte does not fit the file")
        }
        let typeAndParity = bytes[1] & 0x0F
        guard typeAndParity & 0x07 == 0x01 else {
            return refuse(.imsiFormat, "the EF_IMSI identity type is not IMSI")
        }
        var digits: [Int] = [bytes[1] >> 4]
        for byte in bytes[2..<(1 + length)] {
            digits.append(byte & 0x0F)
            digits.append(byte >> 4)
        }
        // An even number of digits (parity bit clear) leaves the last nibble as filler; so may a SIM that sets
        // the parity bit wrongly: trailing F nibbles are filler either way.
        while digits.last == 0x0F { digits.removeLast() }
        guard !digits.isEmpty, digits.allSatisfy({ $0 <= 9 }) else {
            return refuse(.imsiFormat, "the EF_IMSI contents hold non-decimal digits")
        }
        return Validated(value: String(digits.map { Character(String($0)) }), problems: [])
    }

    /// Validates the contents of EF_IMSI (``digits(fromEFIMSI:)``, then ``validate(_:)``).
    public static func validate(efIMSI hex: String) -> Validated<IMSI> {
        let decoded = digits(fromEFIMSI: hex)
        guard let digits = decoded.value else { return Validated(value: nil, problems: decoded.problems) }
        return validate(digits)
    }
}
