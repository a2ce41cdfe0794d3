// Linux WWAN framework ports (drivers/net/wwan, Linux 5.13 and later): the control ports of PCIe modules
// (mhi_wwan_ctrl for Qualcomm-based modules, iosm for Intel, t7xx for MediaTek). Pure: names and attributes in,
// values out.
//
// The kernel names a port `wwan<N><type><index>` ("wwan0at0", "wwan0mbim0", "wwan0qcdm0") and gives it a sysfs
// attribute `type` ("AT", "MBIM", "QMI", "QCDM", "FIREHOSE", "XMMRPC", "FASTBOOT", "ADB", "MIPC", "NMEA"). Linux 5.13
// had no `type` attribute and named ports `wwan<N>p<port><TYPE>` ("wwan0p1AT", "wwan0p2MBIM"): the type is then the
// name's suffix and the per-type index is unknown. A WWAN port is a character device, not a tty.

/// A WWAN port's kernel name, parsed.
public struct WWANPortName: Sendable, Hashable, CustomStringConvertible {
    /// The WWAN device number (the N of wwanN).
    public var device: Int
    /// The port type, upper case as in the sysfs `type` attribute ("AT", "MBIM"...).
    public var type: String
    /// The index among the device's ports of this type (the 1 of "wwan0at1"); nil for Linux 5.13 names.
    public var index: Int?

    public init(device: Int, type: String, index: Int?) {
        self.device = device
        self.type = type
        self.index = index
    }

    /// Parses "wwan0at1" or (Linux 5.13) "wwan0p1AT"; a path is reduced to its last component first.
    /// Nil for anything else (a tty, the `wwan0` device itself).
    public init?(kernelName: String) {
        let name = kernelName.split(separator: "/").last.map(String.init) ?? kernelName
        guard name.hasPrefix("wwan") else { return nil }
        var rest = Substring(name.dropFirst(4))
        guard let device = Self.number(&rest) else { return nil }
        self.device = device
        if rest.first == "p", let second = rest.dropFirst().first, second.isNumber {
            // Linux 5.13: wwan0p1AT. The port number is global to the device, not per type.
            rest = rest.dropFirst()
            guard Self.number(&rest) != nil, !rest.isEmpty, rest.allSatisfy({ $0.isLetter && $0.isASCII }) else {
                return nil
            }
            type = rest.uppercased()
            index = nil
            return
        }
        let letters = rest.prefix { $0.isLetter && $0.isASCII && $0.isLowercase }
        guard !letters.isEmpty else { return nil }
        rest = rest.dropFirst(letters.count)
        guard let index = Self.number(&rest), rest.isEmpty else { return nil }
        type = letters.uppercased()
        self.index = index
    }

    /// "at1": the port's name without its device prefix, the key of the port table's WWAN rows. Nil for Linux 5.13
    /// names (no per-type index).
    public var portKey: String? {
        index.map { "\(type.lowercased())\($0)" }
    }

    public var description: String {
        if let index { return "wwan\(device)\(type.lowercased())\(index)" }
        return "wwan\(device)p?\(type)"
    }

    private static func number(_ text: inout Substring) -> Int? {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count <= 6, let value = Int(digits) else { return nil }
        text = text.dropFirst(digits.count)
        return value
    }
}

/// What the WWAN framework's port types mean to cellprov.
public enum WWANPortType {
    /// The only type cellprov ever opens.
    public static let at = "AT"

    /// The role a port of `type` has whatever else is said about it: nil for AT (the rules, the table and the
    /// index decide), else a role that is never opened. QCDM (Qualcomm DIAG) and NMEA keep their names; MBIM, QMI,
    /// FIREHOSE (flash programming), XMMRPC, FASTBOOT, ADB, MIPC and types unknown today are `ignore`.
    public static func fixedRole(_ type: String) -> PortRole? {
        switch type.uppercased() {
        case at: nil
        case "QCDM": .qcdm
        case "NMEA": .gps
        default: .ignored
        }
    }
}

/// The PCI address of the nearest PCI device above a sysfs path: "/sys/devices/pci0000:00/0000:00:1c.0/
/// 0000:55:00.0/mhi0/wwan/wwan0/wwan0at0" -> "0000:55:00.0". Nil when the path runs through no PCI device.
public enum PCIAddress {
    public static func nearest(in syspath: String) -> String? {
        syspath.split(separator: "/").reversed().first(where: { isAddress($0) }).map(String.init)
    }

    /// "0000:55:00.0": domain (4 hex), bus (2 hex), device (2 hex), function (0-7).
    public static func isAddress<S: StringProtocol>(_ text: S) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[0].allSatisfy(\.isHexDigit),
            parts[1].allSatisfy(\.isHexDigit)
        else { return false }
        let deviceFunction = parts[2].split(separator: ".", omittingEmptySubsequences: false)
        guard deviceFunction.count == 2, deviceFunction[0].count == 2, deviceFunction[0].allSatisfy(\.isHexDigit),
            deviceFunction[1].count == 1, let function = deviceFunction[1].first, ("0"..."7").contains(function)
        else { return false }
        return true
    }
}
