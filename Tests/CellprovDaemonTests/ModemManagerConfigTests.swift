import CellprovDaemon
import Foundation
import Testing

/// `[discovery] modemmanager`.
@Suite("ModemManager configuration")
struct ModemManagerConfigTests {
    @Test func defaultIsAuto() throws {
        #expect(try DaemonConfig.parse("").modemManager == .auto)
    }

    @Test(arguments: DaemonConfig.ModemManagerMode.allCases)
    func modes(_ mode: DaemonConfig.ModemManagerMode) throws {
        let config = try DaemonConfig.parse("[discovery]\nmodemmanager = \"\(mode.rawValue)\"\n")
        #expect(config.modemManager == mode)
    }

    @Test func badValueNamesKeyAndLine() {
        #expect(throws: ConfigError.self) {
            try DaemonConfig.parse("[discovery]\nudev = true\nmodemmanager = \"yes\"\n")
        }
        do {
            _ = try DaemonConfig.parse("[discovery]\nudev = true\nmodemmanager = \"yes\"\n", file: "c.toml")
        } catch {
            #expect(error.key == "discovery.modemmanager")
            #expect(error.line == 3)
            #expect(error.description.contains("\"auto\", \"always\", \"never\""))
        }
        #expect(throws: ConfigError.self) { try DaemonConfig.parse("[discovery]\nmodemmanager = true\n") }
    }

    /// ModemManager alone is something to watch; with it off too, there is nothing.
    @Test func nothingToWatch() throws {
        #expect(try DaemonConfig.parse("[discovery]\nudev = false\n").modemManager == .auto)
        do {
            _ = try DaemonConfig.parse("[discovery]\nudev = false\nmodemmanager = \"never\"\n")
            Issue.record("expected an error")
        } catch {
            #expect(error.key == "discovery.udev")
        }
    }

    /// Every shipped example must pass `cellprovd --check` (its parse; it names no file to check).
    @Test func shippedExampleParses() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../config/cellprovd.toml.example").standardized
        let text = try String(contentsOf: example, encoding: .utf8)
        let config = try DaemonConfig.parse(text, file: example.path)
        #expect(config.modemManager == .auto)
        #expect(config.backend == nil)
    }
}
