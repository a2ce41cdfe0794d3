import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// Test kit: runs one of cellprov's executables as a child process, collecting stdout and stderr as they come,
/// so tests can wait for a log line, send signals, and time the exit.
public final class ChildProcess: Sendable {
    public let process: Process
    private final class Buffer: Sendable {
        let data = NIOLockedValueBox(Data())
        func append(_ d: Data) { data.withLockedValue { $0.append(d) } }
        var text: String { data.withLockedValue { String(decoding: $0, as: UTF8.self) } }
    }

    private let out = Buffer()
    private let err = Buffer()
    private let outPipe = Pipe()
    private let errPipe = Pipe()

    /// The folder holding the built executables: `$CELLPROV_BIN_DIR`, else the test runner's folder, else
    /// `.build/debug`.
    public static var binDirectory: URL {
        let fm = FileManager.default
        var candidates: [URL] = []
        if let dir = ProcessInfo.processInfo.environment["CELLPROV_BIN_DIR"] {
            candidates.append(URL(fileURLWithPath: dir))
        }
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        candidates.append(runner.deletingLastPathComponent())
        candidates.append(runner.deletingLastPathComponent().deletingLastPathComponent())
        candidates.append(URL(fileURLWithPath: fm.currentDirectoryPath).appendingPathComponent(".build/debug"))
        for dir in candidates where fm.isExecutableFile(atPath: dir.appendingPathComponent("cellprov").path) {
            return dir
        }
        return URL(fileURLWithPath: ".build/debug")
    }

    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process = Process()
        process.executableURL = Self.binDirectory.appendingPathComponent(executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["JOURNAL_STREAM"] = nil
        env["NOTIFY_SOCKET"] = nil
        env["WATCHDOG_USEC"] = nil
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = outPipe
        process.standardError = errPipe
        let out = self.out
        let err = self.err
        outPipe.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            if d.isEmpty {
                h.readabilityHandler = nil  // EOF: stop, or the handler fires forever
                return
            }
            out.append(d)
        }
        errPipe.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            if d.isEmpty {
                h.readabilityHandler = nil  // EOF: stop, or the handler fires forever
                return
            }
            err.append(d)
        }
        try process.run()
    }

    public var stdout: String { out.text }
    public var stderr: String { err.text }

    /// Waits until `predicate(stderr)` holds, at most `timeout`. Returns whether it did.
    @discardableResult
    public func waitForStderr(timeout: Duration = .seconds(10), _ predicate: (String) -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: timeout)
        while clock.now < end {
            if predicate(stderr) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return predicate(stderr)
    }

    public func signal(_ signo: Int32) {
        kill(process.processIdentifier, signo)
    }

    /// Waits for the exit, at most `timeout`; kills it (SIGKILL) if it overstays. Returns the status, or nil.
    public func waitForExit(timeout: Duration = .seconds(10)) async -> Int32? {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: timeout)
        while process.isRunning && clock.now < end {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            drain()
            return nil
        }
        process.waitUntilExit()
        drain()
        return process.terminationStatus
    }

    private func drain() {
        outPipe.fileHandleForReading.readabilityHandler = nil
        errPipe.fileHandleForReading.readabilityHandler = nil
        let restOut = outPipe.fileHandleForReading.readDataToEndOfFile()
        let restErr = errPipe.fileHandleForReading.readDataToEndOfFile()
        out.append(restOut)
        err.append(restErr)
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
