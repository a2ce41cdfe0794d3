/// Text helpers shared by the identifier validators. Internal: nothing here prints an identifier.
enum IdentifierText {
    /// Trims whitespace (including CR/LF) and surrounding double or single quotes, repeatedly
    /// (`"  \"123\"\r\n"` → `123`).
    static func trimmed(_ raw: String) -> Substring {
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
}
