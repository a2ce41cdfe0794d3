/// A final result code that ends the answer to a command (ITU-T V.250 and 3GPP TS 27.007 / 27.005).
public enum ATFinalResult: Sendable, Equatable {
    case ok
    case error
    /// `+CME ERROR: <n>` or `+CME ERROR: <text>`.
    case cmeError(CMEError)
    /// `+CMS ERROR: <n|text>` (SMS layer).
    case cmsError(String)
    case noCarrier
    case busy
    case noAnswer
    case noDialtone
    case connect(String)

    /// Parses a line as a final result code, or returns nil for any other line.
    public init?(line: String) {
        switch line {
        case "OK", "0": self = .ok
        case "ERROR", "4": self = .error
        case "NO CARRIER", "3": self = .noCarrier
        case "BUSY", "7": self = .busy
        case "NO ANSWER", "8": self = .noAnswer
        case "NO DIALTONE", "NO DIAL TONE", "6": self = .noDialtone
        default:
            if let rest = line.dropPrefix("+CME ERROR:") {
                self = .cmeError(CMEError(rest))
            } else if let rest = line.dropPrefix("+CMS ERROR:") {
                self = .cmsError(rest.trimmingATWhitespace())
            } else if line == "CONNECT" || line.hasPrefix("CONNECT ") {
                self = .connect(String(line.dropFirst("CONNECT".count)).trimmingATWhitespace())
            } else {
                return nil
            }
        }
    }

    public var isSuccess: Bool {
        switch self {
        case .ok, .connect: true
        default: false
        }
    }
}

/// A `+CME ERROR`, numeric (AT+CMEE=1) or verbose (AT+CMEE=2), with the SIM conditions of 3GPP TS 27.007 §9.2.
public struct CMEError: Sendable, Hashable, CustomStringConvertible {
    public var code: Int?
    public var text: String?

    public init(code: Int?, text: String?) {
        self.code = code
        self.text = text
    }

    init(_ raw: String) {
        let trimmed = raw.trimmingATWhitespace().trimmingQuotes()
        if let n = Int(trimmed) {
            self.init(code: n, text: nil)
        } else {
            self.init(code: nil, text: trimmed)
        }
    }

    public enum SIMCondition: Sendable, Equatable {
        case notInserted, pinRequired, pukRequired, failure, busy, wrong
    }

    /// The SIM condition this error reports, from its number or its text.
    public var simCondition: SIMCondition? {
        switch code {
        case 10: return .notInserted
        // 11 SIM PIN, 17 SIM PIN2; 5/6 PH-SIM/PH-FSIM PIN and 40/42/44/46 network personalisation PINs are
        // device locks that keep the SIM closed the same way (their text forms say "PIN" too).
        case 11, 17, 5, 6, 40, 42, 44, 46: return .pinRequired
        case 12, 18, 7, 41, 43, 45, 47: return .pukRequired
        case 13: return .failure
        case 14: return .busy
        case 15: return .wrong
        default: break
        }
        guard let text = text?.lowercased() else { return nil }
        if text.contains("not inserted") || text.contains("no sim") || text.contains("sim not present") {
            return .notInserted
        }
        if text.contains("puk") { return .pukRequired }
        if text.contains("pin") { return .pinRequired }
        if text.contains("busy") || text.contains("not ready") { return .busy }
        if text.contains("wrong") { return .wrong }
        if text.contains("sim failure") || text.contains("sim fail") { return .failure }
        return nil
    }

    /// Redacted-safe text: the code, or the modem's text scrubbed of long digit runs.
    public var description: String {
        // Scrubbed both ways: the text is the modem's, and so is a "number" of any length (found by fuzzing: a
        // modem answering "+CME ERROR: SIM 320415..." or "+CME ERROR: <IMSI digits>" put them in this text).
        if let code { return Redaction.scrub("+CME ERROR \(code)") }
        return Redaction.scrub("+CME ERROR \"\(text ?? "")\"")
    }
}

extension String {
    func dropPrefix(_ prefix: String) -> String? {
        guard hasPrefix(prefix) else { return nil }
        return String(dropFirst(prefix.count))
    }

    func trimmingQuotes() -> String {
        var s = Substring(self)
        if s.count >= 2, s.first == "\"", s.last == "\"" {
            s = s.dropFirst().dropLast()
        }
        return String(s)
    }
}
