import CellprovCore
import Foundation
import Testing

// Table-driven tests of port classification. Property sets are what udevd (usb_id, path_id, 60-serial.rules),
// ModemManager's port-type rules and our udev/77-cellprov.rules put on each tty; each case names its source.

// MARK: - Fixtures

/// The repository's udev/ports.tsv (this file is Tests/CellprovCoreTests/PortClassifierTests.swift).
func repositoryPortTable() throws -> PortTable {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let text = try String(contentsOf: root.appendingPathComponent("udev/ports.tsv"), encoding: .utf8)
    return try PortTable(tsv: text)
}

/// A USB tty as udev presents it. `tty` are the tty's own extra properties (MM's hints, our rules').
func usbPort(
    _ devnode: String, vid: String, pid: String, interface: String, triple: (String, String, String) = ("ff", "00", "00"),
    driver: String, usbPath: String, serial: String?, tty: [String: String] = [:]
) -> PortCandidate {
    var properties = [
        "DEVNAME": devnode, "SUBSYSTEM": "tty", "ID_BUS": "usb", "ID_VENDOR_ID": vid, "ID_MODEL_ID": pid,
        "ID_USB_INTERFACE_NUM": interface, "ID_USB_DRIVER": driver,
        "ID_PATH": "\(usbPath):1.\(Int(interface, radix: 16)!)",
    ]
    if let serial { properties["ID_SERIAL_SHORT"] = serial }
    properties.merge(tty) { _, new in new }
    var usbProperties = ["ID_PATH": usbPath, "ID_VENDOR_ID": vid, "ID_MODEL_ID": pid, "DEVTYPE": "usb_device"]
    var usbAttributes = ["idVendor": vid, "idProduct": pid, "bDeviceClass": "ef"]
    if let serial {
        usbProperties["ID_SERIAL_SHORT"] = serial
        usbAttributes["serial"] = serial
    }
    return PortCandidate(
        devnode: devnode, properties: properties,
        usbInterface: [
            "bInterfaceNumber": interface, "bInterfaceClass": triple.0, "bInterfaceSubClass": triple.1,
            "bInterfaceProtocol": triple.2, "driver": driver,
        ],
        usbParentSyspath: "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2",
        usbProperties: usbProperties, usbAttributes: usbAttributes,
        syspath: "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.\(interface)/\(devnode.dropFirst(5))"
    )
}

/// Quectel EC25 interface `n` as in shared/peers/ec25-ttyUSB2.umockdev (ModemManager's quectel rules ran).
func ec25(_ n: Int, ours: Bool = false) -> PortCandidate {
    let mm: [[String: String]] = [
        ["ID_MM_CANDIDATE": "1", "ID_MM_PORT_TYPE_QCDM": "1"],
        ["ID_MM_CANDIDATE": "1", "ID_MM_PORT_TYPE_GPS": "1"],
        ["ID_MM_CANDIDATE": "1", "ID_MM_PORT_TYPE_AT_PRIMARY": "1"],
        ["ID_MM_CANDIDATE": "1", "ID_MM_PORT_TYPE_AT_SECONDARY": "1"],
    ]
    let rules: [[String: String]] = [
        ["CELLPROV_PORT_ROLE": "qcdm"], ["CELLPROV_PORT_ROLE": "gps"], ["CELLPROV_PORT_ROLE": "at-secondary"],
        ["CELLPROV_PORT_ROLE": "at", "ID_MM_PORT_IGNORE": "1"],
    ]
    var tty = mm[n]
    if ours {
        tty.merge(rules[n]) { _, new in new }
        tty["CELLPROV_MODULE"] = "quectel-ec2x"
    }
    return usbPort(
        "/dev/ttyUSB\(n)", vid: "2c7c", pid: "0125", interface: String(format: "%02x", n),
        triple: n == 0 ? ("ff", "ff", "ff") : ("ff", "00", "00"), driver: "option",
        usbPath: "pci-0000:00:14.0-usb-0:1", serial: "0123456789ABCDEF", tty: tty)
}

/// Sierra Wireless MC7455 (1199:9071, qcserial): 00 DM, 02 NMEA, 03 AT (ModemManager's sierra rules; the
/// qcserial driver's "Sierra layout" binds exactly these).
func mc7455(_ interface: String, devnode: String) -> PortCandidate {
    usbPort(
        devnode, vid: "1199", pid: "9071", interface: interface, triple: ("ff", "ff", "ff"), driver: "qcserial",
        usbPath: "pci-0000:00:14.0-usb-0:3", serial: nil)
}

/// Telit LE910C1 default composition (1bc7:1201, option): 00 DIAG, 03 NMEA, 04 AT primary, 05 AT secondary,
/// 06 ignored (ModemManager's telit rules, as summarised in udev/ports.tsv).
func le910c1(_ interface: String, devnode: String, tty: [String: String] = [:]) -> PortCandidate {
    usbPort(
        devnode, vid: "1bc7", pid: "1201", interface: interface, driver: "option",
        usbPath: "pci-0000:00:14.0-usb-0:4", serial: "LE910TEST", tty: tty)
}

// MARK: - Classification

struct ClassifyCase: Sendable, CustomTestStringConvertible {
    var name: String
    var candidate: PortCandidate
    var role: PortRole
    var evidence: PortEvidence
    var slot: String
    var family: String?
    var testDescription: String { name }
}

let classifyCases: [ClassifyCase] = [
    // EC25 without our rules: the table decides, and overrides ModemManager's AT_PRIMARY hint on 02.
    .init(name: "EC25 if00 (table)", candidate: ec25(0), role: .qcdm, evidence: .table,
          slot: "pci-0000:00:14.0-usb-0:1", family: "quectel-ec2x"),
    .init(name: "EC25 if01 (table)", candidate: ec25(1), role: .gps, evidence: .table,
          slot: "pci-0000:00:14.0-usb-0:1", family: "quectel-ec2x"),
    .init(name: "EC25 if02, MM's primary (table)", candidate: ec25(2), role: .atSecondary, evidence: .table,
          slot: "pci-0000:00:14.0-usb-0:1", family: "quectel-ec2x"),
    .init(name: "EC25 if03 (table)", candidate: ec25(3), role: .at, evidence: .table,
          slot: "pci-0000:00:14.0-usb-0:1", family: "quectel-ec2x"),
    // EC25 with our rules.
    .init(name: "EC25 if03 (rules)", candidate: ec25(3, ours: true), role: .at, evidence: .rules,
          slot: "pci-0000:00:14.0-usb-0:1", family: "quectel-ec2x"),
    .init(name: "EC25 if00 (rules)", candidate: ec25(0, ours: true), role: .qcdm, evidence: .rules,
          slot: "pci-0000:00:14.0-usb-0:1", family: "quectel-ec2x"),
    // Sierra MC7455.
    .init(name: "MC7455 if00", candidate: mc7455("00", devnode: "/dev/ttyUSB4"), role: .qcdm, evidence: .table,
          slot: "pci-0000:00:14.0-usb-0:3", family: "sierra-mc74xx"),
    .init(name: "MC7455 if02", candidate: mc7455("02", devnode: "/dev/ttyUSB5"), role: .gps, evidence: .table,
          slot: "pci-0000:00:14.0-usb-0:3", family: "sierra-mc74xx"),
    .init(name: "MC7455 if03", candidate: mc7455("03", devnode: "/dev/ttyUSB6"), role: .at, evidence: .table,
          slot: "pci-0000:00:14.0-usb-0:3", family: "sierra-mc74xx"),
    // Telit LE910C1.
    .init(name: "LE910C1 if04", candidate: le910c1("04", devnode: "/dev/ttyUSB7"), role: .atSecondary,
          evidence: .table, slot: "pci-0000:00:14.0-usb-0:4", family: "telit-le910c1"),
    .init(name: "LE910C1 if05", candidate: le910c1("05", devnode: "/dev/ttyUSB8"), role: .at, evidence: .table,
          slot: "pci-0000:00:14.0-usb-0:4", family: "telit-le910c1"),
    .init(name: "LE910C1 if06", candidate: le910c1("06", devnode: "/dev/ttyUSB9"), role: .ignored,
          evidence: .table, slot: "pci-0000:00:14.0-usb-0:4", family: "telit-le910c1"),
    // A local rule overrides the table (e.g. a copy of 77-cellprov.rules in /etc choosing 04).
    .init(name: "LE910C1 if04 chosen by a local rule",
          candidate: le910c1("04", devnode: "/dev/ttyUSB7", tty: ["CELLPROV_PORT_ROLE": "at"]), role: .at,
          evidence: .rules, slot: "pci-0000:00:14.0-usb-0:4", family: "telit-le910c1"),
    // An unknown VID:PID with nothing said about it.
    .init(name: "unknown 1234:5678",
          candidate: usbPort("/dev/ttyUSB10", vid: "1234", pid: "5678", interface: "00", driver: "option",
                             usbPath: "pci-0000:00:14.0-usb-0:5", serial: "X1"),
          role: .unknown, evidence: .none, slot: "pci-0000:00:14.0-usb-0:5", family: nil),
    // An unknown VID:PID with ModemManager's hints (a generic plugin's rules).
    .init(name: "unknown VID:PID with MM's AT_PRIMARY hint",
          candidate: usbPort("/dev/ttyUSB11", vid: "1234", pid: "5679", interface: "02", driver: "option",
                             usbPath: "pci-0000:00:14.0-usb-0:6", serial: nil,
                             tty: ["ID_MM_PORT_TYPE_AT_PRIMARY": "1"]),
          role: .at, evidence: .modemManager, slot: "pci-0000:00:14.0-usb-0:6", family: nil),
    .init(name: "unknown VID:PID with MM's QCDM hint",
          candidate: usbPort("/dev/ttyUSB12", vid: "1234", pid: "5679", interface: "00", driver: "option",
                             usbPath: "pci-0000:00:14.0-usb-0:6", serial: nil, tty: ["ID_MM_PORT_TYPE_QCDM": "1"]),
          role: .qcdm, evidence: .modemManager, slot: "pci-0000:00:14.0-usb-0:6", family: nil),
    .init(name: "unknown VID:PID with MM's AT_PPP hint",
          candidate: usbPort("/dev/ttyUSB13", vid: "1234", pid: "5679", interface: "03", driver: "option",
                             usbPath: "pci-0000:00:14.0-usb-0:6", serial: nil, tty: ["ID_MM_PORT_TYPE_AT_PPP": "1"]),
          role: .modemData, evidence: .modemManager, slot: "pci-0000:00:14.0-usb-0:6", family: nil),
    // A CDC-ACM modem not in the table: Telit HE910 (1bc7:0021, cdc_acm, class 02/02/01).
    .init(name: "CDC-ACM HE910",
          candidate: usbPort("/dev/ttyACM0", vid: "1bc7", pid: "0021", interface: "00", triple: ("02", "02", "01"),
                             driver: "cdc_acm", usbPath: "pci-0000:00:14.0-usb-0:7", serial: "HE910TEST"),
          role: .unknown, evidence: .none, slot: "pci-0000:00:14.0-usb-0:7", family: nil),
    // Non-USB ttys.
    .init(name: "on-board UART",
          candidate: PortCandidate(devnode: "/dev/ttyS0", properties: ["SUBSYSTEM": "tty"],
                                   syspath: "/sys/devices/platform/serial8250/tty/ttyS0"),
          role: .ignored, evidence: .none, slot: "/dev/ttyS0", family: nil),
    .init(name: "virtual console",
          candidate: PortCandidate(devnode: "/dev/tty1", syspath: "/sys/devices/virtual/tty/tty1"),
          role: .ignored, evidence: .none, slot: "/dev/tty1", family: nil),
    .init(name: "on-board UART named by a local rule",
          candidate: PortCandidate(devnode: "/dev/ttyAMA0", properties: ["CELLPROV_PORT_ROLE": "at"],
                                   syspath: "/sys/devices/platform/soc/fe201000.serial/tty/ttyAMA0"),
          role: .at, evidence: .rules, slot: "/dev/ttyAMA0", family: nil),
]

@Suite("PortClassifierTests")
struct PortClassifierTests {
    let table: PortTable

    init() throws { table = try repositoryPortTable() }

    @Test(arguments: classifyCases)
    func classify(_ c: ClassifyCase) {
        let d = PortClassifier.classify(c.candidate, table: table)
        #expect(d.role == c.role)
        #expect(d.evidence == c.evidence)
        #expect(d.slot == c.slot)
        #expect(d.family == c.family)
        #expect(d.devnode == c.candidate.devnode)
        #expect(!d.reason.isEmpty)
    }

    @Test func ec25DetailsAndReasonCarryNoSerial() {
        let d = PortClassifier.classify(ec25(3), table: table)
        #expect(d.usbSerial == "0123456789ABCDEF")
        #expect(d.vendorID == "2c7c" && d.productID == "0125" && d.interfaceNumber == "03")
        #expect(!d.reason.contains("0123456789ABCDEF"))
        let withRules = PortClassifier.classify(ec25(3, ours: true), table: table)
        #expect(withRules.reason.contains("ModemManager ignores it"))
    }

    @Test func emptyTableFallsBackToModemManagerHints() {
        // Without our rules and table, ModemManager's primary is all there is.
        let d = PortClassifier.classify(ec25(2), table: PortTable())
        #expect(d.role == .at && d.evidence == .modemManager)
        #expect(PortClassifier.classify(ec25(3), table: PortTable()).role == .atSecondary)
    }

    @Test func unknownRuleValueIsNotEvidence() {
        let c = le910c1("05", devnode: "/dev/ttyUSB8", tty: ["CELLPROV_PORT_ROLE": "future-role"])
        let d = PortClassifier.classify(c, table: table)
        #expect(d.role == .at && d.evidence == .table)
    }

    // MARK: Slots

    @Test func slotFromTheTTYsIDPathWhenTheUSBDeviceHasNone() {
        var c = ec25(3)
        c.usbProperties["ID_PATH"] = nil
        #expect(c.slot == "pci-0000:00:14.0-usb-0:1")
        c.properties["ID_PATH"] = nil
        #expect(c.slot == "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2")
    }

    @Test func serialFallsBackToTheSysfsAttribute() {
        var c = ec25(3)
        c.usbProperties["ID_SERIAL_SHORT"] = nil
        c.properties["ID_SERIAL_SHORT"] = nil
        #expect(c.usbSerial == "0123456789ABCDEF")
        c.usbAttributes["serial"] = ""
        #expect(c.usbSerial == nil)
    }

    // MARK: Probing unknown ports

    struct ProbeCase: Sendable, CustomTestStringConvertible {
        var name: String
        var candidate: PortCandidate
        var optedIn: Bool
        var expected: Bool
        var testDescription: String { name }
    }

    static let probeCases: [ProbeCase] = [
        .init(name: "CDC-ACM, opted in", candidate: classifyCases.first { $0.name == "CDC-ACM HE910" }!.candidate,
              optedIn: true, expected: true),
        .init(name: "CDC-ACM, not opted in",
              candidate: classifyCases.first { $0.name == "CDC-ACM HE910" }!.candidate, optedIn: false,
              expected: false),
        .init(name: "vendor-specific on option, opted in",
              candidate: classifyCases.first { $0.name == "unknown 1234:5678" }!.candidate, optedIn: true,
              expected: true),
        .init(name: "vendor-specific, protocol 30 (Qualcomm DIAG)",
              candidate: usbPort("/dev/ttyUSB20", vid: "1234", pid: "5678", interface: "00",
                                 triple: ("ff", "ff", "30"), driver: "option", usbPath: "p", serial: nil),
              optedIn: true, expected: false),
        .init(name: "USB-UART adapter (ftdi_sio)",
              candidate: usbPort("/dev/ttyUSB21", vid: "0403", pid: "6001", interface: "00",
                                 triple: ("ff", "ff", "ff"), driver: "ftdi_sio", usbPath: "p", serial: "FT1"),
              optedIn: true, expected: false),
        .init(name: "CDC data class (0a), not ACM",
              candidate: usbPort("/dev/ttyACM1", vid: "1234", pid: "5678", interface: "01",
                                 triple: ("0a", "00", "00"), driver: "cdc_acm", usbPath: "p", serial: nil),
              optedIn: true, expected: false),
        .init(name: "ModemManager ignores it",
              candidate: usbPort("/dev/ttyUSB22", vid: "1234", pid: "5678", interface: "04", driver: "option",
                                 usbPath: "p", serial: nil, tty: ["ID_MM_PORT_IGNORE": "1"]),
              optedIn: true, expected: false),
        .init(name: "MM says QCDM", candidate: classifyCases.first { $0.name == "unknown VID:PID with MM's QCDM hint" }!.candidate,
              optedIn: true, expected: false),
        .init(name: "table says GPS (EC25 if01)", candidate: ec25(1), optedIn: true, expected: false),
        .init(name: "table says QCDM (MC7455 if00)", candidate: mc7455("00", devnode: "/dev/ttyUSB4"), optedIn: true,
              expected: false),
        .init(name: "known AT port is not 'unknown'", candidate: ec25(3), optedIn: true, expected: false),
        .init(name: "non-USB", candidate: PortCandidate(devnode: "/dev/ttyS0"), optedIn: true, expected: false),
    ]

    @Test(arguments: probeCases)
    func shouldProbeUnknown(_ c: ProbeCase) {
        #expect(PortClassifier.shouldProbeUnknown(c.candidate, probeUnknown: c.optedIn, table: table) == c.expected)
    }

    @Test func shouldProbeUnknownWithoutTableUsesThePortsOwnEvidence() {
        let cdc = classifyCases.first { $0.name == "CDC-ACM HE910" }!.candidate
        #expect(PortClassifier.shouldProbeUnknown(cdc, probeUnknown: true))
        #expect(!PortClassifier.shouldProbeUnknown(ec25(3, ours: true), probeUnknown: true))
    }

    // MARK: Choosing one AT port per module

    @Test func choosesOneATPortPerModule() {
        let candidates = (0..<4).map { ec25($0) }
            + [mc7455("00", devnode: "/dev/ttyUSB4"), mc7455("02", devnode: "/dev/ttyUSB5"),
               mc7455("03", devnode: "/dev/ttyUSB6")]
            + ["00", "03", "04", "05", "06"].enumerated().map { le910c1($1, devnode: "/dev/ttyUSB\(7 + $0)") }
            + [classifyCases.first { $0.name == "unknown 1234:5678" }!.candidate]
        let modules = PortClassifier.chooseATPorts(candidates.map { PortClassifier.classify($0, table: table) })
        #expect(modules.map(\.slot) == [
            "pci-0000:00:14.0-usb-0:1", "pci-0000:00:14.0-usb-0:3", "pci-0000:00:14.0-usb-0:4",
            "pci-0000:00:14.0-usb-0:5",
        ])
        #expect(modules.map { $0.atPort?.devnode } == ["/dev/ttyUSB3", "/dev/ttyUSB6", "/dev/ttyUSB10", nil])
        #expect(modules[0].ports.map(\.devnode) == ["/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyUSB2", "/dev/ttyUSB3"])
        #expect(modules[0].usbSerial == "0123456789ABCDEF" && modules[0].family == "quectel-ec2x")
        #expect(modules[1].usbSerial == nil)
        #expect(modules[3].reason.contains("no AT port"))
    }

    @Test func rulesBeatModemManagerWhenBothNameAnATPort() {
        // Module not in the table: MM's rules hint AT_PRIMARY on 02; a local rule of ours names 03.
        let mm = usbPort("/dev/ttyUSB2", vid: "1234", pid: "5679", interface: "02", driver: "option",
                         usbPath: "slot-x", serial: nil, tty: ["ID_MM_PORT_TYPE_AT_PRIMARY": "1"])
        let ours = usbPort("/dev/ttyUSB3", vid: "1234", pid: "5679", interface: "03", driver: "option",
                           usbPath: "slot-x", serial: nil, tty: ["CELLPROV_PORT_ROLE": "at"])
        let modules = PortClassifier.chooseATPorts([mm, ours].map { PortClassifier.classify($0, table: table) })
        #expect(modules.count == 1)
        #expect(modules[0].atPort?.devnode == "/dev/ttyUSB3")
        #expect(modules[0].reason.contains("2 AT ports"))
    }

    @Test func tieOnEvidenceGoesToTheLowestInterface() {
        let a = usbPort("/dev/ttyUSB9", vid: "1234", pid: "5679", interface: "05", driver: "option",
                        usbPath: "slot-y", serial: nil, tty: ["ID_MM_PORT_TYPE_AT_PRIMARY": "1"])
        let b = usbPort("/dev/ttyUSB8", vid: "1234", pid: "5679", interface: "04", driver: "option",
                        usbPath: "slot-y", serial: nil, tty: ["ID_MM_PORT_TYPE_AT_PRIMARY": "1"])
        let modules = PortClassifier.chooseATPorts([a, b].map { PortClassifier.classify($0, table: table) })
        #expect(modules.first?.atPort?.devnode == "/dev/ttyUSB8")
    }
}

// MARK: - The port table

@Suite("PortClassifierTests.PortTable")
struct PortTableParserTests {
    static let header = "vid\tpid\tinterface\trole\tfamily\tmm_role\tsource\n"

    @Test func parsesTheRepositoryTable() throws {
        let table = try repositoryPortTable()
        #expect(table.rows.count > 100)
        #expect(table.lookup(vendor: "2c7c", product: "0125", interfaceNumber: "03", classTriple: nil)?.role == .at)
        #expect(table.lookup(vendor: "2C7C", product: "0x125", interfaceNumber: "3", classTriple: nil)?.role == .at)
        // Huawei rows are keyed by class/subclass/protocol.
        let huawei = table.lookup(vendor: "12d1", product: "1573", interfaceNumber: "09", classTriple: "ff/02/01")
        #expect(huawei?.role == .at && huawei?.family == "huawei-me909u")
        #expect(table.knows(vendor: "1199", product: "9071"))
        #expect(!table.knows(vendor: "1234", product: "5678"))
    }

    @Test func commentsBlankLinesCRLFAndExtraColumns() throws {
        let text = "# comment\n\n" + Self.header.replacingOccurrences(of: "\n", with: "\tnote\r\n")
            + "2C7C\t0125\t3\tat\tquectel-ec2x\tAT_SECONDARY\tsrc\textra\r\n"
            + "# another\n"
            + "12d1\t1573\tFF/2/1\tat\thuawei-me909u\t\t\n"
        let table = try PortTable(tsv: text)
        #expect(table.rows.count == 2)
        #expect(table.rows[0] == PortTable.Row(
            vendorID: "2c7c", productID: "0125", interface: "03", role: .at, family: "quectel-ec2x",
            modemManagerRole: "AT_SECONDARY", line: 4))
        #expect(table.rows[1].interface == "ff/02/01" && table.rows[1].modemManagerRole == nil)
    }

    /// ASCII text is parsed on bytes; anything else on Characters. A trailing non-ASCII comment sends the same text
    /// down the Character path: rows, line numbers and errors must be the same either way.
    @Test(arguments: [
        "# comment\n\n" + header + "2C7C\t0125\t 3 \tat\tquectel-ec2x\tAT_SECONDARY\tsrc\textra\r\n",
        header + "2c7c\t0125\t0x3\tat\tq\t\t\n12D1\t1573\tFF/2/1\tat\th\t\t\n1c5d\t2010\tAT1\tat\tt\t\t\n",
        header + "2c7c\t0125\t0X03\tat\tq\t\t\n \t \r\n#x\n2c7c\t0125\t3\tgps\tq\t\t\n",
        header + "2c7c\t0125\t1 2\tat\tq\t\t\n",
        header + "2c7c\t0125\t0x\tat\tq\t\t\n",
        header + "2c7c\t0125\t03\tat\tq",
        "vid\tpid\tinterface\tfamily\n",
        "\n\n",
    ])
    func bytePathMatchesCharacterPath(_ text: String) throws {
        #expect(PortTable.isPlainASCII(text))
        let characters = text + "\n# caf\u{E9}"
        #expect(!PortTable.isPlainASCII(characters))
        switch (Result { try PortTable(tsv: text) }, Result { try PortTable(tsv: characters) }) {
        case (.success(let a), .success(let b)): #expect(a == b)
        case (.failure(let a as PortTable.ParseError), .failure(let b as PortTable.ParseError)):
            // "no header line" names the last line, which the comment moved.
            if a.message == "no header line" { #expect(b.message == a.message) } else { #expect(a == b) }
        case (let a, let b): Issue.record("paths differ: \(a) vs \(b)")
        }
    }

    @Test func repositoryTableThroughBothPaths() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("udev/ports.tsv")
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(PortTable.isPlainASCII(text))
        #expect(try PortTable(tsv: text) == PortTable(tsv: text + "# caf\u{E9}\n"))
        #expect(!PortTable.isPlainASCII("a\rb") && !PortTable.isPlainASCII("a\u{0B}b") && PortTable.isPlainASCII("a\r\n"))
    }

    struct BadCase: Sendable, CustomTestStringConvertible {
        var name: String
        var text: String
        var line: Int
        var fragment: String
        var testDescription: String { name }
    }

    static let badCases: [BadCase] = [
        .init(name: "empty", text: "# nothing\n", line: 2, fragment: "no header"),
        .init(name: "header without role", text: "vid\tpid\tinterface\tfamily\n", line: 1, fragment: "'role'"),
        .init(name: "vid not hex", text: header + "2c7g\t0125\t03\tat\tq\t\t\n", line: 2, fragment: "'vid'"),
        .init(name: "vid too short", text: header + "2c7\t0125\t03\tat\tq\t\t\n", line: 2, fragment: "'vid'"),
        .init(name: "pid missing", text: header + "2c7c\t\t03\tat\tq\t\t\n", line: 2, fragment: "'pid'"),
        .init(name: "bad interface", text: header + "2c7c\t0125\t003\tat\tq\t\t\n", line: 2, fragment: "'interface'"),
        .init(name: "bad triple", text: header + "2c7c\t0125\tff/02\tat\tq\t\t\n", line: 2, fragment: "'interface'"),
        .init(name: "unknown role", text: header + "2c7c\t0125\t03\tprimary\tq\t\t\n", line: 2, fragment: "role"),
        .init(name: "'unknown' is not a table role", text: header + "2c7c\t0125\t03\tunknown\tq\t\t\n", line: 2,
              fragment: "role"),
        .init(name: "family missing", text: header + "2c7c\t0125\t03\tat\t\t\t\n", line: 2, fragment: "'family'"),
        .init(name: "duplicate port", text: header + "2c7c\t0125\t03\tat\tq\t\t\n2c7c\t0125\t3\tgps\tq\t\t\n",
              line: 3, fragment: "line 2"),
    ]

    @Test(arguments: badCases)
    func rejects(_ c: BadCase) {
        #expect {
            try PortTable(tsv: c.text)
        } throws: { error in
            guard let error = error as? PortTable.ParseError else { return false }
            return error.line == c.line && error.description.contains(c.fragment)
        }
    }
}

// MARK: - WWAN framework ports (PCIe modules)

/// A WWAN port as udev presents it: subsystem "wwan", devtype "wwan_port", the sysfs `type` (nil: Linux 5.13), the
/// PCI device above it (drivers/net/wwan/wwan_core.c; the MHI layout of mhi_wwan_ctrl).
func wwanPort(
    _ name: String, type: String?, pci: String = "0000:55:00.0", ids: (String, String, String, String),
    tty: [String: String] = [:]
) -> PortCandidate {
    let pciSyspath = "/sys/devices/pci0000:00/0000:00:1c.0/\(pci)"
    var properties = ["DEVNAME": "/dev/\(name)", "SUBSYSTEM": "wwan", "DEVTYPE": "wwan_port"]
    properties.merge(tty) { _, new in new }
    return PortCandidate(
        devnode: "/dev/\(name)", properties: properties,
        syspath: "\(pciSyspath)/mhi0/wwan/wwan0/\(name)", subsystem: "wwan", wwanTypeAttribute: type,
        pciParentSyspath: pciSyspath,
        pciAttributes: [
            "vendor": "0x\(ids.0)", "device": "0x\(ids.1)", "subsystem_vendor": "0x\(ids.2)",
            "subsystem_device": "0x\(ids.3)",
        ])
}

/// Quectel RM520N-GL in PCIe mode (1eac:1007): DUN -> wwan0at0, MBIM, DIAG -> wwan0qcdm0, NMEA (Linux
/// drivers/bus/mhi/host/pci_generic.c, mhi_quectel_rm5xx_channels).
func rm520n(_ name: String, type: String?, tty: [String: String] = [:]) -> PortCandidate {
    wwanPort(name, type: type, ids: ("1eac", "1007", "1eac", "5007"), tty: tty)
}

/// Telit FN990 (Qualcomm 17cb:0308, subsystem 1c5d:2010): DUN -> wwan0at0, DUN2 -> wwan0at1.
func fn990(_ name: String, type: String?, tty: [String: String] = [:]) -> PortCandidate {
    wwanPort(name, type: type, pci: "0000:56:00.0", ids: ("17cb", "0308", "1c5d", "2010"), tty: tty)
}

let wwanCases: [ClassifyCase] = [
    .init(name: "RM520N wwan0at0: the only AT port", candidate: rm520n("wwan0at0", type: "AT"), role: .at,
          evidence: .kernel, slot: "pci-0000:55:00.0", family: nil),
    .init(name: "RM520N wwan0mbim0", candidate: rm520n("wwan0mbim0", type: "MBIM"), role: .ignored,
          evidence: .kernel, slot: "pci-0000:55:00.0", family: nil),
    .init(name: "RM520N wwan0qcdm0", candidate: rm520n("wwan0qcdm0", type: "QCDM"), role: .qcdm, evidence: .kernel,
          slot: "pci-0000:55:00.0", family: nil),
    .init(name: "RM520N wwan0nmea0", candidate: rm520n("wwan0nmea0", type: "NMEA"), role: .gps, evidence: .kernel,
          slot: "pci-0000:55:00.0", family: nil),
    .init(name: "firehose (EDL) port", candidate: rm520n("wwan0firehose0", type: "FIREHOSE"), role: .ignored,
          evidence: .kernel, slot: "pci-0000:55:00.0", family: nil),
    .init(name: "a port type of a later kernel", candidate: rm520n("wwan0foo0", type: "FOO"), role: .ignored,
          evidence: .kernel, slot: "pci-0000:55:00.0", family: nil),
    // A rule can never make a non-AT port cellprov's: the kernel's type is final.
    .init(name: "MBIM port a rule calls at",
          candidate: rm520n("wwan0mbim0", type: "MBIM", tty: ["CELLPROV_PORT_ROLE": "at"]), role: .ignored,
          evidence: .kernel, slot: "pci-0000:55:00.0", family: nil),
    .init(name: "RM520N wwan0at0 with our rules", candidate: rm520n("wwan0at0", type: "AT",
          tty: ["CELLPROV_PORT_ROLE": "at", "ID_MM_PORT_IGNORE": "1"]), role: .at, evidence: .rules,
          slot: "pci-0000:55:00.0", family: nil),
    .init(name: "unlisted module's second AT port", candidate: rm520n("wwan0at1", type: "AT"), role: .atSecondary,
          evidence: .kernel, slot: "pci-0000:55:00.0", family: nil),
    // Telit FN990: two AT ports; the table (keyed by PCI subsystem IDs) takes DUN2.
    .init(name: "FN990 wwan0at0 (table)", candidate: fn990("wwan0at0", type: "AT"), role: .atSecondary,
          evidence: .table, slot: "pci-0000:56:00.0", family: "telit-fn990"),
    .init(name: "FN990 wwan0at1 (table)", candidate: fn990("wwan0at1", type: "AT"), role: .at, evidence: .table,
          slot: "pci-0000:56:00.0", family: "telit-fn990"),
    .init(name: "FN990 wwan0at1 (rules)", candidate: fn990("wwan0at1", type: "AT", tty: [
              "CELLPROV_PORT_ROLE": "at", "CELLPROV_MODULE": "telit-fn990", "ID_MM_PORT_IGNORE": "1",
          ]), role: .at, evidence: .rules, slot: "pci-0000:56:00.0", family: "telit-fn990"),
    // Linux 5.13: no type attribute, names wwan0p1AT.
    .init(name: "Linux 5.13 wwan0p1AT", candidate: rm520n("wwan0p1AT", type: nil), role: .at, evidence: .kernel,
          slot: "pci-0000:55:00.0", family: nil),
    .init(name: "Linux 5.13 wwan0p2MBIM", candidate: rm520n("wwan0p2MBIM", type: nil), role: .ignored,
          evidence: .kernel, slot: "pci-0000:55:00.0", family: nil),
    .init(name: "type attribute beats the name", candidate: rm520n("wwan0at0", type: "QMI"), role: .ignored,
          evidence: .kernel, slot: "pci-0000:55:00.0", family: nil),
    .init(name: "a node name nothing understands", candidate: rm520n("modem-at", type: nil), role: .ignored,
          evidence: .kernel, slot: "pci-0000:55:00.0", family: nil),
]

@Suite("PortClassifierTests.WWAN")
struct WWANClassifierTests {
    let table: PortTable

    init() throws { table = try repositoryPortTable() }

    @Test(arguments: wwanCases)
    func classify(_ c: ClassifyCase) {
        let d = PortClassifier.classify(c.candidate, table: table)
        #expect(d.role == c.role)
        #expect(d.evidence == c.evidence)
        #expect(d.slot == c.slot)
        #expect(d.family == c.family)
        #expect(!d.reason.isEmpty)
        #expect(d.usbSerial == nil)
    }

    @Test func decisionCarriesPCIIDsAndThePortName() {
        let d = PortClassifier.classify(fn990("wwan0at1", type: "AT"), table: table)
        #expect(d.vendorID == "17cb" && d.productID == "0308" && d.interfaceNumber == "at1")
        #expect(d.reason.contains("1c5d:2010") && d.reason.contains("telit-fn990"))
        let mbim = PortClassifier.classify(rm520n("wwan0mbim0", type: "MBIM"), table: table)
        #expect(mbim.reason.contains("MBIM") && mbim.reason.contains("never opened"))
    }

    @Test func choosesTheATPortOfEachPCIeModule() {
        let ports = [
            rm520n("wwan0at0", type: "AT"), rm520n("wwan0mbim0", type: "MBIM"), rm520n("wwan0qcdm0", type: "QCDM"),
            fn990("wwan1at0", type: "AT"), fn990("wwan1at1", type: "AT"), fn990("wwan1mbim0", type: "MBIM"),
        ]
        let modules = PortClassifier.chooseATPorts(ports.map { PortClassifier.classify($0, table: table) })
        #expect(modules.map(\.slot) == ["pci-0000:55:00.0", "pci-0000:56:00.0"])
        #expect(modules.map { $0.atPort?.devnode } == ["/dev/wwan0at0", "/dev/wwan1at1"])
        #expect(modules[1].family == "telit-fn990")
        #expect(modules[0].ports.map(\.devnode) == ["/dev/wwan0at0", "/dev/wwan0mbim0", "/dev/wwan0qcdm0"])
    }

    @Test func aModuleWithoutAnATPortGetsNone() {
        let ports = [rm520n("wwan0mbim0", type: "MBIM"), rm520n("wwan0qcdm0", type: "QCDM")]
        let modules = PortClassifier.chooseATPorts(ports.map { PortClassifier.classify($0, table: table) })
        #expect(modules.count == 1 && modules[0].atPort == nil)
        #expect(!ports.contains { PortClassifier.shouldProbeUnknown($0, probeUnknown: true, table: table) })
    }

    @Test func slotWithoutThePCIParentComesFromTheSyspath() {
        var port = rm520n("wwan0at0", type: "AT")
        port.pciParentSyspath = nil
        port.pciAttributes = [:]
        #expect(port.slot == "pci-0000:55:00.0")
        // On no PCI bus at all (an SoC's rpmsg modem): the device the wwanN sits on.
        let soc = PortCandidate(
            devnode: "/dev/wwan0at0", syspath: "/sys/devices/platform/soc/remoteproc0/rpmsg/wwan/wwan0/wwan0at0",
            subsystem: "wwan", wwanTypeAttribute: "AT")
        #expect(soc.slot == "/sys/devices/platform/soc/remoteproc0/rpmsg")
        // While the module's PCI device is not readable yet, the nearest existing PCI parent is the bridge above it:
        // the port's own path still names the module.
        var early = rm520n("wwan0at0", type: "AT")
        early.pciParentSyspath = "/sys/devices/pci0000:00/0000:00:1c.0"
        #expect(early.slot == "pci-0000:55:00.0")
        #expect(PortClassifier.classify(soc, table: table).role == .at)
    }

    @Test func aWWANPortOnUSBBelongsToItsUSBModule() {
        // A WWAN port under a USB interface groups with the module's ttys: the USB device's ID_PATH.
        var port = ec25(3)
        port.devnode = "/dev/wwan0at0"
        port.subsystem = "wwan"
        port.wwanTypeAttribute = "AT"
        let d = PortClassifier.classify(port, table: table)
        #expect(d.slot == "pci-0000:00:14.0-usb-0:1" && d.role == .at && d.evidence == .kernel)
    }

    struct NameCase: Sendable, CustomTestStringConvertible {
        var text: String
        var parsed: WWANPortName?
        var testDescription: String { text }
    }

    static let names: [NameCase] = [
        .init(text: "wwan0at0", parsed: .init(device: 0, type: "AT", index: 0)),
        .init(text: "/dev/wwan1at1", parsed: .init(device: 1, type: "AT", index: 1)),
        .init(text: "wwan0mbim0", parsed: .init(device: 0, type: "MBIM", index: 0)),
        .init(text: "wwan0firehose0", parsed: .init(device: 0, type: "FIREHOSE", index: 0)),
        .init(text: "wwan0p1AT", parsed: .init(device: 0, type: "AT", index: nil)),
        .init(text: "wwan0p12MBIM", parsed: .init(device: 0, type: "MBIM", index: nil)),
        .init(text: "wwan0", parsed: nil),
        .init(text: "ttyUSB2", parsed: nil),
        .init(text: "wwanat0", parsed: nil),
        .init(text: "wwan0at", parsed: nil),
        .init(text: "wwan0at0x", parsed: nil),
        .init(text: "wwan0p1", parsed: nil),
    ]

    @Test(arguments: names)
    func parsesKernelNames(_ c: NameCase) {
        #expect(WWANPortName(kernelName: c.text) == c.parsed)
    }

    @Test func pciAddresses() {
        #expect(PCIAddress.nearest(in: "/sys/devices/pci0000:00/0000:00:1c.0/0000:55:00.0/mhi0/wwan/wwan0/wwan0at0")
            == "0000:55:00.0")
        #expect(PCIAddress.nearest(in: "/sys/devices/platform/soc/wwan/wwan0/wwan0at0") == nil)
        #expect(!PCIAddress.isAddress("pci0000:00") && !PCIAddress.isAddress("0000:00:1c.8"))
    }

    @Test func tableRowsForWWANPorts() throws {
        #expect(table.lookupWWAN(vendor: "1c5d", product: "2010", port: "at1")?.role == .at)
        #expect(table.lookupWWAN(vendor: "1C5D", product: "0x2010", port: "AT0")?.role == .atSecondary)
        #expect(table.lookupWWAN(vendor: "1eac", product: "5007", port: "at0") == nil)
        let parsed = try PortTable(tsv: PortTableParserTests.header + "1c5d\t2010\tAT1\tat\ttelit-fn990\tprobed\tsrc\n")
        #expect(parsed.rows.first?.interface == "at1")
        #expect(throws: PortTable.ParseError.self) {
            try PortTable(tsv: PortTableParserTests.header + "1c5d\t2010\tat\tat\ttelit-fn990\t\t\n")
        }
    }
}
