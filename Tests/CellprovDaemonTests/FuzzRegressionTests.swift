import CellprovDaemon
import CellprovReporter
import Testing

// Inputs found by the fuzz targets (Sources/cellprov-fuzz-*, scripts/fuzz.sh), kept as regression tests: each
// failed (here: aborted the test process) before its fix. docs/robustness.md lists them.

@Suite("Fuzz findings: configuration and backend answers")
struct DaemonFuzzRegressionTests {
    /// cellprov-fuzz-config: toml++ (under TOMLKit) failed an assertion, aborting cellprovd --check and the daemon,
    /// on a control character in a table header. The configuration is now refused with a clear error first.
    @Test(
        "a control character is a configuration error, not an abort",
        arguments: [
            ("[\u{1}]\n", 1, "U+0001"),
            ("[\u{1}\0\0\0\0\0\u{2}\u{F4}dissoStrvery]\0udevv \u{8F} truE\n", 1, "U+0001"),
            ("[discovery]\nudev = true\n[\u{7F}]\n", 3, "U+007F"),
            ("# comment\n[daemon]\u{1B}\n", 2, "U+001B"),
        ])
    func controlCharacterRefused(_ text: String, line: Int, code: String) {
        #expect {
            _ = try DaemonConfig.parse(text, file: "c.toml")
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.line == line && e.message.contains(code)
        }
    }

    /// cellprov-fuzz-config: toml++ failed the same kind of assertion on a table header whose first key starts
    /// with a character that cannot start a key ("[# cellprovd conf..." in a mutated example configuration).
    @Test(
        "a table header without a key is a configuration error, not an abort",
        arguments: [
            ("[#]\n", 1), ("[backend]\nurl = \"https://e.example\"\n[# cellprovd configuration\n", 3), ("[ .]\n", 1),
            ("[[=]]\n", 1), ("[discovery]\r\n[,]\r\n", 2), ("[\u{FFFD}rye\n#staticB)S0\"]\n", 1),
            ("[backend]\ntoken_file = \"/t\"\n[\ni]vdeceserial = \"GW-2\"\n", 3), ("[[[a]]]\n", 1),
            ("\u{FEFF}[=Cis\u{FFFD}client_cer\u{FFFD}revue\n", 1), ("\u{A0}[#]\n", 1), ("[\u{7A8}s\rd[ikcME", 1),
        ])
    func headerWithoutKeyRefused(_ text: String, line: Int) {
        #expect {
            _ = try DaemonConfig.parse(text, file: "c.toml")
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.line == line && e.message.contains("table header")
        }
    }

    /// cellprov-fuzz-config (the 200-s run): toml++ failed an assertion in parse_value on a '}' where an array
    /// expects a value ("static_ports= [}" in a mutated configuration).
    @Test(
        "a '}' where a value is expected is a configuration error, not an abort",
        arguments: [
            ("[discovery]\nstatic_ports= [}\n", 2), ("x = [1, }\n", 1), ("x = [ # c\n}\n", 2),
            ("a = {b = [1, }\n", 1), ("x = [[1, }]]\n", 1), ("s = \"[}\"\nx = [\n\n}\n", 4),
        ])
    func braceWhereValueExpectedRefused(_ text: String, line: Int) {
        #expect {
            _ = try DaemonConfig.parse(text, file: "c.toml")
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.line == line && e.message.contains("where a value is expected")
        }
    }

    @Test("strings and comments holding '[' and '}' are still accepted")
    func bracesInStrings() throws {
        let text = "# [}\n[device]\nserial = \"[}, \\\"}\" # ,}\n[discovery]\nstatic_ports = [\"/dev/a\", '/dev/b']\n"
        let config = try DaemonConfig.parse(text)
        #expect(config.deviceSerial == "[}, \"}")
        #expect(config.staticPorts == ["/dev/a", "/dev/b"])
    }

    @Test("tabs and CRLF line ends are still accepted")
    func tabsAndCRLF() throws {
        let text = "[discovery]\r\n\tudev = false\t# a tab\r\nstatic_ports = [\"/dev/ttyS1\"]\r\n"
        let config = try DaemonConfig.parse(text)
        #expect(config.staticPorts == ["/dev/ttyS1"])
    }

    /// cellprov-fuzz-scrub's property, on the answers that exercise it: a backend echoing identifiers in its error
    /// body never puts them in the stored reason.
    @Test(
        "a rejected event's reason carries no identifier the backend echoed",
        arguments: [
            "{\"error\":\"bad imei 356938035643809\"}", "iccid 8944 2000 5367 1052 499 refused",
            "{\"detail\":\"984402003576012594F9\"}", String(repeating: "1234567890", count: 100),
        ])
    func reasonScrubbed(_ body: String) {
        guard case .rejected(let reason) = Reporter.outcome(status: 400, body: Array(body.utf8)) else {
            Issue.record("not rejected")
            return
        }
        for echoed in ["356938035643809", "5367 1052", "984402003576012594F9"] { #expect(!reason.contains(echoed)) }
        #expect(reason.count <= 210)
        var run = 0
        for b in reason.utf8 {
            run = (b >= 0x30 && b <= 0x39) ? run + 1 : 0
            #expect(run < 6)
        }
    }
}
