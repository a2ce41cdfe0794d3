import CellprovCore
import FoundationEssentials

// The enrollment API's input rules (docs/enrollment-api.yaml, "Input rules"), written once: the registry checks every
// event it receives with them (devices and factory stations alike) and `cellprov probe --report` checks its record
// with them before it sends. A violation names the field and the rule, never the value (identifier digits stay out
// of error bodies and logs).

/// A field of an enrollment event that breaks a rule of the schema: `identity.imei: does not match the IMEI pattern`.
public struct WireViolation: Error, Sendable, Equatable, CustomStringConvertible {
    /// The field's path in the JSON body (`identity.imei`, `module.slot`, `problems[2].code`, `Idempotency-Key`).
    public var field: String
    /// What is wrong, without the value.
    public var rule: String

    public init(_ field: String, _ rule: String) {
        self.field = field
        self.rule = rule
    }

    public var description: String { "\(field): \(rule)" }
}

/// The checks of an enrollment event beyond its JSON shape.
public enum EnrollmentValidation {
    /// The earliest `occurred_at` (and `state_lost.detected_at`) accepted: 2000-01-01T00:00:00Z. No cellular
    /// module of the fleet reported before it; earlier is a device clock that was never set, or junk.
    public static let earliestTime = Date(timeIntervalSince1970: 946_684_800)
    /// How far ahead of the receive time (the sender's clock when it checks its own record) a time may be.
    public static let allowedClockAhead: TimeInterval = 86_400
    /// Length bounds in UTF-8 bytes.
    public static let maxSlotBytes = 128
    public static let maxModuleTextBytes = 256
    public static let maxProblemMessageBytes = 1024
    public static let maxProblemCodeBytes = 64
    public static let maxListItems = 64

    /// The first rule `event` breaks, or nil. `receivedAt` bounds `occurred_at` from above; `idempotencyKey` is the
    /// request's `Idempotency-Key` header (nil when absent); `parseTime` reads an RFC 3339 time (the registry passes
    /// its own parser, which also takes the rarer RFC 3339 forms).
    public static func violation(
        of event: EnrollmentRequest, receivedAt: Date, idempotencyKey: String? = nil,
        parseTime: (String) -> Date? = EnrollmentTimestamp.parse
    ) -> WireViolation? {
        if !EventID.isWellFormed(event.eventID) { return WireViolation("event_id", "is not a lowercase UUID") }
        if let key = idempotencyKey, key != event.eventID {
            return WireViolation("Idempotency-Key", "does not equal event_id")
        }
        if !EnrollmentAPI.eventTypes.contains(event.type) { return WireViolation("type", "unknown event type") }
        if EventSeverity(rawValue: event.severity) == nil { return WireViolation("severity", "unknown severity") }
        if let v = timeViolation(event.occurredAt, "occurred_at", receivedAt: receivedAt, parseTime: parseTime) {
            return v
        }
        if event.sequence < 1 { return WireViolation("sequence", "must be 1 or more") }
        if let serial = event.device.serial, !DeviceSerial.isValid(serial) {
            return WireViolation("device.serial", "must be 1 to 128 printable ASCII characters without blanks")
        }
        if let v = moduleViolation(event.module) { return v }
        if let v = identityViolation(event.identity, "identity") { return v }
        if let previous = event.previous, let v = identityViolation(previous, "previous") { return v }
        if let slots = event.otherSlots {
            if slots.isEmpty || slots.count > maxListItems {
                return WireViolation("other_slots", "must hold 1 to \(maxListItems) slot keys")
            }
            for (i, slot) in slots.enumerated() {
                if let rule = WireText.violation(slot, maxBytes: maxSlotBytes, allowEmpty: false) {
                    return WireViolation("other_slots[\(i)]", rule)
                }
            }
        }
        if let revision = event.previousRevision,
            let rule = WireText.violation(revision, maxBytes: maxModuleTextBytes, allowEmpty: true)
        {
            return WireViolation("previous_revision", rule)
        }
        if event.problems.count > maxListItems {
            return WireViolation("problems", "more than \(maxListItems) problems")
        }
        for (i, p) in event.problems.enumerated() {
            if let v = problemViolation(p, "problems[\(i)]") { return v }
        }
        if let lost = event.stateLost {
            if StateLossReason(rawValue: lost.reason) == nil {
                return WireViolation("state_lost.reason", "unknown reason")
            }
            if let v = timeViolation(
                lost.detectedAt, "state_lost.detected_at", receivedAt: receivedAt, parseTime: parseTime)
            {
                return v
            }
            if lost.eventsSalvaged < 0 { return WireViolation("state_lost.events_salvaged", "must be 0 or more") }
            if lost.eventsLost < 0 { return WireViolation("state_lost.events_lost", "must be 0 or more") }
            if let last = lost.lastSequence, last < 1 {
                return WireViolation("state_lost.last_sequence", "must be 1 or more")
            }
        }
        if let refs = event.references {
            for (name, value) in [("imei", refs.imei), ("imsi", refs.imsi), ("iccid", refs.iccid), ("eid", refs.eid)] {
                if let value, !PseudonymReference.isWellFormed(value) {
                    return WireViolation("references.\(name)", "is not 10 lowercase hex digits")
                }
            }
        }
        return nil
    }

    /// Decodes a body and checks it: duplicate object keys and nesting first (``JSONKeyScan``), then the schema's
    /// shape (a `DecodingError` is ``BodyError/notAnEvent(_:)``), then the rules
    /// (``violation(of:receivedAt:idempotencyKey:parseTime:)``).
    public static func decode(
        _ bytes: some Collection<UInt8>, receivedAt: Date, idempotencyKey: String? = nil,
        parseTime: (String) -> Date? = EnrollmentTimestamp.parse
    ) throws(BodyError) -> EnrollmentRequest {
        let array = Array(bytes)
        switch JSONKeyScan.scan(array) {
        case .ok: break
        case .duplicateKey(let path): throw .invalid(WireViolation(path, "duplicate object key"))
        case .tooDeep: throw .notAnEvent("body is nested more than \(JSONKeyScan.maxDepth) levels")
        case .tooLarge: throw .notAnEvent("body is larger than \(JSONKeyScan.maxBytes) bytes")
        case .malformed: throw .notAnEvent(notAnEventMessage)
        }
        let event: EnrollmentRequest
        do {
            event = try EnrollmentRequest.decode(array)
        } catch {
            throw .notAnEvent(notAnEventMessage)
        }
        if let v = violation(of: event, receivedAt: receivedAt, idempotencyKey: idempotencyKey, parseTime: parseTime) {
            throw .invalid(v)
        }
        return event
    }

    /// Why a body was refused: not JSON of the event's shape, or nested or sized past the scan's bounds (400, with
    /// the message), or an event that breaks a rule (422).
    public enum BodyError: Error, Sendable, Equatable {
        case notAnEvent(String)
        case invalid(WireViolation)
    }

    public static let notAnEventMessage = "body is not an enrollment event"

    static func timeViolation(
        _ text: String, _ field: String, receivedAt: Date, parseTime: (String) -> Date?
    ) -> WireViolation? {
        guard text.utf8.count <= 64, let date = parseTime(text) else {
            return WireViolation(field, "is not an RFC 3339 time")
        }
        if date < earliestTime { return WireViolation(field, "is before 2000") }
        if date > receivedAt.addingTimeInterval(allowedClockAhead) {
            return WireViolation(field, "is more than a day ahead of the receive time")
        }
        return nil
    }

    static func moduleViolation(_ m: EnrollmentRequest.Module) -> WireViolation? {
        if let rule = WireText.violation(m.slot, maxBytes: maxSlotBytes, allowEmpty: false) {
            return WireViolation("module.slot", rule)
        }
        for (name, value) in [
            ("usb_serial", m.usbSerial), ("manufacturer", m.manufacturer), ("model", m.model),
            ("revision", m.revision),
        ] {
            if let value, let rule = WireText.violation(value, maxBytes: maxModuleTextBytes, allowEmpty: true) {
                return WireViolation("module.\(name)", rule)
            }
        }
        if ObservationSource(rawValue: m.source) == nil {
            return WireViolation("module.source", "must be at or modemmanager")
        }
        return nil
    }

    static func identityViolation(_ identity: EnrollmentRequest.Identity, _ prefix: String) -> WireViolation? {
        if let v = identity.imei, !IdentifierPattern.imei(v) {
            return WireViolation("\(prefix).imei", "does not match the IMEI pattern")
        }
        if let v = identity.imsi, !IdentifierPattern.imsi(v) {
            return WireViolation("\(prefix).imsi", "does not match the IMSI pattern")
        }
        if let v = identity.iccid, !IdentifierPattern.iccid(v) {
            return WireViolation("\(prefix).iccid", "does not match the ICCID pattern")
        }
        if let v = identity.eid, !IdentifierPattern.eid(v) {
            return WireViolation("\(prefix).eid", "does not match the EID pattern")
        }
        if let slot = identity.simSlot, !IdentifierPattern.simSlots.contains(slot) {
            return WireViolation("\(prefix).sim_slot", "must be 1 to 8")
        }
        return nil
    }

    static func problemViolation(_ p: EnrollmentRequest.ProblemBody, _ prefix: String) -> WireViolation? {
        let code = p.code.utf8
        let codeOK =
            !code.isEmpty && code.count <= maxProblemCodeBytes && code.first.map({ $0 >= 0x61 && $0 <= 0x7A }) == true
            && code.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
        if !codeOK { return WireViolation("\(prefix).code", "is not a problem code (^[a-z][a-z0-9_]*$)") }
        if ProblemField(rawValue: p.field) == nil { return WireViolation("\(prefix).field", "unknown field") }
        if p.severity != "warning" && p.severity != "error" {
            return WireViolation("\(prefix).severity", "must be warning or error")
        }
        if let rule = WireText.violation(p.message, maxBytes: maxProblemMessageBytes, allowEmpty: true) {
            return WireViolation("\(prefix).message", rule)
        }
        return nil
    }
}

/// An event id (`event_id`, `Idempotency-Key`): the schema's `EventId`, a lowercase UUID,
/// `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`.
public enum EventID {
    public static func isWellFormed(_ text: String) -> Bool {
        let b = Array(text.utf8)
        guard b.count == 36 else { return false }
        for (i, c) in b.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard c == 0x2D else { return false }
            } else {
                guard (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) else { return false }
            }
        }
        return true
    }
}

/// The schema's identifier patterns, as written in docs/enrollment-api.yaml (components IMEI, IMSI, ICCID, EID,
/// SimSlot). These are shapes only: check digits are the core's (`IMEI`, `ICCID`, `EID`), and an event may carry an
/// identity that fails them (`identity_invalid`).
public enum IdentifierPattern {
    /// `^[0-9]{15}$`
    public static func imei(_ v: String) -> Bool { digits(v, 15...15) }
    /// `^[0-9]{6,15}$`
    public static func imsi(_ v: String) -> Bool { digits(v, 6...15) }
    /// `^89[0-9]{4}[0-9A-F]{12,14}$`
    public static func iccid(_ v: String) -> Bool {
        let b = Array(v.utf8)
        guard (18...20).contains(b.count), b[0] == 0x38, b[1] == 0x39 else { return false }
        return b[2..<6].allSatisfy(isDigit) && b[6...].allSatisfy { isDigit($0) || ($0 >= 0x41 && $0 <= 0x46) }
    }
    /// `^89[0-9]{30}$`
    public static func eid(_ v: String) -> Bool { digits(v, 32...32) && v.utf8.starts(with: [0x38, 0x39]) }
    /// `sim_slot`: 1 to 8.
    public static let simSlots = 1...8

    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func digits(_ v: String, _ count: ClosedRange<Int>) -> Bool {
        count.contains(v.utf8.count) && v.utf8.allSatisfy(isDigit)
    }
}

/// Free text a sender reports (the slot key, the module's strings, problem messages): shown on pages and in
/// exports, so it holds no control characters (C0, DEL, C1, U+2028/2029), no bidirectional controls (U+061C,
/// U+200E/200F, U+202A-202E, U+2066-2069) and no zero-width characters (U+200B-200D, U+2060, U+FEFF), which could
/// make a page show something other than what is stored.
public enum WireText {
    /// What is wrong with `text`, or nil.
    public static func violation(_ text: String, maxBytes: Int, allowEmpty: Bool) -> String? {
        if !allowEmpty && text.isEmpty { return "is empty" }
        if text.utf8.count > maxBytes { return "longer than \(maxBytes) bytes" }
        for s in text.unicodeScalars {
            if isControl(s) { return "contains a control character" }
            if isBidiControl(s) { return "contains a bidirectional control character" }
            if isZeroWidth(s) { return "contains a zero-width character" }
        }
        return nil
    }

    /// `text` as a sender puts it on the wire so that ``violation(_:maxBytes:allowEmpty:)`` accepts it: every
    /// forbidden character replaced by a blank, blanks at the ends trimmed, cut to `maxBytes` at a character
    /// boundary; nil when nothing is left. cellprovd's payload passes what a module answered through it (a firmware
    /// revision with a tab in it must not make the registry refuse the event for good).
    public static func cleaned(_ text: String?, maxBytes: Int) -> String? {
        guard let text else { return nil }
        var scalars = String.UnicodeScalarView()
        var bytes = 0
        for s in text.unicodeScalars {
            let kept: Unicode.Scalar = isControl(s) || isBidiControl(s) || isZeroWidth(s) ? " " : s
            let size = String(kept).utf8.count
            if bytes + size > maxBytes { break }
            scalars.append(kept)
            bytes += size
        }
        let result = String(scalars).trimmingScalars { $0 == " " }
        return result.isEmpty ? nil : result
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x20 || (s.value >= 0x7F && s.value <= 0x9F) || s.value == 0x2028 || s.value == 0x2029
    }

    static func isBidiControl(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    static func isZeroWidth(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x200B...0x200D, 0x2060, 0xFEFF: return true
        default: return false
        }
    }
}

/// A bounded scan of a JSON text for what `JSONDecoder` lets through silently: an object holding the same key twice
/// (it keeps one of them), and nesting deeper than the event's schema (which is 3 levels). It checks only the
/// structure it needs (strings, brackets, key positions); the decoder checks the rest of the syntax afterwards.
public enum JSONKeyScan {
    public static let maxDepth = 16
    public static let maxBytes = 1 << 20

    public enum Result: Sendable, Equatable {
        case ok
        /// The path of the repeated key (`identity.imei`); `body` when a key on the way is not a plain name.
        case duplicateKey(String)
        case tooDeep
        case tooLarge
        /// Not JSON the scan can follow (unterminated string, unbalanced brackets, a bad escape in a key).
        case malformed
    }

    private struct Frame {
        var isObject: Bool
        var keys: Set<String> = []
        var expectingKey = false
        /// The key under which this container sits in its parent (nil: array element or the root).
        var name: String?
    }

    public static func scan(_ b: [UInt8]) -> Result {
        guard b.count <= maxBytes else { return .tooLarge }
        var stack: [Frame] = []
        var pendingName: String?  // the last key read, naming the value that follows
        var i = 0
        while i < b.count {
            let c = b[i]
            switch c {
            case 0x7B, 0x5B:  // { [
                guard stack.count < maxDepth else { return .tooDeep }
                stack.append(Frame(isObject: c == 0x7B, expectingKey: c == 0x7B, name: pendingName))
                pendingName = nil
                i += 1
            case 0x7D, 0x5D:  // } ]
                guard let top = stack.popLast(), top.isObject == (c == 0x7D) else { return .malformed }
                i += 1
            case 0x2C:  // ,
                if !stack.isEmpty, stack[stack.count - 1].isObject { stack[stack.count - 1].expectingKey = true }
                pendingName = nil
                i += 1
            case 0x22:  // "
                let start = i + 1
                var j = start
                var escaped = false
                while j < b.count, b[j] != 0x22 {
                    if b[j] == 0x5C {
                        escaped = true
                        j += 1
                    }
                    j += 1
                }
                guard j < b.count else { return .malformed }
                if !stack.isEmpty, stack[stack.count - 1].isObject, stack[stack.count - 1].expectingKey {
                    guard let key = keyText(b[start..<j], escaped: escaped) else { return .malformed }
                    stack[stack.count - 1].expectingKey = false
                    if !stack[stack.count - 1].keys.insert(key).inserted {
                        return .duplicateKey(path(stack, key))
                    }
                    pendingName = key
                }
                i = j + 1
            default:
                i += 1
            }
        }
        return stack.isEmpty ? .ok : .malformed
    }

    private static func keyText(_ raw: ArraySlice<UInt8>, escaped: Bool) -> String? {
        guard escaped else { return String(decoding: raw, as: UTF8.self) }
        // Escapes (`\u0069mei` is `imei`): decoded as a JSON string, so that a spelled-out key is the same key.
        return try? JSONDecoder().decode(String.self, from: Data([0x22] + raw + [0x22]))
    }

    /// `identity.imei`; `body` unless every name on the way is a plain schema-like name (lowercase letters,
    /// digits, `_`, at most 32): a sender's odd key is never echoed.
    private static func path(_ stack: [Frame], _ key: String) -> String {
        var names: [String] = []
        for frame in stack.dropFirst() {
            guard let name = frame.name else { return "body" }
            names.append(name)
        }
        names.append(key)
        let plain = names.allSatisfy { n in
            !n.isEmpty && n.utf8.count <= 32
                && n.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || ($0 >= 0x30 && $0 <= 0x39) }
                && !n.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        }
        return plain ? names.joined(separator: ".") : "body"
    }
}
