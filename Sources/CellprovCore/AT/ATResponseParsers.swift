/// Pure extraction of values from the information lines of an answer. They return the raw value as the modem wrote
/// it (tag and quotes removed); validation is the identity types' job.
public enum ATResponse {
    /// The value of the first line carrying `tag` (e.g. `+CGSN:`), or of the first untagged line if none does and
    /// `allowBare` is set. Quotes and whitespace are removed.
    public static func value(in lines: [String], tags: [String], allowBare: Bool = true) -> String? {
        for line in lines {
            for tag in tags where line.uppercased().hasPrefix(tag.uppercased()) {
                return clean(String(line.dropFirst(tag.count)))
            }
        }
        guard allowBare else { return nil }
        for line in lines where !looksTagged(line) {
            return clean(line)
        }
        return nil
    }

    /// IMEI from `AT+CGSN`, `AT+CGSN=1` or `AT+GSN`: bare digits, `+CGSN: <digits>`, `+CGSN: "<digits>"`,
    /// `+GSN: ...`, and the `IMEI: ...` form some modules print.
    public static func imei(in lines: [String]) -> String? {
        value(in: lines, tags: ["+CGSN:", "+GSN:", "IMEI:"])
    }

    /// IMSI from `AT+CIMI`: bare digits or `+CIMI: <digits>`.
    public static func imsi(in lines: [String]) -> String? {
        value(in: lines, tags: ["+CIMI:"])
    }

    /// ICCID from AT+CCID and the vendor commands: `+CCID:`, `+ICCID:`, `^ICCID:`, `+QCCID:`, `#CCID:`, `^SCID:`,
    /// `ICCID:`, `+CICCID:` or bare.
    public static func iccid(in lines: [String]) -> String? {
        value(in: lines, tags: ["+CCID:", "+ICCID:", "^ICCID:", "+QCCID:", "#CCID:", "^SCID:", "+CICCID:", "!ICCID:", "ICCID:"])
    }

    /// The data of a successful `+CRSM: <sw1>,<sw2>[,"<hex>"]` answer (SW 0x90 0x00 or 0x91 xx), or nil.
    public static func crsmData(in lines: [String]) -> String? {
        guard let body = value(in: lines, tags: ["+CRSM:"], allowBare: false) else { return nil }
        let parts = body.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3,
              let sw1 = Int(parts[0].trimmingCharacters(in: .whitespaces)),
              sw1 == 0x90 || sw1 == 0x91
        else { return nil }
        let data = clean(String(parts[2]))
        return data.isEmpty ? nil : data
    }

    /// Manufacturer, model or revision from `AT+CGMI`/`+CGMM`/`+CGMR` (and +GMI/+GMM/+GMR): tagged or bare,
    /// several bare lines joined by a space.
    public static func text(in lines: [String], tags: [String]) -> String? {
        if let tagged = value(in: lines, tags: tags, allowBare: false) { return tagged.isEmpty ? nil : tagged }
        let bare = lines.filter { !looksTagged($0) }.map(clean).filter { !$0.isEmpty }
        return bare.isEmpty ? nil : bare.joined(separator: " ")
    }

    /// The state in `+CPIN: <code>` (READY, SIM PIN, SIM PUK, ...).
    public static func pinState(in lines: [String]) -> String? {
        value(in: lines, tags: ["+CPIN:"], allowBare: false)
    }

    static func looksTagged(_ line: String) -> Bool {
        guard let first = line.first else { return false }
        guard first == "+" || first == "^" || first == "#" || first == "$" || first == "!" || first == "*" else {
            return false
        }
        return line.contains(":")
    }

    static func clean(_ raw: String) -> String {
        raw.trimmingCharacters(in: .whitespaces).trimmingQuotes().trimmingCharacters(in: .whitespaces)
    }
}

import Foundation
