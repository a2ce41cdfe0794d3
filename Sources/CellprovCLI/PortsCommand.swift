import ArgumentParser
import CellprovCore
import CellprovSystemd
import CellprovUdev
import Dispatch
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `cellprov ports [--monitor] [--json]`: the ttys and WWAN ports udev knows, what each is for, and which one
/// cellprov would use.
struct PortsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ports",
        abstract: "List serial ports with their role, module slot and USB serial; optionally follow hotplug.",
        discussion: """
            One line per tty or WWAN port (a PCIe module's /dev/wwan0at0...): device node, role, module slot (the \
            USB device's ID_PATH, or the PCI device as pci-0000:55:00.0), USB serial, reason. \
            The port cellprov uses in each module is marked '*' (JSON: "chosen": true). Roles come from our udev \
            rules (CELLPROV_PORT_ROLE), else the port table, else ModemManager's hints, else 'unknown'; a WWAN \
            port's kernel type comes first (only AT ports are ever opened), then the rules, the table, and the \
            kernel's order (the first AT port). \
            Non-USB ports nothing names (virtual terminals, on-board UARTs) are listed only with --all. \
            With --monitor, add and remove events follow the list until SIGINT or SIGTERM.
            """
    )

    @Flag(help: "After the list, keep printing add/remove events until SIGINT/SIGTERM.")
    var monitor = false

    @Flag(help: "One JSON object per line on stdout.")
    var json = false

    @Flag(help: "Also list non-USB ports nothing names (virtual terminals, on-board UARTs).")
    var all = false

    @Option(
        name: .customLong("ports-table"),
        help: """
            Port table (default: the first of /usr/share/cellprov/ports.tsv, /usr/local/share/cellprov/ports.tsv, \
            <binary dir>/../../udev/ports.tsv).
            """)
    var portsTable: String?

    func run() async throws {
        let table = try Self.loadTable(explicit: portsTable)
        let udev: Udev
        do {
            udev = try Udev()
        } catch {
            Self.printError("cellprov ports: \(error)")
            throw ExitCode(2)
        }
        // Subscribe before enumerating, so nothing plugged in between is missed.
        var listener: UdevMonitor?
        if monitor {
            do {
                listener = try UdevMonitor(udev: udev)
            } catch {
                Self.printError("cellprov ports: \(error)")
                throw ExitCode(2)
            }
        }

        var known: [String: PortDecision] = [:]
        var lines: [(PortDecision, Bool)] = []
        let decisions = udev.enumeratePorts().map { PortClassifier.classify(PortCandidate($0), table: table) }
        for decision in decisions { known[decision.devnode] = decision }
        let chosen = Set(PortClassifier.chooseATPorts(decisions).compactMap(\.atPort?.devnode))
        for decision in decisions where all || Self.isInteresting(decision) {
            lines.append((decision, chosen.contains(decision.devnode)))
        }
        if !json { Self.write(Self.header) }
        for (decision, isChosen) in lines {
            Self.write(json ? Self.jsonLine(decision, chosen: isChosen, event: nil) : Self.textLine(decision, chosen: isChosen, event: nil))
        }

        guard let listener else { return }
        let signals = Self.stopOnSignals(listener)
        defer { signals.forEach { $0.cancel() } }
        for await device in listener.events {
            guard let devnode = device.devnode else { continue }
            let action = device.action ?? "change"
            var decision = PortClassifier.classify(PortCandidate(device), table: table)
            if action == "remove" {
                // A remove carries no parents: report what was known of the port.
                decision = known.removeValue(forKey: devnode) ?? decision
            } else {
                known[devnode] = decision
            }
            guard all || Self.isInteresting(decision) else { continue }
            var isChosen = false
            if action != "remove" {
                let sameSlot = known.values.filter { $0.slot == decision.slot }
                isChosen = PortClassifier.chooseATPorts(sameSlot).first?.atPort?.devnode == devnode
            }
            Self.write(
                json ? Self.jsonLine(decision, chosen: isChosen, event: action)
                    : Self.textLine(decision, chosen: isChosen, event: action))
        }
    }

    static func isInteresting(_ decision: PortDecision) -> Bool {
        !(decision.role == .ignored && decision.evidence == .none)
    }

    // MARK: Port table

    static func loadTable(explicit: String?) throws -> PortTable {
        do {
            let (table, path) = try PortTableFile.load(explicit: explicit)
            if path == nil {
                printError(
                    "cellprov ports: no port table found (\(PortTableFile.defaultPaths().joined(separator: ", "))); using udev properties only")
            }
            return table
        } catch {
            printError("cellprov ports: \(error)")
            throw ExitCode(error.isInvalid ? 78 : 66)
        }
    }

    // MARK: Output

    static let header = "DEVICE           ROLE           SLOT                                 USB SERIAL        REASON"

    static func textLine(_ d: PortDecision, chosen: Bool, event: String?) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
        let role = d.role.rawValue + (chosen ? "*" : "")
        let prefix = event.map { "\($0) " } ?? ""
        return prefix + pad(d.devnode, 17) + pad(role, 15) + pad(d.slot, 37) + pad(d.usbSerial ?? "-", 18) + d.reason
    }

    struct Record: Encodable {
        var event: String?
        var devnode: String
        var role: String
        var chosen: Bool
        var evidence: String
        var slot: String
        var usbSerial: String?
        var vendorID: String?
        var productID: String?
        var interface: String?
        var family: String?
        var reason: String

        func encode(to encoder: any Encoder) throws {
            // Explicit nulls, so every line has every key.
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(event, forKey: .event)
            try c.encode(devnode, forKey: .devnode)
            try c.encode(role, forKey: .role)
            try c.encode(chosen, forKey: .chosen)
            try c.encode(evidence, forKey: .evidence)
            try c.encode(slot, forKey: .slot)
            try c.encode(usbSerial, forKey: .usbSerial)
            try c.encode(vendorID, forKey: .vendorID)
            try c.encode(productID, forKey: .productID)
            try c.encode(interface, forKey: .interface)
            try c.encode(family, forKey: .family)
            try c.encode(reason, forKey: .reason)
        }

        enum CodingKeys: String, CodingKey {
            case event, devnode, role, chosen, evidence, slot, usbSerial, vendorID, productID, interface, family, reason
        }
    }

    static func jsonLine(_ d: PortDecision, chosen: Bool, event: String?) -> String {
        let record = Record(
            event: event, devnode: d.devnode, role: d.role.rawValue, chosen: chosen, evidence: d.evidence.rawValue,
            slot: d.slot, usbSerial: d.usbSerial, vendorID: d.vendorID, productID: d.productID,
            interface: d.interfaceNumber, family: d.family, reason: d.reason)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(record) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// One write(2) per line: stdout may be a pipe read line by line while monitoring.
    static func write(_ line: String) {
        StandardStream.output.write(line + "\n")
    }

    static func printError(_ line: String) {
        StandardStream.error.write(line + "\n")
    }

    /// SIGINT/SIGTERM stop the monitor; its event stream then finishes and the command returns (status 0).
    static func stopOnSignals(_ monitor: UdevMonitor) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { monitor.stop() }
            source.resume()
            return source
        }
    }
}

