import CellprovCore
import CellprovReporter
import CellprovStore
import CellprovTestKit
import Foundation
import GRDB
import Logging
import NIOConcurrencyHelpers
import Synchronization
import Testing

// The state store (outbox), the enrollment payload, and the reporter delivering to the loopback test receiver
// over plain HTTP, TLS and mTLS. Everything runs against real SQLite files in temp dirs and a real swift-nio
// server on 127.0.0.1; certificates are made at test time with `openssl`.

// MARK: - Fixtures

private enum RTValue {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }

    static let imeiA = luhn("35693803564380")
    static let imeiB = luhn("86144205219734")
    static let imsi1 = "310260123456789"
    static let imsi2 = "262019876543210"
    static let iccid1 = luhn("894420005367105249")
    static let iccid2 = luhn("891004234814455936")
    static let slotA = "pci-0000:00:14.0-usb-0:1:1.0"
    static let slotB = "pci-0000:00:14.0-usb-0:2:1.0"
}

/// One read of a slot, built through the validators (as the identity reader does).
private func rtObservation(
    slot: String = RTValue.slotA, usbSerial: String? = "SER-1", imei: String? = RTValue.imeiA,
    imsi: String? = RTValue.imsi1, iccid: String? = RTValue.iccid1, at date: Date = Date()
) -> Observation {
    var report = IdentityReport(port: "/dev/ttyUSB2", manufacturer: "Quectel", model: "EG25", revision: "EG25GR07")
    var problems: [Problem] = []
    if let imei {
        let v = IMEI.validate(imei)
        report.imei = v.value
        problems += v.problems
    }
    if let imsi {
        let v = IMSI.validate(imsi)
        report.imsi = v.value
        problems += v.problems
    }
    if let iccid {
        let v = ICCID.validate(iccid)
        report.iccid = v.value
        problems += v.problems
    }
    report.problems = problems
    return Observation(
        slot: ModuleSlot(key: slot, port: "/dev/ttyUSB2", usbSerial: usbSerial, origin: .udev), report: report,
        observedAt: date, reason: "test")
}

/// A temp dir removed when the value goes away.
private final class RTTempDir {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "cellprov-reporter-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Polls `condition` until it holds or the deadline passes; returns whether it held.
private func rtEventually(
    within limit: Duration = .seconds(5), _ condition: () throws -> Bool
) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while clock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try condition()
}

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
    let dir: RTTempDir
    var caCert: String { dir.file("ca.pem") }
    var serverCert: String { dir.file("server.pem") }
    var serverKey: String { dir.file("server.key") }
    var clientCert: String { dir.file("client.pem") }
    var clientKey: String { dir.file("client.key") }

    init() throws {
        dir = try RTTempDir()
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

    // MARK: Store

    @Suite struct Store {
        @Test func enrolmentThenSameReadThenSIMSwap() throws {
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)

            let first = try store.commit(rtObservation())
            #expect(first.map(\.type) == [.enrolled])
            #expect(try store.outboxDepth() == 1)
            let pending = try store.pendingEvents()
            #expect(pending.count == 1)
            #expect(pending.first?.state == .pending)
            #expect(pending.first?.attempts == 0)
            // The stored event is the committed one (its time kept to the second, as in the payload).
            let stored = try #require(pending.first?.event)
            let committed = try #require(first.first)
            #expect(stored.id == committed.id)
            #expect(stored.sequence == 1)
            #expect(stored.module == committed.module)
            #expect(abs(stored.occurredAt.timeIntervalSince(committed.occurredAt)) < 1)
            #expect(pending.first?.event.identity == IdentitySnapshot(imei: RTValue.imeiA, imsi: RTValue.imsi1, iccid: RTValue.iccid1))

            // The same read again: nothing new.
            #expect(try store.commit(rtObservation()).isEmpty)
            #expect(try store.outboxDepth() == 1)
            #expect(try store.events().count == 1)

            // Another SIM in the same module.
            let swap = try store.commit(rtObservation(imsi: RTValue.imsi2, iccid: RTValue.iccid2))
            #expect(swap.map(\.type) == [.simChanged])
            let changed = try #require(swap.first)
            #expect(changed.previous == IdentitySnapshot(imei: RTValue.imeiA, imsi: RTValue.imsi1, iccid: RTValue.iccid1))
            #expect(changed.identity == IdentitySnapshot(imei: RTValue.imeiA, imsi: RTValue.imsi2, iccid: RTValue.iccid2))
            #expect(try store.outboxDepth() == 2)

            // Outbox oldest first, history newest first, sequences in order.
            let outbox = try store.pendingEvents()
            #expect(outbox.map(\.event.type) == [.enrolled, .simChanged])
            #expect(outbox.map(\.event.sequence) == [1, 2])
            #expect(outbox[0].position < outbox[1].position)
            #expect(try store.events().map(\.event.type) == [.simChanged, .enrolled])
            #expect(try store.events(limit: 1).map(\.event.id) == [changed.id])
            #expect(try store.slotRecords().map(\.sequence) == [2])
        }

        @Test func deliveryBookkeeping() throws {
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let a = try #require(try store.commit(rtObservation(slot: RTValue.slotA)).first)
            let b = try #require(
                try store.commit(rtObservation(slot: RTValue.slotB, usbSerial: "SER-2", imei: RTValue.imeiB)).first)
            let c = try #require(try store.commit(rtObservation(slot: RTValue.slotA, imsi: RTValue.imsi2, iccid: RTValue.iccid2)).first)
            #expect(try store.outboxDepth() == 3)
            #expect(try store.lastDeliveryError() == nil)

            try store.markAttemptFailed(a.id, error: "HTTP 503")
            try store.markAttemptFailed(a.id, error: "connection refused")
            #expect(try store.outboxDepth() == 3)
            var stored = try #require(try store.pendingEvents().first)
            #expect(stored.event.id == a.id)
            #expect(stored.state == .pending)
            #expect(stored.attempts == 2)
            #expect(stored.lastError == "connection refused")
            #expect(try store.lastDeliveryError() == "connection refused")

            let deliveredAt = Date(timeIntervalSince1970: 1_750_000_000)
            try store.markDelivered(a.id, at: deliveredAt)
            #expect(try store.outboxDepth() == 2)
            #expect(try store.lastDeliveryError() == nil)
            stored = try #require(try store.events().first { $0.event.id == a.id })
            #expect(stored.state == .delivered)
            #expect(stored.attempts == 3)
            #expect(stored.lastError == nil)
            #expect(stored.deliveredAt == deliveredAt)

            try store.markRejected(b.id, reason: "HTTP 400: bad slot")
            #expect(try store.outboxDepth() == 1)
            stored = try #require(try store.events().first { $0.event.id == b.id })
            #expect(stored.state == .rejected)
            #expect(stored.lastError == "HTTP 400: bad slot")
            #expect(stored.deliveredAt == nil)
            #expect(try store.lastDeliveryError() == "HTTP 400: bad slot")
            #expect(try store.pendingEvents().map(\.event.id) == [c.id])
        }

        @Test func reopenKeepsEverything() throws {
            let dir = try RTTempDir()
            var ids: [UUID] = []
            do {
                let store = try StateStore(directory: dir.path)
                ids += try store.commit(rtObservation()).map(\.id)
                ids += try store.commit(rtObservation(imsi: RTValue.imsi2, iccid: RTValue.iccid2)).map(\.id)
                try store.markDelivered(ids[0])
                try store.markAttemptFailed(ids[1], error: "HTTP 502")
            }
            #expect(ids.count == 2)
            let store = try StateStore(directory: dir.path)
            let events = try store.events()
            #expect(events.map(\.event.id) == ids.reversed())
            #expect(events.map(\.state) == [.pending, .delivered])
            #expect(events.first?.attempts == 1)
            #expect(events.first?.lastError == "HTTP 502")
            #expect(try store.outboxDepth() == 1)
            #expect(try store.lastDeliveryError() == "HTTP 502")
            let record = try #require(try store.slotRecords().first)
            #expect(record.identity == IdentitySnapshot(imei: RTValue.imeiA, imsi: RTValue.imsi2, iccid: RTValue.iccid2))
            #expect(record.sequence == 2)
            // The record is remembered: the same read produces nothing; the next change continues the sequence.
            #expect(try store.commit(rtObservation(imsi: RTValue.imsi2, iccid: RTValue.iccid2)).isEmpty)
            let back = try store.commit(rtObservation())
            #expect(back.map(\.sequence) == [3])
        }

        @Test func corruptDatabaseIsMovedAside() throws {
            let dir = try RTTempDir()
            do {
                let store = try StateStore(directory: dir.path)
                try store.commit(rtObservation())
            }
            // Garbage over the database (and no WAL to recover from).
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: dir.file("state.db" + suffix)) }
            var garbage = [UInt8](repeating: 0, count: 8192)
            for i in garbage.indices { garbage[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
            try Data(garbage).write(to: URL(fileURLWithPath: dir.file("state.db")))

            var reports: [String] = []
            let store = try StateStore(directory: dir.path, onIncident: { reports.append($0.message) })
            #expect(reports.count == 1)
            let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            let aside = files.filter { $0.hasPrefix("state.db.corrupt-") && !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") }
            #expect(aside.count == 1)
            if let name = aside.first {
                #expect(reports.first?.contains(name) == true)
                #expect(FileManager.default.contents(atPath: dir.file(name)) == Data(garbage))
            }
            // The new store is empty and works.
            #expect(try store.events().isEmpty)
            #expect(try store.commit(rtObservation()).map(\.type) == [.enrolled])
            #expect(try store.outboxDepth() == 1)
        }

        @Test func healthyDatabaseIsNotReportedCorrupt() throws {
            let dir = try RTTempDir()
            do { _ = try StateStore(directory: dir.path) }
            var reports: [String] = []
            _ = try StateStore(directory: dir.path, onIncident: { reports.append($0.message) })
            #expect(reports.isEmpty)
            let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(!files.contains { $0.contains("corrupt") })
        }

        @Test func readOnlySeesWhatTheWriterCommitted() throws {
            let dir = try RTTempDir()
            #expect(throws: StoreError.self) { try StateStore(readOnlyDirectory: dir.path) }
            let writer = try StateStore(directory: dir.path)
            let first = try writer.commit(rtObservation())
            let reader = try StateStore(readOnlyDirectory: dir.path)
            #expect(try reader.events().map(\.event.id) == first.map(\.id))
            #expect(try reader.outboxDepth() == 1)
            // Later commits and outbox changes are seen by the open reader.
            let second = try writer.commit(rtObservation(imsi: RTValue.imsi2, iccid: RTValue.iccid2))
            try writer.markDelivered(first[0].id)
            #expect(try reader.events().map(\.event.id) == (second + first).map(\.id))
            #expect(try reader.outboxDepth() == 1)
            #expect(try reader.slotRecords().first?.sequence == 2)
        }
    }

    // MARK: Payload

    @Suite struct Payload {
        static let id = UUID(uuidString: "3F2504E0-4F89-41D3-9A0C-0305E82C3301")!

        func json(_ event: IdentityEvent, deviceSerial: String?) throws -> [String: Any] {
            let bytes = try EnrollmentPayload.encode(event, deviceSerial: deviceSerial)
            return try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        }

        @Test func simChangedPayload() throws {
            let event = IdentityEvent(
                id: Self.id, type: .simChanged, slot: RTValue.slotA, sequence: 2,
                occurredAt: Date(timeIntervalSince1970: 1_750_000_000.25), severity: .warning,
                module: ModuleInfo(usbSerial: "SER-1", manufacturer: "Quectel", model: "EG25", revision: "R07"),
                identity: IdentitySnapshot(imei: RTValue.imeiA, imsi: RTValue.imsi2, iccid: RTValue.iccid2),
                previous: IdentitySnapshot(imei: RTValue.imeiA, imsi: RTValue.imsi1, iccid: RTValue.iccid1),
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
                    "slot": RTValue.slotA, "usb_serial": "SER-1", "manufacturer": "Quectel", "model": "EG25",
                    "revision": "R07", "source": "at",
                ])
            #expect(
                o["identity"] as? [String: String] == [
                    "imei": RTValue.imeiA, "imsi": RTValue.imsi2, "iccid": RTValue.iccid2,
                ])
            #expect(
                o["previous"] as? [String: String] == [
                    "imei": RTValue.imeiA, "imsi": RTValue.imsi1, "iccid": RTValue.iccid1,
                ])
            // API 0.2.0: the refs of the identity's values under the process's pseudonymizer (the daemon's key).
            let p = Redaction.pseudonymizer
            #expect(
                o["references"] as? [String: String] == [
                    "imei": p.reference(kind: "imei", value: RTValue.imeiA),
                    "imsi": p.reference(kind: "imsi", value: RTValue.imsi2),
                    "iccid": p.reference(kind: "iccid", value: RTValue.iccid2),
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
                id: Self.id, type: .enrolled, slot: RTValue.slotA, sequence: 1,
                occurredAt: Date(timeIntervalSince1970: 1_750_000_000), severity: .info,
                module: ModuleInfo(usbSerial: "SER-1", manufacturer: "Quectel", source: .modemmanager),
                identity: IdentitySnapshot(imei: RTValue.imeiA, imsi: RTValue.imsi1, iccid: RTValue.iccid1))
            let o = try json(event, deviceSerial: nil)
            #expect(
                o["module"] as? [String: String] == [
                    "slot": RTValue.slotA, "usb_serial": "SER-1", "manufacturer": "Quectel", "source": "modemmanager",
                ])
        }

        @Test func typeSpecificFields() throws {
            var event = IdentityEvent(
                id: Self.id, type: .imeiChanged, slot: RTValue.slotA, sequence: 3,
                occurredAt: Date(timeIntervalSince1970: 1_750_000_000), severity: .critical,
                module: ModuleInfo(usbSerial: "SER-1"), identity: IdentitySnapshot(imei: RTValue.imeiB),
                previous: IdentitySnapshot(imei: RTValue.imeiA), usbSerialChanged: false)
            var o = try json(event, deviceSerial: nil)
            #expect(o["usb_serial_changed"] as? Bool == false)
            #expect(o["other_slots"] == nil)
            #expect((o["previous"] as? [String: String]) == ["imei": RTValue.imeiA])
            event.type = .duplicateIMEI
            event.usbSerialChanged = nil
            event.previous = nil
            event.otherSlots = [RTValue.slotB]
            o = try json(event, deviceSerial: nil)
            #expect(o["usb_serial_changed"] == nil)
            #expect(o["other_slots"] as? [String] == [RTValue.slotB])
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
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let committed = try #require(try store.commit(rtObservation()).first)
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
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(201))
            defer { receiver.stop() }
            let event = try #require(try store.commit(rtObservation()).first)

            let running = try RTRunning(store: store, url: "http://\(receiver.url)")
            let delivered = try await rtEventually { try store.outboxDepth() == 0 }
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
            #expect((body["identity"] as? [String: Any])?["imei"] as? String == RTValue.imeiA)
            #expect((body["device"] as? [String: Any])?["serial"] as? String == "GW-TEST-1")
            #expect(running.outcomes.all.map(\.1) == [.delivered(status: 201)])
        }

        @Test func conflictCountsAsDelivered() async throws {
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(409))
            defer { receiver.stop() }
            let event = try #require(try store.commit(rtObservation()).first)

            // No token configured: no Authorization header.
            let running = try RTRunning(store: store, url: "http://\(receiver.url)", token: nil)
            let delivered = try await rtEventually { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            #expect(try store.events().first?.state == .delivered)
            #expect(receiver.idempotencyKeyCounts == [rtKey(event.id): 1])
            #expect(receiver.requests.first.map { $0.headers["authorization"] == nil } == true)
            #expect(running.outcomes.all.map(\.1) == [.delivered(status: 409)])
        }

        @Test func badRequestIsRejectedForGoodAndTheNextEventStillGoes() async throws {
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(400))
            defer { receiver.stop() }
            let first = try #require(try store.commit(rtObservation()).first)

            let running = try RTRunning(store: store, url: "http://\(receiver.url)")
            let rejected = try await rtEventually { try store.events().first?.state == .rejected }
            #expect(rejected)

            // The backend heals; a new event is committed and the reporter woken.
            receiver.setBehaviour(.status(201))
            let second = try #require(try store.commit(rtObservation(imsi: RTValue.imsi2, iccid: RTValue.iccid2)).first)
            running.reporter.wake()
            let delivered = try await rtEventually { try store.outboxDepth() == 0 }
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
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(503))
            defer { receiver.stop() }
            let first = try #require(try store.commit(rtObservation()).first)
            let second = try #require(
                try store.commit(rtObservation(slot: RTValue.slotB, usbSerial: "SER-2", imei: RTValue.imeiB)).first)

            let running = try RTRunning(store: store, url: "http://\(receiver.url)")
            let retried = await rtEventually { receiver.requests.count >= 3 }
            #expect(retried)
            // Oldest first: while the first fails, the second is not tried.
            #expect(Set(receiver.requests.map { $0.headers["idempotency-key"] }) == [rtKey(first.id)])
            let pending = try store.pendingEvents()
            #expect(pending.count == 2)
            #expect((pending.first?.attempts ?? 0) >= 2)
            #expect(pending.first?.lastError == "HTTP 503")
            #expect(try store.lastDeliveryError() == "HTTP 503")

            receiver.setBehaviour(.status(201))
            let delivered = try await rtEventually { try store.outboxDepth() == 0 }
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
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .hang)
            defer { receiver.stop() }
            let event = try #require(try store.commit(rtObservation()).first)

            let clock = ContinuousClock()
            let start = clock.now
            let running = try RTRunning(store: store, url: "http://\(receiver.url)", requestTimeout: .seconds(1))
            let failed = try await rtEventually { (try store.pendingEvents().first?.attempts ?? 0) >= 1 }
            let firstFailure = clock.now - start
            #expect(failed)
            #expect(firstFailure >= .milliseconds(900))  // the timeout, not an immediate failure
            #expect(try store.outboxDepth() == 1)
            // The outcome is reported just after the store records the attempt: wait for it too.
            #expect(await rtEventually { running.outcomes.retryReasons.count >= 1 })

            receiver.setBehaviour(.status(201))
            let delivered = try await rtEventually { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            #expect(receiver.acceptedEventIDs == [rtKey(event.id)])
            #expect(receiver.requests.filter { $0.headers["x-accepted"] == "1" }.count == 1)
            #expect((try store.events().first?.attempts ?? 0) >= 2)
        }

        /// Stopping the reporter during a request ends it promptly and does not count as a failed attempt.
        @Test func stopDuringARequestIsNotAFailure() async throws {
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .hang)
            defer { receiver.stop() }
            try store.commit(rtObservation())

            let running = try RTRunning(store: store, url: "http://\(receiver.url)", requestTimeout: .seconds(10))
            let sent = await rtEventually { receiver.requests.count == 1 }
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
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(201))
            defer { receiver.stop() }
            try store.commit(rtObservation())

            let running = try RTRunning(
                store: store, url: "http://\(receiver.url)", requestTimeout: .milliseconds(900))
            let delivered = try await rtEventually { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            #expect(try store.events().first?.attempts == 1)
            #expect(running.outcomes.retryReasons.isEmpty)
        }

        @Test func connectionRefusedIsRetried() async throws {
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver()
            let url = "http://\(receiver.url)"
            receiver.stop()  // nothing listens on the port any more
            try store.commit(rtObservation())

            let running = try RTRunning(store: store, url: url)
            let failed = try await rtEventually { (try store.pendingEvents().first?.attempts ?? 0) >= 2 }
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
            let dir = try RTTempDir()
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
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let running = try RTRunning(store: store, url: url)
            await running.stop()
        }
    }

    // MARK: TLS and mTLS

    @Suite struct TLS {
        @Test func tlsWithTheCAFileDelivers() async throws {
            let certs = try RTCertificates()
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(
                tls: .init(certificateFile: certs.serverCert, keyFile: certs.serverKey), behaviour: .status(201))
            defer { receiver.stop() }
            let event = try #require(try store.commit(rtObservation()).first)

            let running = try RTRunning(store: store, url: "https://\(receiver.url)", caFile: certs.caCert)
            let delivered = try await rtEventually { try store.outboxDepth() == 0 }
            await running.stop()

            #expect(delivered)
            #expect(receiver.acceptedEventIDs == [rtKey(event.id)])
            #expect(receiver.requests.first?.headers["authorization"] == "Bearer test-token")
            #expect(receiver.handshakeFailures == 0)
        }

        @Test func tlsWithoutTheCAFileFails() async throws {
            let certs = try RTCertificates()
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(
                tls: .init(certificateFile: certs.serverCert, keyFile: certs.serverKey), behaviour: .status(201))
            defer { receiver.stop() }
            try store.commit(rtObservation())

            let running = try RTRunning(store: store, url: "https://\(receiver.url)", backoffBase: .seconds(5))
            let failed = try await rtEventually { (try store.pendingEvents().first?.attempts ?? 0) >= 1 }
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
            #expect(await rtEventually { receiver.handshakeFailures >= 1 })
        }

        @Test func mutualTLS() async throws {
            let certs = try RTCertificates()
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(
                tls: .init(certificateFile: certs.serverCert, keyFile: certs.serverKey, clientCAFile: certs.caCert),
                behaviour: .status(201))
            defer { receiver.stop() }
            let event = try #require(try store.commit(rtObservation()).first)

            // Without a client certificate: the backend ends the handshake with certificate_required, which is a
            // refusal of our credentials (as a 401/403), not a network failure; nothing is accepted.
            let without = try RTRunning(
                store: store, url: "https://\(receiver.url)", caFile: certs.caCert, backoffBase: .seconds(5))
            let failed = try await rtEventually { (try store.pendingEvents().first?.attempts ?? 0) >= 1 }
            let counted = await rtEventually { receiver.handshakeFailures >= 1 }
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
            let delivered = try await rtEventually { try store.outboxDepth() == 0 }
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
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(
                tls: .init(certificateFile: certs.serverCert, keyFile: certs.serverKey, clientCAFile: certs.caCert),
                behaviour: .status(201))
            defer { receiver.stop() }
            try store.commit(rtObservation())

            let running = try RTRunning(
                store: store, url: "https://\(receiver.url)", caFile: certs.caCert,
                clientCertificate: foreign.clientCert, clientKey: foreign.clientKey, backoffBase: .seconds(5))
            let refused = await rtEventually { !running.outcomes.all.isEmpty }
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
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            try store.commit(rtObservation())
            let server = try RTOpenSSLServer(
                certificate: certs.serverCert, key: certs.serverKey, clientCA: certs.caCert,
                arguments: ["-tls1_2"])
            defer { server.stop() }

            let running = try RTRunning(
                store: store, url: "https://127.0.0.1:\(server.port)", caFile: certs.caCert,
                clientCertificate: presentForeign ? foreign.clientCert : nil,
                clientKey: presentForeign ? foreign.clientKey : nil, backoffBase: .seconds(5))
            let answered = await rtEventually(within: .seconds(10)) { !running.outcomes.all.isEmpty }
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

// MARK: - Damaged and lost state

/// How a test damages a real state database.
enum RTDamage: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// Cut after the last page holding the slot and event tables' rows: SQLite sees missing pages.
    case truncated
    /// The first 100 bytes (SQLite's header) overwritten: "file is not a database".
    case headerOverwritten
    /// state.db replaced by a directory while the write-ahead log survives (the daemon was killed).
    case directory

    var testDescription: String { rawValue }

    /// Damages the closed database `db` (for `.directory`: `walCopy` is the WAL as a kill -9 left it).
    func apply(to db: String, walCopy: String?) throws {
        switch self {
        case .truncated:
            // Everything checkpointed into the file (GRDB keeps an empty WAL file, persistent WAL mode).
            let wal = (try? FileManager.default.attributesOfItem(atPath: db + "-wal")[.size] as? Int) ?? 0
            #expect(wal == 0, "a WAL of \(wal) bytes: the damage would not hit the data")
            // Keep every page holding a slot record or an event (their rows: 3 and 11 columns), cut what follows.
            let pageSize = 4096
            let keep = try #require(
                SQLiteSalvage.read(databasePath: db, walPath: db + "-wal").rows
                    .filter { $0.values.count == 3 || $0.values.count == 11 }
                    .flatMap { [$0.page] + $0.overflowPages }.max())
            let size = try #require(try FileManager.default.attributesOfItem(atPath: db)[.size] as? Int)
            #expect(keep * pageSize < size, "nothing after the tables to cut")
            #expect(truncate(db, off_t(keep * pageSize)) == 0)
        case .headerOverwritten:
            let handle = try #require(FileHandle(forWritingAtPath: db))
            try handle.write(contentsOf: Data((0..<100).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }))
            try handle.close()
        case .directory:
            let copy = try #require(walCopy)
            try FileManager.default.removeItem(atPath: db)
            try? FileManager.default.removeItem(atPath: db + "-shm")
            try? FileManager.default.removeItem(atPath: db + "-wal")
            try FileManager.default.createDirectory(atPath: db, withIntermediateDirectories: false)
            try FileManager.default.moveItem(atPath: copy, toPath: db + "-wal")
        }
    }
}

extension ReporterTests {
    /// The store's own salvage of a damaged database (``SQLiteSalvage``) and its detection of a lost one
    /// (``StateMarker``), on real SQLite files.
    @Suite struct Damage {
        /// Two slots and five events: delivered, rejected, and three waiting (one with a payload long enough to
        /// need overflow pages). Returns the history oldest first.
        static func populate(_ store: StateStore) throws -> [StoredEvent] {
            let a = try store.commit(rtObservation(slot: RTValue.slotA))
            var long = rtObservation(slot: RTValue.slotB, usbSerial: "SER-2", imei: RTValue.imeiB)
            long.report.model = String(repeating: "M", count: 6000)  // more than a page: an overflow chain
            let b = try store.commit(long)
            let c = try store.commit(rtObservation(slot: RTValue.slotA, imsi: RTValue.imsi2, iccid: RTValue.iccid2))
            let d = try store.commit(rtObservation(slot: RTValue.slotA))
            let e = try store.commit(
                rtObservation(
                    slot: RTValue.slotB, usbSerial: "SER-2", imei: RTValue.imeiB, imsi: RTValue.imsi2,
                    iccid: RTValue.iccid2))
            let all = a + b + c + d + e
            #expect(all.map(\.type) == [.enrolled, .enrolled, .simChanged, .simChanged, .simChanged])
            try store.markDelivered(all[0].id)
            try store.markRejected(all[1].id, reason: "HTTP 422: bad")
            try store.markAttemptFailed(all[2].id, error: "HTTP 503")
            // The live view, written at every read, grows after the events: what a truncation cuts first.
            for i in 0..<80 {
                try store.recordRead(
                    slot: "platform-slot-\(i)", port: "/dev/ttyUSB\(i)", valid: false,
                    problems: Array(repeating: "no_response", count: 20), at: Date())
            }
            return try store.events().reversed()
        }

        /// Populates a store in `dir`, closes it (or, for `.directory`, copies its WAL first, as a kill -9 would
        /// leave it) and damages it.
        fileprivate static func populateAndDamage(_ dir: RTTempDir, _ damage: RTDamage) throws
            -> ([StoredEvent], [SlotRecord])
        {
            let db = dir.file("state.db")
            var walCopy: String?
            let events: [StoredEvent]
            let records: [SlotRecord]
            do {
                let store = try StateStore(directory: dir.path)
                events = try populate(store)
                records = try store.slotRecords()
                if damage == .directory {
                    walCopy = dir.file("wal-copy")
                    try FileManager.default.copyItem(atPath: db + "-wal", toPath: walCopy!)
                }
            }
            try damage.apply(to: db, walCopy: walCopy)
            return (events, records)
        }

        @Test(arguments: RTDamage.allCases)
        func damagedDatabaseIsSalvagedWithItsWaitingEvents(damage: RTDamage) throws {
            let dir = try RTTempDir()
            let (before, records) = try Self.populateAndDamage(dir, damage)
            var incidents: [StoreIncident] = []
            let store = try StateStore(directory: dir.path, onIncident: { incidents.append($0) })

            // One critical report with the counts; the damaged files kept aside.
            #expect(incidents.count == 1)
            let incident = try #require(incidents.first)
            #expect(incident.kind == .damaged)
            #expect(incident.eventsSalvaged == 5, "\(incident.message)")
            #expect(incident.pendingSalvaged == 3)
            #expect(incident.slotsSalvaged == 2)
            #expect(incident.eventsLost == 0)
            #expect(incident.message.contains("salvaged 5 event(s) (3 waiting"), "\(incident.message)")
            #expect(incident.message.contains("0 event(s) lost"))
            let kept = try #require(incident.keptAs)
            #expect(FileManager.default.fileExists(atPath: kept))
            for id in [RTValue.imeiA, RTValue.imeiB, RTValue.imsi1, RTValue.imsi2, RTValue.iccid1, RTValue.iccid2] {
                #expect(!incident.message.contains(id))
            }

            // Every row back, as it was: ids, sequences, positions, delivery states, attempts, payloads.
            let after = try store.events().reversed().map { $0 }
            #expect(after.map(\.event.id) == before.map(\.event.id))
            #expect(after.map(\.event.sequence) == before.map(\.event.sequence))
            #expect(after.map(\.position) == before.map(\.position))
            #expect(after.map(\.state) == before.map(\.state))
            #expect(after.map(\.attempts) == before.map(\.attempts))
            #expect(after.map(\.event) == before.map(\.event))
            #expect(try store.pendingEvents().map(\.event.id) == before.filter { $0.state == .pending }.map(\.event.id))
            #expect(try store.slotRecords() == records)

            // The modules are not enrolled again; the next change continues the slot's numbering and tells the
            // backend, once per slot.
            #expect(try store.commit(rtObservation(slot: RTValue.slotA)).isEmpty)
            let next = try store.commit(rtObservation(slot: RTValue.slotA, imsi: RTValue.imsi2, iccid: RTValue.iccid2))
            #expect(next.map(\.type) == [.simChanged])
            #expect(next.first?.sequence == 4)
            let loss = try #require(next.first?.stateLost)
            #expect(loss.reason == .databaseDamaged)
            #expect(loss.eventsSalvaged == 5)
            #expect(loss.eventsLost == 0)
            #expect(loss.lastSequence == 3)
            #expect(try store.pendingEvents().last?.position == 6)
            let again = try store.commit(rtObservation(slot: RTValue.slotA))
            #expect(again.first?.stateLost == nil)
            // The flag is stored with the event (and so reaches the payload even after a restart).
            let stored = try #require(try store.events().first { $0.event.id == next.first?.id }?.event.stateLost)
            #expect(stored.reason == loss.reason && stored.lastSequence == 3 && stored.eventsSalvaged == 5)
        }

        /// Truncated inside the event table: nothing of it is readable; the marker says how much was lost, and
        /// the numbering continues after the last known sequence.
        @Test func truncatedThroughTheEventsCountsThemLost() throws {
            let dir = try RTTempDir()
            do {
                let store = try StateStore(directory: dir.path)
                _ = try Self.populate(store)
            }
            #expect(truncate(dir.file("state.db"), 4096 + 2048) == 0)
            var incidents: [StoreIncident] = []
            let store = try StateStore(directory: dir.path, onIncident: { incidents.append($0) })
            let incident = try #require(incidents.first)
            #expect(incident.kind == .damaged)
            #expect(incident.eventsSalvaged == 0)
            #expect(incident.eventsLost == 5)
            let enrolled = try store.commit(rtObservation(slot: RTValue.slotA))
            #expect(enrolled.map(\.type) == [.enrolled])
            #expect(enrolled.first?.sequence == 4, "slot A's numbering continues after #3")
            #expect(enrolled.first?.stateLost?.lastSequence == 3)
            #expect(enrolled.first?.stateLost?.eventsLost == 5)
        }

        enum Loss: String, CaseIterable, Sendable { case zeroLength, missing }

        @Test(arguments: Loss.allCases)
        func emptiedOrMissingDatabaseIsAStateLoss(loss: Loss) throws {
            let dir = try RTTempDir()
            do {
                let store = try StateStore(directory: dir.path)
                _ = try Self.populate(store)
            }
            let db = dir.file("state.db")
            switch loss {
            case .zeroLength: #expect(truncate(db, 0) == 0)
            case .missing: try FileManager.default.removeItem(atPath: db)
            }
            var incidents: [StoreIncident] = []
            let store = try StateStore(directory: dir.path, onIncident: { incidents.append($0) })
            let incident = try #require(incidents.first)
            #expect(incident.kind == .lost)
            #expect(incident.reason == (loss == .zeroLength ? .databaseEmpty : .databaseMissing))
            #expect(incident.eventsLost == 5)
            #expect(incident.message.contains("lost"))
            #expect(try store.events().isEmpty)

            let a = try store.commit(rtObservation(slot: RTValue.slotA))
            #expect(a.map(\.type) == [.enrolled])
            #expect(a.first?.sequence == 4)
            #expect(a.first?.stateLost?.reason == incident.reason)
            #expect(a.first?.stateLost?.lastSequence == 3)
            let b = try store.commit(rtObservation(slot: RTValue.slotB, usbSerial: "SER-2", imei: RTValue.imeiB))
            #expect(b.first?.sequence == 3)
            #expect(b.first?.stateLost?.lastSequence == 2)
            #expect(try store.lastStateLoss()?.reason == incident.reason)

            // Reopened: no second incident, the loss is not announced again.
            var later: [StoreIncident] = []
            let reopened = try StateStore(directory: dir.path, onIncident: { later.append($0) })
            #expect(later.isEmpty)
            let c = try reopened.commit(rtObservation(slot: RTValue.slotA, imsi: RTValue.imsi2, iccid: RTValue.iccid2))
            #expect(c.first?.sequence == 5)
            #expect(c.first?.stateLost == nil)
        }

        /// A first start (no database, no marker) is not a loss; the marker then holds numbers, no identifiers.
        @Test func firstStartIsNotALossAndTheMarkerHoldsNoIdentifiers() throws {
            let dir = try RTTempDir()
            var incidents: [StoreIncident] = []
            let store = try StateStore(directory: dir.path, onIncident: { incidents.append($0) })
            #expect(incidents.isEmpty)
            let events = try Self.populate(store)
            let marker = try String(contentsOfFile: dir.file("state.marker"), encoding: .utf8)
            #expect(marker.contains("\"last_position\":5"), "\(marker)")
            #expect(marker.contains(RTValue.slotA))
            for id in [RTValue.imeiA, RTValue.imeiB, RTValue.imsi1, RTValue.imsi2, RTValue.iccid1, RTValue.iccid2] {
                #expect(!marker.contains(id))
            }
            #expect(events.first?.event.stateLost == nil)
        }

        /// The reader decodes SQLite's record formats as SQLite wrote them.
        @Test func salvageReadsEveryValueKind() throws {
            let dir = try RTTempDir()
            let path = dir.file("values.db")
            do {
                let queue = try DatabaseQueue(path: path)
                try queue.write { db in
                    try db.execute(sql: "CREATE TABLE t (a, b, c, d, e, f)")
                    try db.execute(
                        sql: "INSERT INTO t VALUES (NULL, -5, 1099511627776, 2.5, 'héllo', x'00ff')")
                    try db.execute(sql: "INSERT INTO t VALUES (0, 1, -129, -0.25, '', ?)", arguments: [
                        String(repeating: "x", count: 10000)
                    ])
                }
            }
            let rows = SQLiteSalvage.read(databasePath: path, walPath: path + "-wal").rows
                .filter { $0.values.count == 6 }
            #expect(rows.count == 2)
            #expect(
                rows.first?.values == [
                    .null, .integer(-5), .integer(1_099_511_627_776), .real(2.5), .text("héllo"), .blob([0, 255]),
                ])
            #expect(
                rows.last?.values == [
                    .integer(0), .integer(1), .integer(-129), .real(-0.25), .text(""),
                    .text(String(repeating: "x", count: 10000)),
                ])
        }

        /// A damaged file is untrusted input: random byte damage and cuts never crash the reader, and whatever it
        /// returns as an event is one of the events committed (never a half-parsed row).
        @Test func randomDamageNeverCrashesTheReader() throws {
            let dir = try RTTempDir()
            var committed: Set<UUID> = []
            do {
                let store = try StateStore(directory: dir.path)
                committed = Set(try Self.populate(store).map(\.event.id))
            }
            let original = try Data(contentsOf: URL(fileURLWithPath: dir.file("state.db")))
            var generator = SystemRandomNumberGenerator()
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            var recognised = 0
            for round in 0..<60 {
                var bytes = [UInt8](original)
                for _ in 0..<Int.random(in: 1...200, using: &generator) {
                    let at = Int.random(in: 0..<bytes.count, using: &generator)
                    bytes[at] = UInt8.random(in: 0...255, using: &generator)
                }
                if round % 3 == 0 { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))) }
                let path = dir.file("fuzz-\(round).db")
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                let rows = SQLiteSalvage.read(databasePath: path, walPath: path + "-wal").rows
                for row in rows where row.values.count == 11 {
                    // What the store would take: a payload that decodes and agrees with the row's id.
                    if let id = row.values[1].text.flatMap(UUID.init(uuidString:)),
                        let payload = row.values[6].text,
                        let event = try? decoder.decode(IdentityEvent.self, from: Data(payload.utf8)), event.id == id
                    {
                        recognised += 1
                        #expect(committed.contains(id), "an event that was never committed")
                    }
                }
                try FileManager.default.removeItem(atPath: path)
            }
            #expect(recognised > 0, "the check never ran")
        }

        /// The WAL is taken only up to its last valid commit: a frame whose checksum does not match ends it, so
        /// the transactions after it (and a half-written one) are not taken for data.
        @Test func walFramesAfterABadChecksumAreIgnored() throws {
            let dir = try RTTempDir()
            let db = dir.file("state.db")
            let copy = dir.file("wal-copy")
            do {
                let store = try StateStore(directory: dir.path)
                _ = try Self.populate(store)
                try FileManager.default.copyItem(atPath: db + "-wal", toPath: copy)
            }
            func live(_ wal: String) -> (events: Int, live: Int) {
                let rows = SQLiteSalvage.read(databasePath: dir.file("nothing"), walPath: wal).rows
                let events = Set(rows.filter { $0.values.count == 11 }.map(\.rowid)).count
                let live = Set(
                    rows.filter { $0.values.count == 6 }.compactMap { $0.values[0].text }
                        .filter { $0.hasPrefix("platform-slot-") }
                ).count
                return (events, live)
            }
            let intact = live(copy)
            #expect(intact.events == 5)
            #expect(intact.live == 80)
            // One byte of the last frame's page changed: the last commit (the 80th live row) is no longer valid.
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: copy)))
            bytes[bytes.count - 100] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: copy))
            let tampered = live(copy)
            #expect(tampered.events == 5)
            #expect(tampered.live < 80, "frames after a bad checksum were taken")
        }

        @Test func requeuePutsARejectedEventBack() throws {
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let event = try #require(try store.commit(rtObservation()).first)
            #expect(try StateStore.requeue(directory: dir.path, id: event.id) == false, "not rejected")
            try store.markRejected(event.id, reason: "HTTP 400: bad")
            #expect(try StateStore.requeue(directory: dir.path, id: event.id))
            #expect(try store.pendingEvents().map(\.event.id) == [event.id])
            #expect(try StateStore.requeue(directory: dir.path, id: UUID()) == false)
        }
    }

    /// 401 and 403 say our credentials are refused, not that the event is wrong: it stays waiting, is retried
    /// with the backoff, and once the credentials are renewed (reload, as on SIGHUP) every waiting event goes,
    /// oldest first, with its original event id, without waiting out the backoff.
    @Suite struct Refused {
        @Test(arguments: [401, 403])
        func refusedCredentialsKeepEventsWaitingUntilRenewed(status: Int) async throws {
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(status))
            defer { receiver.stop() }
            let first = try #require(try store.commit(rtObservation()).first)
            let second = try #require(
                try store.commit(rtObservation(slot: RTValue.slotB, usbSerial: "SER-2", imei: RTValue.imeiB)).first)

            // A long backoff: without the reload's interruption nothing more would happen within the test.
            let running = try RTRunning(
                store: store, url: "http://\(receiver.url)", token: "old-token", backoffBase: .milliseconds(100),
                backoffCap: .seconds(60))
            let retried = await rtEventually { receiver.requests.count >= 3 }
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
            let delivered = try await rtEventually(within: .seconds(5)) { try store.outboxDepth() == 0 }
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
            let dir = try RTTempDir()
            let store = try StateStore(directory: dir.path)
            let receiver = try EnrollmentReceiver(behaviour: .status(404))
            defer { receiver.stop() }
            let event = try #require(try store.commit(rtObservation()).first)
            let running = try RTRunning(store: store, url: "http://\(receiver.url)")
            let retried = await rtEventually { receiver.requests.count >= 2 }
            receiver.setBehaviour(.status(201))
            let delivered = try await rtEventually { try store.outboxDepth() == 0 }
            await running.stop()
            #expect(retried)
            #expect(delivered)
            #expect(receiver.acceptedEventIDs == [rtKey(event.id)])
        }
    }
}
