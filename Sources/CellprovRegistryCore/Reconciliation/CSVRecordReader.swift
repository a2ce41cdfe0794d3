/// The records of a carrier export, read from its UTF-8 bytes one at a time (issue 19 row 7): no copy of the file
/// as a `String`, no array of rows, and a `String` only for the cells the reconciliation uses. Memory is one record's
/// cells, whatever the file's size.
///
/// The grammar is the one SwiftCSV's parser (`ParsingState`) applied before, so that the rows, their line numbers and
/// the refusals stay as they were:
/// - a record ends at a line break (LF, CR, CR LF, VT, FF, NEL, LS or PS) outside quotes; a blank line is a record
///   (with no content) and counts in the line numbers;
/// - blanks before a field are dropped; a field that starts with `"` is quoted: `""` inside it is one quote, line
///   breaks and delimiters are text, and after its closing quote only blanks may come before the delimiter or the
///   line break;
/// - in an unquoted field `""` is one quote and a single `"` followed by anything else is an error;
/// - the last record needs no line break; an empty last field of it is dropped.
struct CSVRecordReader {
    /// A field with a stray quote (text after a closing quote, or an unescaped quote in an unquoted field).
    struct StrayQuote: Error {}

    private let bytes: UnsafeBufferPointer<UInt8>
    private let delimiter: UInt8
    private var position = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>, delimiter: UInt8) {
        self.bytes = bytes
        self.delimiter = delimiter
    }

    /// One record.
    struct Record {
        /// Its cells; a cell not asked for (`wanted`) is empty.
        var fields: [String] = []
        /// No cell holds anything but blanks (asked for or not).
        var blank = true
    }

    /// Reads the next record into `record` (its arrays reused); false at the end of the input. `wanted(i)`: whether
    /// cell `i` is made a `String`.
    mutating func next(into record: inout Record, wanted: (Int) -> Bool) throws -> Bool {
        record.fields.removeAll(keepingCapacity: true)
        record.blank = true
        guard position < bytes.count else { return false }
        let quote = UInt8(ascii: "\"")
        var field: [UInt8] = []
        field.reserveCapacity(64)
        var atStart = true
        var quoted = false
        var innerQuote = false

        func finishField() {
            let index = record.fields.count
            if wanted(index) {
                let text = String(decoding: field, as: UTF8.self)
                if record.blank && !text.allSatisfy(\.isWhitespace) { record.blank = false }
                record.fields.append(text)
            } else {
                if record.blank && !Self.isBlank(field) { record.blank = false }
                record.fields.append("")
            }
            field.removeAll(keepingCapacity: true)
        }

        while position < bytes.count {
            let byte = bytes[position]
            let breakLength = lineBreak(at: position)
            // Where a field may end (before its text, in unquoted text, or after its closing quote), a delimiter
            // ends the field and a line break ends the record too.
            if (atStart || innerQuote == quoted) && (byte == delimiter || breakLength > 0) {
                finishField()
                atStart = true
                if breakLength > 0 {
                    position += breakLength
                    return true
                }
                position += 1
                continue
            }
            if atStart {
                if byte == quote {
                    atStart = false
                    quoted = true
                    innerQuote = false
                    position += 1
                } else if let blankLength = blank(at: position) {
                    position += blankLength
                } else {
                    atStart = false
                    quoted = false
                    innerQuote = false
                    field.append(byte)
                    position += 1
                }
            } else if !quoted {
                if innerQuote {
                    guard byte == quote else { throw StrayQuote() }
                    field.append(quote)
                    innerQuote = false
                    position += 1
                } else if byte == quote {
                    innerQuote = true
                    position += 1
                } else {
                    field.append(byte)
                    position += 1
                }
            } else if innerQuote {
                if byte == quote {
                    field.append(quote)
                    innerQuote = false
                    position += 1
                } else if let blankLength = blank(at: position) {
                    position += blankLength
                } else {
                    throw StrayQuote()
                }
            } else if byte == quote {
                innerQuote = true
                position += 1
            } else {
                // Inside quotes: line breaks and delimiters are text.
                field.append(byte)
                position += 1
            }
        }
        // The last record without a line break: its fields so far, and the last one unless empty.
        if !field.isEmpty { finishField() }
        return !record.fields.isEmpty
    }

    /// The length of the line break at `i` (CR LF is one), or 0.
    private func lineBreak(at i: Int) -> Int {
        switch bytes[i] {
        case 0x0A, 0x0B, 0x0C: return 1
        case 0x0D: return i + 1 < bytes.count && bytes[i + 1] == 0x0A ? 2 : 1
        case 0xC2: return i + 1 < bytes.count && bytes[i + 1] == 0x85 ? 2 : 0
        case 0xE2:
            return i + 2 < bytes.count && bytes[i + 1] == 0x80 && (bytes[i + 2] == 0xA8 || bytes[i + 2] == 0xA9) ? 3 : 0
        default: return 0
        }
    }

    /// The length of the blank (a Unicode white-space scalar other than a line break) at `i`, or nil.
    private func blank(at i: Int) -> Int? {
        let byte = bytes[i]
        if byte == 0x20 || byte == 0x09 { return 1 }
        guard byte >= 0xC2 else { return nil }
        var iterator = bytes[i...].makeIterator()
        var decoder = UTF8()
        guard case .scalarValue(let scalar) = decoder.decode(&iterator), scalar.properties.isWhitespace else {
            return nil
        }
        return UTF8.width(scalar)
    }

    /// Blanks only (the cells not made strings: decoded only when they hold more than ASCII).
    private static func isBlank(_ field: [UInt8]) -> Bool {
        var ascii = true
        for byte in field {
            if byte >= 0x80 {
                ascii = false
                break
            }
            if byte != 0x20 && !(0x09...0x0D).contains(byte) { return false }
        }
        return ascii || String(decoding: field, as: UTF8.self).allSatisfy(\.isWhitespace)
    }
}
