import CellprovCore
import CellprovReporter
import CellprovTestKit
import CellprovTestSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The hawkBit updater against a loopback stand-in for hawkBit's DDI `configData` resource (HawkBitStandIn: no
/// hawkBit server runs in these tests; the stand-in enforces the documented path, method, headers, body shape and
/// 128-character limits and refuses anything else): the request, retries after a 5xx and a dropped connection, a
/// newer change superseding a pending one, refused and reloaded credentials, answers that are malformed, huge,
/// never come or echo the identifiers.
@Suite(.serialized) struct HawkBitUpdaterTests {
    static let token = "bH7XXAprK1ChnLfKSdtlsp7NOlPnZAYY"
    static let controllerID = "GW-000123"
    static let imei = "356938035643809"

    /// The attributes the updater pulls, as the test sets them.
    final class Source: Sendable {
        let box = NIOLockedValueBox<[String: String]>([:])
        let pulls = NIOLockedValueBox(0)
        var value: [String: String] {
            get { box.withLockedValue { $0 } }
            set { box.withLockedValue { $0 = newValue } }
        }
        func pull() -> [String: String] {
            pulls.withLockedValue { $0 += 1 }
            return value
        }
    }

    static func attributes(_ n: Int) -> [String: String] {
        ["cellprov_modems": "1", "cellprov_modem1_imei": imei, "cellprov_modem1_read_status": "ok", "n": "\(n)"]
    }

    static func configuration(
        _ standIn: HawkBitStandIn, token: String? = token, controllerID: String = controllerID,
        backoff: Duration = .milliseconds(20)
    ) -> HawkBitConfiguration {
        var c = HawkBitConfiguration(
            url: URL(string: standIn.url)!, tenant: "DEFAULT", controllerID: controllerID, token: token)
        c.backoffBase = backoff
        c.backoffCap = backoff * 4
        c.minimumInterval = .milliseconds(10)
        c.requestTimeout = .seconds(2)
        return c
    }

    /// Runs an updater over `source` until the body returns.
    static func withUpdater(
        _ config: HawkBitConfiguration, source: Source, logs: CapturedLogs = CapturedLogs(),
        _ body: (HawkBitUpdater) async throws -> Void
    ) async throws {
        let updater = try HawkBitUpdater(
            config: config, logger: Logger(label: "test") { _ in logs }, attributes: { source.pull() })
        let task = Task { await updater.run() }
        defer { task.cancel() }
        try await body(updater)
        task.cancel()
        await task.value
    }

    static func waitUntil(_ timeout: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
        await pollUntil(within: timeout, condition)
    }

    @Test func sendsTheDocumentedRequestAndKeepsTheTargetsOtherAttributes() async throws {
        let standIn = try HawkBitStandIn(controllerIDs: [Self.controllerID], token: Self.token)
        defer { standIn.stop() }
        standIn.setAttributes(["rauc_version": "1.11"], of: Self.controllerID)
        let source = Source()
        source.value = Self.attributes(1)
        try await Self.withUpdater(Self.configuration(standIn), source: source) { _ in
            #expect(await Self.waitUntil { standIn.requests.count == 1 })
        }
        let request = try #require(standIn.requests.first)
        #expect(request.status == 200, "\(request.refusal ?? "")")
        #expect(request.method == "PUT")
        #expect(request.path == "/DEFAULT/controller/v1/GW-000123/configData")
        #expect(request.headers["authorization"] == "TargetToken \(Self.token)")
        #expect(request.headers["content-type"] == "application/json")
        #expect(request.mode == "merge")
        #expect(request.data == Self.attributes(1))
        var expected = Self.attributes(1)
        expected["rauc_version"] = "1.11"
        #expect(standIn.attributes(of: Self.controllerID) == expected, "merge keeps the update client's attributes")
    }

    /// The stand-in refuses what hawkBit refuses: it is no rubber stamp (so the tests above can fail).
    @Test func standInRefusesWhatHawkBitRefuses() async throws {
        let standIn = try HawkBitStandIn(controllerIDs: [Self.controllerID], token: Self.token, attributeQuota: 3)
        defer { standIn.stop() }
        let url = URL(string: standIn.url + "/DEFAULT/controller/v1/\(Self.controllerID)/configData")!
        func put(
            _ body: String, url: URL = url, method: String = "PUT", auth: String? = "TargetToken \(Self.token)",
            type: String = "application/json"
        ) async throws -> Int {
            var r = URLRequest(url: url)
            r.httpMethod = method
            r.httpBody = Data(body.utf8)
            r.setValue(type, forHTTPHeaderField: "Content-Type")
            if let auth { r.setValue(auth, forHTTPHeaderField: "Authorization") }
            let (_, response) = try await URLSession.shared.data(for: r)
            return (response as! HTTPURLResponse).statusCode
        }
        let long = String(repeating: "v", count: 129)
        #expect(try await put(#"{"mode":"merge","data":{"a":"1"}}"#) == 200)
        #expect(try await put(#"{"data":{"b":"2"}}"#) == 200, "mode defaults to merge")
        #expect(try await put(#"{"mode":"merge","data":{"a":"\#(long)"}}"#) == 400)
        #expect(try await put(#"{"mode":"merge","data":{"\#(long)":"1"}}"#) == 400)
        #expect(try await put(#"{"mode":"merge","data":{"a":"é"}}"#) == 400)
        #expect(try await put(#"{"mode":"merge","data":{}}"#) == 400)
        #expect(try await put(#"{"mode":"merge","data":{"a":1}}"#) == 400)
        #expect(try await put(#"{"mode":"upsert","data":{"a":"1"}}"#) == 400)
        #expect(try await put(#"{"mode":"merge","data":{"a":"1"}}"#, auth: nil) == 401)
        #expect(try await put(#"{"mode":"merge","data":{"a":"1"}}"#, auth: "Bearer \(Self.token)") == 401)
        #expect(try await put(#"{"mode":"merge","data":{"a":"1"}}"#, method: "POST") == 405)
        #expect(try await put(#"{"mode":"merge","data":{"a":"1"}}"#, type: "text/plain") == 415)
        let other = URL(string: standIn.url + "/DEFAULT/controller/v1/GW-9/configData")!
        #expect(try await put(#"{"mode":"merge","data":{"a":"1"}}"#, url: other) == 404)
        #expect(try await put(#"{"mode":"merge","data":{"c":"3","d":"4"}}"#) == 429, "quota of 3 attributes")
        #expect(standIn.attributes(of: Self.controllerID) == ["a": "1", "b": "2"])
    }

    @Test func retriesAfterA5xxAndADroppedConnection() async throws {
        let standIn = try HawkBitStandIn(controllerIDs: [Self.controllerID], token: Self.token)
        defer { standIn.stop() }
        standIn.enqueue([.status(503), .drop, .status(500)])
        let source = Source()
        source.value = Self.attributes(1)
        let logs = CapturedLogs()
        try await Self.withUpdater(Self.configuration(standIn), source: source, logs: logs) { _ in
            #expect(await Self.waitUntil { standIn.attributes(of: Self.controllerID) == Self.attributes(1) })
            #expect(await Self.waitUntil { !logs.messages(.notice).isEmpty }, "logged once the answer is judged")
        }
        #expect(standIn.requests.map(\.status) == [503, nil, 500, 200])
        #expect(logs.messages(.warning).count == 1, "one line for the first failure: \(logs.messages(.warning))")
        #expect(logs.messages(.notice) == ["hawkBit accepts the target's attributes again"])
    }

    @Test func aNewerChangeSupersedesAPendingOne() async throws {
        let standIn = try HawkBitStandIn(controllerIDs: [Self.controllerID], token: Self.token)
        defer { standIn.stop() }
        standIn.enqueue([.status(503)])
        let source = Source()
        source.value = Self.attributes(1)
        try await Self.withUpdater(Self.configuration(standIn, backoff: .milliseconds(400)), source: source) { updater in
            #expect(await Self.waitUntil { standIn.requests.count == 1 })
            // Two changes during the backoff: only the newest is sent.
            source.value = Self.attributes(2)
            updater.changed()
            source.value = Self.attributes(3)
            updater.changed()
            #expect(await Self.waitUntil { standIn.requests.count == 2 })
            // Nothing changed since: calls to changed() send nothing more.
            for _ in 0..<5 { updater.changed() }
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(standIn.requests.map { $0.data?["n"] } == ["1", "3"])
        #expect(standIn.requests.last?.status == 200)
        #expect(standIn.attributes(of: Self.controllerID) == Self.attributes(3))
    }

    @Test func aRefusedTokenIsRetriedAndAReloadSendsAtOnce() async throws {
        let standIn = try HawkBitStandIn(controllerIDs: [Self.controllerID], token: "renewed-token")
        defer { standIn.stop() }
        let source = Source()
        source.value = Self.attributes(1)
        let logs = CapturedLogs()
        let config = Self.configuration(standIn, backoff: .seconds(30))
        try await Self.withUpdater(config, source: source, logs: logs) { updater in
            #expect(await Self.waitUntil { standIn.requests.count == 1 })
            #expect(standIn.requests.first?.status == 401)
            var renewed = config
            renewed.token = "renewed-token"
            try await updater.reload(renewed)  // ends the 30 s backoff
            #expect(await Self.waitUntil(.seconds(5)) { standIn.requests.last?.status == 200 })
            #expect(await Self.waitUntil { !logs.messages(.warning).isEmpty })
        }
        #expect(standIn.requests.count == 2)
        #expect(logs.messages(.warning).first?.contains("refuses the target token") == true, "\(logs.messages(.warning))")
        #expect(!(logs.messages(.warning).joined()).contains("renewed-token"))
    }

    @Test func anUnknownTargetIsRetriedUntilItExists() async throws {
        let standIn = try HawkBitStandIn(controllerIDs: [], token: Self.token)
        defer { standIn.stop() }
        let source = Source()
        source.value = Self.attributes(1)
        let logs = CapturedLogs()
        try await Self.withUpdater(Self.configuration(standIn), source: source, logs: logs) { _ in
            #expect(await Self.waitUntil { standIn.requests.count >= 2 })
            standIn.setAttributes([:], of: Self.controllerID)  // the update client polls: hawkBit creates it
            #expect(await Self.waitUntil { standIn.requests.last?.status == 200 })
        }
        #expect(standIn.requests.dropLast().allSatisfy { $0.status == 404 })
        #expect(logs.messages(.warning).first?.contains("knows no target GW-000123 in tenant DEFAULT") == true)
    }

    /// A 400 (hawkBit refuses the attributes) is not sent again until they change.
    @Test func aRefusedSetIsNotResentUntilItChanges() async throws {
        let standIn = try HawkBitStandIn(controllerIDs: [Self.controllerID], token: Self.token)
        defer { standIn.stop() }
        standIn.enqueue([.status(400)])
        let source = Source()
        source.value = Self.attributes(1)
        let logs = CapturedLogs()
        try await Self.withUpdater(Self.configuration(standIn), source: source, logs: logs) { updater in
            #expect(await Self.waitUntil { standIn.requests.count == 1 })
            for _ in 0..<3 { updater.changed() }
            try await Task.sleep(for: .milliseconds(200))
            #expect(standIn.requests.count == 1)
            source.value = Self.attributes(2)
            updater.changed()
            #expect(await Self.waitUntil { standIn.requests.count == 2 })
        }
        #expect(standIn.requests.map(\.status) == [400, 200])
        #expect(logs.messages(.error).count == 1)
    }

    /// A server that answers 10 MB, never answers, or echoes the identifiers back: the answer is read to 4 KiB, the
    /// request times out, the log carries a scrubbed 200 characters at most and no identifier digits.
    @Test func aHostileServerCostsBoundedTimeAndLogs() async throws {
        let standIn = try HawkBitStandIn(controllerIDs: [Self.controllerID], token: Self.token)
        defer { standIn.stop() }
        standIn.enqueue([
            .oversized(status: 503, bytes: 10 << 20), .hang, .echo(status: 503), .echo(status: 500), .echo(status: 502),
            .echo(status: 503), .echo(status: 503), .echo(status: 503), .echo(status: 503), .echo(status: 503),
            .echo(status: 400),
        ])
        let source = Source()
        source.value = Self.attributes(1)
        let logs = CapturedLogs()
        var config = Self.configuration(standIn, backoff: .milliseconds(5))
        config.requestTimeout = .milliseconds(500)
        let clock = ContinuousClock()
        let start = clock.now
        try await Self.withUpdater(config, source: source, logs: logs) { _ in
            #expect(await Self.waitUntil(.seconds(20)) { standIn.requests.count == 11 })
            #expect(await Self.waitUntil { !logs.messages(.error).isEmpty })
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(clock.now - start < .seconds(10), "the hanging request ended by its timeout")
        let all = logs.messages(.warning) + logs.messages(.error) + logs.messages(.notice)
        #expect(logs.messages(.warning).count == 2, "attempts 1 and 10 only: \(logs.messages(.warning))")
        #expect(logs.messages(.error).count == 1, "the 400")
        for line in all {
            #expect(!line.contains(Self.imei), "identifier digits in the log: \(line)")
            #expect(!line.contains(String(Self.imei.dropFirst(8).prefix(6))), "identifier digits in the log")
            #expect(line.count < 600, "a long answer reached the log")
        }
    }
}
