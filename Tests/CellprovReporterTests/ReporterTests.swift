import CellprovCore
import CellprovReporter
import CellprovStore
import CellprovTestKit
import Foundation
import Logging
import NIOConcurrencyHelpers
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// The enrollment payload, and the reporter delivering the store's outbox to the loopback test receiver over plain
// HTTP, TLS and mTLS, and what it does when the backend refuses our credentials. Real SQLite files in temporary
// directories and a real swift-nio server on 127.0.0.1; certificates are made at test time with `openssl`.

// MARK: - Fixtures


private func rtKey(_ id: UUID) -> String { id.uuidString.lowercased() }

/// What the reporter told its `onDelivery` callback, in order.
private final class RTOutcomes: Sendable {
    private let list = NIOLockedValueBox<[(String, DeliveryOutcome)]>([])
    func append(_ event: IdentityEvent, _ outcome: DeliveryOutcome) {
        list.withLockedValue { $0.append((rtKey(event.id), outcome)) }
    }
    var all: [(String, DeliveryOutcome)] { list.withLockedValue { $0 } }
    var retryReasons: [String] {
        all.compactMap { if case .retry(let r) = $0.1 { return r } else { return nil } }
    }
    var refusalReasons: [String] {
        all.compactMap { if case .refused(let r) = $0.1 { return r } else { return nil } }
    }
}

/// A reporter running in a task; `stop()` cancels it and waits for `run()` to return (which shuts the HTTP
/// client down).
private struct RTRunning {
    let reporter: Reporter
    let task: Task<Void, Never>
    let outcomes: RTOutcomes

    init(
        store: StateStore, url: String, token: String? = "test-token", caFile: String? = nil,
        clientCertificate: String? = nil, clientKey: String? = nil,
        requestTimeout: Duration = .seconds(5), backoffBase: Duration = .milliseconds(50),
        backoffCap: Duration = .seconds(1)
    ) throws {
        var config = ReporterConfiguration(
            url: URL(string: url)!, token: token, caFile: caFile, clientCertificate: clientCertificate,
            clientKey: clientKey, deviceSerial: "GW-TEST-1")
        config.requestTimeout = requestTimeout
        config.backoffBase = backoffBase
        config.backoffCap = backoffCap
        let outcomes = RTOutcomes()
        let reporter = try Reporter(
            config: config, outbox: store, logger: Logger(label: "reporter-tests"),
            onDelivery: { event, outcome in outcomes.append(event, outcome) })
        self.reporter = reporter
        self.outcomes = outcomes
        task = Task { await reporter.run() }
    }

    func stop() async {
        task.cancel()
        await task.value
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with `openssl`.
private struct RTCertificates {
    let dir: TemporaryDirectory
    var caCert: String { dir.file("ca.pem") }
    var serverCert: String { dir.file("server.pem") }
    var serverKey: String { dir.file("server.key") }
    var clientCert: String { dir.file("client.pem") }
    var clientKey: String { dir.file("client.key") }

    init() throws {
        dir = try TemporaryDirectory()
        let d = dir.path
        try Self.openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "\(d)/ca.key", "-out", "\(d)/ca.pem", "-days", "2", "-subj", "/CN=cellprov test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        try Self.leaf(dir: d, name: "server", cn: "127.0.0.1", ext: "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        try Self.leaf(dir: d, name: "client", cn: "GW-TEST-1", ext: "extendedKeyUsage=clientAuth\n")
    }

    private static func leaf(dir d: String, name: String, cn: String, ext: String) throws {
        try ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + ext)
            .write(toFile: "\(d)/\(name).ext", atomically: true, encoding: .utf8)
        try openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "\(d)/\(name).key", "-out", "\(d)/\(name).csr", "-subj", "/CN=\(cn)")
        try openssl(
            "x509", "-req", "-in", "\(d)/\(name).csr", "-CA", "\(d)/ca.pem", "-CAkey", "\(d)/ca.key",
            "-CAcreateserial", "-out", "\(d)/\(name).pem", "-days", "2", "-extfile", "\(d)/\(name).ext")
    }

    private static func openssl(_ args: String...) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["openssl"] + args
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let output = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ReporterError(
                description: "openssl \(args.first ?? "") failed: \(String(decoding: output, as: UTF8.self))")
        }
    }
}

// MARK: - Tests

@Suite struct ReporterTests {
    // MARK: Payload

    @Suite struct Payload {
        static let id = UUID(uuidString: "3F2504E0-4F89-41D3-9A0C-0305E82C3301")!

        func json(_ event: IdentityEvent, deviceSerial: String?) throws -> [String: Any] {
            let bytes = try EnrollmentPayload.encode(event, deviceSerial: deviceSerial)
            return try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        }

        @Test func simChangedPayload() throws {
            let event = IdentityEvent(
                id: Self.id, type: .simChanged, slot: FixtureValues.slotA, sequence: 2,
                occurredAt: Date(timeIntervalSince1970: 1_750_000_000.25), severity: .warning,
                module: ModuleInfo(usbSerial: "SER-1", manufacturer: "Quectel", model: "EG25", revision: "R07"),
                identity: IdentitySnapshot(imei: FixtureValues.imeiA, imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2),
                previous: IdentitySnapshot(imei: FixtureValues.imeiA, imsi: FixtureValues.imsi1, iccid: FixtureValues.iccid1),
                problems: [Problem(.imsiTestNetwork, field: .imsi, severity: .warning, message: "test network")])
            let o = try json(event, deviceSerial: "GW-TEST-1")
            #expect(
                Set(o.keys) == [
                    "event_id", "type", "occurred_at", "sequence", "severity", "device", "module", "identity",
                    "previous", "problems", "references",
                ])
            #expect(o["event_id"] as? String == "3f2504e0-4f89-41d3-9a0c-0305e82c3301")
            #expect(o["type"] as? String == "sim_changed")
            #expect(o["occurred_at"] as? String == "2025-06-15T15:06:40Z")
            #expect(o["sequence"] as? Int == 2)
            #expect(o["severity"] as? String == "warning")
            #expect(o["device"] as? [String: String] == ["serial": "GW-TEST-1"])
            #expect(
                o["module"] as? [String: String] == [
                    "slot": FixtureValues.slotA, "usb_serial": "SER-1", "manufacturer": "Quectel", "model": "EG25",
                    "revision": "R07", "source": "at",
                ])
            #expect(
                o["identity"] as? [String: String] == [
                    "imei": FixtureValues.imeiA, "imsi": FixtureValues.imsi2, "iccid": FixtureValues.iccid2,
                ])
            #expect(
                o["previous"] as? [String: String] == [
                    "imei": FixtureValues.imeiA, "imsi": FixtureValues.imsi1, "iccid": FixtureValues.iccid1,
                ])
            // API 0.2.0: the refs of the identity's values under the process's pseudonymizer (the daemon's key).
            let p = Redaction.pseudonymizer
            #expect(
                o["references"] as? [String: String] == [
                    "imei": p.reference(kind: "imei", value: FixtureValues.imeiA),
                    "imsi": p.reference(kind: "imsi", value: FixtureValues.imsi2),
                    "iccid": p.reference(kind: "iccid", value: FixtureValues.iccid2),
                ])
            let problems = try #require(o["problems"] as? [[String: String]])
            #expect(
                problems == [["code": "imsi_test_network", "field": "imsi", "severity": "warning", "message": "test network"]])
            // Slot keys hold slashes on static ports: written as they are.
            let text = String(decoding: try EnrollmentPayload.encode(event, deviceSerial: nil), as: UTF8.self)
            #expect(!text.contains("\\/"))
        }

        /// docs/enrollment-api.yaml, "Absent and null": `previous` is always written (null when there is none);
        /// every other optional property is left out when it has no value.
        @Test func absentValues() throws {
            let event = IdentityEvent(
                id: Self.id, type: .identityInvalid, slot: "/dev/ttyS1", sequence: 1,
                occurredAt: Date(timeIntervalSince1970: 1_750_000_000), severity: .warning,
                module: ModuleInfo(), identity: IdentitySnapshot(imei: "000000000000000"),
                problems: [])
            let o = try json(event, deviceSerial: nil)
            #expect(
                Set(o.keys) == [
                    "event_id", "type", "occurred_at", "sequence", "severity", "device", "module", "identity",
                    "previous", "problems", "references",
                ])
            #expect(o["previous"] is NSNull)
            #expect((o["references"] as? [String: String])?.keys.sorted() == ["imei"], "refs of the values present only")
            #expect((o["problems"] as? [Any])?.isEmpty == true)
            #expect(o["occurred_at"] as? String == "2025-06-15T15:06:40Z")
            #expect((o["device"] as? [String: Any])?.isEmpty == true)
            #expect(o["module"] as? [String: String] == ["slot": "/dev/ttyS1", "source": "at"])
            #expect(o["identity"] as? [String: String] == ["imei": "000000000000000"])
        }

        /// A read through ModemManager says so in the module: `source: "modemmanager"`.
        @Test func modemManagerSource() throws {
            let event = IdentityEvent(
                id: Self.id, type: .enrolled, slot: FixtureValues.slotA, sequence: 1,
                occurredAt: Date(timeIntervalSince1970: 1_750_000_000), severity: .info,
                module: ModuleInfo(usbSerial: "SER-1", manufacturer: "Quectel", source: .modemmanager),
                identity: IdentitySnapshot(imei: FixtureValues.imeiA, imsi: FixtureValues.imsi1, iccid: FixtureValues.iccid1))
            let o = try json(event, deviceSerial: nil)
            #expect(
                o["module"] as? [String: String] == [
                    "slot": FixtureValues.slotA, "usb_serial": "SER-1", "manufacturer": "Quectel", "source": "modemmanager",
                ])
        }

        @Test func typeSpecificFields() throws {
            var event = IdentityEvent(
                id: Self.id, type: .imeiChanged, slot: FixtureValues.slotA, sequence: 3,
                occurredAt: Date(timeIntervalSince1970: 1_750_000_000), severity: .critical,
                module: ModuleInfo(usbSerial: "SER-1"), identity: IdentitySnapshot(imei: FixtureValues.imeiB),
                previous: IdentitySnapshot(imei: FixtureValues.imeiA), usbSerialChanged: false)
            var o = try json(event, deviceSerial: nil)
            #expect(o["usb_serial_changed"] as? Bool == false)
            #expect(o["other_slots"] == nil)
            #expect((o["previous"] as? [String: String]) == ["imei": FixtureValues.imeiA])
            event.type = .duplicateIMEI
            event.usbSerialChanged = nil
            event.previous = nil
            event.otherSlots = [FixtureValues.slotB]
            o = try json(event, deviceSerial: nil)
            #expect(o["usb_serial_changed"] == nil)
            #expect(o["other_slots"] as? [String] == [FixtureValues.slotB])
            #expect(o["type"] as? String == "duplicate_imei")
        }

        /// The outcome table of docs/enrollment-api.yaml.
        @Test(arguments: [
            (200, "delivered"), (201, "delivered"), (204, "delivered"), (299, "delivered"), (409, "delivered"),
            (400, "rejected"), (413, "rejected"), (422, "rejected"), (401, "refused"), (403, "refused"),
            (404, "retry"), (405, "retry"), (410, "retry"), (415, "retry"), (429, "retry"), (408, "retry"),
            (301, "retry"), (302, "retry"), (500, "retry"), (502, "retry"), (503, "retry"),
        ])
        func statusClassification(status: Int, expected: String) {
            switch DeliveryOutcome.classify(status: status, body: "{\"error\":\"no\"}") {
            case .delivered(let s):
                #expect(expected == "delivered")
                #expect(s == status)
            case .rejected(let reason):
                #expect(expected == "rejected")
                #expect(reason == "HTTP \(status): {\"error\":\"no\"}")
            case .refused(let reason):
                #expect(expected == "refused")
                #expect(reason == "HTTP \(status): {\"error\":\"no\"}")
            case .retry(let reason):
                #expect(expected == "retry")
                #expect(reason.hasPrefix("HTTP \(status)"))
            }
        }

        @Test func storedEventsEncodeAsCommitted() throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let committed = try #require(try store.commit(fixtureObservation()).first)
            let stored = try #require(try store.pendingEvents().first)
            // Same JSON (key order is not fixed, so compared as objects).
            let fromStore = try json(stored.event, deviceSerial: "GW") as NSDictionary
            let fromCommit = try json(committed, deviceSerial: "GW") as NSDictionary
            #expect(fromStore == fromCommit)
        }
    }

    // MARK: Delivery over plain HTTP on loopback

    @Suite struct Delivery {
        @Test func createdIsDeliveredWithHeaders() async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(201))
            defer { receiver.stop() }
            let event = try #require(try store.commit(fixtureObservation()).first)

            let running = try RTRunning(store: store, url: "http://\(receiver.url)")
            let delivered = try await pollUntil { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            let stored = try #require(try store.events().first)
            #expect(stored.state == .delivered)
            #expect(stored.attempts == 1)
            #expect(stored.deliveredAt != nil)
            let requests = receiver.requests
            #expect(requests.count == 1)
            let r = try #require(requests.first)
            #expect(r.method == "POST")
            #expect(r.path == "/v1/enrollments")
            #expect(r.headers["idempotency-key"] == rtKey(event.id))
            #expect(r.headers["authorization"] == "Bearer test-token")
            #expect(r.headers["user-agent"]?.contains("cellprovd/") == true)
            #expect(r.headers["content-type"]?.hasPrefix("application/json") == true)
            let body = try #require(r.json)
            #expect(body["event_id"] as? String == rtKey(event.id))
            #expect(body["type"] as? String == "enrolled")
            #expect((body["identity"] as? [String: Any])?["imei"] as? String == FixtureValues.imeiA)
            #expect((body["device"] as? [String: Any])?["serial"] as? String == "GW-TEST-1")
            #expect(running.outcomes.all.map(\.1) == [.delivered(status: 201)])
        }

        @Test func conflictCountsAsDelivered() async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(409))
            defer { receiver.stop() }
            let event = try #require(try store.commit(fixtureObservation()).first)

            // No token configured: no Authorization header.
            let running = try RTRunning(store: store, url: "http://\(receiver.url)", token: nil)
            let delivered = try await pollUntil { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            #expect(try store.events().first?.state == .delivered)
            #expect(receiver.idempotencyKeyCounts == [rtKey(event.id): 1])
            #expect(receiver.requests.first.map { $0.headers["authorization"] == nil } == true)
            #expect(running.outcomes.all.map(\.1) == [.delivered(status: 409)])
        }

        @Test func badRequestIsRejectedForGoodAndTheNextEventStillGoes() async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(400))
            defer { receiver.stop() }
            let first = try #require(try store.commit(fixtureObservation()).first)

            let running = try RTRunning(store: store, url: "http://\(receiver.url)")
            let rejected = try await pollUntil { try store.events().first?.state == .rejected }
            #expect(rejected)

            // The backend heals; a new event is committed and the reporter woken.
            receiver.setBehaviour(.status(201))
            let second = try #require(try store.commit(fixtureObservation(imsi: FixtureValues.imsi2, iccid: FixtureValues.iccid2)).first)
            running.reporter.wake()
            let delivered = try await pollUntil { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            let events = try store.events()
            let a = try #require(events.first { $0.event.id == first.id })
            let b = try #require(events.first { $0.event.id == second.id })
            #expect(a.state == .rejected)
            #expect(a.attempts == 1)
            #expect(a.lastError?.hasPrefix("HTTP 400") == true)
            #expect(a.lastError?.contains("status 400") == true)  // the receiver's body is kept in the reason
            #expect(b.state == .delivered)
            // Never retried: one request for the rejected event, one for the next.
            #expect(receiver.idempotencyKeyCounts == [rtKey(first.id): 1, rtKey(second.id): 1])
            #expect(receiver.acceptedEventIDs == [rtKey(second.id)])
            #expect(try store.lastDeliveryError() == nil)
        }

        @Test func serverErrorsAreRetriedUntilAccepted() async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(503))
            defer { receiver.stop() }
            let first = try #require(try store.commit(fixtureObservation()).first)
            let second = try #require(
                try store.commit(fixtureObservation(slot: FixtureValues.slotB, usbSerial: "SER-2", imei: FixtureValues.imeiB)).first)

            let running = try RTRunning(store: store, url: "http://\(receiver.url)")
            let retried = await pollUntil { receiver.requests.count >= 3 }
            #expect(retried)
            // Oldest first: while the first fails, the second is not tried.
            #expect(Set(receiver.requests.map { $0.headers["idempotency-key"] }) == [rtKey(first.id)])
            let pending = try store.pendingEvents()
            #expect(pending.count == 2)
            #expect((pending.first?.attempts ?? 0) >= 2)
            #expect(pending.first?.lastError == "HTTP 503")
            #expect(try store.lastDeliveryError() == "HTTP 503")

            receiver.setBehaviour(.status(201))
            let delivered = try await pollUntil { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            #expect(receiver.acceptedEventIDs == [rtKey(first.id), rtKey(second.id)])
            let accepted = receiver.requests.filter { $0.headers["x-accepted"] == "1" }
            #expect(accepted.map { $0.headers["idempotency-key"] } == [rtKey(first.id), rtKey(second.id)])
            #expect(receiver.idempotencyKeyCounts[rtKey(second.id)] == 1)
            #expect(try store.events().allSatisfy { $0.state == .delivered })
            #expect(try store.lastDeliveryError() == nil)
        }

        @Test func hangingBackendTimesOutThenDelivers() async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .hang)
            defer { receiver.stop() }
            let event = try #require(try store.commit(fixtureObservation()).first)

            let clock = ContinuousClock()
            let start = clock.now
            let running = try RTRunning(store: store, url: "http://\(receiver.url)", requestTimeout: .seconds(1))
            let failed = try await pollUntil { (try store.pendingEvents().first?.attempts ?? 0) >= 1 }
            let firstFailure = clock.now - start
            #expect(failed)
            #expect(firstFailure >= .milliseconds(900))  // the timeout, not an immediate failure
            #expect(try store.outboxDepth() == 1)
            // The outcome is reported just after the store records the attempt: wait for it too.
            #expect(await pollUntil { running.outcomes.retryReasons.count >= 1 })

            receiver.setBehaviour(.status(201))
            let delivered = try await pollUntil { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            #expect(receiver.acceptedEventIDs == [rtKey(event.id)])
            #expect(receiver.requests.filter { $0.headers["x-accepted"] == "1" }.count == 1)
            #expect((try store.events().first?.attempts ?? 0) >= 2)
        }

        /// Stopping the reporter during a request ends it promptly and does not count as a failed attempt.
        @Test func stopDuringARequestIsNotAFailure() async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .hang)
            defer { receiver.stop() }
            try store.commit(fixtureObservation())

            let running = try RTRunning(store: store, url: "http://\(receiver.url)", requestTimeout: .seconds(10))
            let sent = await pollUntil { receiver.requests.count == 1 }
            #expect(sent)
            let clock = ContinuousClock()
            let start = clock.now
            await running.stop()
            #expect(clock.now - start < .seconds(5))

            let stored = try #require(try store.pendingEvents().first)
            #expect(stored.attempts == 0)
            #expect(stored.lastError == nil)
            #expect(try store.lastDeliveryError() == nil)
            #expect(running.outcomes.all.isEmpty)
        }

        /// A sub-second request timeout is a timeout of that length, not zero.
        @Test func subSecondRequestTimeoutIsHonoured() async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(201))
            defer { receiver.stop() }
            try store.commit(fixtureObservation())

            let running = try RTRunning(
                store: store, url: "http://\(receiver.url)", requestTimeout: .milliseconds(900))
            let delivered = try await pollUntil { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            #expect(try store.events().first?.attempts == 1)
            #expect(running.outcomes.retryReasons.isEmpty)
        }

        @Test func connectionRefusedIsRetried() async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver()
            let url = "http://\(receiver.url)"
            receiver.stop()  // nothing listens on the port any more
            try store.commit(fixtureObservation())

            let running = try RTRunning(store: store, url: url)
            let failed = try await pollUntil { (try store.pendingEvents().first?.attempts ?? 0) >= 2 }
            await running.stop()

            #expect(failed)
            #expect(try store.outboxDepth() == 1)
            #expect(try store.pendingEvents().first?.state == .pending)
            #expect(try store.pendingEvents().first?.lastError?.contains("refused") == true)
        }

        @Test(arguments: [
            "http://192.0.2.10:8080", "http://backend.example.com", "http://127.0.0.1.evil.example",
            "http://localhost.evil.example", "ftp://127.0.0.1",
        ])
        func plainHTTPToANonLoopbackHostIsRefused(url: String) async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            do {
                // Accepted by mistake: record it, and still shut the reporter's HTTP client down (through run()).
                let running = try RTRunning(store: store, url: url)
                await running.stop()
                Issue.record("\(url) was accepted")
            } catch let error as ReporterError {
                #expect(error.description.contains("https"))
            }
        }

        @Test(arguments: ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "https://backend.example.com"])
        func httpsOrLoopbackIsAccepted(url: String) async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let running = try RTRunning(store: store, url: url)
            await running.stop()
        }
    }

    // MARK: TLS and mTLS

    @Suite struct TLS {
        @Test func tlsWithTheCAFileDelivers() async throws {
            let certs = try RTCertificates()
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(
                tls: .init(certificateFile: certs.serverCert, keyFile: certs.serverKey), behaviour: .status(201))
            defer { receiver.stop() }
            let event = try #require(try store.commit(fixtureObservation()).first)

            let running = try RTRunning(store: store, url: "https://\(receiver.url)", caFile: certs.caCert)
            let delivered = try await pollUntil { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            #expect(receiver.acceptedEventIDs == [rtKey(event.id)])
            #expect(receiver.requests.first?.headers["authorization"] == "Bearer test-token")
            #expect(receiver.handshakeFailures == 0)
        }

        @Test func tlsWithoutTheCAFileFails() async throws {
            let certs = try RTCertificates()
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(
                tls: .init(certificateFile: certs.serverCert, keyFile: certs.serverKey), behaviour: .status(201))
            defer { receiver.stop() }
            try store.commit(fixtureObservation())

            let running = try RTRunning(store: store, url: "https://\(receiver.url)", backoffBase: .seconds(5))
            let failed = try await pollUntil { (try store.pendingEvents().first?.attempts ?? 0) >= 1 }
            await running.stop()

            #expect(failed)
            #expect(try store.outboxDepth() == 1)
            #expect(receiver.requests.isEmpty)
            let reasons = running.outcomes.retryReasons
            #expect(reasons.count >= 1)
            // The reason names the TLS failure (the server's certificate is not trusted by the system store).
            let reason = try #require(try store.pendingEvents().first?.lastError)
            #expect(reason.hasPrefix("TLS"), "reason: \(reason)")
            #expect(reason.contains("CERTIFICATE_VERIFY_FAILED"), "reason: \(reason)")
            #expect(try store.lastDeliveryError() == reason)
            #expect(await pollUntil { receiver.handshakeFailures >= 1 })
        }

        @Test func mutualTLS() async throws {
            let certs = try RTCertificates()
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(
                tls: .init(certificateFile: certs.serverCert, keyFile: certs.serverKey, clientCAFile: certs.caCert),
                behaviour: .status(201))
            defer { receiver.stop() }
            let event = try #require(try store.commit(fixtureObservation()).first)

            // Without a client certificate: the backend ends the handshake with certificate_required, which is a
            // refusal of our credentials (as a 401/403), not a network failure; nothing is accepted.
            let without = try RTRunning(
                store: store, url: "https://\(receiver.url)", caFile: certs.caCert, backoffBase: .seconds(5))
            let failed = try await pollUntil { (try store.pendingEvents().first?.attempts ?? 0) >= 1 }
            let counted = await pollUntil { receiver.handshakeFailures >= 1 }
            await without.stop()
            #expect(failed)
            #expect(counted)
            #expect(receiver.acceptedEventIDs.isEmpty)
            #expect(try store.outboxDepth() == 1)
            #expect(without.outcomes.retryReasons.isEmpty, "\(without.outcomes.retryReasons)")
            let reason = try #require(without.outcomes.refusalReasons.first)
            #expect(reason.hasPrefix("TLS alert certificate_required:"), "reason: \(reason)")
            #expect(try store.credentialsRefused() == reason)
            #expect(try store.pendingEvents().first?.lastError == reason)

            // With client_certificate / client_key: delivered.
            let with = try RTRunning(
                store: store, url: "https://\(receiver.url)", caFile: certs.caCert,
                clientCertificate: certs.clientCert, clientKey: certs.clientKey)
            let delivered = try await pollUntil { try store.outboxDepth() == 0 }
            await with.stop()
            #expect(delivered)
            #expect(receiver.acceptedEventIDs == [rtKey(event.id)])
            #expect(with.outcomes.all.map(\.1) == [.delivered(status: 201)])
            #expect(try store.credentialsRefused() == nil)
        }

        /// A client certificate of another CA: the backend's alert (a bad or unknown certificate) is a refusal of
        /// our credentials, with the 401/403 outcome: the event waits, `cellprov status` says so.
        @Test func clientCertificateOfAnotherCAIsRefused() async throws {
            let certs = try RTCertificates()
            let foreign = try RTCertificates()
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(
                tls: .init(certificateFile: certs.serverCert, keyFile: certs.serverKey, clientCAFile: certs.caCert),
                behaviour: .status(201))
            defer { receiver.stop() }
            try store.commit(fixtureObservation())

            let running = try RTRunning(
                store: store, url: "https://\(receiver.url)", caFile: certs.caCert,
                clientCertificate: foreign.clientCert, clientKey: foreign.clientKey, backoffBase: .seconds(5))
            let refused = await pollUntil { !running.outcomes.all.isEmpty }
            await running.stop()
            #expect(refused)
            #expect(receiver.acceptedEventIDs.isEmpty)
            #expect(try store.outboxDepth() == 1)
            #expect(running.outcomes.retryReasons.isEmpty, "\(running.outcomes.retryReasons)")
            let reason = try #require(running.outcomes.refusalReasons.first)
            let names = HTTPSender.RefusalAlert.all.map { "TLS alert \($0.name):" }
            #expect(names.contains { reason.hasPrefix($0) }, "reason: \(reason)")
            #expect(try store.credentialsRefused() == reason)
        }

        /// The same over TLS 1.2 from another implementation (OpenSSL's s_server): there the server checks the
        /// client certificate inside the handshake, so the alert fails the handshake itself.
        @Test(arguments: [false, true]) func tls12ServerRefusingTheClientCertificate(presentForeign: Bool) async throws {
            let certs = try RTCertificates()
            let foreign = try RTCertificates()
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            try store.commit(fixtureObservation())
            let server = try RTOpenSSLServer(
                certificate: certs.serverCert, key: certs.serverKey, clientCA: certs.caCert,
                arguments: ["-tls1_2"])
            defer { server.stop() }

            let running = try RTRunning(
                store: store, url: "https://127.0.0.1:\(server.port)", caFile: certs.caCert,
                clientCertificate: presentForeign ? foreign.clientCert : nil,
                clientKey: presentForeign ? foreign.clientKey : nil, backoffBase: .seconds(5))
            let answered = await pollUntil(within: .seconds(10)) { !running.outcomes.all.isEmpty }
            await running.stop()
            #expect(answered)
            #expect(try store.outboxDepth() == 1)
            if presentForeign {
                // A certificate the server cannot verify: an alert about it, a refusal of our credentials.
                let reason = try #require(running.outcomes.refusalReasons.first, "\(running.outcomes.all)")
                #expect(reason.hasPrefix("TLS alert "), "reason: \(reason)")
                #expect(try store.credentialsRefused() == reason)
            } else {
                // TLS 1.2 without a certificate: OpenSSL sends handshake_failure, which a cipher or version mismatch
                // also gives; it stays a network failure (retried, no credentials claim).
                #expect(running.outcomes.refusalReasons.isEmpty, "\(running.outcomes.all)")
                let reason = try #require(running.outcomes.retryReasons.first)
                #expect(reason.hasPrefix("TLS"), "reason: \(reason)")
                #expect(try store.credentialsRefused() == nil)
            }
        }
    }
}

/// `openssl s_server` on 127.0.0.1 (an ephemeral port) requiring a client certificate of `clientCA`.
private final class RTOpenSSLServer: Sendable {
    let process: Process
    let port: Int

    init(certificate: String, key: String, clientCA: String, arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // stdbuf: s_server writes its ACCEPT line through stdio, block-buffered into a pipe otherwise.
        p.arguments = [
            "stdbuf", "-oL", "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", certificate, "-key", key, "-CAfile", clientCA,
            "-Verify", "1", "-verify_return_error", "-www",
        ] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
        // A server that never says it listens is ended (its stdout then ends too).
        let listening = Atomic<Bool>(false)
        DispatchQueue.global().asyncAfter(deadline: .now() + 10) { [p] in
            if !listening.load(ordering: .relaxed) && p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        // "ACCEPT 127.0.0.1:<port>" (or "[::]:<port>") once it listens.
        var text = ""
        var found: Int?
        let handle = out.fileHandleForReading
        while found == nil {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT") }),
                let port = line.split(separator: ":").last.flatMap({ Int($0) })
            {
                found = port
            }
        }
        guard let found else {
            kill(p.processIdentifier, SIGKILL)
            throw ReporterError(description: "openssl s_server did not start: \(text)")
        }
        listening.store(true, ordering: .relaxed)
        port = found
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)  // s_server does not end on SIGTERM while it waits for a client
        process.waitUntilExit()
    }
}

extension ReporterTests {
    /// 401 and 403 say our credentials are refused, not that the event is wrong: it stays waiting, is retried
    /// with the backoff, and once the credentials are renewed (reload, as on SIGHUP) every waiting event goes,
    /// oldest first, with its original event id, without waiting out the backoff.
    @Suite struct Refused {
        @Test(arguments: [401, 403])
        func refusedCredentialsKeepEventsWaitingUntilRenewed(status: Int) async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(status))
            defer { receiver.stop() }
            let first = try #require(try store.commit(fixtureObservation()).first)
            let second = try #require(
                try store.commit(fixtureObservation(slot: FixtureValues.slotB, usbSerial: "SER-2", imei: FixtureValues.imeiB)).first)

            // A long backoff: without the reload's interruption nothing more would happen within the test.
            let running = try RTRunning(
                store: store, url: "http://\(receiver.url)", token: "old-token", backoffBase: .milliseconds(100),
                backoffCap: .seconds(60))
            let retried = await pollUntil { receiver.requests.count >= 3 }
            #expect(retried, "retried with the backoff")
            #expect(Set(receiver.requests.map { $0.headers["idempotency-key"] }) == [rtKey(first.id)])
            let waiting = try store.pendingEvents()
            #expect(waiting.map(\.event.id) == [first.id, second.id], "nothing thrown away")
            #expect(waiting.first?.state == .pending)
            #expect(try store.credentialsRefused()?.hasPrefix("HTTP \(status)") == true)
            #expect(running.outcomes.all.allSatisfy { if case .refused = $0.1 { true } else { false } })
            #expect(try store.events().allSatisfy { $0.state == .pending })

            // Renewed credentials (the backend now accepts): delivered at once with the original ids, in order.
            receiver.setBehaviour(.status(201))
            var renewed = ReporterConfiguration(
                url: URL(string: "http://\(receiver.url)")!, token: "new-token", deviceSerial: "GW-TEST-1")
            renewed.requestTimeout = .seconds(5)
            try await running.reporter.reload(renewed)
            let delivered = try await pollUntil(within: .seconds(5)) { try store.outboxDepth() == 0 }
            await running.stop()
            #expect(delivered)
            let accepted = receiver.requests.filter { $0.headers["x-accepted"] == "1" }
            #expect(accepted.map { $0.headers["idempotency-key"] } == [rtKey(first.id), rtKey(second.id)])
            #expect(accepted.allSatisfy { $0.headers["authorization"] == "Bearer new-token" })
            #expect(try store.credentialsRefused() == nil)
            #expect(try store.events().allSatisfy { $0.state == .delivered })
        }

        /// The payload-is-wrong answers still reject (and 404, a wrong URL, does not).
        @Test func notFoundIsRetriedNotRejected() async throws {
            let dir = try TemporaryDirectory()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(404))
            defer { receiver.stop() }
            let event = try #require(try store.commit(fixtureObservation()).first)
            let running = try RTRunning(store: store, url: "http://\(receiver.url)")
            let retried = await pollUntil { receiver.requests.count >= 2 }
            receiver.setBehaviour(.status(201))
            let delivered = try await pollUntil { try store.outboxDepth() == 0 }
            await running.stop()
            #expect(retried)
            #expect(delivered)
            #expect(receiver.acceptedEventIDs == [rtKey(event.id)])
        }
    }
}
