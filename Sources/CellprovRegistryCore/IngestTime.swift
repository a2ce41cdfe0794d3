import CellprovEnrollmentAPI
import Foundation

/// The registry's one parser of an event's `occurred_at`: ingest validation refuses what it cannot read, the stores
/// convert with it. The usual form takes the wire module's fast path (``EnrollmentTimestamp/parse(_:)``); any other
/// form goes to the ISO 8601 formatters (plain, then with a fraction), so what is accepted is what they accept
/// (RFC3339Tests).
public enum IngestTime {
    public static func parse(_ text: String) -> Date? {
        if let d = EnrollmentTimestamp.parse(text) { return d }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text)
    }
}
