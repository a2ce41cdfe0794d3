/// Decides what a line read from the port is, given the command (if any) waiting for its answer.
///
/// Modems interleave unsolicited result codes (URCs) anywhere: before an answer, between its lines, and when no
/// command is pending. A line is an answer line only if a command is pending and the line is not a known URC
/// form; a URC that carries the prefix the pending command expects (`+CPIN:` while `AT+CPIN?` runs) is an answer.
public enum ATLineKind: Sendable, Equatable {
    case echo
    case final(ATFinalResult)
    case information
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
    ]

    /// Whole-line URCs.
    public static let urcLines: Set<String> = [
        "RDY", "SMS DONE", "PB DONE", "SMS Ready", "Call Ready", "+CPIN: READY", "^SYSSTART", "READY",
        "POWERED DOWN", "NORMAL POWER DOWN", "START", "PB Ready", "RING",
    ]

    public init() {}

    /// Classifies `line`. `pendingCommand` is the command line sent (e.g. `AT+CGSN`), nil when idle.
    /// `expectedPrefix` is the information prefix the command answers with, e.g. `+CPIN:` for `AT+CPIN?`.
    public func classify(_ line: String, pendingCommand: String?, expectedPrefix: String?) -> ATLineKind {
        if let final = ATFinalResult(line: line) {
            // "RING"-like lines are not finals; digits-only finals ("0") only count when a command is pending.
            if pendingCommand != nil || !line.allSatisfy(\.isNumber) { return .final(final) }
        }
        guard let pending = pendingCommand else { return .unsolicited }
        if isEcho(line, of: pending) { return .echo }
        if let expectedPrefix, line.hasPrefix(expectedPrefix) { return .information }
        if Self.isURC(line) { return .unsolicited }
        return .information
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
