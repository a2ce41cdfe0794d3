// Port classification: which serial port of which module cellprov may open. Pure: values in, values out.
//
// Evidence, strongest first (the first that names a role decides):
//   1. our udev rules (udev/77-cellprov.rules): CELLPROV_PORT_ROLE (at | at-secondary | qcdm | gps | ignore)
//      and CELLPROV_MODULE (the family), set on the tty;
//   2. our port table (udev/ports.tsv, the same knowledge as data) by VID:PID and interface number, or by
//      interface class/subclass/protocol for vendors that number interfaces per configuration (Huawei);
//   3. ModemManager's port hints from its own rules: ID_MM_PORT_TYPE_AT_PRIMARY -> at,
//      _AT_SECONDARY -> at-secondary, _AT_PPP -> modem-data, _QCDM -> qcdm, _GPS / _GPS_CONTROL -> gps;
//   4. nothing: `unknown` for a USB port, `ignore` for a non-USB one (a platform UART modem is named by a
//      local udev rule setting CELLPROV_PORT_ROLE=at, which is evidence 1).
//
// A WWAN framework port (PCIe modules: subsystem "wwan", see WWANPort.swift) is decided differently: its kernel
// port type comes first and is final for every type but AT (an MBIM, QMI, QCDM, FIREHOSE... port is never opened,
// whatever a rule says); an AT port then follows our rules, then the table (keyed by the module's PCI subsystem
// IDs and the port's name, "at1"), then the kernel's order: the module's first AT port ("at0") is `at`, further
// ones `at-secondary`. ModemManager's hints are not used for WWAN ports: MM probes every WWAN AT port itself.
//
// The table comes before ModemManager's hints on purpose: for a module it knows, the table picks the AT port
// ModemManager does NOT use as its primary (e.g. the EC25's interface 03, where MM's hint says 02), so
// when our rules are not installed but MM's are, following MM's hint would make cellprov share MM's port.
// MM's hints are used for modules absent from the table, where they are the best evidence there is.
// ID_MM_PORT_IGNORE is not evidence of a role: it says ModemManager leaves the port alone (our rules set it on
// the port cellprov takes).

/// What a serial port is for.
public enum PortRole: String, Sendable, Hashable, Codable, CaseIterable {
    /// The port cellprov opens (one per module).
    case at
    /// Another AT port: left to ModemManager, never opened.
    case atSecondary = "at-secondary"
    /// Qualcomm DIAG/QCDM binary protocol: never opened.
    case qcdm
    /// NMEA output: never opened.
    case gps
    /// A data (PPP) port that also speaks AT (ModemManager's AT_PPP): never opened.
    case modemData = "modem-data"
    /// Nothing says what it is; opened only by an opted-in probe (`shouldProbeUnknown`).
    case unknown
    /// Debug, audio, a console, a non-USB UART: never opened.
    case ignored = "ignore"

    /// The value as written in CELLPROV_PORT_ROLE and ports.tsv ("ignore", "at-secondary"...).
    public init?(ruleValue: String) {
        self.init(rawValue: ruleValue.lowercased())
    }
}

/// Where a decision came from, strongest first.
public enum PortEvidence: String, Sendable, Hashable, Codable, Comparable {
    case rules
    case table
    /// The WWAN framework's port type and name (a PCIe module's ports): see WWANPort.swift.
    case kernel
    case modemManager = "modem-manager"
    case none

    var rank: Int {
        switch self {
        case .rules: 0
        case .table: 1
        case .kernel: 2
        case .modemManager: 3
        case .none: 4
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
}

/// What the classifier knows of one tty: udev's view of it, as plain values (CellprovUdev fills it in).
public struct PortCandidate: Sendable, Equatable {
    /// "/dev/ttyUSB3".
    public var devnode: String
    /// The tty's own udev properties (CELLPROV_*, ID_MM_*, ID_PATH, ID_USB_INTERFACE_NUM...).
    public var properties: [String: String]
    /// The usb_interface parent's attributes (bInterfaceNumber, bInterfaceClass, bInterfaceSubClass,
    /// bInterfaceProtocol, driver); nil for a non-USB tty.
    public var usbInterface: [String: String]?
    /// The usb_device parent's syspath; nil for a non-USB tty.
    public var usbParentSyspath: String?
    /// The usb_device parent's udev properties (ID_PATH, ID_SERIAL_SHORT...).
    public var usbProperties: [String: String]
    /// The usb_device parent's sysfs attributes (idVendor, idProduct, serial...).
    public var usbAttributes: [String: String]
    /// The port's syspath, when known (tells virtual terminals apart; a WWAN port's PCI address is in it).
    public var syspath: String?
    /// The udev subsystem: "tty", or "wwan" for a WWAN framework port.
    public var subsystem: String?
    /// A WWAN port's sysfs `type` attribute ("AT", "MBIM"...); nil on Linux 5.13, which had none.
    public var wwanTypeAttribute: String?
    /// The nearest PCI device above the port (a PCIe module), when it is not a USB port.
    public var pciParentSyspath: String?
    /// That PCI device's sysfs attributes: vendor, device, subsystem_vendor, subsystem_device ("0x1eac").
    public var pciAttributes: [String: String]

    public init(
        devnode: String, properties: [String: String] = [:], usbInterface: [String: String]? = nil,
        usbParentSyspath: String? = nil, usbProperties: [String: String] = [:], usbAttributes: [String: String] = [:],
        syspath: String? = nil, subsystem: String? = nil, wwanTypeAttribute: String? = nil,
        pciParentSyspath: String? = nil, pciAttributes: [String: String] = [:]
    ) {
        self.devnode = devnode
        self.properties = properties
        self.usbInterface = usbInterface
        self.usbParentSyspath = usbParentSyspath
        self.usbProperties = usbProperties
        self.usbAttributes = usbAttributes
        self.syspath = syspath
        self.subsystem = subsystem
        self.wwanTypeAttribute = wwanTypeAttribute
        self.pciParentSyspath = pciParentSyspath
        self.pciAttributes = pciAttributes
    }

    /// True for a WWAN framework port (a character device, not a tty).
    public var isWWAN: Bool {
        (subsystem ?? properties["SUBSYSTEM"]) == "wwan" || properties["DEVTYPE"] == "wwan_port"
    }

    /// The WWAN port's kernel name, parsed from the devnode (or the syspath); nil for a tty.
    public var wwanName: WWANPortName? {
        guard isWWAN else { return nil }
        return WWANPortName(kernelName: devnode) ?? syspath.flatMap { WWANPortName(kernelName: $0) }
    }

    /// The WWAN port type: the sysfs `type` attribute, else (Linux 5.13) the name's suffix.
    public var wwanType: String? {
        guard isWWAN else { return nil }
        if let attribute = wwanTypeAttribute.map(PortKeys.trim), !attribute.isEmpty { return attribute.uppercased() }
        return wwanName?.type
    }

    /// The PCI device's vendor and device IDs (what `lspci -nn` shows; for Qualcomm-based modules the chipset's).
    public var pciID: (vendor: String, device: String)? {
        guard let vendor = PortKeys.hex4(pciAttributes["vendor"]), let device = PortKeys.hex4(pciAttributes["device"])
        else { return nil }
        return (vendor, device)
    }

    /// The PCI subsystem vendor and device IDs: the module maker's (Telit 1c5d:2010 on a Qualcomm 17cb:0308).
    public var pciSubsystemID: (vendor: String, device: String)? {
        guard let vendor = PortKeys.hex4(pciAttributes["subsystem_vendor"]),
            let device = PortKeys.hex4(pciAttributes["subsystem_device"])
        else { return nil }
        return (vendor, device)
    }

    /// True when the tty sits on a USB device (a parent was found, or udev says ID_BUS=usb).
    public var isUSB: Bool {
        usbParentSyspath != nil || usbInterface != nil || properties["ID_BUS"] == "usb"
    }

    /// idVendor, 4 lower-case hex digits; for a PCIe module's WWAN port, the PCI vendor.
    public var vendorID: String? {
        if isWWAN && !isUSB { return pciID?.vendor }
        return PortKeys.hex4(usbAttributes["idVendor"] ?? usbProperties["ID_VENDOR_ID"] ?? properties["ID_VENDOR_ID"])
    }

    /// idProduct, 4 lower-case hex digits; for a PCIe module's WWAN port, the PCI device.
    public var productID: String? {
        if isWWAN && !isUSB { return pciID?.device }
        return PortKeys.hex4(usbAttributes["idProduct"] ?? usbProperties["ID_MODEL_ID"] ?? properties["ID_MODEL_ID"])
    }

    /// bInterfaceNumber, 2 lower-case hex digits.
    public var interfaceNumber: String? {
        PortKeys.hex2(usbInterface?["bInterfaceNumber"] ?? properties["ID_USB_INTERFACE_NUM"])
    }

    /// "ff/00/00": bInterfaceClass/SubClass/Protocol, when all three are known.
    public var interfaceClassTriple: String? {
        guard let i = usbInterface, let c = PortKeys.hex2(i["bInterfaceClass"]),
            let s = PortKeys.hex2(i["bInterfaceSubClass"]), let p = PortKeys.hex2(i["bInterfaceProtocol"])
        else { return nil }
        return "\(c)/\(s)/\(p)"
    }

    /// The kernel driver of the USB interface (option, qcserial, cdc_acm...).
    public var driver: String? {
        usbInterface?["driver"] ?? properties["ID_USB_DRIVER"]
    }

    /// The module's slot: the USB device's ID_PATH (e.g. "pci-0000:00:14.0-usb-0:2"); if only the tty's
    /// ID_PATH is known, that with its ":config.interface" suffix removed; else the USB device's syspath. A PCIe
    /// module's WWAN port: its PCI device, as udev's path_id spells it ("pci-0000:55:00.0"), the physical M.2
    /// slot as the USB port is for a USB module. Any other non-USB port: the devnode.
    public var slot: String {
        if isWWAN && !isUSB {
            // The port's own path first: it names the module's PCI device even before that device can be read.
            let address = syspath.flatMap { PCIAddress.nearest(in: $0) }
                ?? pciParentSyspath.flatMap { PCIAddress.nearest(in: $0) }
            if let address { return "pci-\(address)" }
            // A WWAN device on no PCI bus (an SoC's rpmsg modem): the device the wwanN sits on.
            if let syspath, let range = syspath.firstRange(of: "/wwan/wwan") { return String(syspath[..<range.lowerBound]) }
            return devnode
        }
        guard isUSB else { return devnode }
        if let path = usbProperties["ID_PATH"], !path.isEmpty { return path }
        if let path = properties["ID_PATH"], !path.isEmpty { return PortKeys.stripInterfaceSuffix(path) }
        return usbParentSyspath ?? devnode
    }

    /// The USB device's serial number (ID_SERIAL_SHORT, else the sysfs `serial`).
    public var usbSerial: String? {
        let value = usbProperties["ID_SERIAL_SHORT"] ?? properties["ID_SERIAL_SHORT"] ?? usbAttributes["serial"]
        guard let value, !value.isEmpty else { return nil }
        return value
    }
}

/// The classifier's answer for one port. `reason` never carries the USB serial or another identifier.
public struct PortDecision: Sendable, Equatable {
    public var devnode: String
    public var role: PortRole
    public var evidence: PortEvidence
    /// The module's slot (see `PortCandidate.slot`).
    public var slot: String
    public var usbSerial: String?
    public var vendorID: String?
    public var productID: String?
    public var interfaceNumber: String?
    /// The module family (CELLPROV_MODULE, or the table's), e.g. "quectel-ec2x".
    public var family: String?
    public var reason: String

    public init(
        devnode: String, role: PortRole, evidence: PortEvidence, slot: String, usbSerial: String? = nil,
        vendorID: String? = nil, productID: String? = nil, interfaceNumber: String? = nil, family: String? = nil,
        reason: String
    ) {
        self.devnode = devnode
        self.role = role
        self.evidence = evidence
        self.slot = slot
        self.usbSerial = usbSerial
        self.vendorID = vendorID
        self.productID = productID
        self.interfaceNumber = interfaceNumber
        self.family = family
        self.reason = reason
    }
}

/// All ports of one module (one slot) and the AT port chosen for it.
public struct ModulePorts: Sendable, Equatable {
    public var slot: String
    public var usbSerial: String?
    public var vendorID: String?
    public var productID: String?
    public var family: String?
    /// Every port of the module, by interface number then devnode.
    public var ports: [PortDecision]
    /// The one port cellprov opens; nil when no port of the module has role `at`.
    public var atPort: PortDecision?
    public var reason: String
}

public enum PortClassifier {
    /// ModemManager's port hints, in the order they are checked.
    static let modemManagerHints: [(property: String, role: PortRole)] = [
        ("ID_MM_PORT_TYPE_AT_PRIMARY", .at),
        ("ID_MM_PORT_TYPE_AT_SECONDARY", .atSecondary),
        ("ID_MM_PORT_TYPE_AT_PPP", .modemData),
        ("ID_MM_PORT_TYPE_QCDM", .qcdm),
        ("ID_MM_PORT_TYPE_GPS", .gps),
        ("ID_MM_PORT_TYPE_GPS_CONTROL", .gps),
    ]

    /// Decides one port's role. See the top of this file for the order of evidence.
    public static func classify(_ candidate: PortCandidate, table: PortTable) -> PortDecision {
        var decision = PortDecision(
            devnode: candidate.devnode, role: .unknown, evidence: .none, slot: candidate.slot,
            usbSerial: candidate.isUSB ? candidate.usbSerial : nil,
            vendorID: candidate.vendorID, productID: candidate.productID,
            interfaceNumber: candidate.interfaceNumber,
            family: nonEmpty(candidate.properties["CELLPROV_MODULE"]),
            reason: ""
        )
        let usbID = "\(decision.vendorID ?? "?"):\(decision.productID ?? "?")"
        let interface = decision.interfaceNumber ?? candidate.interfaceClassTriple ?? "?"
        let mmNote = isSet(candidate.properties["ID_MM_PORT_IGNORE"]) ? "; ModemManager ignores it" : ""
        if candidate.isWWAN { return classifyWWAN(candidate, decision: decision, table: table, mmNote: mmNote) }

        // The table's row, if any: its family names the module whatever the evidence for the role.
        var row: PortTable.Row?
        if let vendor = decision.vendorID, let product = decision.productID {
            row = table.lookup(
                vendor: vendor, product: product, interfaceNumber: decision.interfaceNumber,
                classTriple: candidate.interfaceClassTriple)
        }
        if decision.family == nil { decision.family = row?.family }

        // 1. Our rules.
        if let value = nonEmpty(candidate.properties["CELLPROV_PORT_ROLE"]) {
            if let role = PortRole(ruleValue: value) {
                decision.role = role
                decision.evidence = .rules
                decision.reason = "udev rules: CELLPROV_PORT_ROLE=\(role.rawValue)"
                    + (decision.family.map { " (\($0))" } ?? "") + mmNote
                return decision
            }
            // An unknown value (newer rules?) is not evidence; fall through to the table.
        }

        // 2. Our table.
        if let row {
            decision.role = row.role
            decision.evidence = .table
            decision.reason = "port table: \(usbID) interface \(row.interface) is \(row.role.rawValue) (\(row.family))"
                + mmNote
            return decision
        }

        // 3. ModemManager's hints.
        for hint in modemManagerHints where isSet(candidate.properties[hint.property]) {
            decision.role = hint.role
            decision.evidence = .modemManager
            let short = hint.property.dropFirst("ID_MM_PORT_TYPE_".count)
            decision.reason = "ModemManager hint \(short) on \(usbID) interface \(interface)"
                + (hint.role == .at ? " (ModemManager uses this port too unless it is told to ignore it)" : "")
                + mmNote
            return decision
        }

        // 4. Nothing.
        if !candidate.isUSB {
            decision.role = .ignored
            let virtual = candidate.syspath?.contains("/devices/virtual/") ?? false
            decision.reason = virtual
                ? "virtual terminal" : "not a USB port and no udev rule names it (set CELLPROV_PORT_ROLE=at to use it)"
            return decision
        }
        decision.role = .unknown
        decision.reason = "no rule, table row or ModemManager hint for \(usbID) interface \(interface)" + mmNote
        return decision
    }

    /// A WWAN framework port: the kernel's port type first (final unless AT), then for an AT port our rules, the
    /// table, and the kernel's order (see the top of this file).
    static func classifyWWAN(
        _ candidate: PortCandidate, decision start: PortDecision, table: PortTable, mmNote: String
    ) -> PortDecision {
        var decision = start
        let name = candidate.wwanName
        decision.interfaceNumber = name?.portKey
        decision.usbSerial = candidate.isUSB ? candidate.usbSerial : nil
        let portName = name?.description ?? "WWAN port"
        guard let type = candidate.wwanType else {
            decision.role = .ignored
            decision.evidence = .kernel
            decision.reason = "WWAN port of unknown type (no type attribute, name not understood): never opened"
            return decision
        }
        if let fixed = WWANPortType.fixedRole(type) {
            decision.role = fixed
            decision.evidence = .kernel
            decision.reason = "WWAN \(type) port: never opened (kernel port type)"
            return decision
        }
        // The module's identity for the table: the PCI subsystem IDs (the module maker's), or the USB IDs.
        let ids: (vendor: String, device: String)? =
            candidate.isUSB
            ? candidate.vendorID.flatMap { v in candidate.productID.map { (v, $0) } } : candidate.pciSubsystemID
        let moduleID = ids.map { "\($0.vendor):\($0.device)" } ?? "?"
        var row: PortTable.Row?
        if let ids, let key = name?.portKey {
            row = table.lookupWWAN(vendor: ids.vendor, product: ids.device, port: key)
        }
        if decision.family == nil { decision.family = row?.family }

        if let value = nonEmpty(candidate.properties["CELLPROV_PORT_ROLE"]), let role = PortRole(ruleValue: value) {
            decision.role = role
            decision.evidence = .rules
            decision.reason = "udev rules: CELLPROV_PORT_ROLE=\(role.rawValue) on WWAN AT port \(portName)"
                + (decision.family.map { " (\($0))" } ?? "") + mmNote
            return decision
        }
        if let row {
            decision.role = row.role
            decision.evidence = .table
            decision.reason = "port table: module \(moduleID) WWAN port \(row.interface) is \(row.role.rawValue) "
                + "(\(row.family))" + mmNote
            return decision
        }
        decision.evidence = .kernel
        // The kernel lets ModemManager open the same WWAN port: only our rules' ID_MM_PORT_IGNORE keeps it off.
        let hidden = mmNote.isEmpty ? "; not hidden from ModemManager (install udev/77-cellprov.rules)" : mmNote
        switch name?.index {
        case 0?:
            decision.role = .at
            decision.reason = "WWAN AT port \(portName): the module's first AT port" + hidden
        case let index?:
            decision.role = .atSecondary
            decision.reason = "WWAN AT port \(portName): AT port \(index + 1) of the module, left to ModemManager"
                + mmNote
        case nil:
            decision.role = .at
            decision.reason = "WWAN AT port \(portName) (Linux 5.13 naming: its only AT port)" + hidden
        }
        return decision
    }

    /// USB serial drivers whose vendor-specific (class ff) interfaces an opted-in probe may try.
    public static let probeableVendorDrivers: Set<String> = ["option", "qcserial", "sierra"]

    /// Whether an `unknown` port may be probed with AT commands to find out whether it is an AT port.
    ///
    /// Only when the user opted in, only for a USB port nothing classified (`classify` gave `unknown`, so
    /// no rule, table row or ModemManager hint said QCDM, GPS/NMEA, data or ignore), not one ModemManager's rules
    /// told MM to ignore (MM's rules ignore debug and audio ports), and only when the interface looks like a
    /// modem:
    ///   - CDC-ACM: bInterfaceClass 02 with bInterfaceSubClass 02 (Abstract Control Model), any driver; a
    ///     CDC-ACM interface is a modem by definition;
    ///   - vendor-specific: bInterfaceClass ff on one of `probeableVendorDrivers` (option, qcserial, sierra:
    ///     drivers that bind only cellular modules), except protocol 30 (Qualcomm DIAG on recent composites),
    ///     and never on a generic USB-UART driver (ftdi_sio, cp210x, pl2303, ch341, usb_serial_generic),
    ///     which could be wired to anything.
    public static func shouldProbeUnknown(_ candidate: PortCandidate, probeUnknown: Bool, table: PortTable) -> Bool {
        guard probeUnknown else { return false }
        guard classify(candidate, table: table).role == .unknown else { return false }
        return looksLikeModemInterface(candidate)
    }

    /// As above, with only the evidence the candidate carries itself (our rules' and ModemManager's properties);
    /// callers that have the port table should pass it.
    public static func shouldProbeUnknown(_ candidate: PortCandidate, probeUnknown: Bool) -> Bool {
        shouldProbeUnknown(candidate, probeUnknown: probeUnknown, table: PortTable())
    }

    static func looksLikeModemInterface(_ candidate: PortCandidate) -> Bool {
        guard candidate.isUSB, !isSet(candidate.properties["ID_MM_PORT_IGNORE"]) else { return false }
        guard let interface = candidate.usbInterface,
            let interfaceClass = PortKeys.hex2(interface["bInterfaceClass"])
        else { return false }
        let subclass = PortKeys.hex2(interface["bInterfaceSubClass"])
        let proto = PortKeys.hex2(interface["bInterfaceProtocol"])
        switch interfaceClass {
        case "02":
            return subclass == "02"
        case "ff":
            guard let driver = candidate.driver, probeableVendorDrivers.contains(driver) else { return false }
            return proto != "30"
        default:
            return false
        }
    }

    /// Groups decisions by slot and picks each module's AT port.
    ///
    /// Only ports with role `at` are eligible. Among several, the strongest evidence wins (our rules, then the
    /// table, then ModemManager's hint: the role the rules chose is preferred), then the lowest interface number,
    /// then the devnode. A module without an `at` port gets none (its secondary AT ports are left to
    /// ModemManager); `shouldProbeUnknown` is the way to try unknown ports. Modules are sorted by slot.
    public static func chooseATPorts(_ decisions: [PortDecision]) -> [ModulePorts] {
        let groups = Dictionary(grouping: decisions, by: \.slot)
        return groups.keys.sorted().map { slot in
            let ports = groups[slot, default: []].sorted(by: portOrder)
            let candidates = ports.filter { $0.role == .at }.sorted { a, b in
                a.evidence != b.evidence ? a.evidence < b.evidence : portOrder(a, b)
            }
            let first = ports.first
            var module = ModulePorts(
                slot: slot,
                usbSerial: ports.lazy.compactMap(\.usbSerial).first,
                vendorID: first?.vendorID, productID: first?.productID,
                family: ports.lazy.compactMap(\.family).first,
                ports: ports, atPort: candidates.first, reason: ""
            )
            if let chosen = candidates.first {
                module.reason = candidates.count == 1
                    ? "the only AT port (\(chosen.evidence.rawValue))"
                    : "\(candidates.count) AT ports; chose by \(chosen.evidence.rawValue), then lowest interface"
            } else {
                let roles = Set(ports.map(\.role.rawValue)).sorted().joined(separator: ", ")
                module.reason = "no AT port (roles: \(roles))"
            }
            return module
        }
    }

    static func portOrder(_ a: PortDecision, _ b: PortDecision) -> Bool {
        switch (a.interfaceNumber, b.interfaceNumber) {
        case let (x?, y?) where x != y: return x < y
        case (.some, nil): return true
        case (nil, .some): return false
        default: return a.devnode < b.devnode
        }
    }

    static func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }

    static func isSet(_ value: String?) -> Bool {
        guard let value else { return false }
        return value == "1" || value.lowercased() == "true" || value.lowercased() == "yes"
    }
}

/// Normalising sysfs and udev spellings of USB IDs.
enum PortKeys {
    /// "2C7C" / "0x2c7c" -> "2c7c"; nil unless 1-4 hex digits.
    static func hex4(_ value: String?) -> String? { hex(value, width: 4) }
    /// "2" / "02" / "0x02" -> "02".
    static func hex2(_ value: String?) -> String? { hex(value, width: 2) }

    static func hex(_ value: String?, width: Int) -> String? {
        guard let value else { return nil }
        if let ascii = asciiHex(value, width: width) { return ascii.isEmpty ? nil : ascii }
        var text = trim(value).lowercased()
        if text.hasPrefix("0x") { text = String(text.dropFirst(2)) }
        guard !text.isEmpty, text.count <= width else { return nil }
        for c in text where !c.isHexDigit { return nil }
        return String(repeating: "0", count: width - text.count) + text
    }

    /// `hex` for ASCII text, on bytes (the port table's 199 rows are parsed on cellprovd's start path): nil when
    /// the text is not ASCII (the Character path decides), "" when it is ASCII but not hex of at most `width`.
    private static func asciiHex(_ value: String, width: Int) -> String? {
        var digits: [UInt8] = []
        digits.reserveCapacity(width)
        var started = false
        var trailing = 0  // whitespace seen after the digits
        for byte in value.utf8 {
            if byte >= 0x80 { return nil }
            if byte == 0x20 || (0x09...0x0D).contains(byte) {
                if started { trailing += 1 }
                continue
            }
            if trailing > 0 { return "" }  // inner whitespace
            started = true
            digits.append((0x41...0x5A).contains(byte) ? byte + 0x20 : byte)
        }
        var body = digits[...]
        if body.count >= 2, body[body.startIndex] == UInt8(ascii: "0"), body[body.startIndex + 1] == UInt8(ascii: "x") {
            body = body.dropFirst(2)
        }
        guard !body.isEmpty, body.count <= width else { return "" }
        for byte in body {
            guard (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte) else { return "" }
        }
        return String(repeating: "0", count: width - body.count) + String(decoding: body, as: UTF8.self)
    }

    static func trim<S: StringProtocol>(_ text: S) -> String {
        var s = Substring(text)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }

    /// "pci-0000:00:14.0-usb-0:2:1.3" -> "pci-0000:00:14.0-usb-0:2".
    static func stripInterfaceSuffix(_ path: String) -> String {
        guard let colon = path.lastIndex(of: ":") else { return path }
        let suffix = path[path.index(after: colon)...]
        let parts = suffix.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) else { return path }
        return String(path[..<colon])
    }
}
