import CellprovDaemon
import CellprovReporter
import Testing

// Inputs found by the fuzz targets (Sources/cellprov-fuzz-*, scripts/fuzz.sh), kept as regression tests: each
// failed (here: aborted the test process) before its fix. docs/robustness.md lists them.

@Suite("Fuzz findings: configuration and backend answers")
struct DaemonFuzzRegressionTests {
    /// cellprov-fuzz-config: toml++ failed an assertion, aborting cellprovd --check and the daemon, on a control
    /// character in a table header. TOML allows none but tab and the line ends: refused with its code and line.
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

    /// cellprov-fuzz-config: toml++ failed an assertion in parse_key (SIGABRT; with NDEBUG an assumption, i.e.
    /// undefined behaviour) on a table header whose first key starts with a character that cannot start a key
    /// ("[# cellprovd conf..." in a mutated example configuration), and in parse_value on a '}' where an array
    /// expects a value ("static_ports= [}"). No Swift pre-check guards these any more: the text reaches toml++,
    /// its check fails, and CTOMLShim turns that into a syntax error naming the check and the line. The message
    /// proves the path: only a failed toml++ check says "stopped on its check".
    @Test(
        "text that failed a toml++ assertion is a syntax error with its line, not an abort",
        arguments: [
            ("[#]\n", 1), ("[backend]\nurl = \"https://e.example\"\n[# cellprovd configuration\n", 3), ("[ .]\n", 1),
            ("[[=]]\n", 1), ("[discovery]\r\n[,]\r\n", 2), ("[\u{FFFD}rye\n#staticB)S0\"]\n", 1),
            ("[backend]\ntoken_file = \"/t\"\n[\ni]vdeceserial = \"GW-2\"\n", 3), ("[[[a]]]\n", 1),
            ("\u{FEFF}[=Cis\u{FFFD}client_cer\u{FFFD}revue\n", 1), ("[\u{7A8}s\rd[ikcME", 1), ("[.]", 1), ("[=]", 1), ("[\n", 1),
            ("[discovery]\nstatic_ports= [}\n", 2), ("x = [1, }\n", 1), ("x = [ # c\n}\n", 2),
            ("a = {b = [1, }\n", 1), ("x = [[1, }]]\n", 1), ("s = \"[}\"\nx = [\n\n}\n", 4),
            // The line is found by re-parsing prefixes: the valid lines after it do not move it.
            ("[daemon]\nlog_level = \"info\"\n[#]\n[discovery]\nudev = true\nstatic_ports = [\"/dev/ttyS1\"]\n", 3),
            ("# a\n# b\n# c\n# d\n# e\n# f\n# g\nx = [\n  1,\n  }\n# h\n[device]\nserial = \"s\"\n", 10),
        ])
    func failedCheckIsSyntaxError(_ text: String, line: Int) {
        #expect {
            _ = try DaemonConfig.parse(text, file: "c.toml")
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.line == line && e.message.hasPrefix("syntax error: not valid TOML here")
                && e.message.contains("stopped on its check") && e.description.hasPrefix("c.toml:\(line): ")
        }
    }

    /// Found with the ones above; toml++ reports these itself (no check of its own fails on them).
    @Test(
        "neighbours of the findings are toml++'s own syntax errors",
        arguments: [("\u{A0}[#]\n", 1), ("[", 1), ("[daemon\n", 1), ("x = [1,\n", 1), ("[a]\nx = [1, 2 3]\n", 2)])
    func ownSyntaxError(_ text: String, line: Int) {
        #expect {
            _ = try DaemonConfig.parse(text, file: "c.toml")
        } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.line == line && e.message.hasPrefix("syntax error: ") && !e.message.contains("stopped on its check")
        }
    }

    /// The pre-check that guarded toml++ refused valid TOML: any line starting with "[#" or "[" alone, even inside a
    /// multi-line string. Without it, such a string is read as written.
    @Test("a multi-line string with lines starting with '[' is accepted")
    func bracketLinesInMultilineString() throws {
        let text = "[device]\nserial = \"\"\"\n[#1\n[\n}\"\"\"\n[discovery]\nstatic_ports = [\n  '/dev/a',\n]\n"
        let config = try DaemonConfig.parse(text)
        #expect(config.deviceSerial == "[#1\n[\n}")
        #expect(config.staticPorts == ["/dev/a"])
    }

    /// cellprov-fuzz-config (after the parser change): "udev = false" with an empty static_ports was accepted, and
    /// the target's property called that "nothing to watch". The property was older than `[discovery]
    /// modemmanager`: by default cellprovd watches ModemManager, so the configuration is right; "never" refuses it.
    @Test("udev off and no static ports: ModemManager is watched, or 'never' is refused")
    func nothingToWatchNeedsModemManagerNever() throws {
        let found = "[discovery]\nudev = false\nstatic_ports = [\t\t\t\t]"
        let config = try DaemonConfig.parse(found)
        #expect(!config.udev && config.staticPorts.isEmpty && config.modemManager == .auto)
        #expect {
            _ = try DaemonConfig.parse(found + "\nmodemmanager = \"never\"\n")
        } throws: { error in
            (error as? ConfigError)?.message.contains("nothing to watch") == true
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
