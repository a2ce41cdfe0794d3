import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Test kit: a loopback stand-in for Eclipse hawkBit's DDI `configData` resource. No hawkBit server runs in
/// cellprov's tests; this one enforces what hawkBit's documentation and code say of the request, and answers as
/// hawkBit would:
///
/// - only `PUT /{tenant}/controller/v1/{controllerId}/configData` (another method on it: 405; another path: 404);
///   a controller id it does not know: 404;
/// - `Authorization: TargetToken <token>` with the target's token (missing or wrong: 401);
/// - `Content-Type: application/json` (else 415);
/// - a JSON object whose `data` is a non-empty object of string values and whose `mode`, when present, is `merge`,
///   `replace` or `remove` (else 400); unknown fields are ignored, as hawkBit's `@JsonIgnoreProperties` does;
/// - every key 1 to 128 characters and every value up to 128, of hawkBit's pattern
///   `[a-zA-Z0-9_\-!@#$%^&*()+=\[\]{}|;:'",.<>/\\?\s]*` (else 400, `InvalidTargetAttributeException`);
/// - at most `attributeQuota` attributes on the target after the update (else 429, quota exceeded).
///
/// It applies `merge`, `replace` and `remove` to the target's attributes as `JpaControllerManagement` does and
/// answers 200 with an empty body. Faults for tests: a scripted answer per request (a status, a dropped
/// connection, no answer, an oversized body).
public final class HawkBitStandIn: Sendable {
    public enum Behaviour: Sendable, Equatable {
        /// Judge the request as hawkBit would.
        case hawkBit
        /// Answer this status (after reading the request) without applying it.
        case status(Int)
        /// Close the connection without answering.
        case drop
        /// Never answer.
        case hang
        /// Answer this status with a body of `bytes` bytes (a hostile server).
        case oversized(status: Int, bytes: Int)
        /// Answer this status with the request's own body (a careless server echoing the attributes).
        case echo(status: Int)
    }

    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var headers: [String: String]
        public var body: Data
        /// What was answered (nil: nothing, the connection was dropped or left hanging).
        public var status: Int?
        /// Why a request was refused, as hawkBit's error would say.
        public var refusal: String?

        /// `data` of the body, when it is an object of strings.
        public var data: [String: String]? {
            ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any])?["data"] as? [String: String]
        }
        public var mode: String? {
            ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any])?["mode"] as? String
        }
    }

    struct State {
        var tenant: String
        var token: String
        var targets: [String: [String: String]]
        var behaviour: Behaviour = .hawkBit
        var script: [Behaviour] = []
        var requests: [Request] = []
        var attributeQuota: Int
    }

    final class Box: Sendable {
        let state: NIOLockedValueBox<State>
        init(_ state: State) { self.state = NIOLockedValueBox(state) }
    }

    private let box: Box
    private let channel: any Channel
    public let port: Int

    /// Listens on 127.0.0.1 (port 0: any free port) for `tenant`, knowing the targets `controllerIDs` (each with no
    /// attributes), all authenticated by `token`.
    public init(
        tenant: String = "DEFAULT", controllerIDs: [String], token: String, attributeQuota: Int = 100, port: Int = 0
    ) throws {
        box = Box(
            State(
                tenant: tenant, token: token,
                targets: Dictionary(uniqueKeysWithValues: controllerIDs.map { ($0, [:]) }),
                attributeQuota: attributeQuota))
        let box = self.box
        channel = try LoopbackHTTPServer.listen(port: port) { Self.serve($0, box: box) }
        self.port = channel.localAddress?.port ?? port
    }

    /// The base URL to configure (`http://127.0.0.1:<port>`).
    public var url: String { "http://127.0.0.1:\(port)" }

    public var requests: [Request] { box.state.withLockedValue { $0.requests } }

    /// The attributes hawkBit would hold for a target now.
    public func attributes(of controllerID: String) -> [String: String]? {
        box.state.withLockedValue { $0.targets[controllerID] }
    }

    /// Sets a target's attributes (an update client's own, say).
    public func setAttributes(_ attributes: [String: String], of controllerID: String) {
        box.state.withLockedValue { $0.targets[controllerID] = attributes }
    }

    public func setBehaviour(_ behaviour: Behaviour) {
        box.state.withLockedValue { $0.behaviour = behaviour }
    }

    /// Answers the next requests with these, one each and in order; then the behaviour again.
    public func enqueue(_ behaviours: [Behaviour]) {
        box.state.withLockedValue { $0.script += behaviours }
    }

    public func setToken(_ token: String) {
        box.state.withLockedValue { $0.token = token }
    }

    public func stop() {
        try? channel.close().wait()
    }

    deinit { try? channel.close().wait() }

    // MARK: - hawkBit's rules

    /// hawkBit's character pattern for attribute keys and values (Java's `\s`: space, tab, LF, VT, FF, CR).
    static func allowed(_ c: Character) -> Bool {
        guard c.isASCII, let v = c.asciiValue else { return false }
        if (0x61...0x7A).contains(v) || (0x41...0x5A).contains(v) || (0x30...0x39).contains(v) { return true }
        if [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D].contains(v) { return true }
        return "_-!@#$%^&*()+=[]{}|;:'\",.<>/\\?".contains(c)
    }

    /// Java's `String.length()`: UTF-16 code units.
    static func javaLength(_ s: String) -> Int { s.utf16.count }

    /// The answer hawkBit would give (status, refusal text), applying the update when it is accepted.
    static func judge(_ request: Request, state: inout State) -> (Int, String?) {
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // "", tenant, "controller", "v1", controllerId, "configData"
        guard parts.count == 6, parts[0].isEmpty, parts[2] == "controller", parts[3] == "v1",
            parts[5] == "configData", !parts[4].isEmpty
        else { return (404, "no such resource") }
        guard request.method == "PUT" else { return (405, "method not allowed") }
        guard parts[1] == state.tenant else { return (401, "unknown tenant") }
        guard request.headers["authorization"] == "TargetToken \(state.token)" else {
            return (401, "target token missing or wrong")
        }
        let contentType = request.headers["content-type"]?.split(separator: ";").first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        guard contentType == "application/json" else { return (415, "unsupported media type") }
        guard var attributes = state.targets[parts[4]] else { return (404, "target not found") }
        guard let object = (try? JSONSerialization.jsonObject(with: request.body)) as? [String: Any] else {
            return (400, "body is not a JSON object")
        }
        guard let raw = object["data"] as? [String: Any], !raw.isEmpty else { return (400, "data missing or empty") }
        var data: [String: String?] = [:]
        for (key, value) in raw {
            switch value {
            case let s as String: data[key] = s
            case is NSNull: data[key] = .some(nil)
            default: return (400, "a value is not a string")
            }
        }
        let mode = object["mode"] as? String ?? (object["mode"] == nil ? "merge" : "")
        guard ["merge", "replace", "remove"].contains(mode) else { return (400, "unknown mode") }
        for (key, value) in data {
            guard javaLength(key) <= 128, key.allSatisfy(allowed) else {
                return (400, "InvalidTargetAttributeException: key")
            }
            if let value, javaLength(value) > 128 || !value.allSatisfy(allowed) {
                return (400, "InvalidTargetAttributeException: value")
            }
        }
        let before = attributes.count
        switch mode {
        case "remove": for key in data.keys { attributes[key] = nil }
        case "replace": attributes = data.compactMapValues { $0 }
        default: for (key, value) in data { attributes[key] = value }
        }
        if attributes.count > before && attributes.count > state.attributeQuota {
            return (429, "AssignmentQuotaExceededException: too many attributes")
        }
        state.targets[parts[4]] = attributes
        return (200, nil)
    }

    // MARK: - Answers

    /// Records the request and answers it as the behaviour (or the next scripted one) says.
    static func serve(_ received: LoopbackHTTPServer.Received, box: Box) -> LoopbackHTTPServer.Answer {
        var request = Request(
            method: received.method, path: received.path, headers: received.headers, body: received.body, status: nil,
            refusal: nil)
        let (behaviour, status, refusal) = box.state.withLockedValue { s -> (Behaviour, Int?, String?) in
            let behaviour = s.script.isEmpty ? s.behaviour : s.script.removeFirst()
            var status: Int?
            var refusal: String?
            switch behaviour {
            case .hawkBit: (status, refusal) = HawkBitStandIn.judge(request, state: &s)
            case .status(let code), .oversized(let code, _), .echo(let code): status = code
            case .drop, .hang: break
            }
            request.status = status
            request.refusal = refusal
            s.requests.append(request)
            return (behaviour, status, refusal)
        }
        switch behaviour {
        case .drop:
            return .close
        case .hang:
            return .hang
        case .oversized(_, let bytes):
            return .respond(status: status ?? 500, body: String(repeating: "8", count: bytes))
        case .echo:
            return .respond(status: status ?? 500, body: String(decoding: received.body, as: UTF8.self))
        default:
            return .respond(status: status ?? 500, body: refusal.map { "{\"message\":\"\($0)\"}" } ?? "")
        }
    }
}
