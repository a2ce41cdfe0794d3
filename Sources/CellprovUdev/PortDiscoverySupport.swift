import CellprovCore
import FoundationEssentials

extension PortCandidate {
    /// udev's view of a port (a tty or a WWAN port), as the pure classifier's input.
    public init(_ device: UdevDevice) {
        self.init(
            devnode: device.devnode ?? device.syspath,
            properties: device.properties,
            usbInterface: device.usbInterface,
            usbParentSyspath: device.usbDevice?.syspath,
            usbProperties: device.usbDevice?.properties ?? [:],
            usbAttributes: device.usbDevice?.attributes ?? [:],
            syspath: device.syspath,
            subsystem: device.subsystem,
            wwanTypeAttribute: device.wwanType,
            pciParentSyspath: device.pciDevice?.syspath,
            pciAttributes: device.pciDevice?.attributes ?? [:]
        )
    }
}

/// Finds and loads the vendor port table (udev/ports.tsv, installed as <prefix>/share/cellprov/ports.tsv).
public enum PortTableFile {
    public struct Error: Swift.Error, Sendable, CustomStringConvertible {
        public var description: String
        /// True for a table that exists but does not parse (a configuration error).
        public var isInvalid: Bool
    }

    /// Installed locations, then the build tree's udev/ (so `.build/debug/cellprov` finds the table).
    public static func defaultPaths() -> [String] {
        var paths = ["/usr/share/cellprov/ports.tsv", "/usr/local/share/cellprov/ports.tsv"]
        // argv[0] keeps the .build/debug symlink; /proc/self/exe resolves it to .build/<triple>/debug.
        let argv0 = CommandLine.arguments.first ?? ""
        if argv0.contains("/") {
            let dir = PathText.deletingLastComponent(argv0)
            paths.append(PathText.normalized(PathText.appending("../../udev/ports.tsv", to: dir)))
            paths.append(PathText.normalized(PathText.appending("../share/cellprov/ports.tsv", to: dir)))
        }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let dir = PathText.deletingLastComponent(exe)
            paths.append(PathText.normalized(PathText.appending("../../udev/ports.tsv", to: dir)))
            paths.append(PathText.normalized(PathText.appending("../../../udev/ports.tsv", to: dir)))
            paths.append(PathText.normalized(PathText.appending("../share/cellprov/ports.tsv", to: dir)))
        }
        var seen = Set<String>()
        return paths.filter { seen.insert($0).inserted }
    }

    /// The table at `explicit`, or the first default location that exists; nil path: no table found (the
    /// classifier then relies on udev properties alone).
    public static func load(explicit: String?) throws(Error) -> (table: PortTable, path: String?) {
        let path: String
        if let explicit {
            path = explicit
        } else if let found = defaultPaths().first(where: { FileManager.default.isReadableFile(atPath: $0) }) {
            path = found
        } else {
            return (PortTable(), nil)
        }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Error(description: "cannot read \(path): \(error)", isInvalid: false)
        }
        do {
            return (try PortTable(tsv: text), path)
        } catch {
            throw Error(description: "\(path): \(error)", isInvalid: true)
        }
    }
}
