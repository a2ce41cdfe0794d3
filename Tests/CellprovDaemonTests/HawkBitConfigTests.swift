import CellprovDaemon
import CellprovTestKit
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `[hawkbit]` in cellprovd's configuration: defaults, and every mistake a clear error naming its key, from the
/// parser and from `cellprovd --check`.
@Suite struct HawkBitConfigTests {
    static let base = "[device]\nserial = \"GW-000123\"\n[hawkbit]\n"
    static let token = "token_file = \"/etc/cellprov/hawkbit-token\"\n"

    @Test func defaults() throws {
        let config = try DaemonConfig.parse(Self.base + "url = \"https://hawkbit.example.com\"\n" + Self.token)
        let h = try #require(config.hawkBit)
        #expect(h.url.absoluteString == "https://hawkbit.example.com")
        #expect(h.tenant == "DEFAULT")
        #expect(h.controllerID == "GW-000123", "the device serial")
        #expect(h.identifiers == .masked)
        #expect(h.tokenFile == "/etc/cellprov/hawkbit-token")
        #expect(try DaemonConfig.parse("[hawkbit]\n").hawkBit == nil, "an empty table is no hawkBit")
        #expect(try DaemonConfig.parse("").hawkBit == nil)
    }

    @Test func everyKey() throws {
        let config = try DaemonConfig.parse(
            """
            [hawkbit]
            url = "https://hawkbit.example.com/ota/"
            tenant = "fleet-7"
            controller_id = "gw-7.site:a"
            token_file = "/etc/cellprov/hawkbit-token"
            ca_file = "/etc/cellprov/hawkbit-ca.pem"
            client_certificate = "/etc/cellprov/c.pem"
            client_key = "/etc/cellprov/c.key"
            identifiers = "full"
            """)
        let h = try #require(config.hawkBit)
        #expect(h.tenant == "fleet-7" && h.controllerID == "gw-7.site:a" && h.identifiers == .full)
        #expect(h.caFile == "/etc/cellprov/hawkbit-ca.pem" && h.clientKey == "/etc/cellprov/c.key")
    }

    struct Bad: Sendable, CustomStringConvertible {
        var text: String
        var key: String
        var message: String
        var description: String { "\(key): \(message)" }
    }

    static let bad: [Bad] = [
        .init(text: base + token, key: "hawkbit", message: "needs a url"),
        .init(text: base + "url = \"http://hawkbit.example.com\"\n" + token, key: "hawkbit.url", message: "only to loopback"),
        .init(text: base + "url = \"ftp://hawkbit.example.com\"\n" + token, key: "hawkbit.url", message: "https"),
        .init(text: base + "url = \"https://h.example.com/?x=1\"\n" + token, key: "hawkbit.url", message: "without a query"),
        .init(text: base + "url = \"https://h.example.com\"\n", key: "hawkbit.token_file", message: "security token"),
        .init(
            text: base + "url = \"https://h.example.com\"\nclient_certificate = \"/c.pem\"\n", key: "hawkbit.client_certificate",
            message: "go together"),
        .init(
            text: base + "url = \"https://h.example.com\"\nidentifiers = \"digits\"\n" + token, key: "hawkbit.identifiers",
            message: "\"masked\" or \"full\""),
        .init(
            text: base + "url = \"https://h.example.com\"\ntenant = \"a/b\"\n" + token, key: "hawkbit.tenant",
            message: "holds '/'"),
        .init(
            text: base + "url = \"https://h.example.com\"\ncontroller_id = \"GW 1\"\n" + token, key: "hawkbit.controller_id",
            message: "holds U+0020"),
        .init(
            text: "[device]\nserial = \"GW 1\"\n[hawkbit]\nurl = \"https://h.example.com\"\n" + token,
            key: "hawkbit.controller_id", message: "device serial cannot be one"),
        .init(
            text: "[hawkbit]\nurl = \"https://h.example.com\"\n" + token, key: "hawkbit.controller_id",
            message: "no device serial"),
        .init(
            text: base + "url = \"https://h.example.com\"\ntoken = \"abc\"\n" + token, key: "hawkbit.token",
            message: "unknown key"),
        .init(text: base + "url = 7\n", key: "hawkbit.url", message: "expected string"),
    ]

    @Test(arguments: bad)
    func mistakes(_ c: Bad) {
        do {
            _ = try DaemonConfig.parse(c.text, file: "c.toml")
            Issue.record("accepted: \(c.text)")
        } catch {
            #expect(error.key == c.key, "\(error)")
            #expect(error.description.contains(c.message), "\(error)")
            // A key that is there is pointed at by its line; a missing one by none.
            if let name = c.key.split(separator: ".").dropFirst().first, c.text.contains("\n\(name) =") {
                #expect(error.line != nil, "\(error)")
            }
        }
    }

    /// `cellprovd --check` reads the files: the token file under the backend's rule, the controller id from
    /// serial_file.
    @Test func checkReadsTheFiles() async throws {
        let temporary = try TemporaryDirectory(prefix: "cellprov-hawkbit-config")
        let dir = temporary.path
        let token = dir + "/hawkbit-token"
        try "bH7XXAprK1ChnLfKSdtlsp7NOlPnZAYY\n".write(toFile: token, atomically: true, encoding: .utf8)
        try "GW-FROM-FILE\n".write(toFile: dir + "/serial", atomically: true, encoding: .utf8)
        let path = dir + "/c.toml"
        try """
        [daemon]
        state_directory = "\(dir)/state"
        [discovery]
        udev = false
        static_ports = ["/dev/ttyS9"]
        [device]
        serial_file = "\(dir)/serial"
        [hawkbit]
        url = "https://hawkbit.example.com"
        token_file = "\(token)"
        """.write(toFile: path, atomically: true, encoding: .utf8)

        chmod(token, 0o600)
        #expect(try DaemonConfig.load(path: path).hawkBit?.controllerID == "GW-FROM-FILE")
        let ok = try ChildProcess("cellprovd", ["--config", path, "--check"])
        #expect(await ok.waitForExit() == 0, "\(ok.stderr)")

        chmod(token, 0o644)
        let refused = try ChildProcess("cellprovd", ["--config", path, "--check"])
        #expect(await refused.waitForExit() == 78)
        #expect(refused.stderr.contains("hawkbit.token_file"), "\(refused.stderr)")
        #expect(refused.stderr.contains("chmod 600"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("bH7XXAprK1"), "the token is never printed")

        chmod(token, 0o600)
        try "GW FROM FILE\n".write(toFile: dir + "/serial", atomically: true, encoding: .utf8)
        let badSerial = try ChildProcess("cellprovd", ["--config", path, "--check"])
        #expect(await badSerial.waitForExit() == 78)
        #expect(badSerial.stderr.contains("hawkbit.controller_id"), "\(badSerial.stderr)")
    }
}
