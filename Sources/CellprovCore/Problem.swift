/// How bad a ``Problem`` is.
public enum Severity: String, Sendable, Codable, Comparable {
    /// Usable but doubtful (an ICCID check digit, a test network).
    case warning
    /// The identity, or the whole read, is unusable.
    case error

    public static func < (lhs: Severity, rhs: Severity) -> Bool {
        lhs == .warning && rhs == .error
    }
}

/// What a ``Problem`` is about.
public enum ProblemField: String, Sendable, Codable {
    case imei, imsi, iccid, sim, port, modem
    /// The eUICC's own identifier (EID, GSMA SGP.29).
    case eid
}

/// A structured rejection or doubt: a stable machine code, the field, a severity and a human message.
///
/// The message never carries identifier digits: it is written to logs, tables and error output.
public struct Problem: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, extensible code (`imei_checksum`, `sim_not_inserted`, ...).
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        // IMEI
        public static let imeiMissing = Code(rawValue: "imei_missing")
        public static let imeiFormat = Code(rawValue: "imei_format")
        public static let imeiLength = Code(rawValue: "imei_length")
        public static let imeiIsIMEISV = Code(rawValue: "imei_is_imeisv")
        public static let imeiChecksum = Code(rawValue: "imei_checksum")
        public static let imeiPlaceholder = Code(rawValue: "imei_placeholder")
        // IMSI
        public static let imsiMissing = Code(rawValue: "imsi_missing")
        public static let imsiFormat = Code(rawValue: "imsi_format")
        public static let imsiLength = Code(rawValue: "imsi_length")
        public static let imsiTestNetwork = Code(rawValue: "imsi_test_network")
        // ICCID
        public static let iccidMissing = Code(rawValue: "iccid_missing")
        public static let iccidFormat = Code(rawValue: "iccid_format")
        public static let iccidLength = Code(rawValue: "iccid_length")
        public static let iccidPrefix = Code(rawValue: "iccid_prefix")
        public static let iccidChecksum = Code(rawValue: "iccid_checksum")
        // EID (eUICC)
        /// The EID read from the card is malformed or fails its check digits (a warning: the read stays valid).
        public static let eidInvalid = Code(rawValue: "eid_invalid")
        // SIM
        public static let simNotInserted = Code(rawValue: "sim_not_inserted")
        public static let simPINRequired = Code(rawValue: "sim_pin_required")
        public static let simPUKRequired = Code(rawValue: "sim_puk_required")
        public static let simFailure = Code(rawValue: "sim_failure")
        public static let simBusy = Code(rawValue: "sim_busy")
        public static let simWrong = Code(rawValue: "sim_wrong")
        /// The module does not report SIM insertion and removal as they happen (its card holder's detection is off,
        /// or it refused the report command): a swap shows at the next re-probe. A warning.
        public static let simHotSwapUnavailable = Code(rawValue: "sim_hotswap_unavailable")
        // Port and modem
        public static let noResponse = Code(rawValue: "no_response")
        public static let portBusy = Code(rawValue: "port_busy")
        public static let portUnavailable = Code(rawValue: "port_unavailable")
        public static let portClosed = Code(rawValue: "port_closed")
        public static let timeout = Code(rawValue: "timeout")
        public static let commandFailed = Code(rawValue: "command_failed")
        /// An answer came with unreadable or implausible lines among its own, and was discarded.
        public static let garbage = Code(rawValue: "garbage")
        /// An answer grew past the per-command cap (lines or bytes) without ending: the command failed.
        public static let answerTooLong = Code(rawValue: "answer_too_long")
        /// The port sends bytes, but never a complete, readable AT answer: not a modem (or not at this speed).
        public static let notAModem = Code(rawValue: "not_a_modem")
    }

    public var code: Code
    public var field: ProblemField
    public var severity: Severity
    /// Human-readable, free of identifier digits.
    public var message: String

    public init(_ code: Code, field: ProblemField, severity: Severity = .error, message: String) {
        self.code = code
        self.field = field
        self.severity = severity
        self.message = message
    }

    public var description: String { "\(severity.rawValue) \(code.rawValue) (\(field.rawValue)): \(message)" }
}
