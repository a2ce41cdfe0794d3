/// Decides what a line read from the port is, given the command (if any) waiting for its answer.
///
/// Modems interleave unsolicited result codes (URCs) anywhere: before an answer, between its lines, and when no
/// command is pending. A line is an answer line only if a command is pending and the line is not a known URC
/// form; a URC that carries the prefix the pending command expects (`+CPIN:` while `AT+CPIN?` runs) is an answer.
public enum ATLineKind: Sendable, Equatable {
    /// The echo of the pending command.
    case echo
    /// The echo of some other command (another program's, a module replaying one, a tampered module): never an
    /// answer line, whatever follows.
    case foreignEcho
    case final(ATFinalResult)
    case information
    /// Would be an information line, but no answer has that form: too long, or control characters.
    case implausible
    case unsolicited
}

public struct ATLineClassifier: Sendable {
    /// Prefixes of unsolicited result codes seen from mainstream modules (3GPP TS 27.007 and vendor manuals).
    public static let urcPrefixes: [String] = [
        "+CPIN:", "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", "+CGEV:", "+CRING:", "RING", "+CLIP:", "+CMTI:",
        "+CMT:", "+CDS:", "+CBM:", "+CUSD:", "+CTZV:", "+CTZE:", "+CIEV:", "+CSQ:", "+CMGS:", "+CSCON:",
        "+QIND:", "+QUSIM:", "+QSIMSTAT:", "+QSTK", "+QNETDEVSTATUS", "+QIURC:", "+QCFG:",
        "^SIMST:", "^SRVST:", "^MODE:", "^RSSI:", "^HCSQ:", "^BOOT:", "^NDISSTAT:", "^NWTIME:", "^DSFLOWRPT:",
        "^SYSSTART", "^SHUTDOWN", "^SIS:", "^SCKS:", "+SIMCARD:", "+CPSI:", "#QSS:", "#SIMST:", "+UUSIMSTAT:",
        "+UUPSDA:", "+UUSTS:", "+PACSP", "+CMSTATE:", "+CNMP:", "+NITZ:", "+STIN:", "+SIND:", "+MSTATE",
        "+PBREADY", "+CFUN:", "+PSUTTZ:", "*PSUTTZ:", "DST:", "+SIM READY", "+CGEV", "+ICCID READY",
        // SIM hot-swap reports (SIMReportSetup): SIMCom +CSMINS, Fibocom's (ModemManager's fibocom plugin).
        "+CSMINS:", "+SIM: Inserted", "+SIM: Removed", "+SIM DROP",
    ]

    /// Whole-line URCs.
    public static let urcLines: Set<String> = [
        "RDY", "SMS DONE", "PB DONE", "SMS Ready", "Call Ready", "+CPIN: READY", "^SYSSTART", "READY",
        "POWERED DOWN", "NORMAL POWER DOWN", "START", "PB Ready", "RING",
    ]

    /// The longest information line taken as part of an answer. The identity answers are under 100 characters and
    /// the longest answer lines in the vendor manuals (ATI banners, +COPS=? lists) a few hundred.
    public var maxInformationLength: Int

    public init(maxInformationLength: Int = 512) {
        self.maxInformationLength = maxInformationLength
    }

    /// Classifies `line`. `pendingCommand` is the command line sent (e.g. `AT+CGSN`), nil when idle.
    /// `expectedPrefix` is the information prefix the command answers with, e.g. `+CPIN:` for `AT+CPIN?`.
    public func classify(_ line: String, pendingCommand: String?, expectedPrefix: String?) -> ATLineKind {
        if let final = ATFinalResult(line: line) {
            // "RING"-like lines are not finals; digits-only finals ("0") only count when a command is pending, and
            // not after AT+CCHO, whose answer may be the bare channel number ("3" is no NO CARRIER there).
            let digitsOnly = line.allSatisfy(\.isNumber)
            if let pending = pendingCommand, digitsOnly, Self.answersBareNumber(pending) { return .information }
            if pendingCommand != nil || !digitsOnly { return .final(final) }
        }
        guard let pending = pendingCommand else { return Self.isCommandLine(line) ? .foreignEcho : .unsolicited }
        if isEcho(line, of: pending) { return .echo }
        if Self.isCommandLine(line) { return .foreignEcho }
        if let expectedPrefix, line.hasPrefix(expectedPrefix) { return isPlausible(line) ? .information : .implausible }
        if Self.isURC(line) { return .unsolicited }
        return isPlausible(line) ? .information : .implausible
    }

    /// An information line can be part of an answer: not longer than ``maxInformationLength``, printable ASCII
    /// (tab allowed). The framer already drops binary lines; this holds for lines that come from elsewhere too.
    public func isPlausible(_ line: String) -> Bool {
        var count = 0
        for byte in line.utf8 {
            count += 1
            if count > maxInformationLength { return false }
            if byte < 0x20 && byte != 0x09 || byte > 0x7E { return false }
        }
        return true
    }

    /// True if `line` is a command line as a DTE writes it (V.250 §5.2.1): `AT` alone, `AT` followed by an
    /// extended command (`+`, `^`, `#`, `$`, `%`, `*`, `!`, `&`) or by a basic command (a letter and digits or
    /// `=`/`?`, or a lone letter). Such a line is an echo, ours or another's, never an answer. Answer text that
    /// merely starts with the letters A and T ("ATMEL ...", "AT&T Inc") is kept: after a basic command letter only
    /// digits, `=` and `?` may follow, and after `&` a letter and at most a digit (`AT&F`, `AT&W0`, `AT&D2`).
    public static func isCommandLine(_ line: String) -> Bool {
        let u = Array(line.utf8)
        guard u.count >= 2, u[0] | 0x20 == UInt8(ascii: "a"), u[1] | 0x20 == UInt8(ascii: "t") else { return false }
        if u.count == 2 { return true }
        let rest = u[2...]
        let first = rest.first!
        if first == UInt8(ascii: "&") {
            guard rest.count >= 2, isLetter(rest[rest.startIndex + 1]) else { return false }
            return rest.dropFirst(2).allSatisfy(isDigit) && rest.count <= 4
        }
        if "+^#$%*!".utf8.contains(first) {
            // An extended command name is letters, digits and a few marks, then nothing, `?`, `=?` or `=args`.
            let name = rest.dropFirst().prefix { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") }
            guard !name.isEmpty, name.first.map(isLetter) == true else { return false }
            let tail = rest.dropFirst(1 + name.count)
            return tail.isEmpty || tail.first == UInt8(ascii: "?") || tail.first == UInt8(ascii: "=")
                || tail.first == UInt8(ascii: ";")
        }
        guard isLetter(first) else { return false }
        if rest.count == 1 { return true }
        let second = rest[rest.startIndex + 1]
        return isDigit(second) || second == UInt8(ascii: "=") || second == UInt8(ascii: "?")
    }

    private static func isLetter(_ b: UInt8) -> Bool {
        (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z")
    }
    private static func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    /// Commands whose answer may be a bare number, so that a digits-only line is their value, not a numeric
    /// result code: `AT+CCHO`, which Fibocom FM350-GL answers with the channel alone (lpac #209, #445).
    static func answersBareNumber(_ command: String) -> Bool {
        command.utf8.count >= 8 && command.prefix(8).uppercased() == "AT+CCHO="
    }

    /// True if `line` has the form of a known URC.
    public static func isURC(_ line: String) -> Bool {
        if urcLines.contains(line) { return true }
        return urcPrefixes.contains { line.hasPrefix($0) }
    }

    /// Echo of the command, tolerated even after ATE0 (some modules echo the first command after it).
    public func isEcho(_ line: String, of command: String) -> Bool {
        line.caseInsensitiveEquals(command)
    }
}

extension String {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        count == other.count && uppercased() == other.uppercased()
    }
}
