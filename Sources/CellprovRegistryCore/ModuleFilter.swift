import Foundation

/// How one text field of a module is matched by ``ModuleFilter``: the whole value, or its beginning. Both are
/// case-sensitive and byte for byte, as the module reported the value (`ATI`, `AT+CGMR` or ModemManager).
public enum ModuleMatch: Sendable, Equatable {
    case exact(String)
    case prefix(String)

    public var text: String {
        switch self {
        case .exact(let s), .prefix(let s): return s
        }
    }

    public func matches(_ value: String?) -> Bool {
        guard let value else { return false }
        switch self {
        case .exact(let s): return value == s
        case .prefix(let s): return value.utf8.starts(with: s.utf8)
        }
    }

    /// The half-open range `[lower, upper)` of texts that start with a prefix, for a B-tree index under binary
    /// (byte) ordering: the prefix, and the prefix with its last byte raised by one. Prefixes are printable ASCII
    /// (``ModuleFilter/allowed``), so the last byte is at most 0x7E and the raised one is 0x7F, still ASCII.
    public static func prefixRange(_ prefix: String) -> (lower: String, upper: String) {
        var bytes = Array(prefix.utf8)
        bytes[bytes.count - 1] += 1
        return (prefix, String(decoding: bytes, as: UTF8.self))
    }
}

/// Why a ``ModuleFilter`` could not be made: the query parameter at fault and the rule it broke (no identifier
/// ever: the values are module names, TACs and times).
public struct ModuleFilterError: Error, Sendable, Equatable, CustomStringConvertible {
    public var parameter: String
    public var reason: String

    public init(parameter: String, reason: String) {
        self.parameter = parameter
        self.reason = reason
    }

    public var description: String { "\(parameter): \(reason)" }
}

/// The affected-units question (issue 20): which units carry a module of this manufacturer, model or firmware
/// revision (each exact or by prefix) or of this TAC, optionally only those seen since a moment. Every criterion
/// given must hold for one and the same field slot (the unit's current module in that slot); `seenSince` is about
/// the unit (its last field event received at or after it). Pure: the stores translate it to SQL, the HTTP layer
/// uses ``matchingSlots(_:)`` to pick the rows of the CSV, and ModuleFilterTests checks the rules as tables.
public struct ModuleFilter: Sendable, Equatable {
    public var manufacturer: ModuleMatch?
    public var model: ModuleMatch?
    public var revision: ModuleMatch?
    /// 8 digits: the module's Type Allocation Code (the first 8 digits of its IMEI).
    public var tac: String?
    /// The unit's last field event was received at or after this moment (the registry's clock, as "last seen").
    public var seenSince: Date?

    /// A prefix shorter than this is refused: `revision_prefix=E` would ask for most of the fleet by accident.
    public static let minimumPrefix = 3
    /// Module texts are at most this long (a longer value is no module's name).
    public static let maximumLength = 64

    public init(
        manufacturer: ModuleMatch? = nil, model: ModuleMatch? = nil, revision: ModuleMatch? = nil, tac: String? = nil,
        seenSince: Date? = nil
    ) {
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision
        self.tac = tac
        self.seenSince = seenSince
    }

    /// The query parameters, in the order the API documents them.
    public static let parameters = [
        "manufacturer", "manufacturer_prefix", "model", "model_prefix", "revision", "revision_prefix", "tac",
        "seen_since",
    ]

    /// Printable ASCII (blank to `~`): what modules report as their names and revisions. Control characters,
    /// non-ASCII text and the like are refused rather than matched against nothing.
    public static func allowed(_ s: String) -> Bool {
        s.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E }
    }

    /// Reads the filter from query parameters: `values(name)` gives every value of a parameter as sent (decoded).
    /// A parameter given empty is absent (a form's empty field); given twice, refused. At least one of the module
    /// criteria or `tac` is required (`seen_since` alone would list the fleet); a field may be given exact or by
    /// prefix, not both.
    public static func parse(_ values: (String) -> [String]) -> Result<ModuleFilter, ModuleFilterError> {
        func one(_ name: String) -> Result<String?, ModuleFilterError> {
            let given = values(name)
            guard given.count <= 1 else { return .failure(.init(parameter: name, reason: "given more than once")) }
            guard let v = given.first?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return .success(nil) }
            return .success(v)
        }
        func text(_ field: String) -> Result<ModuleMatch?, ModuleFilterError> {
            let exactName = field
            let prefixName = field + "_prefix"
            let exact: String?
            let prefix: String?
            switch one(exactName) {
            case .failure(let e): return .failure(e)
            case .success(let v): exact = v
            }
            switch one(prefixName) {
            case .failure(let e): return .failure(e)
            case .success(let v): prefix = v
            }
            if exact != nil && prefix != nil {
                return .failure(.init(parameter: prefixName, reason: "give \(exactName) or \(prefixName), not both"))
            }
            guard let value = exact ?? prefix else { return .success(nil) }
            let name = exact != nil ? exactName : prefixName
            guard value.utf8.count <= maximumLength else {
                return .failure(.init(parameter: name, reason: "at most \(maximumLength) characters"))
            }
            guard allowed(value) else {
                return .failure(.init(parameter: name, reason: "printable ASCII characters only"))
            }
            if exact != nil { return .success(.exact(value)) }
            guard value.utf8.count >= minimumPrefix else {
                return .failure(.init(parameter: name, reason: "a prefix needs at least \(minimumPrefix) characters"))
            }
            return .success(.prefix(value))
        }
        var filter = ModuleFilter()
        switch text("manufacturer") {
        case .failure(let e): return .failure(e)
        case .success(let m): filter.manufacturer = m
        }
        switch text("model") {
        case .failure(let e): return .failure(e)
        case .success(let m): filter.model = m
        }
        switch text("revision") {
        case .failure(let e): return .failure(e)
        case .success(let m): filter.revision = m
        }
        switch one("tac") {
        case .failure(let e): return .failure(e)
        case .success(let t):
            if let t {
                guard t.utf8.count == 8, t.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    return .failure(.init(parameter: "tac", reason: "must be 8 digits"))
                }
                filter.tac = t
            }
        }
        switch one("seen_since") {
        case .failure(let e): return .failure(e)
        case .success(let s):
            if let s {
                guard s.utf8.count <= 64, let d = IngestTime.parse(s) else {
                    return .failure(
                        .init(
                            parameter: "seen_since", reason: "must be one RFC 3339 time, such as 2026-11-03T00:00:00Z"))
                }
                filter.seenSince = d
            }
        }
        guard filter.hasModuleCriterion else {
            return .failure(
                .init(
                    parameter: "manufacturer",
                    reason: "give at least one of manufacturer, model, revision (or their _prefix) and tac"))
        }
        return .success(filter)
    }

    /// Whether a module criterion (manufacturer, model, revision, TAC) is given.
    public var hasModuleCriterion: Bool { manufacturer != nil || model != nil || revision != nil || tac != nil }

    /// Whether a slot's current module meets every module criterion (``SlotState/identity``'s IMEI gives its TAC).
    /// Factory slots (manufacturing records) never match: the question is about what is in the field.
    public func matches(_ slot: SlotState) -> Bool {
        guard slot.origin == .device, hasModuleCriterion else { return false }
        if let manufacturer, !manufacturer.matches(slot.manufacturer) { return false }
        if let model, !model.matches(slot.model) { return false }
        if let revision, !revision.matches(slot.revision) { return false }
        if let tac {
            let imei = slot.identity.imei
            guard let imei, imei.utf8.count == 15, imei.hasPrefix(tac) else { return false }
        }
        return true
    }

    /// The slots of a unit that carry the module asked about.
    public func matchingSlots(_ unit: UnitSummary) -> [SlotState] {
        unit.slots.filter(matches)
    }

    /// The filter as query parameters (for the page's CSV link and paging), in ``parameters`` order.
    public var queryItems: [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        func add(_ field: String, _ m: ModuleMatch?) {
            switch m {
            case .exact(let s)?: out.append((field, s))
            case .prefix(let s)?: out.append((field + "_prefix", s))
            case nil: break
            }
        }
        add("manufacturer", manufacturer)
        add("model", model)
        add("revision", revision)
        if let tac { out.append(("tac", tac)) }
        if let seenSince {
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime]
            out.append(("seen_since", f.string(from: seenSince)))
        }
        return out
    }
}
