import CellprovDaemon
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
}
