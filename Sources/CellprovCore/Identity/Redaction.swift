import NIOConcurrencyHelpers

/// The process-wide redaction settings, and a scrubber for free text that came from a modem.
///
/// The identifier types (``IMEI``, ``IMSI``, ``ICCID``) print themselves through ``pseudonymizer``; that is
/// the one choke point for identifiers. ``scrub(_:)`` is the safety net for text the program did not parse
/// (an unexpected modem answer, an error text) before it is logged.
public enum Redaction {
    /// What ``scrub(_:)`` puts in place of a suspected identifier.
    public static let placeholder = "<redacted>"

    private static let state = NIOLockedValueBox<Pseudonymizer>(Pseudonymizer.random())

    /// The pseudonymizer used by the identifier types' descriptions. Defaults to ``Pseudonymizer/random()``
    /// (references then change at every start); configure a fleet key to make them stable across restarts.
    public static var pseudonymizer: Pseudonymizer {
        state.withLockedValue { $0 }
    }

    /// Replaces the process-wide pseudonymizer.
    public static func configure(_ pseudonymizer: Pseudonymizer) {
        state.withLockedValue { $0 = pseudonymizer }
    }

    /// Replaces, in free text, everything that could be an identifier with ``placeholder``:
    /// - every run of 6 or more decimal digits (IMEI, IMSI, ICCID, IMEISV, and their serial parts);
    /// - every word of 10 or more hexadecimal characters that holds at least one decimal digit (an ICCID with
    ///   hex digits, a nibble-swapped ICCID, a MEID);
    /// - every chain of digit groups joined by single spaces or hyphens that holds 12 or more digits in all
    ///   (an identifier printed in groups: "8944 2000 5367 1052 499").
    ///
    /// Adjacent redacted parts collapse into one placeholder. The result contains no digit run of 6 or more.
    public static func scrub(_ text: String) -> String {
        let chars = Array(text.unicodeScalars)
        let n = chars.count
        if n == 0 { return text }
        var redact = [Bool](repeating: false, count: n)

        func isDigit(_ c: Unicode.Scalar) -> Bool { c.value >= 0x30 && c.value <= 0x39 }
        func isHex(_ c: Unicode.Scalar) -> Bool {
            isDigit(c) || (c.value >= 0x41 && c.value <= 0x46) || (c.value >= 0x61 && c.value <= 0x66)
        }
        func isWordChar(_ c: Unicode.Scalar) -> Bool {
            isDigit(c) || (c.value >= 0x41 && c.value <= 0x5A) || (c.value >= 0x61 && c.value <= 0x7A)
        }

        // Words (maximal ASCII alphanumeric runs) made only of hex characters, 10+ long, with a digit.
        var i = 0
        while i < n {
            guard isWordChar(chars[i]) else {
                i += 1
                continue
            }
            var j = i
            var allHex = true
            var hasDigit = false
            while j < n, isWordChar(chars[j]) {
                if !isHex(chars[j]) { allHex = false }
                if isDigit(chars[j]) { hasDigit = true }
                j += 1
            }
            if allHex, hasDigit, j - i >= 10 {
                for k in i..<j { redact[k] = true }
            }
            i = j
        }

        // Digit runs of 6+, and chains of digit groups joined by one space or hyphen with 12+ digits.
        i = 0
        while i < n {
            guard isDigit(chars[i]) else {
                i += 1
                continue
            }
            let chainStart = i
            var totalDigits = 0
            var groups = 0
            var end = i
            var k = i
            while true {
                let runStart = k
                while k < n, isDigit(chars[k]) { k += 1 }
                let runLength = k - runStart
                if runLength >= 6 {
                    for m in runStart..<k { redact[m] = true }
                }
                totalDigits += runLength
                groups += 1
                end = k
                if k + 1 < n, chars[k] == " " || chars[k] == "-", isDigit(chars[k + 1]) {
                    k += 1
                    continue
                }
                break
            }
            if groups >= 2, totalDigits >= 12 {
                for m in chainStart..<end { redact[m] = true }
            }
            i = end
        }

        var out = String.UnicodeScalarView()
        var inRedaction = false
        for (index, c) in chars.enumerated() {
            if redact[index] {
                if !inRedaction { out.append(contentsOf: placeholder.unicodeScalars) }
                inRedaction = true
            } else {
                out.append(c)
                inRedaction = false
            }
        }
        return String(out)
    }
}
