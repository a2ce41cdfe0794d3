import CellprovCore
import CellprovRegistryCore
import Foundation

/// The JSON body of one webhook alert. Identifiers appear only masked, exactly as the registry's answers show them
/// (REGISTRY.md "Masking": the CellprovCore types' descriptions, `IMEI(TAC 35209900, ref 1a2b3c4d5e)`,
/// `IMSI(262-01, ref …)`, `ICCID(894922, ref …)`; a value that does not validate as `IMEI(ref …)`), so a receiving
/// chat channel or ticket system never holds full identifiers, while the references still correlate with the
/// registry's pages (same key: `serve` configures `Redaction` with the store's pseudonym key at start; the
/// masking is `Masking`'s).
///
///     {"id": 42, "kind": "imei_on_two_units", "severity": "critical", "serial": "GW-000200", "slot": "usb-1",
///      "summary": "IMEI also enrolled by GW-000201", "raised_at": "2026-11-30T04:12:30Z",
///      "identifiers": {"imei": "IMEI(TAC 35209900, ref 1a2b3c4d5e)"}, "other_serials": ["GW-000201"]}
public struct AlertPayload: Sendable, Equatable, Encodable {
    public struct Identifiers: Sendable, Equatable, Encodable {
        public var imei: String?
        public var imsi: String?
        public var iccid: String?
        public var eid: String?
        public var expectedIMEI: String?
        public var expectedEID: String?

        enum CodingKeys: String, CodingKey {
            case imei, imsi, iccid, eid
            case expectedIMEI = "expected_imei"
            case expectedEID = "expected_eid"
        }
    }

    public var id: Int64
    public var kind: String
    public var severity: String
    public var serial: String?
    public var slot: String?
    public var summary: String
    public var raisedAt: String
    public var identifiers: Identifiers
    public var otherSerials: [String]
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case id, kind, severity, serial, slot, summary
        case raisedAt = "raised_at"
        case identifiers
        case otherSerials = "other_serials"
        case note
    }

    public init(_ stored: RegistryFlag) {
        let flag = stored.flag
        id = stored.id
        kind = flag.kind.rawValue
        severity = flag.severity.rawValue
        serial = flag.serial
        slot = flag.slot
        // Summaries and notes carry no identifier digits by contract; scrubbed anyway, as the last line of defence.
        summary = Redaction.scrub(flag.summary)
        raisedAt = Self.rfc3339(stored.raisedAt)
        let masked = Masking.evidence(flag.evidence)
        identifiers = Identifiers(
            imei: masked.imei, imsi: masked.imsi, iccid: masked.iccid, eid: masked.eid,
            expectedIMEI: masked.expectedIMEI, expectedEID: masked.expectedEID)
        otherSerials = flag.evidence.otherSerials
        note = flag.evidence.note.map(Redaction.scrub)
    }

    func jsonBytes() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self))
    }

    static func rfc3339(_ date: Date) -> String {
        date.formatted(
            .iso8601.year().month().day().time(includingFractionalSeconds: false).timeZone(separator: .omitted))
    }
}
