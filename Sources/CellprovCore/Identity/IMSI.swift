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
    /// 6 to 15 decimal digits (whitespace and quotes trimmed), else nil with `imsi_missing`, `imsi_format`
    /// or `imsi_length`. MCC 001 (test networks, 3GPP TS 34.108 test USIMs) and 999 (private networks,
    /// E.212) return the value with the warning `imsi_test_network`.
    public static func validate(_ raw: String) -> Validated<IMSI> {
        validate(raw, knownMNCLength: nil)
    }

    /// As ``validate(_:)``, with the MNC length (2 or 3) read from the SIM's EF_AD (3GPP TS 31.102
    /// §4.2.18); any other value falls back to ``MNCTable``.
    public static func validate(_ raw: String, mncLength: Int) -> Validated<IMSI> {
        validate(raw, knownMNCLength: (2...3).contains(mncLength) ? mncLength : nil)
    }

    private static func validate(_ raw: String, knownMNCLength: Int?) -> Validated<IMSI> {
        let s = IdentifierText.trimmed(raw)
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
