/// The port table (udev/ports.tsv): port roles by USB VID:PID and interface, the same knowledge as
/// udev/77-cellprov.rules, as data.
///
/// Format: UTF-8, tab-separated; '#' lines and blank lines are skipped; the first other line is the header,
/// which must name at least `vid`, `pid`, `interface`, `role` and `family` (other columns, such as `mm_role`
/// and `source`, are kept as they are but not interpreted). `interface` is a bInterfaceNumber ("03"), a
/// class/subclass/protocol triple ("ff/02/01"), or a WWAN port's name without its device ("at1"), in which case
/// `vid` and `pid` are the module's PCI subsystem vendor and device IDs. Hex is accepted in either case and stored
/// lower-case.
public struct PortTable: Sendable, Equatable {
    public struct Row: Sendable, Equatable {
        public var vendorID: String
        public var productID: String
        /// "03", "ff/02/01", or a WWAN port "at1".
        public var interface: String
        public var role: PortRole
        public var family: String
        /// ModemManager's own view of the port (mm_role column), when present.
        public var modemManagerRole: String?
        /// The 1-based line of the row in the table's text.
        public var line: Int

        public init(
            vendorID: String, productID: String, interface: String, role: PortRole, family: String,
            modemManagerRole: String? = nil, line: Int = 0
        ) {
            self.vendorID = vendorID
            self.productID = productID
            self.interface = interface
            self.role = role
            self.family = family
            self.modemManagerRole = modemManagerRole
            self.line = line
        }

        var key: String { "\(vendorID):\(productID):\(interface)" }
    }

    /// A problem in the table's text. It names the line and the column, never a device.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var message: String
        public var description: String { "ports table line \(line): \(message)" }
    }

    public private(set) var rows: [Row]
    private var index: [String: Int]

    /// An empty table.
    public init() {
        rows = []
        index = [:]
    }

    public init(rows: [Row]) throws {
        self.init()
        for row in rows { try add(row) }
    }

    public init(tsv: String) throws {
        self.init()
        var columns: [String: Int]?
        let required = ["vid", "pid", "interface", "role", "family"]
        var lineNumber = 0
        func take(_ fields: [String]) throws {
            guard let header = columns else {
                var map: [String: Int] = [:]
                for (i, name) in fields.enumerated() { map[name.lowercased()] = i }
                for name in required where map[name] == nil {
                    throw ParseError(line: lineNumber, message: "header has no '\(name)' column")
                }
                columns = map
                return
            }
            func field(_ name: String) -> String? {
                guard let i = header[name], i < fields.count, !fields[i].isEmpty else { return nil }
                return fields[i]
            }
            func need(_ name: String) throws -> String {
                guard let value = field(name) else {
                    throw ParseError(line: lineNumber, message: "missing '\(name)'")
                }
                return value
            }
            let vidText = try need("vid")
            let pidText = try need("pid")
            guard vidText.count == 4, let vid = PortKeys.hex4(vidText) else {
                throw ParseError(line: lineNumber, message: "'vid' is not 4 hex digits")
            }
            guard pidText.count == 4, let pid = PortKeys.hex4(pidText) else {
                throw ParseError(line: lineNumber, message: "'pid' is not 4 hex digits")
            }
            guard let interface = Self.interfaceKey(try need("interface")) else {
                throw ParseError(
                    line: lineNumber, message: "'interface' is neither 2 hex digits nor xx/xx/xx nor a WWAN port (at0)")
            }
            let roleText = try need("role")
            guard let role = PortRole(ruleValue: roleText), role != .unknown else {
                throw ParseError(line: lineNumber, message: "unknown role '\(roleText)'")
            }
            let row = Row(
                vendorID: vid, productID: pid, interface: interface, role: role, family: try need("family"),
                modemManagerRole: field("mm_role"), line: lineNumber)
            try add(row)
        }
        if Self.isPlainASCII(tsv) {
            // The shipped table and any table written by hand: bytes, not Characters. The Character path below
            // (grapheme breaking, Unicode whitespace) cost 2.1 ms for the 199 rows of udev/ports.tsv in a release
            // build, on cellprovd's start path; this one gives the same rows, lines and errors for such text.
            var text = tsv
            try text.withUTF8 { bytes in
                var start = 0
                while start <= bytes.count {
                    var end = start
                    while end < bytes.count, bytes[end] != 0x0A { end += 1 }
                    lineNumber += 1
                    var last = end
                    if last > start, bytes[last - 1] == 0x0D { last -= 1 }  // "\r\n" is one line break
                    let line = UnsafeBufferPointer(rebasing: bytes[start..<last])
                    start = end + 1
                    if line.allSatisfy(Self.isASCIIWhitespace) || line.first == UInt8(ascii: "#") { continue }
                    var fields: [String] = []
                    var fieldStart = 0
                    for i in 0...line.count where i == line.count || line[i] == 0x09 {
                        var a = fieldStart
                        var b = i
                        while a < b, Self.isASCIIWhitespace(line[a]) { a += 1 }
                        while b > a, Self.isASCIIWhitespace(line[b - 1]) { b -= 1 }
                        fields.append(String(decoding: UnsafeBufferPointer(rebasing: line[a..<b]), as: UTF8.self))
                        fieldStart = i + 1
                    }
                    try take(fields)
                }
            }
        } else {
            // isNewline: "\r\n" is one Character, so splitting on "\n" alone would not split CRLF lines.
            for line in tsv.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
                lineNumber += 1
                if line.allSatisfy(\.isWhitespace) || line.first == "#" { continue }
                try take(line.split(separator: "\t", omittingEmptySubsequences: false).map { PortKeys.trim($0) })
            }
        }
        if columns == nil { throw ParseError(line: lineNumber, message: "no header line") }
    }

    /// ASCII whose only line breaks are "\n" and "\r\n": split on bytes, it gives the lines and fields that the
    /// Character path gives (no other byte is a line break or whitespace there).
    public static func isPlainASCII(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var previous: UInt8 = 0
            for byte in bytes {
                if byte >= 0x80 || byte == 0x0B || byte == 0x0C { return false }
                if previous == 0x0D, byte != 0x0A { return false }
                previous = byte
            }
            return previous != 0x0D
        }
    }

    /// Character.isWhitespace for an ASCII byte: tab, line feed, vertical tab, form feed, carriage return, space.
    static func isASCIIWhitespace(_ byte: UInt8) -> Bool { byte == 0x20 || (0x09...0x0D).contains(byte) }

    private mutating func add(_ row: Row) throws {
        if let earlier = index[row.key] {
            throw ParseError(line: row.line, message: "the same port as line \(rows[earlier].line)")
        }
        index[row.key] = rows.count
        rows.append(row)
    }

    /// The row for a port: by interface number first, then by class/subclass/protocol.
    public func lookup(vendor: String, product: String, interfaceNumber: String?, classTriple: String?) -> Row? {
        guard let vendor = PortKeys.hex4(vendor), let product = PortKeys.hex4(product) else { return nil }
        if let number = interfaceNumber.flatMap(PortKeys.hex2), let i = index["\(vendor):\(product):\(number)"] {
            return rows[i]
        }
        if let triple = classTriple.flatMap(Self.interfaceKey), let i = index["\(vendor):\(product):\(triple)"] {
            return rows[i]
        }
        return nil
    }

    /// The row for a WWAN port: the module's PCI subsystem IDs (or USB IDs) and the port's name ("at1").
    public func lookupWWAN(vendor: String, product: String, port: String) -> Row? {
        guard let vendor = PortKeys.hex4(vendor), let product = PortKeys.hex4(product),
            let port = Self.wwanPortKey(port), let i = index["\(vendor):\(product):\(port)"]
        else { return nil }
        return rows[i]
    }

    /// Whether the table has any row for this VID:PID (a known module).
    public func knows(vendor: String, product: String) -> Bool {
        guard let vendor = PortKeys.hex4(vendor), let product = PortKeys.hex4(product) else { return false }
        return rows.contains { $0.vendorID == vendor && $0.productID == product }
    }

    /// "3" -> "03"; "FF/2/1" -> "ff/02/01"; "AT1" -> "at1"; nil for anything else.
    static func interfaceKey(_ text: String) -> String? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        switch parts.count {
        case 1: return PortKeys.hex2(text) ?? wwanPortKey(text)
        case 3:
            let hex = parts.compactMap { PortKeys.hex2(String($0)) }
            return hex.count == 3 ? hex.joined(separator: "/") : nil
        default: return nil
        }
    }

    /// A WWAN port name without its device: 2-10 letters and 1-3 digits ("at0", "mbim0"), lower-cased.
    static func wwanPortKey(_ text: String) -> String? {
        let lower = PortKeys.trim(text).lowercased()
        let letters = lower.prefix { $0.isASCII && $0.isLetter }
        let digits = lower.dropFirst(letters.count)
        guard (2...10).contains(letters.count), (1...3).contains(digits.count),
            digits.allSatisfy({ $0.isASCII && $0.isNumber })
        else { return nil }
        return lower
    }
}
