import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Testing

/// `RFC3339Time.parse` must give exactly what the two `ISO8601DateFormatter`s the registry used before give (plain,
/// then with fractional seconds), to the millisecond the store keeps, or nil so that the caller asks them: it may
/// never accept a text the formatters refuse (that would turn a 422 into a stored event).
@Suite struct RFC3339Tests {
    static func formatters(_ text: String) -> Date? {
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        if let d = plain.date(from: text) { return d }
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return fractional.date(from: text)
    }

    static func ms(_ d: Date?) -> Int64? { d.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) } }

    static let texts: [String] = [
        "2026-11-30T05:01:02Z", "1970-01-01T00:00:00Z", "2000-02-29T23:59:59Z", "2100-12-31T23:59:59Z",
        "2026-11-30T05:01:02.5Z", "2026-11-30T05:01:02.12Z", "2026-11-30T05:01:02.123Z", "2026-11-30T05:01:02.1234Z",
        "2026-11-30T05:01:02.123456Z", "2026-11-30T05:01:02.999999999Z", "2026-11-30T05:01:02+02:00",
        "2026-11-30T05:01:02-07:30", "2026-11-30T05:01:02.250+05:45", "2026-11-30T00:30:00+01:00",
        // refused by this parser (some also by the formatters): the answers must still agree
        "2026-02-29T05:01:02Z", "2026-13-01T05:01:02Z", "2026-11-31T05:01:02Z", "2026-11-30T24:00:00Z",
        "2026-11-30T05:60:02Z", "2026-11-30T05:01:60Z", "2026-11-30 05:01:02Z", "2026-11-30T05:01:02",
        "2026-11-30T05:01:02.Z", "2026-11-30T05:01:02+0200", "2026-11-30T05:01:02+02", "2026-11-30t05:01:02z",
        "26-11-30T05:01:02Z", "2026-11-30T05:01:02ZZ", "", "not a time", "2026-11-30T05:01:02.1234567890Z",
        "+2026-11-30T05:01:02Z", "2026-1-30T05:01:02Z", "1969-12-31T23:59:59Z",
    ]

    @Test(arguments: texts)
    func agreesWithTheFormatters(_ text: String) {
        let fast = RFC3339Time.parse(text)
        let reference = Self.formatters(text)
        if let fast {
            #expect(Self.ms(fast) == Self.ms(reference), "\(text)")
        }
        // What the caller ends with (fast, else formatters) is what the formatters alone give.
        #expect(Self.ms(fast ?? reference) == Self.ms(reference), "\(text)")
    }

    /// The registry's one parser (the wire module's fast path, then the formatters) accepts what the formatters
    /// accept, to the millisecond: what ingest validation and the stores take is unchanged.
    @Test(arguments: texts)
    func ingestTimeAgreesWithTheFormatters(_ text: String) {
        #expect(Self.ms(IngestTime.parse(text)) == Self.ms(Self.formatters(text)), "\(text)")
    }

    @Test func theUsualFormsTakeTheFastPath() {
        for text in ["2026-11-30T05:01:02Z", "2026-11-30T05:01:02.123Z", "2026-11-30T05:01:02+02:00"] {
            #expect(RFC3339Time.parse(text) != nil, "\(text)")
        }
    }

    @Test func randomInstantsRoundTrip() {
        var g = SystemRandomNumberGenerator()
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for _ in 0..<2000 {
            let ms = Int64.random(in: 0...4_102_444_800_000, using: &g)
            let text = f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
            #expect(Self.ms(RFC3339Time.parse(text)) == ms, "\(text)")
        }
    }
}
