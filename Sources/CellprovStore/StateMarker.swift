import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// `state.marker`, a small file beside `state.db` saying that a database existed and how far it had got: each
/// slot's last event sequence and the last event position. It is how the daemon tells "first start" from "the
/// database was deleted or emptied" (SQLite silently creates a new one in both cases), and where a slot's
/// numbering continues after a loss.
///
/// It is written atomically (a temporary file, fsync, rename, fsync of the directory) when the store opens, and
/// updated in place (fdatasync) inside every transaction that stores events, before the commit: it may be
/// ahead of the database by the events of a transaction that then failed (a gap in the numbering, which the
/// backend already tolerates), never behind it. Events are rare (enrolment, swaps), so the extra writes are
/// too. No identifiers: slot keys (physical positions) and numbers only.
struct StateMarker: Codable, Equatable, Sendable {
    static let fileName = "state.marker"

    var format = 1
    /// The `database_id` of the database it describes (meta table).
    var databaseID: String
    /// Each slot's last event sequence.
    var slots: [String: Int] = [:]
    /// The last event position (events are numbered 1, 2, 3 ... across slots and never deleted).
    var lastPosition: Int64 = 0
    /// The last event position known committed: written after each event commit (``lastPosition`` is written
    /// before it). A database whose last position is below it is an older copy of itself put back (a backup
    /// restored): ``StateStore`` then keeps numbering after the marker's sequences. Absent in markers written
    /// before it existed (nothing is concluded from them).
    var committedPosition: Int64?
    var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case format, slots
        case databaseID = "database_id"
        case lastPosition = "last_position"
        case committedPosition = "committed_position"
        case updatedAt = "updated_at"
    }

    /// What the state directory says: no marker, a marker, or a file that is there but unreadable (which still
    /// says that a database existed).
    enum Found: Equatable {
        case none
        case marker(StateMarker)
        case unreadable
    }

    static func read(directory: String) -> Found {
        let path = directory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else { return .none }
        guard let data = FileManager.default.contents(atPath: path), data.count <= 1 << 20,
            let marker = try? decoder.decode(StateMarker.self, from: data)
        else { return .unreadable }
        return .marker(marker)
    }

    func write(directory: String) throws {
        let path = directory + "/" + Self.fileName
        let temporary = path + ".tmp"
        let data = try Self.encoder.encode(self)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError("\(temporary): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw StoreError("\(path): cannot write the state marker")
        }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }

    /// The per-commit update: overwritten in place (padded with spaces to the file's size) and fdatasync'ed,
    /// without the rename and the directory fsync of ``write(directory:)``: a fifth of the cost on the
    /// machines measured (docs/decisions.md, "State loss"). A torn write leaves an unreadable marker, which still says
    /// that a database existed (only the numbers are then unknown). Falls back to ``write(directory:)`` when the
    /// file is missing. `sync` false: no fdatasync (the update after a commit, which only ever moves
    /// ``committedPosition`` up to what is already durable in the database; losing it in a crash loses nothing
    /// but the precision of the restore check, and the next commit's update syncs it).
    func update(directory: String, sync: Bool = true) throws {
        let path = directory + "/" + Self.fileName
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return try write(directory: directory) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StoreError("\(path): cannot update the state marker") }
        var data = try Self.encoder.encode(self)
        let padding = Int(st.st_size) - data.count
        if padding > 0 { data.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding)) }
        let written = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        guard written == data.count, !sync || fdatasync(fd) == 0 else {
            throw StoreError("\(path): cannot update the state marker")
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }()
}
