import CellprovCore
import CellprovSimulator
import CellprovTestKit
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `cellprov probe` against `cellprov simulate`'s hostile modes, as a user runs them: exit statuses, problem codes,
/// the number of stderr lines, and (where /usr/bin/time exists) the probe's peak RSS and CPU time.
@Suite struct HostileCLITests {
    /// Starts `cellprov simulate ARGS` and returns it with the PTY paths it printed.
    static func simulate(_ arguments: [String], count: Int = 1) async throws -> (ChildProcess, [String]) {
        let child = try ChildProcess("cellprov", ["simulate"] + arguments + (count > 1 ? ["--count", "\(count)"] : []))
        let end = ContinuousClock.now.advanced(by: .seconds(10))
        while child.stdout.split(separator: "\n").count < count && ContinuousClock.now < end {
            try await Task.sleep(for: .milliseconds(10))
        }
        let paths = child.stdout.split(separator: "\n").map(String.init)
        try #require(paths.count == count, "simulate printed \(child.stdout) \(child.stderr)")
        return (child, paths)
    }

    static func stop(_ child: ChildProcess) async {
        child.signal(SIGTERM)
        _ = await child.waitForExit(timeout: .seconds(5))
    }

    static func objects(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    static func codes(_ object: [String: Any]) -> [String] {
        ((object["problems"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String }
    }

    @Test func randomBytesAreNotAModemAndLogAFewLines() async throws {
        let (sim, ports) = try await Self.simulate(["--random-bytes"])
        let run = try await MeasuredCLI.run(["probe", "--json", "--timeout", "5"] + ports)
        await Self.stop(sim)
        let lines = run.stderr.split(separator: "\n")
        print("probe of a random-bytes port for 5 s: exit \(run.status.map(String.init) ?? "-"), "
            + "\(lines.count) stderr lines, \(run.figures)")
        #expect(run.status == 2)
        let object = try #require(try Self.objects(run.stdout).first)
        #expect(Self.codes(object).contains("not_a_modem"))
        #expect(object["revision"] is NSNull && object["manufacturer"] is NSNull)
        #expect(lines.count <= 4, "\(lines)")
        // (Under a sanitizer its shadow memory alone is tens of MB: the bound is the plain build's.)
        if let rss = run.maxRSSKilobytes, !Sanitizers.active { #expect(rss < 64 * 1024) }
    }

    @Test func fourEndlessAnswersStayFlat() async throws {
        let (sim, ports) = try await Self.simulate(["--endless-answer"], count: 4)
        let run = try await MeasuredCLI.run(["probe", "--json", "--timeout", "10"] + ports)
        await Self.stop(sim)
        print("probe of four endless answers: exit \(run.status.map(String.init) ?? "-"), "
            + "\(run.stderr.split(separator: "\n").count) stderr lines, \(run.figures)")
        #expect(run.status == 2)
        let objects = try Self.objects(run.stdout)
        #expect(objects.count == 4)
        for object in objects {
            #expect(Self.codes(object).contains("answer_too_long"))
            #expect(Self.codes(object).contains("not_a_modem"))
        }
        if let rss = run.maxRSSKilobytes, !Sanitizers.active {
            #expect(rss < 64 * 1024, "the old behaviour passed 100 MB")
        }
    }

    @Test func foreignEchoIsIgnored() async throws {
        let (sim, ports) = try await Self.simulate(["--foreign-echo", "AT+CFUN=0"])
        let run = try await MeasuredCLI.run(["probe", "--json"] + ports)
        await Self.stop(sim)
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try Self.objects(run.stdout).first)
        #expect(object["manufacturer"] as? String == "Quectel")
        #expect(object["valid"] as? Bool == true)
        #expect(object["imsi"] is String)
    }

    @Test func trickleIsAPortProblem() async throws {
        let (sim, ports) = try await Self.simulate(["--trickle-ms", "100"])
        let run = try await MeasuredCLI.run(["probe", "--json", "--timeout", "3"] + ports)
        await Self.stop(sim)
        #expect(run.status == 2, "\(run.stdout)")
        let object = try #require(try Self.objects(run.stdout).first)
        let problems = try #require(object["problems"] as? [[String: Any]])
        #expect(problems.contains { $0["code"] as? String == "timeout" && $0["field"] as? String == "port" })
    }

    @Test(arguments: [["--trickle-ms", "-1"], ["--foreign-echo", ""]])
    func simulateRejectsBadHostileOptions(arguments: [String]) async throws {
        let run = try await CLI.run(["simulate"] + arguments)
        #expect(run.status == 64)
    }
}

/// Runs `cellprov` to completion with its output in files (a flood of output cannot block it on a full pipe), under
/// /usr/bin/time when it exists, for the peak RSS and the CPU time.
enum MeasuredCLI {
    struct Result {
        var status: Int32?
        var stdout: String
        var stderr: String
        var maxRSSKilobytes: Int?
        var cpuSeconds: Double?

        var figures: String {
            guard let rss = maxRSSKilobytes, let cpu = cpuSeconds else { return "(no /usr/bin/time: not measured)" }
            return "peak RSS \(rss / 1024) MB, CPU (user+sys) \(String(format: "%.2f", cpu)) s"
        }
    }

    static let marker = "CELLPROV-TIME"

    static func run(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> Result {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("cellprov-cli-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("stdout")
        let errURL = dir.appendingPathComponent("stderr")
        _ = fm.createFile(atPath: outURL.path, contents: nil)
        _ = fm.createFile(atPath: errURL.path, contents: nil)
        let process = Process()
        let cellprov = ChildProcess.binDirectory.appendingPathComponent("cellprov").path
        let timeTool = "/usr/bin/time"
        let measured = fm.isExecutableFile(atPath: timeTool)
        if measured {
            process.executableURL = URL(fileURLWithPath: timeTool)
            process.arguments = ["-f", "\(marker) %M %U %S", cellprov] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: cellprov)
            process.arguments = arguments
        }
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        try process.run()
        let end = ContinuousClock.now.advanced(by: timeout)
        while process.isRunning && ContinuousClock.now < end { try await Task.sleep(for: .milliseconds(10)) }
        var status: Int32?
        if process.isRunning {
            process.terminate()
        }
        process.waitUntilExit()
        if ContinuousClock.now < end { status = process.terminationStatus }
        let stdout = String(decoding: try Data(contentsOf: outURL), as: UTF8.self)
        var stderrLines = String(decoding: try Data(contentsOf: errURL), as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var result = Result(status: status, stdout: stdout, stderr: "")
        if measured, let i = stderrLines.lastIndex(where: { $0.hasPrefix(marker) }) {
            let f = stderrLines[i].split(separator: " ")
            if f.count == 4 {
                result.maxRSSKilobytes = Int(f[1])
                result.cpuSeconds = (Double(f[2]) ?? 0) + (Double(f[3]) ?? 0)
            }
            stderrLines.remove(at: i)
            // time(1) also reports a non-zero exit ("Command exited with non-zero status N").
            stderrLines.removeAll { $0.hasPrefix("Command exited with non-zero status") }
        }
        result.stderr = stderrLines.filter { !$0.isEmpty }.joined(separator: "\n")
        return result
    }
}
