/// Everything one read of one modem port produced: identities (validated), module information and problems.
///
/// Identities are the privacy types: printing a report prints them redacted. The raw digits leave only through
/// ``IdentityRecord`` (for the CLI's explicit data output, the store and the backend payload).
public struct IdentityReport: Sendable, CustomStringConvertible {
    public var port: String
    public var imei: IMEI?
    public var imsi: IMSI?
    public var iccid: ICCID?
    public var manufacturer: String?
    public var model: String?
    public var revision: String?
    /// The eUICC's identifier, when the card is an eUICC and its EID was read and valid (``eidStatus`` says why
    /// not otherwise). The events carry it (``IdentitySnapshot/eid``).
    public var eid: EID? = nil
    /// How the EID read went: a failed read is not "no eUICC".
    public var eidStatus: EIDReadStatus = .notAttempted
    /// The module's active SIM slot (1-based), when the module or ModemManager says; nil when unknown or the module
    /// has one slot.
    public var simSlot: Int? = nil
    public var problems: [Problem]
    /// AT commands sent for this read.
    public var commandCount: Int
    /// Wall time of the read, open to last answer.
    public var elapsed: Duration

    public init(
        port: String, imei: IMEI? = nil, imsi: IMSI? = nil, iccid: ICCID? = nil, manufacturer: String? = nil,
        model: String? = nil, revision: String? = nil, problems: [Problem] = [], commandCount: Int = 0,
        elapsed: Duration = .zero
    ) {
        self.port = port
        self.imei = imei
        self.imsi = imsi
        self.iccid = iccid
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision
        self.problems = problems
        self.commandCount = commandCount
        self.elapsed = elapsed
    }

    /// IMEI, IMSI and ICCID are all present and no problem of severity error stands.
    public var isValid: Bool {
        imei != nil && imsi != nil && iccid != nil && !problems.contains { $0.severity == .error }
    }

    /// True if the port itself could not be used (absent, busy, silent, unplugged): no identity was read at all.
    public var portUnusable: Bool {
        problems.contains { $0.field == .port && $0.severity == .error }
    }

    public var description: String {
        var parts = ["port \(port)"]
        parts.append(imei.map { "\($0)" } ?? "IMEI -")
        parts.append(imsi.map { "\($0)" } ?? "IMSI -")
        parts.append(iccid.map { "\($0)" } ?? "ICCID -")
        if let eid { parts.append("\(eid)") }
        if !problems.isEmpty { parts.append("problems: " + problems.map(\.code.rawValue).joined(separator: ",")) }
        return parts.joined(separator: ", ")
    }
}

/// The data-channel form of a report: full digit strings. Only the CLI's explicit data output (`--json`), the
/// store and the backend payload use it; never a log.
public struct IdentityRecord: Sendable, Codable, Equatable {
    public var port: String
    public var imei: String?
    public var imsi: String?
    public var iccid: String?
    /// The eUICC's EID (32 digits); null for a plain SIM or when the module cannot say (``eidStatus`` tells which).
    public var eid: String?
    /// How the EID read went: `read`, `invalid`, `no_euicc` (a plain UICC, or no logical channels), `not_attempted`
    /// (no SIM, a locked SIM), `failed`.
    public var eidStatus: EIDReadStatus
    /// The active SIM slot, 1-based; null when unknown.
    public var simSlot: Int?
    public var manufacturer: String?
    public var model: String?
    public var revision: String?
    public var valid: Bool
    public var problems: [Problem]
    public var commands: Int
    public var elapsedMilliseconds: Double

    enum CodingKeys: String, CodingKey {
        case port, imei, imsi, iccid, eid, manufacturer, model, revision, valid, problems, commands
        case eidStatus = "eid_status"
        case simSlot = "sim_slot"
        case elapsedMilliseconds = "elapsed_ms"
    }

    /// Absent identities are written as `null`, never left out: consumers rely on every key being there.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(port, forKey: .port)
        try c.encode(imei, forKey: .imei)
        try c.encode(imsi, forKey: .imsi)
        try c.encode(iccid, forKey: .iccid)
        try c.encode(eid, forKey: .eid)
        try c.encode(eidStatus, forKey: .eidStatus)
        try c.encode(simSlot, forKey: .simSlot)
        try c.encode(manufacturer, forKey: .manufacturer)
        try c.encode(model, forKey: .model)
        try c.encode(revision, forKey: .revision)
        try c.encode(valid, forKey: .valid)
        try c.encode(problems, forKey: .problems)
        try c.encode(commands, forKey: .commands)
        try c.encode(elapsedMilliseconds, forKey: .elapsedMilliseconds)
    }

    public init(_ report: IdentityReport) {
        port = report.port
        imei = report.imei?.unredacted
        imsi = report.imsi?.unredacted
        iccid = report.iccid?.unredacted
        eid = report.eid?.unredacted
        eidStatus = report.eidStatus
        simSlot = report.simSlot
        manufacturer = report.manufacturer
        model = report.model
        revision = report.revision
        valid = report.isValid
        problems = report.problems
        commands = report.commandCount
        let (s, atto) = report.elapsed.components
        elapsedMilliseconds = ((Double(s) * 1e3 + Double(atto) / 1e15) * 1000).rounded() / 1000
    }
}
