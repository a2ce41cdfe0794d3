import CellprovCore
import CellprovRegistryAlerts
import CellprovRegistryCore
import CellprovTestKit
import CellprovTestSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

/// Captures log records (message, level, metadata) for the assertions on MESSAGE_IDs and leaks.
final class CapturedLogs: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
        /// The message and metadata but the MESSAGE_ID (32 hex digits, which may hold long digit runs).
        var text: String {
            message + " "
                + metadata.filter { $0.key != "MESSAGE_ID" }.map { "\($0.key)=\($0.value)" }.sorted()
                .joined(separator: " ")
        }
    }

    let records = NIOLockedValueBox<[Record]>([])

    var all: [Record] { records.withLockedValue { $0 } }

    func logger() -> Logger {
        var logger = Logger(label: "cellprov.registry.alerts.test") { _ in Handler(sink: self) }
        logger.logLevel = .debug
        return logger
    }

    struct Handler: LogHandler {
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var merged: [String: String] = [:]
            for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
                merged[key] = "\(value)"
            }
            let record = Record(level: event.level, message: "\(event.message)", metadata: merged)
            sink.records.withLockedValue { $0.append(record) }
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(_ timeout: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
    await pollUntil(within: timeout, condition)
}

@Suite(.serialized) struct AlertsTests {
    static let imei = "352099001761481"
    static let imsi = "262011234567890"
    static let iccid = "89492000000000000018"

    static func flag(
        _ id: Int64, kind: FlagKind = .imeiOnTwoUnits, severity: EventSeverity = .critical
    ) -> RegistryFlag {
        RegistryFlag(
            id: id,
            flag: NewFlag(
                kind: kind, severity: severity, serial: "GW-ALPHA", slot: "usb-1",
                summary: "IMEI also enrolled by GW-BRAVO",
                evidence: FlagEvidence(
                    imei: imei, imsi: imsi, iccid: iccid, expectedIMEI: "3520990017", otherSerials: ["GW-BRAVO"],
                    eventIDs: ["e1"], note: "seen with \(imsi)"),
                dedupeKey: "\(kind.rawValue):\(id)"),
            raisedAt: Date(timeIntervalSince1970: 1_790_000_000))
    }

    /// No full identifier, and no run of 9 or more digits (the masked forms hold at most 8: a TAC). A keyed
    /// reference (`ref ` + 10 hex digits) is left out of the run check: under a random key, all ten of its hex
    /// digits are decimal about once in a hundred references, which is not a leak.
    static func expectNoIdentifierDigits(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for value in [imei, imsi, iccid, "3520990017"] {
            #expect(!text.contains(value), "identifier in \(text)", sourceLocation: sourceLocation)
        }
        let withoutReferences = text.replacing(/ref [0-9a-f]{10}/, with: "ref -")
        #expect(!withoutReferences.contains(/[0-9]{9}/), "digit run in \(text)", sourceLocation: sourceLocation)
    }

    @Test func backoffDoublesUpToTheCapWithJitter() {
        let initial = Duration.seconds(2)
        let maximum = Duration.seconds(300)
        #expect(WebhookAlerter.backoff(attempt: 1, initial: initial, maximum: maximum, jitter: 1) == .seconds(2))
        #expect(WebhookAlerter.backoff(attempt: 1, initial: initial, maximum: maximum, jitter: 0) == .seconds(1))
        #expect(WebhookAlerter.backoff(attempt: 2, initial: initial, maximum: maximum, jitter: 1) == .seconds(4))
        #expect(WebhookAlerter.backoff(attempt: 4, initial: initial, maximum: maximum, jitter: 1) == .seconds(16))
        #expect(WebhookAlerter.backoff(attempt: 9, initial: initial, maximum: maximum, jitter: 1) == .seconds(300))
        #expect(WebhookAlerter.backoff(attempt: 60, initial: initial, maximum: maximum, jitter: 0) == .seconds(150))
        #expect(WebhookAlerter.backoff(attempt: 3, initial: initial, maximum: maximum, jitter: 0.5) == .seconds(6))
    }

    @Test func retriesWithBackoffUntilTheWebhookRecovers() async throws {
        let receiver = try EnrollmentReceiver(behaviour: .status(503))
        defer { receiver.stop() }
        let logs = CapturedLogs()
        let alerter = WebhookAlerter(
            configuration: WebhookConfiguration(
                url: "http://\(receiver.url)/hooks/cellprov", headers: [("Authorization", "Bearer hook-secret")],
                initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(400)),
            logger: logs.logger())
        let worker = Task { await alerter.run() }
        defer { worker.cancel() }

        let start = ContinuousClock.now
        alerter.enqueue([Self.flag(42)])
        #expect(await eventually { receiver.requests.count >= 3 })
        receiver.setBehaviour(.status(201))
        #expect(await eventually { alerter.statistics.delivered == 1 })
        let elapsed = ContinuousClock.now - start

        let requests = receiver.requests
        let failures = requests.count - 1
        #expect(failures >= 3)
        #expect(requests.dropLast().allSatisfy { $0.status == 503 })
        #expect(requests.last?.status == 201)
        // Each wait is at least half its nominal backoff: 50 + 100 + 200 ms for the first three failures.
        #expect(elapsed >= .milliseconds(350))
        #expect(alerter.statistics.retries == failures)
        #expect(alerter.statistics.givenUp == 0)

        // One body, sent identically each time: the flag, its identifiers masked.
        #expect(Set(requests.map(\.body)).count == 1)
        let request = try #require(requests.last)
        #expect(request.method == "POST")
        #expect(request.path == "/hooks/cellprov")
        #expect(request.headers["content-type"] == "application/json")
        #expect(request.headers["authorization"] == "Bearer hook-secret")
        let json = try #require(request.json)
        #expect(json["id"] as? Int == 42)
        #expect(json["kind"] as? String == "imei_on_two_units")
        #expect(json["severity"] as? String == "critical")
        #expect(json["serial"] as? String == "GW-ALPHA")
        #expect(json["summary"] as? String == "IMEI also enrolled by GW-BRAVO")
        #expect(json["raised_at"] as? String == "2026-09-21T14:13:20Z")
        #expect(json["other_serials"] as? [String] == ["GW-BRAVO"])
        let identifiers = try #require(json["identifiers"] as? [String: String])
        let imei = try #require(IMEI.validate(Self.imei).value)
        #expect(identifiers["imei"] == imei.description)
        #expect(identifiers["imei"]?.hasPrefix("IMEI(TAC 35209900, ref ") == true)
        #expect(identifiers["imsi"]?.hasPrefix("IMSI(262-01, ref ") == true)
        #expect(identifiers["iccid"]?.hasPrefix("ICCID(894920, ref ") == true)
        #expect(identifiers["expected_imei"]?.hasPrefix("IMEI(ref ") == true)
        #expect(json["note"] as? String == "seen with \(Redaction.placeholder)")
        Self.expectNoIdentifierDigits(String(decoding: request.body, as: UTF8.self))

        // Logs: a retry line per failure and one delivery, with their MESSAGE_IDs, no identifiers, no secret.
        let records = logs.all
        let retrying = records.filter { $0.metadata["MESSAGE_ID"] == AlertMessageID.alertRetrying.id }
        #expect(retrying.count == failures)
        #expect(retrying.allSatisfy { $0.metadata["reason"] == "HTTP 503" })
        #expect(records.count { $0.metadata["MESSAGE_ID"] == AlertMessageID.alertDelivered.id } == 1)
        for record in records {
            Self.expectNoIdentifierDigits(record.text)
            #expect(!record.text.contains("hook-secret"))
        }
    }

    @Test func onlyCriticalFlagsAreSentAndFinalRefusalsAreNotRetried() async throws {
        let receiver = try EnrollmentReceiver(behaviour: .status(400))
        defer { receiver.stop() }
        let logs = CapturedLogs()
        let alerter = WebhookAlerter(
            configuration: WebhookConfiguration(url: "http://\(receiver.url)/", initialBackoff: .milliseconds(10)),
            logger: logs.logger())
        alerter.enqueue([Self.flag(1, kind: .unitSilent, severity: .warning), Self.flag(2, severity: .info)])
        #expect(alerter.statistics.queued == 0)
        let worker = Task { await alerter.run() }
        defer { worker.cancel() }
        alerter.enqueue([Self.flag(3)])
        #expect(await eventually { alerter.statistics.givenUp == 1 })
        try await Task.sleep(for: .milliseconds(100))
        #expect(receiver.requests.count == 1)
        #expect(alerter.statistics.retries == 0)
        let failedLogged = logs.all.contains {
            $0.metadata["MESSAGE_ID"] == RegistryMessageID.alertFailed.id && $0.level == .error
        }
        #expect(failedLogged)
    }

    @Test func givesUpAfterMaxAttemptsAndHonoursConnectionFailures() async throws {
        // A port nobody listens on: connection refused, retried, given up after three attempts.
        let closed = try EnrollmentReceiver()
        let url = "http://\(closed.url)/"
        closed.stop()
        let logs = CapturedLogs()
        let alerter = WebhookAlerter(
            configuration: WebhookConfiguration(
                url: url, maxAttempts: 3, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(40),
                requestTimeout: .milliseconds(500)),
            logger: logs.logger())
        let worker = Task { await alerter.run() }
        defer { worker.cancel() }
        alerter.enqueue([Self.flag(7)])
        #expect(await eventually { alerter.statistics.givenUp == 1 })
        #expect(alerter.statistics.retries == 2)
        for record in logs.all { Self.expectNoIdentifierDigits(record.text) }
    }

    @Test func boundedQueueDropsTheOldestAndNeverBlocks() async throws {
        let receiver = try EnrollmentReceiver(behaviour: .status(204))
        defer { receiver.stop() }
        let logs = CapturedLogs()
        let alerter = WebhookAlerter(
            configuration: WebhookConfiguration(url: "http://\(receiver.url)/", queueCapacity: 3),
            logger: logs.logger())
        // The webhook "down": no worker yet. Enqueueing 10 000 alerts returns at once.
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for id in 1...10_000 { alerter.enqueue([Self.flag(Int64(id))]) }
        }
        #expect(elapsed < .seconds(1))
        #expect(alerter.statistics.queued == 3)
        #expect(alerter.statistics.droppedOverflow == 9_997)

        let worker = Task { await alerter.run() }
        defer { worker.cancel() }
        #expect(await eventually { alerter.statistics.delivered == 3 })
        let ids = receiver.requests.compactMap { $0.json?["id"] as? Int }
        #expect(ids == [9_998, 9_999, 10_000])
        // One counted warning for the whole overflow, not one per alert.
        let overflow = logs.all.filter { $0.metadata["MESSAGE_ID"] == AlertMessageID.alertQueueOverflow.id }
        #expect(overflow.count == 1)
        #expect(overflow.first?.metadata["dropped"] == "9997")
    }

    // MARK: unit_silent

    @Test func silenceMonitorRaisesUnitSilentThroughTheStore() async throws {
        try await withStore(.sqlite) { store, _ in
            let day: TimeInterval = 86_400
            let now = t0.addingTimeInterval(30 * day)
            try await store.field(event(imei: TestID.imei(1), iccid: TestID.iccid(1)), "GW-QUIET", at: t0)
            try await store.field(
                event(imei: TestID.imei(2), iccid: TestID.iccid(2), at: now), "GW-BUSY",
                at: now.addingTimeInterval(-day))
            try await store.field(event(imei: TestID.imei(3), iccid: TestID.iccid(3)), "GW-LOST", at: t0)
            #expect(try await store.markLost(serial: "GW-LOST", by: "ops", note: nil, at: t0))

            let logs = CapturedLogs()
            let forwarded = NIOLockedValueBox<[RegistryFlag]>([])
            let monitor = SilenceMonitor(
                store: store, threshold: .seconds(7 * 86_400), logger: logs.logger(),
                onRaised: { flags in forwarded.withLockedValue { $0 += flags } })
            let raised = try await monitor.check(now: now)
            #expect(raised.map(\.flag.serial) == ["GW-QUIET"])
            let flag = try #require(raised.first)
            #expect(flag.flag.kind == .unitSilent)
            #expect(flag.flag.severity == .warning)
            #expect(flag.flag.summary == "no event from GW-QUIET for more than 7 days")
            #expect(flag.flag.dedupeKey == "unit_silent:GW-QUIET")
            #expect(forwarded.withLockedValue { $0.map(\.id) } == [flag.id])
            #expect(
                logs.all.contains {
                    $0.metadata["MESSAGE_ID"] == RegistryMessageID.flagRaised(.unitSilent).id
                        && $0.metadata["count"] == "1"
                })

            // Idempotent while the flag is open; raised again once resolved and still silent.
            #expect(try await monitor.check(now: now.addingTimeInterval(3600)).isEmpty)
            #expect(try await store.flags(openOnly: true, limit: 100).count { $0.flag.kind == .unitSilent } == 1)
            #expect(try await store.resolveFlag(id: flag.id, by: "ops", note: "checked", at: now))
            let again = try await monitor.check(now: now.addingTimeInterval(7200))
            #expect(again.map(\.flag.serial) == ["GW-QUIET"])
            #expect(again.first?.id != flag.id)
        }
    }

    @Test func silenceMonitorRunLoopsAndSurvivesAFailingStore() async throws {
        try await withStore(.sqlite) { store, _ in
            try await store.field(event(imei: TestID.imei(4), iccid: TestID.iccid(4)), "GW-OLD", at: t0)
            let logs = CapturedLogs()
            let monitor = SilenceMonitor(
                store: store, threshold: .seconds(86_400), interval: .milliseconds(50), logger: logs.logger())
            let task = Task { await monitor.run() }
            #expect(await eventually { logs.all.contains { $0.metadata["kind"] == "unit_silent" } })
            // Closing the store under the monitor: each check fails, is logged, and the loop goes on.
            await store.close()
            #expect(
                await eventually {
                    logs.all.count { $0.metadata["MESSAGE_ID"] == AlertMessageID.silenceCheckFailed.id } >= 2
                })
            task.cancel()
            for record in logs.all { Self.expectNoIdentifierDigits(record.text) }
        }
    }
}
