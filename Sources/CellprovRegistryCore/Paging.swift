import CellprovCore
import Foundation

// Pages of the registry's lists (docs/registry.md, "Pages of a list"). Flags and timelines are paged by a key
// (keyset pagination): a page starts after the last row of the one before, so a row inserted meanwhile neither
// shifts a row onto two pages nor hides one, and a deep page costs what the first does. Search results have no
// such key (holders current first, then serial order) and are paged by offset, within a bounded depth.

/// Which flags a list shows (`GET /v1/flags`, `/flags`): the filters and the page's key. Newest first (id
/// descending).
public struct FlagQuery: Sendable, Equatable {
    public enum Status: String, Sendable, CaseIterable {
        /// Not resolved (the default).
        case open
        case resolved
        case all
    }

    public var kind: FlagKind?
    public var severity: EventSeverity?
    public var status: Status
    /// The page's position (nil: the newest flags).
    public var cursor: PageCursor<Int64>?

    public init(
        kind: FlagKind? = nil, severity: EventSeverity? = nil, status: Status = .open,
        cursor: PageCursor<Int64>? = nil
    ) {
        self.kind = kind
        self.severity = severity
        self.status = status
        self.cursor = cursor
    }
}

/// Where a page of a keyset-paged list starts, in the list's order (newest first): `.before(k)` the rows after the
/// row `k` in that order (older: the next page), `.after(k)` the rows before it (newer: the previous page), the
/// nearest first. A store answers either in the list's order.
public enum PageCursor<Key: Sendable & Equatable>: Sendable, Equatable {
    case before(Key)
    case after(Key)
}

/// A timeline row's key: its device time (milliseconds) and the store's row id, the timeline's order (newest
/// first; the id orders events of one millisecond as they were stored).
public struct TimelineKey: Sendable, Equatable, Comparable {
    public var occurredAtMs: Int64
    public var rowID: Int64

    public init(occurredAtMs: Int64, rowID: Int64) {
        self.occurredAtMs = occurredAtMs
        self.rowID = rowID
    }

    public static func < (a: TimelineKey, b: TimelineKey) -> Bool {
        (a.occurredAtMs, a.rowID) < (b.occurredAtMs, b.rowID)
    }

    /// The key as a cursor's text: `MILLISECONDS-ROWID`, both decimal.
    public var text: String { "\(occurredAtMs)-\(rowID)" }

    /// Reads ``text``: two runs of at most 18 decimal digits joined by `-`; nil otherwise.
    public init?(text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let t = PageKeys.number(parts[0]), let id = PageKeys.number(parts[1]) else {
            return nil
        }
        self.init(occurredAtMs: t, rowID: id)
    }
}

/// One timeline entry with its key (``TimelineKey``), as a page of a timeline returns it.
public struct TimelineRow: Sendable, Equatable {
    public var entry: TimelineEntry
    public var key: TimelineKey

    public init(entry: TimelineEntry, key: TimelineKey) {
        self.entry = entry
        self.key = key
    }
}

/// One page of a keyset-paged list, built from the rows a store returned for `limit + 1` (one more than the page
/// shows tells whether there is more in that direction): the rows in the list's order, and the cursors of the next
/// (older) and previous (newer) pages, nil where there is none.
public struct KeysetPage<Row: Sendable, Key: Sendable & Equatable>: Sendable {
    public var rows: [Row]
    public var next: PageCursor<Key>?
    public var previous: PageCursor<Key>?

    /// `fetched`: what the store returned for `cursor` with `limit + 1`, in the list's order. Going back
    /// (`.after`), the extra row is the newest one (the first); going forward, the oldest (the last). A page
    /// reached by a cursor has a neighbour on the side it came from (rows are not deleted from these lists).
    public init(fetched: [Row], limit: Int, cursor: PageCursor<Key>?, key: (Row) -> Key) {
        let more = fetched.count > limit
        switch cursor {
        case .after:
            rows = more ? Array(fetched.suffix(limit)) : fetched
            previous = more ? rows.first.map { .after(key($0)) } : nil
            next = rows.last.map { .before(key($0)) }
        case .before, nil:
            rows = Array(fetched.prefix(limit))
            next = more ? rows.last.map { .before(key($0)) } : nil
            previous = cursor == nil ? nil : rows.first.map { .after(key($0)) }
        }
    }
}

/// Page sizes and depths, and the parameters' texts.
public enum PageKeys {
    /// A flags or timeline page: 50 rows unless asked, at most 500.
    public static let defaultLimit = 50
    public static let maxLimit = 500
    /// A page of search results: 50 units unless asked, at most 100; no result past the 1 000th (offset + limit).
    public static let searchDefaultLimit = 50
    public static let searchMaxLimit = 100
    public static let searchMaxDepth = 1000

    /// A key's decimal text (1 to 18 digits, so it fits an Int64); nil otherwise.
    static func number(_ s: Substring) -> Int64? {
        guard (1...18).contains(s.utf8.count), s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(s)
    }

    /// A flag id cursor's text.
    public static func flagID(_ text: String) -> Int64? { number(Substring(text)) }
}
