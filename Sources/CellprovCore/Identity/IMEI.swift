/// An International Mobile Equipment Identity (3GPP TS 23.003 §6.2.1): 8-digit Type Allocation Code,
/// 6-digit serial number, 1 Luhn check digit.
///
/// Printing an `IMEI` never shows its digits: `description`, `debugDescription` and `customMirror` give
/// `IMEI(TAC 35209900, ref 1a2b3c4d5e)`, where `ref` is a keyed pseudonym from ``Redaction/pseudonymizer``.
/// The TAC identifies a device model, not a device, and is kept for diagnosis. The only way to the digits is
/// ``unredacted``. Deliberately not `Codable`: the data channel encodes ``unredacted`` explicitly.
public struct IMEI: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let digits: String

    private init(digits: String) { self.digits = digits }

    /// The Type Allocation Code: the first 8 digits (identifies the model, not the unit).
    public var tac: String { String(digits.prefix(8)) }

    /// The 15 digits. The only accessor to them: use it only to put the IMEI on the data channel.
    public var unredacted: String { digits }

    /// The keyed pseudonym of this IMEI under the current ``Redaction/pseudonymizer``.
    public var reference: String { Redaction.pseudonymizer.reference(kind: "imei", value: digits) }

    public var description: String { "IMEI(TAC \(tac), ref \(reference))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description], displayStyle: .struct) }

    /// Validates the value of an IMEI answer (`AT+CGSN`, `AT+GSN`, `AT+CGSN=1` once its tag is stripped).
    ///
    /// - Whitespace and surrounding quotes are trimmed; a leading `IMEI:`/`IMEI ` label is dropped and, of several
    ///   comma-separated fields (`<imei>,<serial number>`), the first is kept; a value followed by junk after a
    ///   blank (`<imei> OK`) keeps its first token (``IdentifierText/field(_:labels:)``).
    /// - 15 decimal digits: an IMEI. A bad check digit or a placeholder still returns the value, with an
    ///   error (`imei_checksum`, `imei_placeholder`), so the digits read can be reported.
    /// - 16 digits: an IMEISV (`AT+CGSN=2`-like answers), refused with `imei_is_imeisv`.
    /// - Empty: `imei_missing`; other characters: `imei_format`; other lengths: `imei_length`.
    public static func validate(_ raw: String) -> Validated<IMEI> {
        var s = IdentifierText.field(raw, labels: ["IMEISV", "IMEI SV", "IMEI"])
        if !IdentifierText.isDecimal(s) {
            let token = IdentifierText.leadingToken(s)
            if IdentifierText.isDecimal(token) && (15...16).contains(token.utf8.count) { s = token }
        }
        if s.isEmpty {
            return Validated(value: nil, problems: [problem(.imeiMissing, "the modem returned no IMEI")])
        }
        guard IdentifierText.isDecimal(s) else {
            return Validated(
                value: nil,
                problems: [problem(.imeiFormat, "the IMEI contains characters other than decimal digits")]
            )
        }
        switch s.utf8.count {
        case 15:
            break
        case 16:
            return Validated(
                value: nil,
                problems: [
                    problem(
                        .imeiIsIMEISV,
                        "the value has 16 digits: an IMEISV (IMEI with software version), not an IMEI"
                    )
                ]
            )
        default:
            return Validated(
                value: nil,
                problems: [problem(.imeiLength, "the IMEI has \(s.utf8.count) digits, expected 15")]
            )
        }
        let imei = IMEI(digits: String(s))
        var problems: [Problem] = []
        if !Luhn.isValid(s) {
            problems.append(problem(.imeiChecksum, "the IMEI check digit does not match (Luhn)"))
        }
        if let reason = IMEIPlaceholders.reason(for: imei.digits) {
            problems.append(problem(.imeiPlaceholder, "the IMEI is a placeholder, not a unit's own: \(reason)"))
        }
        return Validated(value: imei, problems: problems)
    }

    private static func problem(_ code: Problem.Code, _ message: String) -> Problem {
        Problem(code, field: .imei, severity: .error, message: message)
    }
}

/// IMEIs that modems, emulators and test equipment report when they have no IMEI of their own (lost NV/EFS
/// calibration, unprovisioned module, simulator). A gateway reporting one must not be enrolled under it:
/// many units would share it.
enum IMEIPlaceholders {
    /// Exact values, each with where it comes from. The reason strings are shown in problem messages and so
    /// carry no identifier digits.
    static let known: [String: String] = [
        // Android SDK emulator (goldfish, external/qemu/telephony/android_modem.c answers +CGSN with zeros);
        // also quoted by mozilla-central B2G marionette tests ("IMEI is hardcoded as ...") and by Samsung/MTK
        // devices whose IMEI was wiped.
        "000000000000000": "Android emulator or wiped modem (all zeros)",
        // Android Studio emulator (QEMU2 AVD images) default IMEI, listed by emulator-detection code.
        "358240051111110": "Android Studio emulator default",
        // 3GPP test IMEI used by system simulators and test SIM setups (TS 34.108/36.508 test
        // environments); CyanogenMod device/samsung/aries `Sanity.java` BAD_IMEI: what a Galaxy S modem
        // reports after losing its EFS partition; also older AVD images.
        "004999010640000": "3GPP test IMEI (simulators, modems that lost their calibration)",
        // Wikipedia "International Mobile Equipment Identity" example (35-209900-176148-1); also the
        // Genymotion emulator's default IMEI per emulator-detection test suites.
        "352099001761481": "documentation example, Genymotion emulator default",
    ]

    /// Why `digits` (15 decimal digits) is a placeholder, or nil.
    static func reason(for digits: String) -> String? {
        if let reason = known[digits] { return reason }
        let d = digits.utf8.map { Int($0 - UInt8(ascii: "0")) }
        // All one digit (000000000000000, 111111111111111, ...): factory fill patterns.
        if Set(d).count == 1 { return "all digits equal" }
        // 14 digits counting up or down (123456789012347, 012345678901237, 987654321098...): typed-in fills.
        let body = d.prefix(14)
        let ascending = zip(body, body.dropFirst()).allSatisfy { ($0.0 + 1) % 10 == $0.1 }
        let descending = zip(body, body.dropFirst()).allSatisfy { ($0.1 + 1) % 10 == $0.0 }
        if ascending || descending { return "sequential digits" }
        // Reporting Body Identifier 00 (TAC 00xxxxxx) is reserved for test IMEIs (GSMA TS.06 "Test IMEI";
        // 3GPP TS 23.003 §6.2.1): never on production equipment.
        if d[0] == 0, d[1] == 0 { return "test IMEI range (reporting body zero-zero)" }
        return nil
    }
}
