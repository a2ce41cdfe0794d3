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

    func run() async throws {
        let receiver = try EnrollmentReceiver(port: port, behaviour: .status(status))
        Self.emit("http://127.0.0.1:\(receiver.port)")
        let stop = SignalWaiter([SIGINT, SIGTERM])
        var seen = 0
        while !stop.fired {
            let requests = receiver.requests
            for r in requests.dropFirst(seen) { Self.emit(Self.describe(r)) }
            seen = requests.count
            try? await Task.sleep(for: .milliseconds(50))
        }
        receiver.stop()
    }

    /// Unbuffered, so a script reading the first line gets it at once.
    static func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
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
