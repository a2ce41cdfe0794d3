import CTOMLShim

/// cellprovd's view of a parsed configuration file: toml++ (through the CTOMLShim C interface) copied into Swift
/// values once, the C++ tree freed at once (a configuration is a few hundred bytes).
///
/// Why not TOMLKit, which wraps the same parser: its Swift layer imports Foundation, and one module importing
/// Foundation is enough to bring Foundation, CoreFoundation and ICU's 33 MB of data into the installed static
/// executable (docs/decisions.md, "Installed size without Foundation"). The registry keeps TOMLKit; this type
/// is named apart from TOMLKit's `TOMLTable` so that the two parsers are not confused.
struct ConfigTable: Sendable {
    var entries: [(key: String, value: ConfigValue)] = []

    var keys: [String] { entries.map(\.key) }

    subscript(key: String) -> ConfigValue? { entries.first { $0.key == key }?.value }

    /// Parses `string`; a syntax error carries toml++'s description and line.
    init(string: String) throws(TOMLParseError) {
        var error = [CChar](repeating: 0, count: 512)
        var line: UInt32 = 0
        var text = string
        let root = text.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { chars in
                ctoml_parse(chars.baseAddress, chars.count, &error, error.count, &line)
            }
        }
        guard let root else {
            let description = error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw TOMLParseError(description: description, line: Int(line))
        }
        defer { ctoml_free(root) }
        self = Self(node: root)
    }

    private init(node: OpaquePointer) {
        for i in 0..<ctoml_count(node) {
            var length = 0
            guard let key = ctoml_table_key(node, i, &length), let value = ctoml_table_value(node, i) else { continue }
            entries.append((ConfigValue.text(key, length), ConfigValue(value)))
        }
    }

    fileprivate static func make(_ node: OpaquePointer) -> ConfigTable { ConfigTable(node: node) }
}

/// A TOML value; the kinds cellprovd reads keep their contents, the others only their type (for error messages).
enum ConfigValue: Sendable {
    case table(ConfigTable)
    case array([ConfigValue])
    case string(String)
    case integer(Int64)
    case boolean(Bool)
    /// A float, date, time or date-time: cellprovd has no key of these types.
    case other(type: String)

    fileprivate init(_ node: OpaquePointer) {
        switch ctoml_node_type(node) {
        case CTOML_TABLE: self = .table(ConfigTable.make(node))
        case CTOML_ARRAY: self = .array((0..<ctoml_count(node)).compactMap { ctoml_array_element(node, $0) }.map(ConfigValue.init))
        case CTOML_STRING:
            var length = 0
            self = .string(ctoml_string(node, &length).map { Self.text($0, length) } ?? "")
        case CTOML_INTEGER: self = .integer(ctoml_integer(node))
        case CTOML_BOOLEAN: self = .boolean(ctoml_boolean(node) != 0)
        case CTOML_FLOAT: self = .other(type: "floating-point number")
        case CTOML_DATE: self = .other(type: "date")
        case CTOML_TIME: self = .other(type: "time")
        case CTOML_DATE_TIME: self = .other(type: "date-time")
        default: self = .other(type: "none")
        }
    }

    fileprivate static func text(_ bytes: UnsafePointer<CChar>, _ length: Int) -> String {
        bytes.withMemoryRebound(to: UInt8.self, capacity: length) {
            String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
        }
    }

    var table: ConfigTable? { if case .table(let t) = self { t } else { nil } }
    var array: [ConfigValue]? { if case .array(let a) = self { a } else { nil } }
    var string: String? { if case .string(let s) = self { s } else { nil } }
    var int: Int? { if case .integer(let i) = self { Int(exactly: i) } else { nil } }
    var bool: Bool? { if case .boolean(let b) = self { b } else { nil } }

    /// The type's name as error messages give it (TOMLKit's names, so the messages did not change).
    var type: String {
        switch self {
        case .table: "table"
        case .array: "array"
        case .string: "string"
        case .integer: "integer"
        case .boolean: "bool"
        case .other(let type): type
        }
    }
}

/// A TOML syntax error: toml++'s description and the 1-based line it starts on.
struct TOMLParseError: Error, CustomStringConvertible {
    var description: String
    var line: Int
}
