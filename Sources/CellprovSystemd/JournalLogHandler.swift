import CSystemd
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A swift-log handler that writes structured records to journald with `sd_journal_sendv(3)`.
///
/// Each record carries `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, `CODE_FILE`, `CODE_LINE`, `CODE_FUNC`,
/// `CELLPROV_LOGGER` (the logger's label), one field per metadata key (see ``journalFieldName(forMetadataKey:)``)
/// and `CELLPROV_ERROR` when the event has an error. Fields may contain newlines: a multi-line message stays one
/// record.
///
/// Values are written as given: callers pass identifiers only through their redacting descriptions or
/// `Redaction.scrub(_:)`. If journald cannot be reached the record goes to standard error instead.
public struct JournalLogHandler: LogHandler {
    public let label: String
    /// The `SYSLOG_IDENTIFIER` of every record (`journalctl -t identifier`).
    public let identifier: String
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata
    public var metadataProvider: Logger.MetadataProvider?

    public init(
        label: String,
        identifier: String,
        logLevel: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider
    ) {
        self.label = label
        self.identifier = identifier
        self.logLevel = logLevel
        self.metadata = [:]
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = mergedMetadata(event.metadata)
        let fields = Self.journalFields(
            level: event.level,
            message: event.message.description,
            metadata: merged,
            error: event.error,
            identifier: identifier,
            label: label,
            file: event.file,
            function: event.function,
            line: event.line
        )
        if Self.send(fields) < 0 {
            let line = StderrLogHandler.format(
                level: event.level,
                message: event.message.description,
                metadata: merged,
                error: event.error
            )
            StderrLogHandler.writeLine(line)
        }
    }

    // MARK: - Field construction (pure, internal for tests)

    /// A journal field: a valid name and its value (any bytes, newlines included).
    struct Field: Equatable, Sendable, CustomStringConvertible {
        var name: String
        var value: String
        var description: String { "\(name)=\(value)" }
    }

    /// Fields the handler sets itself; a metadata key equal to one of these is prefixed instead of overriding it.
    static let reservedFieldNames: Set<String> = [
        "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "SYSLOG_PID", "SYSLOG_TIMESTAMP",
        "SYSLOG_RAW", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "CELLPROV_LOGGER", "CELLPROV_ERROR",
    ]

    static let fieldPrefix = "CELLPROV_"
    static let maxFieldNameLength = 64

    /// The syslog priority journald expects: trace/debug 7, info 6, notice 5, warning 4, error 3, critical 2.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// The fields of one record, in the order they are sent: the fixed fields, then metadata sorted by key, then
    /// the error.
    static func journalFields(
        level: Logger.Level,
        message: String,
        metadata: Logger.Metadata,
        error: (any Error)? = nil,
        identifier: String,
        label: String,
        file: String,
        function: String,
        line: UInt
    ) -> [Field] {
        var fields: [Field] = [
            Field(name: "MESSAGE", value: message),
            Field(name: "PRIORITY", value: String(priority(level))),
            Field(name: "SYSLOG_IDENTIFIER", value: identifier),
            Field(name: "CODE_FILE", value: file),
            Field(name: "CODE_LINE", value: String(line)),
            Field(name: "CODE_FUNC", value: function),
            Field(name: "CELLPROV_LOGGER", value: label),
        ]
        for key in metadata.keys.sorted() {
            guard let value = metadata[key] else { continue }
            fields.append(Field(name: journalFieldName(forMetadataKey: key), value: metadataString(value)))
        }
        if let error {
            fields.append(Field(name: "CELLPROV_ERROR", value: String(describing: error)))
        }
        return fields
    }

    /// A metadata value as text: strings as given, others through their `description`.
    static func metadataString(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array, .dictionary: value.description
        }
    }

    /// True for a name journald accepts from a client: 1 to 64 of `A-Z`, `0-9`, `_`, not starting with `_`
    /// (trusted fields) or a digit.
    static func isValidJournalFieldName(_ name: String) -> Bool {
        let scalars = Array(name.unicodeScalars)
        guard let first = scalars.first, scalars.count <= maxFieldNameLength else { return false }
        guard isUpper(first) else { return false }
        return scalars.allSatisfy { isUpper($0) || isDigit($0) || $0 == "_" }
    }

    /// The journal field name for a metadata key.
    ///
    /// A key that already is a valid field name (`MESSAGE_ID`, `ERRNO`, `CELLPROV_SLOT`) is kept, unless it is one
    /// the handler sets itself. Any other key is converted: camelCase words split with `_`, letters uppercased,
    /// other characters made `_`, runs of `_` collapsed, then prefixed `CELLPROV_` (unless already so) and cut to
    /// 64 characters. So `modemPath` → `CELLPROV_MODEM_PATH`, `sim.iccid` → `CELLPROV_SIM_ICCID`,
    /// `PRIORITY` → `CELLPROV_PRIORITY`, `_PID` → `CELLPROV_PID`.
    static func journalFieldName(forMetadataKey key: String) -> String {
        if isValidJournalFieldName(key) && !reservedFieldNames.contains(key) {
            return key
        }
        let scalars = Array(key.unicodeScalars)
        var words = ""
        for (index, scalar) in scalars.enumerated() {
            if isUpper(scalar) {
                let previous = index > 0 ? scalars[index - 1] : nil
                let next = index + 1 < scalars.count ? scalars[index + 1] : nil
                // A word starts at an uppercase letter after a lowercase letter or digit ("modemPath"), or at the
                // last capital of an acronym followed by lowercase ("IMEIValue" → IMEI_VALUE).
                if let previous,
                    isLower(previous) || isDigit(previous)
                        || (isUpper(previous) && next.map(isLower) == true)
                {
                    words.append("_")
                }
                words.unicodeScalars.append(scalar)
            } else if isLower(scalar) {
                words.unicodeScalars.append(Unicode.Scalar(scalar.value - 0x20)!)
            } else if isDigit(scalar) {
                words.unicodeScalars.append(scalar)
            } else {
                words.append("_")
            }
        }
        var collapsed = ""
        for character in words where !(character == "_" && collapsed.last == "_") {
            collapsed.append(character)
        }
        let trimmed = collapsed.drop { $0 == "_" }.reversed().drop { $0 == "_" }.reversed()
        var name = String(trimmed)
        if name.isEmpty {
            name = "CELLPROV_METADATA"
        } else if !name.hasPrefix(fieldPrefix) || reservedFieldNames.contains(name) {
            name = fieldPrefix + name
        }
        if name.count > maxFieldNameLength {
            name = String(name.prefix(maxFieldNameLength))
            while name.hasSuffix("_") { name.removeLast() }
        }
        return name
    }

    private static func isUpper(_ scalar: Unicode.Scalar) -> Bool { ("A"..."Z").contains(scalar) }
    private static func isLower(_ scalar: Unicode.Scalar) -> Bool { ("a"..."z").contains(scalar) }
    private static func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }

    /// The `FIELD=value` byte strings handed to `sd_journal_sendv`, one per field.
    static func encode(_ fields: [Field]) -> [[UInt8]] {
        fields.map { Array($0.name.utf8) + [UInt8(ascii: "=")] + Array($0.value.utf8) }
    }

    /// Sends one record; returns `sd_journal_sendv`'s result (negative errno on failure).
    @discardableResult
    static func send(_ fields: [Field]) -> Int32 {
        let entries = encode(fields)
        var storage = [UInt8]()
        storage.reserveCapacity(entries.reduce(0) { $0 + $1.count })
        var ranges: [(offset: Int, count: Int)] = []
        for entry in entries {
            ranges.append((storage.count, entry.count))
            storage.append(contentsOf: entry)
        }
        return storage.withUnsafeMutableBytes { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return -EINVAL }
            let vectors = ranges.map { iovec(iov_base: base + $0.offset, iov_len: $0.count) }
            return vectors.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        }
    }
}
