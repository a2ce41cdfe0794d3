import CellprovDaemon
import CellprovSimulator
import CellprovTestKit
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The configuration as shipped: every example file passes `cellprovd --check` (and the parser), so that an
/// operator who copies one starts from something valid.
@Suite struct ConfigTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Every `*.example` under config/ (today: cellprovd.toml.example).
    static var examples: [String] {
        let dir = root.appendingPathComponent("config").path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasSuffix(".example") }.sorted().map { dir + "/" + $0 }
    }

    @Test func thereAreExamples() {
        #expect(!Self.examples.isEmpty, "no config/*.example found beside the tests")
    }

    @Test(arguments: examples)
    func everyShippedExamplePassesCheck(path: String) async throws {
        let run = try ChildProcess("cellprovd", ["--config", path, "--check"])
        #expect(await run.waitForExit() == 0, "\(path): \(run.stderr)")
        #expect(run.stdout.contains("configuration is valid"))
        let config = try DaemonConfig.load(path: path)
        #expect(config.backend == nil, "the example's [backend] has no url: no backend")
    }

    @Test func emptyBackendTableIsNoBackend() throws {
        let config = try DaemonConfig.parse("[backend]\n# url = \"https://enroll.example.net\"\n")
        #expect(config.backend == nil)
    }

    @Test func backendKeysWithoutAURLAreStillAnError() throws {
        #expect(throws: ConfigError.self) {
            try DaemonConfig.parse("[backend]\nca_file = \"/etc/cellprov/ca.pem\"\n")
        }
        do {
            _ = try DaemonConfig.parse("[backend]\nca_file = \"/etc/cellprov/ca.pem\"\n", file: "c.toml")
        } catch {
            #expect(error.description.contains("needs a url"))
            #expect(error.line == 1)
        }
    }

    /// The example says "root:cellprov 0640" for the token file: the check accepts it (the daemon runs as
    /// cellprov), and still refuses a token others can read or the group can write.
    @Test func tokenFileModes() throws {
        let temporary = try TemporaryDirectory(prefix: "cellprov-config")
        let dir = temporary.path
        let token = dir + "/token"
        try "secret\n".write(toFile: token, atomically: true, encoding: .utf8)
        let path = dir + "/c.toml"
        try "[backend]\nurl = \"https://enroll.example.net\"\ntoken_file = \"\(token)\"\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        for (mode, ok) in [(0o600, true), (0o640, true), (0o644, false), (0o660, false), (0o604, false)] {
            chmod(token, mode_t(mode))
            let result = Result { () throws(ConfigError) in try DaemonConfig.load(path: path) }
            switch result {
            case .success: #expect(ok, "mode \(String(mode, radix: 8)) accepted")
            case .failure(let error):
                #expect(!ok, "mode \(String(mode, radix: 8)) refused: \(error)")
                #expect(error.key == "backend.token_file")
            }
        }
    }
}
