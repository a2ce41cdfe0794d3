import CellprovStore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Test kit: how a test damages a real state database (the store's salvage suites, the daemon's end-to-end test).
public enum DatabaseDamage: String, CaseIterable, Sendable {
    /// Cut after the last page holding the slot and event tables' rows: SQLite sees missing pages.
    case truncated
    /// The first 100 bytes (SQLite's header) overwritten: "file is not a database".
    case headerOverwritten
    /// state.db replaced by a directory while the write-ahead log survives (the daemon was killed).
    case directory

    public struct Refused: Error, CustomStringConvertible {
        public var description: String
    }

    /// Damages the closed database `db` (for `.directory`: `walCopy` is the WAL as a kill -9 left it). Throws when
    /// the file is not in the state the damage needs (then the test would not test what it says).
    public func apply(to db: String, walCopy: String?) throws {
        let files = FileManager.default
        switch self {
        case .truncated:
            // Everything checkpointed into the file (GRDB keeps an empty WAL file, persistent WAL mode).
            let wal = (try? files.attributesOfItem(atPath: db + "-wal")[.size] as? Int) ?? 0
            guard wal == 0 else { throw Refused(description: "a WAL of \(wal) bytes: the damage would not hit the data") }
            // Keep every page holding a slot record or an event (their rows: 3 and 11 columns), cut what follows.
            let pageSize = 4096
            let rows = SQLiteSalvage.read(databasePath: db, walPath: db + "-wal").rows
                .filter { $0.values.count == 3 || $0.values.count == 11 }
            guard let keep = rows.flatMap({ [$0.page] + $0.overflowPages }).max(),
                let size = try files.attributesOfItem(atPath: db)[.size] as? Int
            else { throw Refused(description: "no slot or event rows in \(db)") }
            guard keep * pageSize < size else { throw Refused(description: "nothing after the tables to cut") }
            guard truncate(db, off_t(keep * pageSize)) == 0 else { throw Refused(description: "truncate failed") }
        case .headerOverwritten:
            guard let handle = FileHandle(forWritingAtPath: db) else { throw Refused(description: "cannot open \(db)") }
            try handle.write(contentsOf: Data((0..<100).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }))
            try handle.close()
        case .directory:
            guard let copy = walCopy else { throw Refused(description: "no copy of the WAL") }
            try files.removeItem(atPath: db)
            try? files.removeItem(atPath: db + "-shm")
            try? files.removeItem(atPath: db + "-wal")
            try files.createDirectory(atPath: db, withIntermediateDirectories: false)
            try files.moveItem(atPath: copy, toPath: db + "-wal")
        }
    }
}
