import ArgumentParser
import CellprovCore
import CellprovStore
import CellprovSystemd
import FoundationEssentials

/// `cellprov inventory --format mender`: the modems as a device-management inventory. The installed
/// `mender-inventory-cellprov` (mender/mender-inventory-cellprov) is a wrapper exec'ing it, run by the Mender
/// client without arguments.
struct InventoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory",
        abstract: "Print the modems' identities as inventory attributes (Mender's name=value lines).",
        discussion: """
            Reads the state database read-only. Identifiers are masked by default (the references the registry and \
            the journal use; needs the daemon's pseudonym.key); --identifiers full, or \
            CELLPROV_INVENTORY_IDENTIFIERS=full in the environment, prints the digits. Exit status 2: no state, or \
            the key cannot be read.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case mender
    }

    enum Identifiers: String, ExpressibleByArgument, CaseIterable {
        case masked, full
    }

    @OptionGroup var state: StateOptions

    @Option(help: "Output format: mender (name=value lines).")
    var format: Format = .mender

    @Option(help: "masked (default: TAC/MCC-MNC/issuer and the keyed reference) or full (the digits).")
    var identifiers: Identifiers?

    static let environmentKey = "CELLPROV_INVENTORY_IDENTIFIERS"

    func run() throws {
        let choice: Identifiers
        if let identifiers {
            choice = identifiers
        } else if let env = ProcessInfo.processInfo.environment[Self.environmentKey], !env.isEmpty {
            guard let value = Identifiers(rawValue: env) else {
                StandardStream.error.write("cellprov: \(Self.environmentKey) must be masked or full\n")
                throw ExitCode(64)
            }
            choice = value
        } else {
            choice = .masked
        }
        if choice == .masked {
            // A reference made with a random key would change at every run (and match nothing in the registry):
            // refuse rather than publish noise.
            let path = state.stateDirectory + "/" + PseudonymKeyFile.fileName
            guard FileManager.default.isReadableFile(atPath: path) else {
                StandardStream.error.write(
                    "cellprov: \(path) cannot be read: masked identifiers need the daemon's key (run as root or the "
                        + "cellprov user, or after cellprovd has started once)\n")
                throw ExitCode(2)
            }
        }
        let store = try state.openStore()
        let view: StatusView
        do {
            view = try StatusView(store: store, lastEvents: false)
        } catch {
            StandardStream.error.write("cellprov: \(error)\n")
            throw ExitCode(2)
        }
        let lines = MenderInventory.lines(view, full: choice == .full)
        StandardStream.output.write(lines.map { $0 + "\n" }.joined())
    }
}

/// Mender's inventory script output (Mender documentation, "Client configuration > Inventory"): one `name=value`
/// per line; a name given more than once becomes a list; no literal line break in a name or a value, other special
/// characters URL-encoded (`%0A`). Names are `cellprov_…` in lower case, one set per modem numbered from 1 in slot
/// order (a physical position: the numbers are stable while the hardware is), so that a value missing from one
/// modem cannot shift another's into its place.
enum MenderInventory {
    static func lines(_ view: StatusView, full: Bool) -> [String] {
        var out: [String] = []
        func add(_ name: String, _ value: String?) {
            guard let value, !value.isEmpty else { return }
            out.append("cellprov_\(name)=\(encode(value))")
        }
        add("modems", "\(view.slots.count)")
        add("outbox_pending", "\(view.outboxPending)")
        let f = Date.ISO8601FormatStyle()
        for (index, slot) in view.slots.enumerated() {
            let p = "modem\(index + 1)_"
            add(p + "slot", slot.slot)
            if let r = slot.record {
                let module = [r.module.manufacturer, r.module.model, r.module.revision].compactMap { $0 }
                    .joined(separator: " ")
                add(p + "module", module)
                let id = r.identity
                add(p + "imei", full ? id.imei : id.imei.map { _ in id.redactedIMEI })
                add(p + "imsi", full ? id.imsi : id.imsi.map { _ in id.redactedIMSI })
                add(p + "iccid", full ? id.iccid : id.iccid.map { _ in id.redactedICCID })
                add(p + "eid", full ? id.eid : id.eid.map { _ in id.redactedEID })
                add(p + "last_change", f.format(r.updatedAt))
            }
            add(p + "read_status", slot.readStatus.rawValue)
            add(p + "sim_state", slot.simState.rawValue)
        }
        return out
    }

    /// URL-style encoding of what Mender's line format cannot carry: `%` itself, line breaks and every other
    /// control character (module text is the modem's, cleaned but untrusted).
    static func encode(_ value: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in value.unicodeScalars {
            let v = scalar.value
            guard v < 0x20 || (0x7F...0x9F).contains(v) || v == 0x25 || v == 0x2028 || v == 0x2029 else {
                out.append(scalar)
                continue
            }
            for byte in String(scalar).utf8 {
                let hex = String(byte, radix: 16, uppercase: true)
                out.append(contentsOf: ("%" + (hex.count == 1 ? "0" + hex : hex)).unicodeScalars)
            }
        }
        return String(out)
    }
}
