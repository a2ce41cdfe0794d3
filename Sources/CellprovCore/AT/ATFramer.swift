/// Splits the byte stream of an AT port into lines.
///
/// Accepts CR LF, bare CR and bare LF endings (an empty line between them is dropped). A line longer than
/// `maxLineLength` is never buffered whole: the framer reports `.garbage` once, discards bytes until the next
/// line end and then resynchronises, so garbage or a megabyte without a line end costs a bounded amount of
/// memory. Bytes that are not printable text (outside 0x20...0x7E, tab allowed) mark the line as garbage: from that
/// byte on nothing is buffered, the bytes up to the line end are only counted.
public struct ATFramer: Sendable {
    public enum Output: Sendable, Equatable {
        /// A complete text line, without its ending and without surrounding whitespace.
        case line(String)
        /// A line was too long or held binary bytes; it was dropped.
        case garbage(droppedBytes: Int)
        /// The modem asks for more input (the "> " prompt of AT+CMGS and similar).
        case prompt
    }

    public let maxLineLength: Int
    private var buffer: [UInt8] = []
    private var discarding = false
    private var dropped = 0

    public init(maxLineLength: Int = 1024) {
        precondition(maxLineLength > 0)
        self.maxLineLength = maxLineLength
        buffer.reserveCapacity(min(maxLineLength, 256))
    }

    /// Bytes currently held, waiting for a line end (never more than `maxLineLength`).
    public var bufferedByteCount: Int { buffer.count }

    /// Feeds bytes; returns the complete outputs they finish, in order.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [Output] where Bytes.Element == UInt8 {
        var out: [Output] = []
        for byte in bytes {
            if byte == 0x0D || byte == 0x0A {
                finishLine(into: &out)
                continue
            }
            if discarding {
                dropped += 1
                continue
            }
            if buffer.count >= maxLineLength {
                discarding = true
                dropped = buffer.count + 1
                buffer.removeAll(keepingCapacity: true)
                continue
            }
            if byte < 0x20 && byte != 0x09 || byte > 0x7E {
                // A binary byte condemns the whole line: stop buffering now and only count until the line end,
                // so a port streaming noise costs one comparison per byte and no allocation.
                discarding = true
                dropped = buffer.count + 1
                buffer.removeAll(keepingCapacity: true)
                continue
            }
            buffer.append(byte)
            if buffer.count == 2 && buffer[0] == 0x3E && buffer[1] == 0x20 {
                // "> " prompt has no line end after it.
                buffer.removeAll(keepingCapacity: true)
                out.append(.prompt)
            }
        }
        return out
    }

    /// Drops whatever partial line is buffered (after a timeout, before a new command).
    public mutating func reset() {
        buffer.removeAll(keepingCapacity: true)
        discarding = false
        dropped = 0
    }

    private mutating func finishLine(into out: inout [Output]) {
        if discarding {
            out.append(.garbage(droppedBytes: dropped))
            discarding = false
            dropped = 0
            return
        }
        defer { buffer.removeAll(keepingCapacity: true) }
        let text = String(decoding: buffer, as: UTF8.self).trimmingATWhitespace()
        if !text.isEmpty { out.append(.line(text)) }
    }
}

extension String {
    func trimmingATWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
