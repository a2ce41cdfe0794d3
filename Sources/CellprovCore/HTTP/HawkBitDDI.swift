import FoundationEssentials

/// The pure half of cellprovd's `[hawkbit]` sink: the rules of Eclipse hawkBit's DDI `configData` resource that a
/// target must follow, and how hawkBit's answers are judged. The sending is CellprovReporter's (HawkBitUpdater.swift).
///
/// Sources (hawkBit's documentation and code, eclipse-hawkbit/hawkbit): the DDI API reference
/// (`PUT /{tenant}/controller/v1/{controllerId}/configData`, body `DdiConfigData`: `data` a non-empty map of string to
/// string, `mode` one of `merge`, `replace`, `remove`, default `merge`; no `id`, `time` or `status` since 0.3.0M7),
/// docs/authentication.md (`Authorization: TargetToken <token>`), `Target.CONTROLLER_ATTRIBUTE_MAX_KEY_SIZE` and
/// `_VALUE_SIZE` (128), `JpaControllerManagement`'s character pattern for keys and values and the attributes quota
/// (`maxAttributeEntriesPerTarget`, 100 by default: 429 beyond it), `JpaTarget`'s controller id (1 to 256
/// characters, no white space), the tenant column (40 characters).
public enum HawkBitDDI {
    /// The longest attribute key hawkBit stores (Java `String.length()`: UTF-16 units; ours are ASCII).
    public static let keyLimit = 128
    /// The longest attribute value hawkBit stores.
    public static let valueLimit = 128
    /// The longest controller id hawkBit accepts.
    public static let controllerIDLimit = 256
    /// hawkBit's default quota of attributes per target (`hawkbit.server.security.dos.maxAttributeEntriesPerTarget`).
    /// The target's attributes from other senders (the update client's own) count too.
    public static let defaultAttributeQuota = 100

    /// Whether hawkBit accepts `scalar` in an attribute key or value: its pattern
    /// `[a-zA-Z0-9_\-!@#$%^&*()+=\[\]{}|;:'",.<>/\\?\s]*` (Java's `\s`: space, tab, LF, VT, FF, CR).
    public static func isAllowed(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9": return true
        case " ", "\t", "\n", "\u{0B}", "\u{0C}", "\r": return true
        default: return "_-!@#$%^&*()+=[]{}|;:'\",.<>/\\?".unicodeScalars.contains(scalar)
        }
    }

    /// A key hawkBit stores: 1 to 128 allowed characters (hawkBit itself takes an empty key; we never send one).
    public static func isValidKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf16.count <= keyLimit && key.unicodeScalars.allSatisfy(isAllowed)
    }

    /// A value hawkBit stores: up to 128 allowed characters (empty included).
    public static func isValidValue(_ value: String) -> Bool {
        value.utf16.count <= valueLimit && value.unicodeScalars.allSatisfy(isAllowed)
    }

    /// `text` as a value hawkBit stores: each character it refuses becomes `?`, any white space other than a space
    /// becomes a space (a modem's text is cleaned but untrusted), and the result is cut to ``valueLimit``.
    public static func value(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard out.count < valueLimit else { break }
            if scalar == " " || (isAllowed(scalar) && !scalar.properties.isWhitespace) {
                out.append(scalar)
            } else {
                out.append(scalar.properties.isWhitespace ? " " : "?")
            }
        }
        return String(out)
    }

    /// Characters a tenant or controller id may hold in our configuration: RFC 3986's unreserved characters and the
    /// sub-delimiters, `:` and `@` that a path segment carries as they are, without `;` (Spring's firewall in front of
    /// hawkBit refuses it, as it refuses `%`, `/` and `\` encoded or not). So the URL needs no encoding.
    public static func isPathSafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9": return true
        default: return "-._~!$&'()*+,=:@".unicodeScalars.contains(scalar)
        }
    }

    /// Why `id` cannot be a controller id in our URL, or nil when it can.
    public static func controllerIDProblem(_ id: String) -> String? {
        if id.isEmpty { return "is empty" }
        if id.utf16.count > controllerIDLimit { return "is longer than hawkBit's \(controllerIDLimit) characters" }
        if let bad = id.unicodeScalars.first(where: { !isPathSafe($0) }) {
            return "holds \(describe(bad)), which a URL path segment cannot carry as it is (allowed: letters, digits "
                + "and - . _ ~ ! $ & ' ( ) * + , = : @)"
        }
        if id == "." || id == ".." { return "cannot be \(id)" }
        return nil
    }

    /// Why `tenant` cannot be a tenant in our URL, or nil when it can.
    public static func tenantProblem(_ tenant: String) -> String? {
        if tenant.isEmpty { return "is empty" }
        if tenant.utf16.count > 40 { return "is longer than hawkBit's 40 characters" }
        if let bad = tenant.unicodeScalars.first(where: { !isPathSafe($0) }) {
            return "holds \(describe(bad)), which a URL path segment cannot carry as it is"
        }
        if tenant == "." || tenant == ".." { return "cannot be \(tenant)" }
        return nil
    }

    private static func describe(_ scalar: Unicode.Scalar) -> String {
        if scalar.value < 0x21 || scalar.value >= 0x7F {
            let hex = String(scalar.value, radix: 16, uppercase: true)
            return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        }
        return "'\(Character(scalar))'"
    }

    /// `{base}/{tenant}/controller/v1/{controllerID}/configData`, the base without its trailing slashes. `tenant` and
    /// `controllerID` must have passed ``tenantProblem(_:)`` and ``controllerIDProblem(_:)``.
    public static func configDataURL(base: String, tenant: String, controllerID: String) -> String {
        var root = Substring(base)
        while root.hasSuffix("/") { root = root.dropLast() }
        return "\(root)/\(tenant)/controller/v1/\(controllerID)/configData"
    }

    /// The `Authorization` header's value for a target security token.
    public static func authorization(targetToken: String) -> String { "TargetToken \(targetToken)" }

    /// What hawkBit is asked to do with the attributes. cellprovd sends `merge` only: the target's other attributes
    /// (the update client's) stay.
    public enum Mode: String, Sendable, Codable {
        case merge, replace, remove
    }

    /// Attributes that break hawkBit's rules: an invalid key or value (it would answer 400 for the whole request),
    /// or none at all (`data` must not be empty).
    public struct InvalidAttributes: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// The request body: `{"data":{...},"mode":"merge"}`, keys sorted. Throws when an attribute breaks hawkBit's
    /// rules (the error names the key, never the value).
    public static func body(_ attributes: [String: String], mode: Mode = .merge) throws(InvalidAttributes) -> [UInt8] {
        guard !attributes.isEmpty else { throw InvalidAttributes(description: "no attributes (data must not be empty)") }
        for (key, value) in attributes {
            guard isValidKey(key) else {
                throw InvalidAttributes(description: "attribute key \"\(Self.value(key))\" is invalid")
            }
            guard isValidValue(value) else {
                throw InvalidAttributes(description: "the value of attribute \(key) is longer than \(valueLimit) "
                    + "characters or holds a character hawkBit refuses")
            }
        }
        struct Body: Encodable {
            var data: [String: String]
            var mode: Mode
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(Body(data: attributes, mode: mode)))
        } catch {
            throw InvalidAttributes(description: "cannot encode the attributes")
        }
    }

    /// What an answer of hawkBit to a configData PUT means for the sender.
    public enum Outcome: Sendable, Equatable {
        /// 2xx: hawkBit stores the attributes (it answers 200).
        case accepted(status: Int)
        /// 400, 413, 415, 422: hawkBit refuses these attributes or their form (an invalid key or value, a server older
        /// than 0.3.0M7 that wants `status`). Sending them again cannot help; the next change is sent.
        case rejected(reason: String)
        /// 401, 403: hawkBit refuses the target token (or the target's authentication mode is off). Retried with
        /// backoff; a new token is read on SIGHUP.
        case refused(reason: String)
        /// 404: hawkBit knows no target with this controller id in this tenant (not registered yet, or a wrong
        /// tenant, controller id or URL). Retried with backoff: the target may be created later.
        case unknownTarget(reason: String)
        /// 429 (hawkBit's back-pressure, or its attributes quota), 409, 5xx, another answer, a timeout, a connection
        /// or TLS failure: retried with backoff.
        case retry(reason: String)

        public var isAccepted: Bool {
            if case .accepted = self { return true }
            return false
        }

        /// The reason (scrubbed), or nil when accepted.
        public var reason: String? {
            switch self {
            case .accepted: nil
            case .rejected(let r), .refused(let r), .unknownTarget(let r), .retry(let r): r
            }
        }
    }

    /// Judges an answer; `body` is the answer's first bytes, scrubbed here (``HTTPAnswer``) before they become a
    /// reason.
    public static func outcome(status: Int, body: [UInt8]) -> Outcome {
        let reason = HTTPAnswer.reason(status: status, body: body)
        switch status {
        case 200..<300: return .accepted(status: status)
        case 400, 413, 415, 422: return .rejected(reason: reason)
        case 401, 403: return .refused(reason: reason)
        case 404: return .unknownTarget(reason: reason)
        default: return .retry(reason: reason)
        }
    }
}
