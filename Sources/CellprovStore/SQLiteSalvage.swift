import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// Reads the rows that are still readable out of a damaged SQLite database file and its WAL, without SQLite.
///
/// Why not SQLite itself: a file whose header is overwritten is "not a database" to SQLite, a truncated file
/// fails a table scan at the first missing page (and every row after it is lost with it), and a WAL beside a
/// database that was replaced by a directory cannot be opened at all. SQLite's own `.recover` lives in the
/// sqlite3 shell, not in the library GRDB links, and shelling out to a CLI from a hardened daemon is not an
/// option. So this reads the file format directly (https://www.sqlite.org/fileformat2.html), as `.recover`
/// does: every page that looks like a table b-tree leaf is parsed, cell by cell, each cell's record decoded,
/// overflow chains followed; pages are taken from the WAL's last committed frames when there are any (checksums
/// and salts checked, so an unfinished transaction is not taken for data), else from the database file. The
/// caller recognises its tables' rows by shape and content; which b-tree a leaf belonged to is not needed.
///
/// Bounded: pages are read one at a time with pread (never the whole file), a record is at most 1 MiB, an
/// overflow chain at most as long as the file has pages. Pages on the free list are skipped when the header
/// that finds them is readable (their content is stale).
public enum SQLiteSalvage {
    /// One column value of a record.
    public enum Value: Sendable, Equatable {
        case null
        case integer(Int64)
        case real(Double)
        case text(String)
        case blob([UInt8])

        public var text: String? { if case .text(let s) = self { s } else { nil } }
        public var integer: Int64? { if case .integer(let i) = self { i } else { nil } }
        /// A REAL column may be stored as an integer when the value is whole.
        public var number: Double? {
            switch self {
            case .real(let d): d
            case .integer(let i): Double(i)
            default: nil
            }
        }
        public var isNull: Bool { self == .null }
    }

    /// A row of some table b-tree leaf: its rowid and its record's values.
    public struct Row: Sendable {
        public var rowid: Int64
        public var values: [Value]
        /// The page it was read from, and the overflow pages its record continued on (for diagnostics).
        public var page: Int
        public var overflowPages: [Int] = []
    }

    public struct Result: Sendable {
        public var rows: [Row]
        public var pageSize: Int
        /// Pages examined (from the file and the WAL).
        public var pagesRead: Int
        /// Pages that could not be read or were not b-tree pages (zeros, garbage, past the end of a truncated
        /// file).
        public var pagesUnreadable: Int
        /// Committed WAL frames used.
        public var walFrames: Int
    }

    static let maxRecord = 1 << 20
    static let header = Array("SQLite format 3\u{0}".utf8)

    /// Reads every readable table row of `databasePath` (a file, or anything else: then only the WAL counts)
    /// and `walPath`.
    public static func read(databasePath: String, walPath: String) -> Result {
        let db = PagedFile(path: databasePath)
        let wal = PagedFile(path: walPath)
        defer {
            db?.close()
            wal?.close()
        }
        var header = db.flatMap { $0.bytes(at: 0, count: 100) }
        if let h = header, Array(h[0..<16]) != Self.header { header = nil }

        // Page size: the database header, else the WAL header, else the size that makes most pages look like
        // b-tree pages.
        var pageSize = header.flatMap { pageSizeField(UInt32(be16($0, 16))) }
        var reserved = header.map { Int($0[20]) } ?? 0
        let walIndex = wal.flatMap { WALIndex(file: $0) }
        if pageSize == nil, let w = walIndex { pageSize = w.pageSize }
        if pageSize == nil, let db { pageSize = guessPageSize(db) }
        guard let pageSize, reserved < pageSize - 480 else {
            return Result(rows: [], pageSize: 0, pagesRead: 0, pagesUnreadable: 0, walFrames: 0)
        }
        if header == nil { reserved = 0 }
        let (frames, _) = walIndex?.committedFrames(pageSize: pageSize) ?? ([:], 0)

        let source = PageSource(db: db, wal: wal, frames: frames, pageSize: pageSize)
        // Only pages that exist somewhere (a header's page count may be garbage, or larger than a cut file).
        let pageCount = max((db?.size ?? 0) / pageSize, frames.keys.max() ?? 0)

        // The free list, when page 1 is readable: those pages hold stale rows.
        var free = Set<Int>()
        if let page1 = source.page(1), Array(page1[0..<16]) == Self.header {
            var trunk = Int(be32(page1, 32))
            var guardCount = 0
            while trunk > 1, trunk <= pageCount, guardCount < pageCount, let t = source.page(trunk) {
                free.insert(trunk)
                let n = min(Int(be32(t, 4)), (pageSize - 8) / 4)
                for i in 0..<n { free.insert(Int(be32(t, 8 + 4 * i))) }
                trunk = Int(be32(t, 0))
                guardCount += 1
            }
        }

        let usable = pageSize - reserved
        var rows: [Row] = []
        var unreadable = 0
        for number in 1...max(pageCount, 1) where !free.contains(number) {
            guard let page = source.page(number) else {
                unreadable += 1
                continue
            }
            let base = number == 1 ? 100 : 0
            switch page[base] {
            case 13:
                rows += leafRows(page: page, number: number, base: base, usable: usable, source: source,
                                 pageCount: pageCount)
            case 2, 5, 10:
                break  // interior and index pages: nothing to take
            default:
                unreadable += 1
            }
        }
        return Result(
            rows: rows, pageSize: pageSize, pagesRead: pageCount, pagesUnreadable: unreadable,
            walFrames: frames.count)
    }

    // MARK: - B-tree leaf pages

    static func leafRows(page: [UInt8], number: Int, base: Int, usable: Int, source: PageSource, pageCount: Int)
        -> [Row]
    {
        let cells = Int(be16(page, base + 3))
        guard base + 8 + 2 * cells <= usable else { return [] }
        var rows: [Row] = []
        for i in 0..<cells {
            let offset = Int(be16(page, base + 8 + 2 * i))
            guard offset >= base + 8 + 2 * cells, offset < usable else { continue }
            guard let (payloadSize, a) = varint(page, offset, limit: usable), payloadSize >= 0,
                payloadSize <= maxRecord, let (rowid, b) = varint(page, offset + a, limit: usable)
            else { continue }
            let start = offset + a + b
            let p = Int(payloadSize)
            let x = usable - 35
            var payload: [UInt8]
            var chain: [Int] = []
            if p <= x {
                guard start + p <= usable else { continue }
                payload = Array(page[start..<(start + p)])
            } else {
                let m = ((usable - 12) * 32 / 255) - 23
                let k = m + ((p - m) % (usable - 4))
                let local = k <= x ? k : m
                guard start + local + 4 <= usable else { continue }
                payload = Array(page[start..<(start + local)])
                var next = Int(be32(page, start + local))
                var hops = 0
                while payload.count < p, next > 0, next <= pageCount, hops < pageCount,
                    let overflow = source.page(next)
                {
                    let take = min(usable - 4, p - payload.count)
                    payload += overflow[4..<(4 + take)]
                    chain.append(next)
                    next = Int(be32(overflow, 0))
                    hops += 1
                }
                guard payload.count == p else { continue }
            }
            if let values = record(payload) {
                rows.append(Row(rowid: rowid, values: values, page: number, overflowPages: chain))
            }
        }
        return rows
    }

    /// Decodes a record (header of serial types, then the values); nil when it does not parse exactly.
    static func record(_ bytes: [UInt8]) -> [Value]? {
        guard let (headerSize, n) = varint(bytes, 0, limit: bytes.count), headerSize >= n,
            Int(headerSize) <= bytes.count
        else { return nil }
        var types: [Int64] = []
        var at = n
        while at < Int(headerSize) {
            guard let (t, len) = varint(bytes, at, limit: Int(headerSize)) else { return nil }
            types.append(t)
            at += len
        }
        var body = Int(headerSize)
        var values: [Value] = []
        for t in types {
            let size: Int
            switch t {
            case 0, 8, 9: size = 0
            case 1, 2, 3, 4: size = Int(t)
            case 5: size = 6
            case 6, 7: size = 8
            case 10, 11: return nil
            default: size = Int((t - 12) / 2)
            }
            guard size >= 0, body + size <= bytes.count else { return nil }
            let field = bytes[body..<(body + size)]
            switch t {
            case 0: values.append(.null)
            case 8: values.append(.integer(0))
            case 9: values.append(.integer(1))
            case 1...6:
                var v: Int64 = (field.first ?? 0) & 0x80 != 0 ? -1 : 0
                for byte in field { v = (v << 8) | Int64(byte) }
                values.append(.integer(v))
            case 7:
                var bits: UInt64 = 0
                for byte in field { bits = (bits << 8) | UInt64(byte) }
                values.append(.real(Double(bitPattern: bits)))
            default:
                if t % 2 == 0 {
                    values.append(.blob(Array(field)))
                } else {
                    guard let s = String(validating: field, as: UTF8.self) else { return nil }
                    values.append(.text(s))
                }
            }
            body += size
        }
        return body == bytes.count ? values : nil
    }

    /// SQLite's varint: 1 to 9 bytes, big-endian, 7 bits per byte (8 in the ninth).
    static func varint(_ bytes: [UInt8], _ offset: Int, limit: Int) -> (Int64, Int)? {
        var value: UInt64 = 0
        for i in 0..<9 {
            guard offset + i < min(limit, bytes.count) else { return nil }
            let b = bytes[offset + i]
            if i == 8 { return (Int64(bitPattern: (value << 8) | UInt64(b)), 9) }
            value = (value << 7) | UInt64(b & 0x7f)
            if b & 0x80 == 0 { return (Int64(bitPattern: value), i + 1) }
        }
        return nil
    }

    static func be16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) << 8 | UInt16(b[o + 1]) }
    static func be32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }

    static func pageSizeField(_ raw: UInt32) -> Int? {
        let size = raw == 1 ? 65536 : Int(raw)
        return size >= 512 && size <= 65536 && size & (size - 1) == 0 ? size : nil
    }

    /// The page size under which most pages (from the second on) start with a plausible b-tree page header.
    static func guessPageSize(_ file: PagedFile) -> Int? {
        var best: (Int, Int)?
        for size in [4096, 1024, 2048, 8192, 16384, 32768, 65536, 512] {
            let count = min(file.size / size, 256)
            guard count >= 2 else { continue }
            var plausible = 0
            for n in 2...count {
                guard let p = file.bytes(at: (n - 1) * size, count: 12) else { continue }
                let cells = Int(be16(p, 3))
                let content = Int(be16(p, 5))
                if [2, 5, 10, 13].contains(p[0]), cells < size / 2, content <= size { plausible += 1 }
            }
            if plausible > (best?.1 ?? 0) { best = (size, plausible) }
        }
        return best?.0
    }

    // MARK: - Files

    /// A regular file read with pread; nil for anything that is not a readable regular file.
    final class PagedFile {
        let fd: Int32
        let size: Int

        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            size = Int(st.st_size)
        }

        func bytes(at offset: Int, count: Int) -> [UInt8]? {
            guard offset >= 0, offset + count <= size else { return nil }
            var buffer = [UInt8](repeating: 0, count: count)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return n == count ? buffer : nil
        }

        func close() { Glibc.close(fd) }
    }

    /// The WAL's committed frames: the newest committed copy of each page.
    struct WALIndex {
        let file: PagedFile
        let pageSize: Int
        let bigEndian: Bool
        let salt: (UInt32, UInt32)

        init?(file: PagedFile) {
            guard let h = file.bytes(at: 0, count: 32) else { return nil }
            let magic = SQLiteSalvage.be32(h, 0)
            guard magic == 0x377f_0682 || magic == 0x377f_0683,
                let size = SQLiteSalvage.pageSizeField(SQLiteSalvage.be32(h, 8))
            else { return nil }
            self.file = file
            pageSize = size
            bigEndian = magic == 0x377f_0683
            salt = (SQLiteSalvage.be32(h, 16), SQLiteSalvage.be32(h, 20))
            var s = (UInt32(0), UInt32(0))
            Self.checksum(&s, h[0..<24], bigEndian: bigEndian)
            guard s == (SQLiteSalvage.be32(h, 24), SQLiteSalvage.be32(h, 28)) else { return nil }
        }

        /// Page number -> file offset of the page data, for frames up to the last valid commit frame; and the
        /// database size in pages that commit recorded.
        func committedFrames(pageSize: Int) -> ([Int: Int], Int) {
            guard pageSize == self.pageSize, let h = file.bytes(at: 0, count: 32) else { return ([:], 0) }
            var s = (SQLiteSalvage.be32(h, 24), SQLiteSalvage.be32(h, 28))
            var pending: [Int: Int] = [:]
            var committed: [Int: Int] = [:]
            var size = 0
            var offset = 32
            while let frame = file.bytes(at: offset, count: 24 + pageSize) {
                guard SQLiteSalvage.be32(frame, 8) == salt.0, SQLiteSalvage.be32(frame, 12) == salt.1 else { break }
                Self.checksum(&s, frame[0..<8], bigEndian: bigEndian)
                Self.checksum(&s, frame[24...], bigEndian: bigEndian)
                guard s == (SQLiteSalvage.be32(frame, 16), SQLiteSalvage.be32(frame, 20)) else { break }
                let page = Int(SQLiteSalvage.be32(frame, 0))
                pending[page] = offset + 24
                if SQLiteSalvage.be32(frame, 4) != 0 {  // a commit frame
                    size = Int(SQLiteSalvage.be32(frame, 4))
                    committed.merge(pending) { $1 }
                    pending = [:]
                }
                offset += 24 + pageSize
            }
            return (committed, size)
        }

        /// The WAL checksum: over 32-bit words in the WAL's byte order, s0 += x0 + s1; s1 += x1 + s0.
        static func checksum(_ s: inout (UInt32, UInt32), _ bytes: ArraySlice<UInt8>, bigEndian: Bool) {
            var i = bytes.startIndex
            while i + 8 <= bytes.endIndex {
                func word(_ o: Int) -> UInt32 {
                    let b = (UInt32(bytes[o]), UInt32(bytes[o + 1]), UInt32(bytes[o + 2]), UInt32(bytes[o + 3]))
                    return bigEndian ? b.0 << 24 | b.1 << 16 | b.2 << 8 | b.3 : b.3 << 24 | b.2 << 16 | b.1 << 8 | b.0
                }
                s.0 = s.0 &+ word(i) &+ s.1
                s.1 = s.1 &+ word(i + 4) &+ s.0
                i += 8
            }
        }
    }

    /// A page by number: the WAL's committed copy if there is one, else the database file's.
    struct PageSource {
        let db: PagedFile?
        let wal: PagedFile?
        let frames: [Int: Int]
        let pageSize: Int

        func page(_ number: Int) -> [UInt8]? {
            guard number >= 1 else { return nil }
            if let offset = frames[number], let wal, let p = wal.bytes(at: offset, count: pageSize) { return p }
            return db?.bytes(at: (number - 1) * pageSize, count: pageSize)
        }
    }
}
