/// The Luhn (mod 10) check digit, as used by the IMEI (3GPP TS 23.003 Annex B) and the ICCID
/// (ITU-T E.118, ISO/IEC 7812-1).
public enum Luhn {
    /// The check digit to append to `payload` (decimal digits only), or nil when `payload` is empty or holds
    /// anything but ASCII decimal digits.
    public static func checkDigit(for payload: some StringProtocol) -> Int? {
        guard let sum = weightedSum(payload, doublingFirstFromRight: true) else { return nil }
        return (10 - sum % 10) % 10
    }

    /// True when `digits` (payload followed by its check digit, at least two ASCII decimal digits) passes
    /// the Luhn check.
    public static func isValid(_ digits: some StringProtocol) -> Bool {
        guard digits.utf8.count >= 2, let sum = weightedSum(digits, doublingFirstFromRight: false) else {
            return false
        }
        return sum % 10 == 0
    }

    /// Sum of the digits from the right, doubling every second one. When the check digit is not yet present
    /// the rightmost payload digit is the first doubled one.
    private static func weightedSum(_ digits: some StringProtocol, doublingFirstFromRight: Bool) -> Int? {
        var sum = 0
        var double = doublingFirstFromRight
        var count = 0
        for byte in digits.utf8.reversed() {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            var d = Int(byte - UInt8(ascii: "0"))
            if double {
                d *= 2
                if d > 9 { d -= 9 }
            }
            sum += d
            double.toggle()
            count += 1
        }
        return count == 0 ? nil : sum
    }
}
