import FoundationEssentials

/// The enrollment API's times (`occurred_at`, `state_lost.detected_at`): RFC 3339, written in UTC with whole
/// seconds, read in any RFC 3339 form. The one place they are written and parsed: the senders (`EnrollmentRequest`)
/// and the registry (ingest validation, the stores, the operator API's views) all come here.
public enum EnrollmentTimestamp {
    /// RFC 3339 in UTC, whole seconds: `2026-11-30T05:01:02Z`.
    public static func format(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    /// The instant of an RFC 3339 time in the usual form (``RFC3339Time``: `Z` or an offset, with or without a
    /// fraction, kept to milliseconds); nil for anything else. The registry's `IngestTime.parse` (the one parser
    /// ingest validation and the stores use) asks ISO 8601 formatters about the other forms.
    public static func parse(_ text: String) -> Date? {
        RFC3339Time.parse(text)
    }
}

// Building an `ISO8601DateFormatter` (ICU underneath) per event was the registry's largest CPU cost per ingest (two
// fifths of it; docs/performance.md, "PostgreSQL ingest in one round trip"): this parser takes the usual form and
// leaves every other one to Foundation's parser.

/// A strict parser of the common RFC 3339 form, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)`, that gives the same
/// instant as `ISO8601DateFormatter` (fraction kept to milliseconds, as the formatter does and as the store keeps
/// times). It returns nil for anything it does not fully check (other layouts, out-of-range fields, leap
/// seconds), and the caller then asks the formatter.
public enum RFC3339Time {
    public static func parse(_ text: String) -> Date? {
        var text = text
        return text.withUTF8 { parse(bytes: $0) }
    }

    static func parse(bytes b: UnsafeBufferPointer<UInt8>) -> Date? {
        guard b.count >= 20, b.count <= 40 else { return nil }
        func digits(_ at: Int, _ n: Int) -> Int? {
            var v = 0
            for i in at..<(at + n) {
                let c = b[i]
                guard c >= 0x30, c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            return v
        }
        guard let year = digits(0, 4), b[4] == 0x2D, let month = digits(5, 2), b[7] == 0x2D, let day = digits(8, 2),
            b[10] == 0x54, let hour = digits(11, 2), b[13] == 0x3A, let minute = digits(14, 2), b[16] == 0x3A,
            let second = digits(17, 2)
        else { return nil }
        guard year >= 1970, (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year), hour < 24,
            minute < 60, second < 60
        else { return nil }
        var i = 19
        var millis = 0
        if b[i] == 0x2E {
            i += 1
            let start = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if i - start < 3 { millis = millis * 10 + Int(b[i] - 0x30) }
                i += 1
            }
            let n = i - start
            guard n >= 1, n <= 9 else { return nil }
            if n < 3 { for _ in n..<3 { millis *= 10 } }
        }
        guard i < b.count else { return nil }
        var offset = 0
        if b[i] == 0x5A {
            i += 1
        } else if b[i] == 0x2B || b[i] == 0x2D {
            guard i + 6 == b.count, let oh = digits(i + 1, 2), b[i + 3] == 0x3A, let om = digits(i + 4, 2), oh < 24,
                om < 60
            else { return nil }
            offset = (oh * 3600 + om * 60) * (b[i] == 0x2D ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let seconds = daysFromCivil(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second
            - offset
        return Date(timeIntervalSince1970: Double(seconds * 1000 + millis) / 1000)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
