import CellprovCore
import CellprovStore
import CellprovTestKit
import Foundation
import Testing

/// `cellprov status --json`, its agreement with `cellprov events --json`, and `cellprov inventory --format mender`
/// with the installed wrapper `mender-inventory-cellprov`, run on a real state database (written by the store as
/// cellprovd writes it) and parsed with Mender's rules.
@Suite struct StatusInventoryTests {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }
    static let imei = luhn("35693803564380")
    static let imeiB = luhn("86144205219734")
    static let imsi = "310260123456789"
    static let iccid = luhn("894420005367105249")
    static let eid = "89049032123451234512345678901235"
    static let slotA = "pci-0000:00:14.0-usb-0:1:1.0"
    static let slotB = "pci-0000:00:14.0-usb-0:2:1.0"
    static let slotC = "/dev/ttyS1"
    /// Module text as a modem may answer it: a '%' and a line break must survive Mender's line format.
    static let oddModel = "EG25 50%\nrev"

    struct Setup {
        /// The state directory, removed when the setup goes away.
        let temporary: TemporaryDirectory
        var pseudonyms: Pseudonymizer
        var directory: String { temporary.path }
    }

    static func report(imei: String, imsi: String?, iccid: String?, eid: String? = nil, model: String = "EG25-G")
        -> IdentityReport
    {
        var r = IdentityReport(port: "/dev/ttyUSB2", manufacturer: "Quectel", model: model, revision: "EG25GR07")
        r.imei = IMEI.validate(imei).value
        if let imsi { r.imsi = IMSI.validate(imsi).value }
        if let iccid { r.iccid = ICCID.validate(iccid).value }
        if let eid { r.eid = EID.validate(eid).value }
        return r
    }

    /// Slot A: an eUICC unit enrolled (hot-swap reports unavailable); slot B: a module without a SIM; slot C: a
    /// static port seen but never read.
    static func makeState(withKey: Bool = true) throws -> Setup {
        let temporary = try TemporaryDirectory(prefix: "cellprov-status")
        let dir = temporary.path
        let pseudonyms = withKey ? try PseudonymKeyFile.loadOrCreate(in: dir) : Pseudonymizer.random()
        let store = try StateStore(directory: dir)
        var a = report(imei: imei, imsi: imsi, iccid: iccid, eid: eid, model: oddModel)
        a.problems = [Problem(.simHotSwapUnavailable, field: .sim, severity: .warning, message: "detection off")]
        let slotA = ModuleSlot(key: Self.slotA, port: "/dev/ttyUSB2", usbSerial: "SER-1", origin: .udev)
        _ = try store.commit(Observation(slot: slotA, report: a, reason: "test"))
        try store.recordRead(
            slot: Self.slotA, port: "/dev/ttyUSB2", valid: true, problems: ["sim_hotswap_unavailable"], at: Date())
        var b = report(imei: imeiB, imsi: nil, iccid: nil)
        b.problems = [Problem(.simNotInserted, field: .sim, message: "no SIM")]
        let slotB = ModuleSlot(key: Self.slotB, port: "/dev/ttyUSB6", usbSerial: "SER-2", origin: .udev)
        _ = try store.commit(Observation(slot: slotB, report: b, reason: "test"))
        try store.recordRead(
            slot: Self.slotB, port: "/dev/ttyUSB6", valid: false, problems: ["sim_not_inserted"], at: Date())
        try store.setPresence(slot: slotC, port: slotC, present: true)
        return Setup(temporary: temporary, pseudonyms: pseudonyms)
    }

    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (Int32?, String, String)
    {
        let child = try ChildProcess("cellprov", arguments, environment: environment)
        let status = await child.waitForExit(timeout: .seconds(60))
        return (status, child.stdout, child.stderr)
    }

    static func object(_ text: some StringProtocol) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    // MARK: - status --json

    @Test func statusJSONIsOneVersionedObjectWithIdentitiesAsData() async throws {
        let setup = try Self.makeState()
        defer { try? FileManager.default.removeItem(atPath: setup.directory) }
        let (status, out, err) = try await Self.run(["status", "--json", "--state-directory", setup.directory])
        #expect(status == 0, "\(err)")
        #expect(out.split(separator: "\n").count == 1, "one object on one line")
        let doc = try Self.object(out)
        #expect(doc["version"] as? Int == 1)
        #expect(doc["state_directory"] as? String == setup.directory)
        #expect(doc["state_loss"] is NSNull)
        let outbox = try #require(doc["outbox"] as? [String: Any])
        #expect(outbox["pending"] as? Int == 1, "enrolled on A; an IMEI alone raises no event on B: \(outbox)")
        #expect(outbox["oldest_pending_occurred_at"] is String)
        #expect(outbox["last_delivery_error"] is NSNull)
        #expect(outbox["credentials_refused"] is NSNull)

        let slots = try #require(doc["slots"] as? [[String: Any]])
        #expect(slots.map { $0["slot"] as? String } == [Self.slotC, Self.slotA, Self.slotB].sorted().map { $0 })
        let keys: Set<String> = [
            "slot", "recorded", "module", "identity", "sim_present", "enrolled", "sequence", "updated_at", "present",
            "port", "last_read", "sim_state", "sim_hotswap_unavailable", "last_event",
        ]
        for slot in slots { #expect(Set(slot.keys) == keys, "every key on every slot: \(slot.keys.sorted())") }
        let a = try #require(slots.first { $0["slot"] as? String == Self.slotA })
        let identity = try #require(a["identity"] as? [String: Any])
        #expect(identity["imei"] as? String == Self.imei)
        #expect(identity["imsi"] as? String == Self.imsi)
        #expect(identity["iccid"] as? String == Self.iccid)
        #expect(identity["eid"] as? String == Self.eid)
        #expect((a["module"] as? [String: Any])?["model"] as? String == Self.oddModel)
        #expect(a["recorded"] as? Bool == true)
        #expect(a["enrolled"] as? Bool == true)
        #expect(a["sim_present"] as? Bool == true)
        #expect(a["present"] as? Bool == true)
        #expect(a["sim_state"] as? String == "ready")
        #expect(a["sim_hotswap_unavailable"] as? Bool == true)
        let readA = try #require(a["last_read"] as? [String: Any])
        #expect(readA["status"] as? String == "warning")
        #expect(
            (readA["problems"] as? [[String: Any]])?.compactMap { $0["code"] as? String } == ["sim_hotswap_unavailable"]
        )
        let eventA = try #require(a["last_event"] as? [String: Any])
        #expect(eventA["type"] as? String == "enrolled")
        #expect((eventA["delivery"] as? [String: Any])?["state"] as? String == "pending")

        let b = try #require(slots.first { $0["slot"] as? String == Self.slotB })
        #expect(b["sim_state"] as? String == "absent")
        #expect((b["last_read"] as? [String: Any])?["status"] as? String == "error")
        #expect(b["sim_hotswap_unavailable"] as? Bool == false)
        #expect(b["last_event"] is NSNull)
        #expect(b["enrolled"] as? Bool == false)
        #expect(
            (b["identity"] as? [String: Any])?["imsi"] == nil, "identity follows the event's rule: unknown left out")

        let c = try #require(slots.first { $0["slot"] as? String == Self.slotC })
        #expect(c["recorded"] as? Bool == false)
        #expect(c["last_read"] is NSNull)
        #expect(c["sim_state"] as? String == "unknown")
        #expect(c["sim_hotswap_unavailable"] is NSNull)
        #expect(c["last_event"] is NSNull)
        #expect(c["port"] as? String == Self.slotC)
    }

    /// The last event in `status --json` is the event `events --json` prints: same names, same values.
    @Test func statusAgreesWithEvents() async throws {
        let setup = try Self.makeState()
        defer { try? FileManager.default.removeItem(atPath: setup.directory) }
        let (_, statusOut, _) = try await Self.run(["status", "--json", "--state-directory", setup.directory])
        let (eventsStatus, eventsOut, err) = try await Self.run([
            "events", "--json", "--state-directory", setup.directory,
        ])
        #expect(eventsStatus == 0, "\(err)")
        let events = try eventsOut.split(separator: "\n").map { try Self.object($0) }
        let slots = try #require(try Self.object(statusOut)["slots"] as? [[String: Any]])
        var compared = 0
        for slot in slots {
            guard let last = slot["last_event"] as? [String: Any] else { continue }
            let event = try #require(events.last { $0["id"] as? String == last["id"] as? String })
            for key in last.keys {
                let mine = try JSONSerialization.data(withJSONObject: [last[key]!], options: [.sortedKeys])
                let theirs = try JSONSerialization.data(
                    withJSONObject: [event[key] ?? NSNull()], options: [.sortedKeys])
                #expect(mine == theirs, "\(key): status and events disagree")
            }
            #expect(event["slot"] as? String == slot["slot"] as? String)
            #expect(event["sequence"] as? Int == slot["sequence"] as? Int)
            let same = try JSONSerialization.data(withJSONObject: slot["module"]!, options: [.sortedKeys])
            let theirs = try JSONSerialization.data(withJSONObject: event["module"]!, options: [.sortedKeys])
            #expect(same == theirs, "module")
            compared += 1
        }
        #expect(compared == 1, "slot A's enrolled (B and C have no event)")
    }

    @Test func statusJSONWithoutStateExitsTwo() async throws {
        let (status, out, err) = try await Self.run(["status", "--json", "--state-directory", "/nonexistent/cellprov"])
        #expect(status == 2)
        #expect(out.isEmpty)
        #expect(!err.isEmpty)
    }

    // MARK: - inventory --format mender

    /// Mender's inventory rules: one `name=value` per line, the value after the first '='; a name given again
    /// makes a list; values URL-encoded (`%0A` for a line break).
    static func parseMender(_ text: String) throws -> [String: [String]] {
        #expect(text.isEmpty || text.hasSuffix("\n"))
        var attributes: [String: [String]] = [:]
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            let eq = try #require(line.firstIndex(of: "="), "not name=value: \(line)")
            let name = String(line[..<eq])
            #expect(name.range(of: "^[a-z0-9_]+$", options: .regularExpression) != nil, "name \(name)")
            #expect(!line.contains("\r"))
            let value = try #require(
                String(line[line.index(after: eq)...]).removingPercentEncoding, "encoding: \(line)")
            attributes[name, default: []].append(value)
        }
        return attributes
    }

    @Test func menderInventoryMaskedByDefault() async throws {
        let setup = try Self.makeState()
        defer { try? FileManager.default.removeItem(atPath: setup.directory) }
        let (status, out, err) = try await Self.run([
            "inventory", "--format", "mender", "--state-directory", setup.directory,
        ])
        #expect(status == 0, "\(err)")
        let attributes = try Self.parseMender(out)
        #expect(attributes.values.allSatisfy { $0.count == 1 }, "one value per name: \(attributes)")
        func value(_ name: String) -> String? { attributes[name]?.first }
        #expect(value("cellprov_modems") == "3")
        #expect(value("cellprov_outbox_pending") == "1")
        // Modems numbered in slot order.
        let order = [Self.slotA, Self.slotB, Self.slotC].sorted()
        let n = { (slot: String) in "cellprov_modem\(order.firstIndex(of: slot)! + 1)_" }
        let a = n(Self.slotA)
        #expect(value(a + "slot") == Self.slotA)
        #expect(value(a + "module") == "Quectel \(Self.oddModel) EG25GR07", "the line break survives, encoded")
        #expect(out.contains("%0A") && out.contains("%25"))
        let p = setup.pseudonyms
        #expect(value(a + "imei") == "IMEI(TAC 35693803, ref \(p.reference(kind: "imei", value: Self.imei)))")
        #expect(value(a + "imsi")?.hasSuffix("ref \(p.reference(kind: "imsi", value: Self.imsi)))") == true)
        #expect(value(a + "iccid")?.hasSuffix("ref \(p.reference(kind: "iccid", value: Self.iccid)))") == true)
        #expect(value(a + "eid")?.hasSuffix("ref \(p.reference(kind: "eid", value: Self.eid)))") == true)
        #expect(value(a + "read_status") == "warning")
        #expect(value(a + "sim_state") == "ready")
        #expect(value(a + "last_change").flatMap { ISO8601DateFormatter().date(from: $0) } != nil)
        let b = n(Self.slotB)
        #expect(value(b + "read_status") == "error")
        #expect(value(b + "sim_state") == "absent")
        #expect(value(b + "imsi") == nil, "no SIM: no attribute")
        let c = n(Self.slotC)
        #expect(value(c + "read_status") == "not_read")
        #expect(value(c + "imei") == nil)
        for secret in [
            Self.imei, Self.imeiB, Self.imsi, Self.iccid, Self.eid, String(Self.imei.dropFirst(8)),
            String(Self.imsi.dropFirst(6)),
        ] {
            #expect(!out.contains(secret), "identifier digits in the masked inventory")
        }
    }

    @Test func menderInventoryInFullWhenAsked() async throws {
        let setup = try Self.makeState()
        defer { try? FileManager.default.removeItem(atPath: setup.directory) }
        let order = [Self.slotA, Self.slotB, Self.slotC].sorted()
        let a = "cellprov_modem\(order.firstIndex(of: Self.slotA)! + 1)_"
        let viaOption = try await Self.run(
            ["inventory", "--format", "mender", "--identifiers", "full", "--state-directory", setup.directory])
        let viaEnvironment = try await Self.run(
            ["inventory", "--state-directory", setup.directory], environment: ["CELLPROV_INVENTORY_IDENTIFIERS": "full"]
        )
        for (status, out, err) in [viaOption, viaEnvironment] {
            #expect(status == 0, "\(err)")
            let attributes = try Self.parseMender(out)
            #expect(attributes[a + "imei"] == [Self.imei])
            #expect(attributes[a + "imsi"] == [Self.imsi])
            #expect(attributes[a + "iccid"] == [Self.iccid])
            #expect(attributes[a + "eid"] == [Self.eid])
        }
        let bogus = try await Self.run(
            ["inventory", "--state-directory", setup.directory], environment: ["CELLPROV_INVENTORY_IDENTIFIERS": "all"])
        #expect(bogus.0 == 64)
        #expect(bogus.1.isEmpty)
    }

    /// Masked identifiers need the daemon's key: without it the references would be random at every run.
    @Test func menderInventoryWithoutTheKeyRefusesMasking() async throws {
        let setup = try Self.makeState(withKey: false)
        defer { try? FileManager.default.removeItem(atPath: setup.directory) }
        let (status, out, err) = try await Self.run(["inventory", "--state-directory", setup.directory])
        #expect(status == 2)
        #expect(out.isEmpty)
        #expect(err.contains("pseudonym.key"))
        let full = try await Self.run(["inventory", "--identifiers", "full", "--state-directory", setup.directory])
        #expect(full.0 == 0, "\(full.2)")
    }

    /// The installed script, as `make install` writes it (the cellprov path substituted), run as Mender runs it:
    /// without arguments (the default state directory, here through CELLPROV_STATE_DIRECTORY), and with
    /// --state-directory.
    @Test func installedWrapperRunsTheSubcommand() async throws {
        let setup = try Self.makeState()
        defer { try? FileManager.default.removeItem(atPath: setup.directory) }
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("mender/mender-inventory-cellprov")
        let text = try String(contentsOf: source, encoding: .utf8)
        #expect(text.hasPrefix("#!/bin/sh\n"))
        #expect(text.split(separator: "\n").count <= 3, "a wrapper, not a script with logic")
        let cellprov = ChildProcess.binDirectory.appendingPathComponent("cellprov").path
        let installed = setup.directory + "/mender-inventory-cellprov"
        try text.replacingOccurrences(of: "/usr/bin/cellprov", with: cellprov)
            .write(toFile: installed, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: installed)
        let direct = try await Self.run(["inventory", "--format", "mender", "--state-directory", setup.directory])

        for (arguments, environment) in [
            ([String](), ["CELLPROV_STATE_DIRECTORY": setup.directory]), (["--state-directory", setup.directory], [:]),
        ] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: installed)
            process.arguments = arguments
            var env = ProcessInfo.processInfo.environment
            for (k, v) in environment { env[k] = v }
            process.environment = env
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            #expect(String(decoding: data, as: UTF8.self) == direct.1)
        }
        #expect(try Self.parseMender(direct.1)["cellprov_modems"] == ["3"])
    }
}
