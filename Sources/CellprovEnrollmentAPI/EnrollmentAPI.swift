import CellprovCore
import FoundationEssentials

/// The enrollment API's version as the wire types here implement it (docs/enrollment-api.yaml `info.version`).
public enum EnrollmentAPI {
    public static let version = "0.3.0"
    /// The path, appended to a backend's base URL, that events are posted to.
    public static let path = "/v1/enrollments"

    /// Where events are posted for the backend at `base`: `base` + ``path``.
    public static func url(base: URL) -> URL {
        base.appendingPathComponent(String(path.dropFirst()))
    }

    /// Every event type the API accepts: cellprovd's (`IdentityEventType`) and the API-only ones.
    public static let eventTypes: Set<String> =
        Set(IdentityEventType.allCases.map(\.rawValue)).union(APIEventType.allCases.map(\.rawValue))
}

/// Event types of the API that cellprovd's change detector never produces (so they are not in CellprovCore's
/// `IdentityEventType`): records made by other senders. scripts/check-openapi.py reads this enum: the document's
/// `EventType` must be `IdentityEventType`'s raw values plus these.
public enum APIEventType: String, Sendable, CaseIterable {
    /// The factory station's record of a unit as built (`cellprov probe --device-serial SN --report URL`): one per
    /// module, severity info, sequence 1, no `previous`, no `references`.
    case manufactured
}

/// The request body of `POST /v1/enrollments` (schema `EnrollmentEvent` of docs/enrollment-api.yaml), as
/// cellprovd and `cellprov probe --report` send it and cellprov-registry decodes it.
///
/// This is a data channel: it holds full identifiers. It prints nothing but its event id and type, so that
/// logging one by accident leaks nothing.
///
/// Encoding follows the API's "absent and null" rule: `previous` is always written (null when there is none);
/// every other optional property is left out when it has no value. Decoding is lenient the other way: an absent
/// property and a null one are alike, and unknown properties are ignored (later versions may add some).
public struct EnrollmentRequest: Sendable, Codable, Equatable, CustomStringConvertible,
    CustomDebugStringConvertible, CustomReflectable
{
    public struct Device: Sendable, Codable, Equatable {
        public var serial: String?
        public init(serial: String? = nil) { self.serial = serial }
    }

    public struct Module: Sendable, Codable, Equatable {
        public var slot: String
        public var usbSerial: String?
        public var manufacturer: String?
        public var model: String?
        public var revision: String?
        /// How the identities were read: "at" (cellprov's own AT session) or "modemmanager" (D-Bus). Absent in
        /// payloads of senders older than the property: decoded as "at".
        public var source: String

        public init(
            slot: String, usbSerial: String? = nil, manufacturer: String? = nil, model: String? = nil,
            revision: String? = nil, source: String = "at"
        ) {
            self.slot = slot
            self.usbSerial = usbSerial
            self.manufacturer = manufacturer
            self.model = model
            self.revision = revision
            self.source = source
        }

        enum CodingKeys: String, CodingKey {
            case slot, manufacturer, model, revision, source
            case usbSerial = "usb_serial"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            slot = try c.decode(String.self, forKey: .slot)
            usbSerial = try c.decodeIfPresent(String.self, forKey: .usbSerial)
            manufacturer = try c.decodeIfPresent(String.self, forKey: .manufacturer)
            model = try c.decodeIfPresent(String.self, forKey: .model)
            revision = try c.decodeIfPresent(String.self, forKey: .revision)
            source = try c.decodeIfPresent(String.self, forKey: .source) ?? "at"
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(slot, forKey: .slot)
            try c.encodeIfPresent(usbSerial, forKey: .usbSerial)
            try c.encodeIfPresent(manufacturer, forKey: .manufacturer)
            try c.encodeIfPresent(model, forKey: .model)
            try c.encodeIfPresent(revision, forKey: .revision)
            try c.encode(source, forKey: .source)
        }
    }

    /// IMEI, IMSI and ICCID as digit strings (the values read, for `identity_invalid` as read), the eUICC's EID
    /// and the active SIM slot when known. Encoded as the core's `IdentitySnapshot` is (a value not read is left
    /// out).
    public struct Identity: Sendable, Codable, Equatable {
        public var imei: String?
        public var imsi: String?
        public var iccid: String?
        /// The eUICC's EID, 32 digits; absent for a plain SIM or when it could not be read.
        public var eid: String?
        /// The module's active SIM slot, 1-based; absent when unknown.
        public var simSlot: Int?

        enum CodingKeys: String, CodingKey {
            case imei, imsi, iccid, eid
            case simSlot = "sim_slot"
        }

        public init(imei: String? = nil, imsi: String? = nil, iccid: String? = nil, eid: String? = nil, simSlot: Int? = nil) {
            self.imei = imei
            self.imsi = imsi
            self.iccid = iccid
            self.eid = eid
            self.simSlot = simSlot
        }

        public init(_ snapshot: IdentitySnapshot) {
            self.init(
                imei: snapshot.imei, imsi: snapshot.imsi, iccid: snapshot.iccid, eid: snapshot.eid,
                simSlot: snapshot.simSlot)
        }

        public var snapshot: IdentitySnapshot {
            IdentitySnapshot(imei: imei, imsi: imsi, iccid: iccid, eid: eid, simSlot: simSlot)
        }

        public func encode(to encoder: any Encoder) throws { try snapshot.encode(to: encoder) }
    }

    /// The keyed pseudonyms (10 lowercase hex characters) of the values in `identity`, as the sender's log prints
    /// them (`IMEI(TAC …, ref 1a2b3c4d5e)`): HMAC-SHA256 under the sender's own pseudonym key, which the receiver
    /// does not hold. With them a receiver can find a unit from a log line alone.
    public struct References: Sendable, Codable, Equatable {
        public var imei: String?
        public var imsi: String?
        public var iccid: String?
        public var eid: String?

        public init(imei: String? = nil, imsi: String? = nil, iccid: String? = nil, eid: String? = nil) {
            self.imei = imei
            self.imsi = imsi
            self.iccid = iccid
            self.eid = eid
        }

        /// The references of each value present in `identity`, as `pseudonymizer` makes them: the same call the
        /// identifier types' descriptions and `IdentitySnapshot`'s make (kind "imei", "imsi", "iccid"; the
        /// value as in the payload, which is the validated, normalised value the log printed).
        public init(_ identity: Identity, pseudonymizer: Pseudonymizer) {
            self.init(
                imei: identity.imei.map { pseudonymizer.reference(kind: "imei", value: $0) },
                imsi: identity.imsi.map { pseudonymizer.reference(kind: "imsi", value: $0) },
                iccid: identity.iccid.map { pseudonymizer.reference(kind: "iccid", value: $0) },
                eid: identity.eid.map { pseudonymizer.reference(kind: "eid", value: $0) })
        }

        /// The references present, for a receiver's index.
        public var all: [String] { [imei, imsi, iccid, eid].compactMap { $0 } }

        /// nil when no value has a reference (an event whose identity is empty writes no `references`).
        public var nonEmpty: References? { all.isEmpty ? nil : self }

        public func encode(to encoder: any Encoder) throws {
            enum K: String, CodingKey { case imei, imsi, iccid, eid }
            var c = encoder.container(keyedBy: K.self)
            try c.encodeIfPresent(imei, forKey: .imei)
            try c.encodeIfPresent(imsi, forKey: .imsi)
            try c.encodeIfPresent(eid, forKey: .eid)
            try c.encodeIfPresent(iccid, forKey: .iccid)
        }
    }

    public struct ProblemBody: Sendable, Codable, Equatable {
        public var code: String
        public var field: String
        public var severity: String
        public var message: String

        public init(code: String, field: String, severity: String, message: String) {
            self.code = code
            self.field = field
            self.severity = severity
            self.message = message
        }

        public init(_ problem: Problem) {
            self.init(
                code: problem.code.rawValue, field: problem.field.rawValue, severity: problem.severity.rawValue,
                message: problem.message)
        }
    }

    public struct StateLostBody: Sendable, Codable, Equatable {
        public var reason: String
        public var detectedAt: String
        public var eventsSalvaged: Int
        public var eventsLost: Int
        public var lastSequence: Int?

        public init(reason: String, detectedAt: String, eventsSalvaged: Int, eventsLost: Int, lastSequence: Int?) {
            self.reason = reason
            self.detectedAt = detectedAt
            self.eventsSalvaged = eventsSalvaged
            self.eventsLost = eventsLost
            self.lastSequence = lastSequence
        }

        enum CodingKeys: String, CodingKey {
            case reason
            case detectedAt = "detected_at"
            case eventsSalvaged = "events_salvaged"
            case eventsLost = "events_lost"
            case lastSequence = "last_sequence"
        }
    }

    /// Lowercase UUID; the `Idempotency-Key` header carries the same value.
    public var eventID: String
    /// An event type name (`IdentityEventType` raw values, or `APIEventType`'s). Kept as a string: a receiver
    /// must be able to tell an unknown type apart from a malformed body.
    public var type: String
    /// RFC 3339 time, as sent.
    public var occurredAt: String
    public var sequence: Int
    public var severity: String
    public var device: Device
    public var module: Module
    public var identity: Identity
    public var previous: Identity?
    public var usbSerialChanged: Bool?
    public var otherSlots: [String]?
    /// `firmware_changed` only: the module's revision before the change (the new one is `module.revision`).
    public var previousRevision: String?
    public var problems: [ProblemBody]
    public var stateLost: StateLostBody?
    /// Absent from payloads older than API 0.2.0 and from `manufactured` records (a station's key is not the
    /// unit's, so its references would match no log line of the unit).
    public var references: References?

    public init(
        eventID: String, type: String, occurredAt: String, sequence: Int, severity: String, device: Device,
        module: Module, identity: Identity, previous: Identity? = nil, usbSerialChanged: Bool? = nil,
        otherSlots: [String]? = nil, previousRevision: String? = nil, problems: [ProblemBody] = [],
        stateLost: StateLostBody? = nil, references: References? = nil
    ) {
        self.eventID = eventID
        self.type = type
        self.occurredAt = occurredAt
        self.sequence = sequence
        self.severity = severity
        self.device = device
        self.module = module
        self.identity = identity
        self.previous = previous
        self.usbSerialChanged = usbSerialChanged
        self.otherSlots = otherSlots
        self.previousRevision = previousRevision
        self.problems = problems
        self.stateLost = stateLost
        self.references = references
    }

    /// The request for one of cellprovd's events, with the references of its identity under `pseudonymizer`
    /// (cellprovd's is the process-wide one, set from its per-device `pseudonym.key` at start: the key its log
    /// lines are made with).
    public init(
        _ event: IdentityEvent, deviceSerial: String?, pseudonymizer: Pseudonymizer = Redaction.pseudonymizer
    ) {
        self.init(
            eventID: event.id.uuidString.lowercased(), type: event.type.rawValue,
            occurredAt: Self.timestamp(event.occurredAt), sequence: event.sequence,
            severity: event.severity.rawValue, device: Device(serial: deviceSerial),
            // What the module answered, as the wire's text rule allows (WireText.cleaned): a control character in a
            // firmware string must not make the registry refuse the event for good.
            module: Module(
                slot: WireText.cleaned(event.slot, maxBytes: EnrollmentValidation.maxSlotBytes) ?? event.slot,
                usbSerial: WireText.cleaned(event.module.usbSerial, maxBytes: EnrollmentValidation.maxModuleTextBytes),
                manufacturer: WireText.cleaned(event.module.manufacturer, maxBytes: EnrollmentValidation.maxModuleTextBytes),
                model: WireText.cleaned(event.module.model, maxBytes: EnrollmentValidation.maxModuleTextBytes),
                revision: WireText.cleaned(event.module.revision, maxBytes: EnrollmentValidation.maxModuleTextBytes),
                source: (event.module.source ?? .at).rawValue),
            identity: Identity(event.identity), previous: event.previous.map(Identity.init),
            usbSerialChanged: event.usbSerialChanged, otherSlots: event.otherSlots,
            previousRevision: WireText.cleaned(
                event.previousRevision, maxBytes: EnrollmentValidation.maxModuleTextBytes),
            problems: event.problems.map(ProblemBody.init),
            stateLost: event.stateLost.map {
                StateLostBody(
                    reason: $0.reason.rawValue, detectedAt: Self.timestamp($0.detectedAt),
                    eventsSalvaged: $0.eventsSalvaged, eventsLost: $0.eventsLost, lastSequence: $0.lastSequence)
            },
            references: References(Identity(event.identity), pseudonymizer: pseudonymizer).nonEmpty)
    }

    /// A factory station's `manufactured` record of one module of unit `deviceSerial`, from a probe whose
    /// identity is complete and valid (the caller checks): severity info, sequence 1, a fresh event id, no
    /// `previous`, no `references`. `problems` are the probe's warnings (an ICCID without a matching check digit).
    public static func manufactured(
        eventID: UUID = UUID(), occurredAt: Date = Date(), deviceSerial: String, module: Module, identity: Identity,
        problems: [ProblemBody] = []
    ) -> EnrollmentRequest {
        EnrollmentRequest(
            eventID: eventID.uuidString.lowercased(), type: APIEventType.manufactured.rawValue,
            occurredAt: timestamp(occurredAt), sequence: 1, severity: EventSeverity.info.rawValue,
            device: Device(serial: deviceSerial), module: module, identity: identity, previous: nil,
            problems: problems)
    }

    enum CodingKeys: String, CodingKey {
        case type, sequence, severity, device, module, identity, previous, problems
        case eventID = "event_id"
        case occurredAt = "occurred_at"
        case usbSerialChanged = "usb_serial_changed"
        case otherSlots = "other_slots"
        case previousRevision = "previous_revision"
        case stateLost = "state_lost"
        case references
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        eventID = try c.decode(String.self, forKey: .eventID)
        type = try c.decode(String.self, forKey: .type)
        occurredAt = try c.decode(String.self, forKey: .occurredAt)
        sequence = try c.decode(Int.self, forKey: .sequence)
        severity = try c.decode(String.self, forKey: .severity)
        device = try c.decodeIfPresent(Device.self, forKey: .device) ?? Device()
        module = try c.decode(Module.self, forKey: .module)
        identity = try c.decodeIfPresent(Identity.self, forKey: .identity) ?? Identity()
        previous = try c.decodeIfPresent(Identity.self, forKey: .previous)
        usbSerialChanged = try c.decodeIfPresent(Bool.self, forKey: .usbSerialChanged)
        otherSlots = try c.decodeIfPresent([String].self, forKey: .otherSlots)
        previousRevision = try c.decodeIfPresent(String.self, forKey: .previousRevision)
        problems = try c.decodeIfPresent([ProblemBody].self, forKey: .problems) ?? []
        stateLost = try c.decodeIfPresent(StateLostBody.self, forKey: .stateLost)
        references = try c.decodeIfPresent(References.self, forKey: .references)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(eventID, forKey: .eventID)
        try c.encode(type, forKey: .type)
        try c.encode(occurredAt, forKey: .occurredAt)
        try c.encode(sequence, forKey: .sequence)
        try c.encode(severity, forKey: .severity)
        try c.encode(device, forKey: .device)
        try c.encode(module, forKey: .module)
        try c.encode(identity, forKey: .identity)
        try c.encode(previous, forKey: .previous)  // null when there is none
        try c.encodeIfPresent(usbSerialChanged, forKey: .usbSerialChanged)
        try c.encodeIfPresent(otherSlots, forKey: .otherSlots)
        try c.encodeIfPresent(previousRevision, forKey: .previousRevision)
        try c.encode(problems, forKey: .problems)
        try c.encodeIfPresent(stateLost, forKey: .stateLost)
        try c.encodeIfPresent(references, forKey: .references)
    }

    /// The JSON body as sent: UTF-8, slashes unescaped.
    public func jsonBytes() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return [UInt8](try encoder.encode(self))
    }

    /// Decodes a body; throws `DecodingError` for a body that is not this schema.
    public static func decode(_ bytes: some Collection<UInt8>) throws -> EnrollmentRequest {
        try JSONDecoder().decode(EnrollmentRequest.self, from: Data(bytes))
    }

    /// RFC 3339 in UTC, whole seconds, as the API writes times (``EnrollmentTimestamp/format(_:)``).
    public static func timestamp(_ date: Date) -> String {
        EnrollmentTimestamp.format(date)
    }

    public var description: String { "EnrollmentRequest(\(eventID), \(type))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["event_id": eventID, "type": type], displayStyle: .struct)
    }
}
