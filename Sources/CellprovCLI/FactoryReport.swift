import CellprovCore
import CellprovEnrollmentAPI
import CellprovReporter
import CellprovUdev
import FoundationEssentials
import Logging

/// `cellprov probe --device-serial SN --report URL`: the factory station's record of the unit as built, one
/// `manufactured` event per module whose identity was read complete and valid, posted to the registry
/// (docs/decisions.md, "Factory records and references").
struct FactoryReport {
    /// Where a probed port sits: the slot key cellprovd will use for the same module, and its USB serial.
    struct Placement: Equatable {
        var slot: String
        var usbSerial: String?
    }

    let serial: String
    let poster: EnrollmentPoster
    let logger: Logger

    /// The device serial as scanned: the registry's rule (``DeviceSerial/isValid(_:)``), so that a serial the
    /// station accepts is one the registry stores.
    static func validSerial(_ serial: String) -> Bool { DeviceSerial.isValid(serial) }

    /// Whether `url` may carry records (``BackendURL``): https, or plain http to a loopback host.
    static func acceptableURL(_ text: String) -> URL? {
        guard let url = URL(string: text), BackendURL.check(url) == .allowed else { return nil }
        return url
    }

    /// The slot key of each port as the daemon would key its module: the USB device's ID_PATH (or the PCI
    /// address of a WWAN module) when udev knows the port, else the port's path as given (what cellprovd uses
    /// for a static port). A factory record and the unit's later field events then name the same slot.
    static func placements(of ports: [String]) -> [String: Placement] {
        var known: [String: Placement] = [:]
        if let udev = try? Udev() {
            for device in udev.enumeratePorts() {
                let candidate = PortCandidate(device)
                known[candidate.devnode] = Placement(slot: candidate.slot, usbSerial: candidate.usbSerial)
            }
        }
        var out: [String: Placement] = [:]
        for port in ports {
            let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: port)).map {
                $0.hasPrefix("/") ? $0 : PathText.appending($0, to: PathText.deletingLastComponent(port))
            }
            let real = resolved.map(PathText.normalized) ?? port
            out[port] = known[port] ?? known[real] ?? Placement(slot: port, usbSerial: nil)
        }
        return out
    }

    /// The record for a valid report.
    func record(for report: IdentityReport, placement: Placement) -> EnrollmentRequest {
        EnrollmentRequest.manufactured(
            deviceSerial: serial,
            module: .init(
                slot: placement.slot, usbSerial: placement.usbSerial, manufacturer: report.manufacturer,
                model: report.model, revision: report.revision, source: ObservationSource.at.rawValue),
            identity: .init(IdentitySnapshot(report)),
            problems: report.problems.map(EnrollmentRequest.ProblemBody.init))
    }

    /// The result of a record the registry would refuse (``EnrollmentValidation``, the rules the registry holds
    /// every event to: a slot key or module string with control, bidirectional or zero-width characters, a value
    /// past its length): not sent, rejected (exit status 3), with the rule broken as the reason. nil for a record
    /// that may be sent.
    static func refusal(of record: EnrollmentRequest, at now: Date = Date()) -> PostResult? {
        guard let violation = EnrollmentValidation.violation(of: record, receivedAt: now) else { return nil }
        return PostResult(
            status: nil, outcome: .rejected, eventID: record.eventID, attempts: 0,
            reason: "not sent: \(violation)")
    }

    /// Posts the records of the valid reports, concurrently; the result per port index (none for a report not
    /// posted: an unusable port or an incomplete or invalid identity is never a factory record).
    func post(_ reports: [IdentityReport], placements: [String: Placement]) async -> [Int: PostResult] {
        await withTaskGroup(of: (Int, PostResult).self) { group in
            for (index, report) in reports.enumerated() where report.isValid {
                let placement = placements[report.port] ?? Placement(slot: report.port, usbSerial: nil)
                let record = record(for: report, placement: placement)
                if let refusal = Self.refusal(of: record) {
                    group.addTask { (index, refusal) }
                    continue
                }
                group.addTask { (index, await poster.post(record)) }
            }
            var results: [Int: PostResult] = [:]
            for await (index, result) in group {
                results[index] = result
                log(result, port: reports[index].port)
            }
            return results
        }
    }

    private func log(_ result: PostResult, port: String) {
        var meta: Logger.Metadata = [
            "port": "\(port)", "event_id": "\(result.eventID)", "outcome": "\(result.outcome.rawValue)",
            "attempts": "\(result.attempts)",
        ]
        if let status = result.status { meta["status"] = "\(status)" }
        if let reason = result.reason { meta["reason"] = "\(reason)" }
        switch result.outcome {
        case .stored: logger.info("manufactured record stored", metadata: meta)
        case .duplicate: logger.info("manufactured record already stored", metadata: meta)
        case .rejected: logger.error("registry refused the manufactured record", metadata: meta)
        case .failed: logger.error("manufactured record not delivered", metadata: meta)
        }
    }

    /// One line per port for the table output: what became of its record.
    static func summary(_ reports: [IdentityReport], _ results: [Int: PostResult]) -> String {
        var out = ""
        for (index, report) in reports.enumerated() {
            guard let result = results[index] else {
                let why = report.portUnusable ? "port unusable" : "identity incomplete or invalid"
                out += "report \(report.port): not reported (\(why))\n"
                continue
            }
            let status = result.status.map { "HTTP \($0)" } ?? (result.attempts == 0 ? "not sent" : "no answer")
            var line = "report \(report.port): \(result.outcome.rawValue) (\(status), event \(result.eventID)"
            if result.attempts > 1 { line += ", \(result.attempts) attempts" }
            line += ")"
            if !result.isSuccess, let reason = result.reason { line += ": \(reason)" }
            out += line + "\n"
        }
        return out
    }
}

/// A probe's JSON line with its report result: `IdentityRecord`'s keys plus `report` (null when the port's
/// record was not posted).
struct ReportedRecord: Encodable {
    var record: IdentityRecord
    var report: PostResult?

    enum CodingKeys: String, CodingKey { case report }

    func encode(to encoder: any Encoder) throws {
        try record.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(report, forKey: .report)
    }
}
