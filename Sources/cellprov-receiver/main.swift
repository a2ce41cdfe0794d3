import ArgumentParser
import CellprovCore
import CellprovTestKit
import Foundation

/// `cellprov-receiver`: a loopback enrollment endpoint for demos and for trying cellprovd without a backend.
/// Part of the test kit, not of the production CLI (which then carries no HTTP server: a smaller binary that
/// starts about 1 ms faster).
@main
struct ReceiverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cellprov-receiver",
        abstract: "Serve POST /v1/enrollments on 127.0.0.1 and print each event received (identifiers redacted).",
        discussion: "Prints the URL on its first line; runs until SIGINT/SIGTERM. For demos and tests, not production.")

    @Option(help: "TCP port on 127.0.0.1 (0: any free port).")
    var port: Int = 0

    @Option(help: "HTTP status to answer with (201, 409, 400, 503...).")
    var status: Int = 201

    @Option(help: "Share of requests (0 to 1) answered with --fail-status instead (soak tests).")
    var failFraction: Double = 0

    @Option(help: "Share of requests (0 to 1) never answered (soak tests).")
    var hangFraction: Double = 0

    @Option(help: "The status of the failed share.")
    var failStatus: Int = 503

    @Flag(help: "One JSON object per request (event_id, type, slot, sequence, status; status null when not answered).")
    var json = false

    func validate() throws {
        guard (0...1).contains(failFraction), (0...1).contains(hangFraction), failFraction + hangFraction <= 1 else {
            throw ValidationError("--fail-fraction and --hang-fraction are shares between 0 and 1, at most 1 together")
        }
    }

    func run() async throws {
        let faults = failFraction + hangFraction > 0
            ? EnrollmentReceiver.Faults(failFraction: failFraction, hangFraction: hangFraction, failStatus: failStatus)
            : nil
        let receiver = try EnrollmentReceiver(port: port, behaviour: .status(status), faults: faults)
        Self.emit("http://127.0.0.1:\(receiver.port)")
        let stop = SignalWaiter([SIGINT, SIGTERM])
        var seen = 0
        while !stop.fired {
            let requests = receiver.requests
            for r in requests.dropFirst(seen) { Self.emit(json ? Self.record(r) : Self.describe(r)) }
            seen = requests.count
            try? await Task.sleep(for: .milliseconds(50))
        }
        receiver.stop()
    }

    /// Unbuffered, so a script reading the first line gets it at once.
    static func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// The machine-readable record of one request: no identifier, only what a delivery check needs.
    static func record(_ r: EnrollmentReceiver.Request) -> String {
        let json = r.json ?? [:]
        let module = json["module"] as? [String: Any]
        let object: [String: Any] = [
            "event_id": json["event_id"] as? String ?? NSNull(), "type": json["type"] as? String ?? NSNull(),
            "slot": module?["slot"] as? String ?? NSNull(), "sequence": json["sequence"] as? Int ?? NSNull(),
            "status": r.status.map { $0 as Any } ?? NSNull(),
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Redacted, as the daemon logs identities.
    static func describe(_ r: EnrollmentReceiver.Request) -> String {
        guard let json = r.json else { return "\(r.method) \(r.path): not JSON" }
        let type = json["type"] as? String ?? "?"
        let module = json["module"] as? [String: Any]
        let identity = json["identity"] as? [String: Any] ?? [:]
        let previous = json["previous"] as? [String: Any]
        func snapshot(_ o: [String: Any]) -> String {
            IdentitySnapshot(imei: o["imei"] as? String, imsi: o["imsi"] as? String, iccid: o["iccid"] as? String)
                .description
        }
        var line = "received \(type) #\(json["sequence"] as? Int ?? 0) slot \(module?["slot"] as? String ?? "?")"
        line += " [\(json["severity"] as? String ?? "?")] event_id \(json["event_id"] as? String ?? "?")"
        line += "\n    identity: \(snapshot(identity))"
        if let previous { line += "\n    previous: \(snapshot(previous))" }
        return line
    }
}

/// Waits for one of the given signals (their default action is ignored).
final class SignalWaiter: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var didFire = false

    init(_ signals: [Int32]) {
        for s in signals {
            signal(s, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: s, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.lock()
                self.didFire = true
                self.lock.unlock()
            }
            source.resume()
            sources.append(source)
        }
    }

    var fired: Bool {
        lock.lock()
        defer { lock.unlock() }
        return didFire
    }
}
