/// Text helpers shared by the identifier validators. Internal: nothing here prints an identifier.
enum IdentifierText {
    /// Trims whitespace (including CR/LF) and surrounding double or single quotes, repeatedly
    /// (`"  \"123\"\r\n"` → `123`).
    static func trimmed(_ raw: some StringProtocol) -> Substring {
        var s = Substring(raw)
        while let first = s.first, first.isWhitespace || first == "\"" || first == "'" { s.removeFirst() }
        while let last = s.last, last.isWhitespace || last == "\"" || last == "'" { s.removeLast() }
        return s
    }

    static func isDecimal(_ s: some StringProtocol) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// Upper-case hexadecimal digits only (0-9, A-F).
    static func isUpperHex(_ s: some StringProtocol) -> Bool {
        s.utf8.allSatisfy {
            ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "F"))
        }
    }

    /// The value of an answer as modems really print it, reduced to the identifier's own field:
    ///
    /// - a leading label is dropped (`IMEI: 35...`, `IMEI 35...`, `ICCID=89...`; `labels` are matched without
    ///   regard to case, and only when followed by a separator or a digit, so `IMEISV` is not read as `IMEI`);
    /// - of several comma- or semicolon-separated fields, the first is kept: ModemManager's test-modem-helpers.c
    ///   has `356936001568843,NL2A62Z0N5` (IMEI, then the unit's serial number) and Sequans answers
    ///   `+SQNCCID: "<iccid>",""`;
    /// - whitespace and quotes around what is left are trimmed.
    static func field(_ raw: some StringProtocol, labels: [String]) -> Substring {
        // Blanks only: the quotes of `"<iccid>",""` are the fields', not a pair around the value.
        var s = Substring(raw).drop { $0.isWhitespace }
        while let last = s.last, last.isWhitespace { s.removeLast() }
        for label in labels {
            guard s.count > label.count, s.uppercased().hasPrefix(label) else { continue }
            let rest = s.dropFirst(label.count)
            guard let next = rest.first, next == ":" || next == "=" || next.isWhitespace || next.isASCIIDigit else {
                continue
            }
            s = rest.drop { $0 == ":" || $0 == "=" || $0.isWhitespace }
            break
        }
        var inQuotes = false
        var end = s.endIndex
        for i in s.indices {
            let c = s[i]
            if c == "\"" { inQuotes.toggle() }
            if !inQuotes && (c == "," || c == ";") {
                end = i
                break
            }
        }
        return trimmed(s[..<end])
    }

    /// The first whitespace-separated token: what is left of a value followed by junk (`<digits> OK`, a stray
    /// word after the identifier). Callers use it only when the whole value is not already well formed.
    static func leadingToken(_ s: Substring) -> Substring {
        trimmed(s.prefix { !$0.isWhitespace })
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
