import CellprovCore
import CellprovEnrollmentAPI
import Foundation
import Testing

/// The enrollment API's input rules (``EnrollmentValidation``), field by field: what the registry refuses with 422
/// and what `cellprov probe --report` refuses to send. Each case names the field the violation must name.
@Suite struct WireValidationTests {
    static let now = Date(timeIntervalSince1970: 1_796_000_000)  // 2026-11-30

    static func valid() -> EnrollmentRequest {
        EnrollmentRequest(
            eventID: "6f1c2a4e-8d3b-4f5a-9c7e-1b2d3e4f5a60", type: "sim_changed",
            occurredAt: EnrollmentRequest.timestamp(now), sequence: 2, severity: "warning",
            device: .init(serial: "GW-000123"),
            module: .init(
                slot: "platform-xhci-hcd.0-usb-0:1.2", usbSerial: "a1b2c3d4", manufacturer: "Quectel",
                model: "EG25", revision: "EG25GGBR07A08M2G", source: "modemmanager"),
            identity: .init(
                imei: "867530041234566", imsi: "262011234567890", iccid: "89492260000123456798",
                eid: "89049032000000000000000000012345", simSlot: 2),
            previous: .init(imei: "867530041234566", imsi: "26201123456", iccid: "8949226000012345678A"),
            problems: [.init(code: "iccid_checksum", field: "iccid", severity: "warning", message: "check digit")],
            references: .init(imei: "1a2b3c4d5e"))
    }

    typealias Change = @Sendable (inout EnrollmentRequest) -> Void

    /// (what is changed, the field the violation names; nil: still valid).
    static let cases: [(String, String?, Change)] = [
        ("nothing", nil, { _ in }),
        ("lower-case hex ICCID tail is not allowed", "identity.iccid", { $0.identity.iccid = "8949226000012345679a" }),
        ("an 18-character ICCID", nil, { $0.identity.iccid = "894922600001234567" }),
        ("IMEI formula", "identity.imei", { $0.identity.imei = "-2+3+cmd|' /C calc'!A0" }),
        ("IMEI of 14 digits", "identity.imei", { $0.identity.imei = "86753004123456" }),
        ("IMEISV", "identity.imei", { $0.identity.imei = "8675300412345601" }),
        ("IMSI of 5 digits", "identity.imsi", { $0.identity.imsi = "26201" }),
        ("IMSI of 6 digits", nil, { $0.identity.imsi = "262011" }),
        ("ICCID not starting with 89", "identity.iccid", { $0.identity.iccid = "99492260000123456798" }),
        ("ICCID hex in the first six", "identity.iccid", { $0.identity.iccid = "89A92260000123456798" }),
        ("ICCID of 21", "identity.iccid", { $0.identity.iccid = "894922600001234567980" }),
        ("EID of 31 digits", "identity.eid", { $0.identity.eid = "8904903200000000000000000001234" }),
        ("EID not 89", "identity.eid", { $0.identity.eid = "98049032000000000000000000012345" }),
        ("sim_slot 0", "identity.sim_slot", { $0.identity.simSlot = 0 }),
        ("sim_slot 9", "identity.sim_slot", { $0.identity.simSlot = 9 }),
        ("sim_slot 8", nil, { $0.identity.simSlot = 8 }),
        ("previous IMEI", "previous.imei", { $0.previous?.imei = "86753004123456X" }),
        ("previous sim_slot", "previous.sim_slot", { $0.previous?.simSlot = -1 }),
        ("slot NUL", "module.slot", { $0.module.slot = "usb-1\u{0}" }),
        ("slot CR", "module.slot", { $0.module.slot = "usb-1\r" }),
        ("slot tab", "module.slot", { $0.module.slot = "usb\t1" }),
        ("slot U+202E", "module.slot", { $0.module.slot = "usb-1\u{202E}2.1" }),
        ("slot U+200B", "module.slot", { $0.module.slot = "usb\u{200B}-1" }),
        ("slot empty", "module.slot", { $0.module.slot = "" }),
        ("slot 129 bytes", "module.slot", { $0.module.slot = String(repeating: "a", count: 129) }),
        ("slot 128 bytes", nil, { $0.module.slot = String(repeating: "a", count: 128) }),
        ("manufacturer U+2066", "module.manufacturer", { $0.module.manufacturer = "Quec\u{2066}tel" }),
        ("model U+061C", "module.model", { $0.module.model = "EG\u{061C}25" }),
        ("revision DEL", "module.revision", { $0.module.revision = "R\u{7F}" }),
        ("revision C1", "module.revision", { $0.module.revision = "R\u{85}" }),
        ("usb_serial U+FEFF", "module.usb_serial", { $0.module.usbSerial = "\u{FEFF}a1" }),
        ("usb_serial U+200F", "module.usb_serial", { $0.module.usbSerial = "a1\u{200F}" }),
        ("model U+2060", "module.model", { $0.module.model = "EG\u{2060}25" }),
        ("model 257 bytes", "module.model", { $0.module.model = String(repeating: "m", count: 257) }),
        ("model with blanks and non-ASCII", nil, { $0.module.model = "Télit LE910C4 EU" }),
        ("source", "module.source", { $0.module.source = "usb" }),
        ("device serial with a blank", "device.serial", { $0.device.serial = "GW 1" }),
        ("occurred_at year 99999", "occurred_at", { $0.occurredAt = "99999-01-01T00:00:00Z" }),
        ("occurred_at year 0000", "occurred_at", { $0.occurredAt = "0000-01-01T00:00:00Z" }),
        ("occurred_at 1999", "occurred_at", { $0.occurredAt = "1999-12-31T23:59:59Z" }),
        ("occurred_at 2000", nil, { $0.occurredAt = "2000-01-01T00:00:00Z" }),
        ("occurred_at 25 h ahead", "occurred_at", {
            $0.occurredAt = EnrollmentRequest.timestamp(now.addingTimeInterval(25 * 3600))
        }),
        ("occurred_at 23 h ahead", nil, {
            $0.occurredAt = EnrollmentRequest.timestamp(now.addingTimeInterval(23 * 3600))
        }),
        ("occurred_at not a time", "occurred_at", { $0.occurredAt = "yesterday" }),
        ("event_id dup", "event_id", { $0.eventID = "dup" }),
        ("event_id upper case", "event_id", { $0.eventID = "6F1C2A4E-8D3B-4F5A-9C7E-1B2D3E4F5A60" }),
        ("event_id without dashes", "event_id", { $0.eventID = "6f1c2a4e8d3b4f5a9c7e1b2d3e4f5a60abcd" }),
        ("type", "type", { $0.type = "teleported" }),
        ("firmware_changed with previous_revision", nil, {
            $0.type = "firmware_changed"
            $0.severity = "info"
            $0.previous = nil
            $0.previousRevision = "EG25GGBR07A07M2G"
        }),
        ("previous_revision empty (as module.revision may be)", nil, { $0.previousRevision = "" }),
        ("previous_revision NUL", "previous_revision", { $0.previousRevision = "EG25\u{0}" }),
        ("previous_revision U+202E", "previous_revision", { $0.previousRevision = "EG25\u{202E}M2G" }),
        ("previous_revision 257 bytes", "previous_revision", {
            $0.previousRevision = String(repeating: "r", count: 257)
        }),
        ("previous_revision 256 bytes", nil, { $0.previousRevision = String(repeating: "r", count: 256) }),
        ("severity", "severity", { $0.severity = "fatal" }),
        ("sequence", "sequence", { $0.sequence = 0 }),
        ("problem code", "problems[0].code", { $0.problems[0].code = "Bad-Code" }),
        ("problem field", "problems[0].field", { $0.problems[0].field = "antenna" }),
        ("problem severity", "problems[0].severity", { $0.problems[0].severity = "critical" }),
        ("problem message RLO", "problems[0].message", { $0.problems[0].message = "ok\u{202E}" }),
        ("other_slots empty", "other_slots", { $0.otherSlots = [] }),
        ("other_slots LF", "other_slots[1]", { $0.otherSlots = ["usb-1", "usb-2\n"] }),
        ("reference upper case", "references.imei", { $0.references?.imei = "1A2B3C4D5E" }),
        ("state_lost reason", "state_lost.reason", {
            $0.stateLost = .init(reason: "cosmic_ray", detectedAt: $0.occurredAt, eventsSalvaged: 0, eventsLost: 0,
                lastSequence: nil)
        }),
        ("state_lost detected_at", "state_lost.detected_at", {
            $0.stateLost = .init(reason: "database_empty", detectedAt: "1970-01-01T00:00:00Z", eventsSalvaged: 0,
                eventsLost: 0, lastSequence: 1)
        }),
    ]

    @Test(arguments: cases.indices)
    func fieldRules(_ index: Int) {
        let (what, field, change) = Self.cases[index]
        var event = Self.valid()
        change(&event)
        let violation = EnrollmentValidation.violation(of: event, receivedAt: Self.now)
        #expect(violation?.field == field, "\(what): \(violation.map(String.init(describing:)) ?? "valid")")
        if let violation { #expect(identifierDigitRuns(violation.description).isEmpty, "\(what)") }
    }

    /// What a module answers goes on the wire cleaned (WireText.cleaned): cellprovd's own payload always passes the
    /// registry's rules, whatever control or bidi characters a firmware string holds.
    @Test func aSendersModuleStringsAreCleanedToTheRule() throws {
        #expect(WireText.cleaned("EG25\tGGBR\r07\u{202E}A08\u{200B}", maxBytes: 256) == "EG25 GGBR 07 A08")
        #expect(WireText.cleaned("\u{0}\t ", maxBytes: 256) == nil)
        #expect(WireText.cleaned(String(repeating: "é", count: 200), maxBytes: 256)?.utf8.count == 256)
        #expect(WireText.cleaned(nil, maxBytes: 10) == nil)
        let event = IdentityEvent(
            id: UUID(), type: .enrolled, slot: "platform-xhci-hcd.0-usb-0:1.2\u{7}", sequence: 1, occurredAt: Self.now,
            severity: .info,
            module: ModuleInfo(
                usbSerial: "a1b2\u{0}", manufacturer: "Quectel\r\n", model: "\u{202E}EG25",
                revision: "EG25GGBR07A08M2G\t" + String(repeating: "x", count: 400)),
            identity: IdentitySnapshot(imei: "867530041234566", imsi: "262011234567890", iccid: "89492260000123456798"),
            previous: nil, problems: [])
        let request = EnrollmentRequest(event, deviceSerial: "GW-000123", pseudonymizer: Pseudonymizer(key: Array(repeating: 7, count: 32)))
        #expect(EnrollmentValidation.violation(of: request, receivedAt: Self.now) == nil)
        #expect(request.module.model == "EG25" && request.module.manufacturer == "Quectel")

        var firmware = event
        firmware.type = .firmwareChanged
        firmware.previousRevision = "EG25GGBR07A07M2G\u{1B}[31m" + String(repeating: "y", count: 400)
        let fw = EnrollmentRequest(
            firmware, deviceSerial: "GW-000123", pseudonymizer: Pseudonymizer(key: Array(repeating: 7, count: 32)))
        #expect(EnrollmentValidation.violation(of: fw, receivedAt: Self.now) == nil)
        #expect(fw.previousRevision?.hasPrefix("EG25GGBR07A07M2G [31m") == true)
        #expect(fw.previousRevision?.utf8.count == 256)
        #expect(try EnrollmentRequest.decode(try fw.jsonBytes()) == fw)
    }

    @Test func idempotencyKeyMustEqualTheEventID() {
        let event = Self.valid()
        #expect(EnrollmentValidation.violation(of: event, receivedAt: Self.now, idempotencyKey: event.eventID) == nil)
        #expect(
            EnrollmentValidation.violation(
                of: event, receivedAt: Self.now, idempotencyKey: UUID().uuidString.lowercased())?.field
                == "Idempotency-Key")
        #expect(
            EnrollmentValidation.violation(of: event, receivedAt: Self.now, idempotencyKey: event.eventID.uppercased())?
                .field == "Idempotency-Key")
    }

    /// Duplicate keys at any depth (also spelled with escapes), bounded depth and size; valid bodies pass.
    @Test(arguments: [
        (#"{"a": 1, "b": {"c": 2, "d": [1, {"c": 3}]}}"#, JSONKeyScan.Result.ok),
        (#"{"a": "x\"y", "b": "}{\\"}"#, .ok),
        (#"{"event_id": "a", "event_id": "b"}"#, .duplicateKey("event_id")),
        (#"{"identity": {"imei": "1", "imsi": "2", "imei": "3"}}"#, .duplicateKey("identity.imei")),
        (#"{"identity": {"imei": "1", "\u0069mei": "3"}}"#, .duplicateKey("identity.imei")),
        (#"{"problems": [{"code": "a", "code": "b"}]}"#, .duplicateKey("body")),
        (#"{"Ident ity": {"a": 1, "a": 2}}"#, .duplicateKey("body")),
        (#"{"a": {"b": 1}, "c": {"b": 2}}"#, .ok),
        (String(repeating: "[", count: 17) + String(repeating: "]", count: 17), .tooDeep),
        (String(repeating: "[", count: 16) + String(repeating: "]", count: 16), .ok),
        (#"{"a": "unterminated}"#, .malformed),
        (#"{"a": [1, 2}"#, .malformed),
    ])
    func duplicateKeysAndBounds(_ json: String, _ expected: JSONKeyScan.Result) {
        #expect(JSONKeyScan.scan(Array(json.utf8)) == expected, "\(json)")
    }

    @Test func decodeRefusesDuplicatesAndKeepsValidBodies() throws {
        let event = Self.valid()
        let text = String(decoding: try event.jsonBytes(), as: UTF8.self)
        #expect(try EnrollmentValidation.decode(Array(text.utf8), receivedAt: Self.now) == event)
        let duplicated = text.replacingOccurrences(
            of: #""identity":{"#, with: #""identity":{"imei":"356938035643809","#)
        #expect(throws: EnrollmentValidation.BodyError.invalid(WireViolation("identity.imei", "duplicate object key"))) {
            try EnrollmentValidation.decode(Array(duplicated.utf8), receivedAt: Self.now)
        }
        #expect(throws: EnrollmentValidation.BodyError.notAnEvent(EnrollmentValidation.notAnEventMessage)) {
            try EnrollmentValidation.decode(Array(#"{"nope": 1}"#.utf8), receivedAt: Self.now)
        }
    }
}
