import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import Testing

// The keyset-paged lists on each backend (SQLite; PostgreSQL under scripts/with-postgres.sh): flags filtered by
// kind, severity and status, a unit's timeline, each walked page by page forward and back, with rows inserted
// between two pages.

@Suite struct StorePagingTests {
    static func newFlag(_ kind: FlagKind, _ severity: EventSeverity, _ n: Int) -> NewFlag {
        NewFlag(
            kind: kind, severity: severity, serial: "GW-\(n)", summary: "finding \(n)", evidence: FlagEvidence(),
            dedupeKey: "paging-\(n)")
    }

    /// Walks every page from the first with `limit`, forward then back, checking each step; returns the ids in
    /// walking order.
    static func walkFlags(_ store: any RegistryStore, _ q: FlagQuery, limit: Int) async throws -> [Int64] {
        var query = q
        query.cursor = nil
        var pages: [[Int64]] = []
        while true {
            let page = KeysetPage(
                fetched: try await store.flags(query, limit: limit + 1), limit: limit, cursor: query.cursor, key: \.id)
            pages.append(page.rows.map(\.id))
            #expect(page.rows.count <= limit)
            guard let next = page.next else { break }
            query.cursor = next
        }
        // Back from the last page: each previous page is the one walked before it.
        var index = pages.count - 1
        var back = query
        while index > 0 {
            let here = KeysetPage(
                fetched: try await store.flags(back, limit: limit + 1), limit: limit, cursor: back.cursor, key: \.id)
            #expect(here.rows.map(\.id) == pages[index])
            guard let previous = here.previous else {
                Issue.record("no previous page from page \(index)")
                break
            }
            back.cursor = previous
            index -= 1
        }
        if pages.count > 1 {
            let first = KeysetPage(
                fetched: try await store.flags(back, limit: limit + 1), limit: limit, cursor: back.cursor, key: \.id)
            #expect(first.rows.map(\.id) == pages[0])
            #expect(first.previous == nil, "the first page has no previous")
        }
        return pages.flatMap { $0 }
    }

    @Test(arguments: StoreBackend.available)
    func flagsByKindSeverityAndStatusPageByPage(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            // 11 flags: imei_changed critical (1, 4, 7, 10), iccid_moved warning (2, 5, 8, 11), unit_silent warning
            // (3, 6, 9); 4 and 5 resolved.
            let kinds: [(FlagKind, EventSeverity)] = [
                (.imeiChanged, .critical), (.iccidMoved, .warning), (.unitSilent, .warning),
            ]
            var raised: [RegistryFlag] = []
            for n in 1...11 {
                let (kind, severity) = kinds[(n - 1) % 3]
                raised += try await store.raise([Self.newFlag(kind, severity, n)], at: t0.addingTimeInterval(Double(n)))
            }
            #expect(raised.count == 11)
            let id = { (n: Int) in raised[n - 1].id }
            #expect(try await store.resolveFlag(id: id(4), by: "alice", note: "checked", at: t0))
            #expect(try await store.resolveFlag(id: id(5), by: "alice", note: "checked", at: t0))

            let open = try await Self.walkFlags(store, FlagQuery(), limit: 3)
            #expect(open == [11, 10, 9, 8, 7, 6, 3, 2, 1].map(id))
            let all = try await Self.walkFlags(store, FlagQuery(status: .all), limit: 4)
            #expect(all == (1...11).reversed().map(id))
            #expect(try await Self.walkFlags(store, FlagQuery(status: .resolved), limit: 1) == [5, 4].map(id))
            #expect(try await Self.walkFlags(store, FlagQuery(kind: .imeiChanged), limit: 2) == [10, 7, 1].map(id))
            #expect(
                try await Self.walkFlags(store, FlagQuery(kind: .imeiChanged, status: .all), limit: 2)
                    == [10, 7, 4, 1].map(id))
            #expect(
                try await Self.walkFlags(store, FlagQuery(severity: .warning), limit: 5)
                    == [11, 9, 8, 6, 3, 2].map(id))
            #expect(
                try await Self.walkFlags(store, FlagQuery(kind: .iccidMoved, severity: .critical), limit: 5).isEmpty)

            // A flag raised between two pages: the next page neither repeats nor skips a row; it shows up on the
            // page before the first.
            let first = KeysetPage(
                fetched: try await store.flags(FlagQuery(), limit: 4), limit: 3, cursor: nil, key: \.id)
            #expect(first.rows.map(\.id) == [11, 10, 9].map(id))
            let late = try #require(
                try await store.raise([Self.newFlag(.imeiChanged, .critical, 12)], at: t0.addingTimeInterval(12)).first)
            let second = KeysetPage(
                fetched: try await store.flags(FlagQuery(cursor: first.next), limit: 4), limit: 3, cursor: first.next,
                key: \.id)
            #expect(second.rows.map(\.id) == [8, 7, 6].map(id))
            let before = KeysetPage(
                fetched: try await store.flags(FlagQuery(cursor: .after(id(11))), limit: 4), limit: 3,
                cursor: .after(id(11)), key: \.id)
            #expect(before.rows.map(\.id) == [late.id])
            #expect(before.previous == nil)
        }
    }

    @Test(arguments: StoreBackend.available)
    func aTimelinePageByPageNewestFirst(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            // Eight events of GW-1, two of them in one millisecond (the row id orders them), and one of GW-2.
            var at = t0
            for n in 0..<8 {
                if n != 4 { at = at.addingTimeInterval(60) }
                try await store.field(
                    event(
                        n == 0 ? "enrolled" : "sim_changed", serial: "GW-1", imei: TestID.imei(1), iccid: TestID.iccid(n),
                        at: at), "GW-1")
            }
            try await store.field(event(serial: "GW-2", imei: TestID.imei(2), at: t0), "GW-2")
            let whole = try #require(try await store.unit(serial: "GW-1")).timeline.reversed().map(\.eventID)
            #expect(whole.count == 8)

            var pages: [[String]] = []
            var cursor: PageCursor<TimelineKey>? = nil
            var previousCursors: [PageCursor<TimelineKey>?] = []
            repeat {
                let page = KeysetPage(
                    fetched: try await store.timeline(serial: "GW-1", cursor: cursor, limit: 4), limit: 3,
                    cursor: cursor, key: \.key)
                pages.append(page.rows.map(\.entry.eventID))
                previousCursors.append(page.previous)
                cursor = page.next
            } while cursor != nil
            #expect(pages.map(\.count) == [3, 3, 2])
            #expect(pages.flatMap { $0 } == Array(whole), "newest first, each event once")
            #expect(previousCursors[0] == nil)
            // Back: the previous page of the last is the second, of the second the first.
            let back = KeysetPage(
                fetched: try await store.timeline(serial: "GW-1", cursor: previousCursors[2], limit: 4), limit: 3,
                cursor: previousCursors[2], key: \.key)
            #expect(back.rows.map(\.entry.eventID) == pages[1])
            let front = KeysetPage(
                fetched: try await store.timeline(serial: "GW-1", cursor: back.previous, limit: 4), limit: 3,
                cursor: back.previous, key: \.key)
            #expect(front.rows.map(\.entry.eventID) == pages[0])
            #expect(front.previous == nil)

            // The keys round-trip through their text.
            let rows = try await store.timeline(serial: "GW-1", cursor: nil, limit: 8)
            for r in rows { #expect(TimelineKey(text: r.key.text) == r.key) }
            #expect(rows.map(\.key) == rows.map(\.key).sorted(by: >))
            #expect(try await store.timeline(serial: "GW-3", cursor: nil, limit: 5).isEmpty)
        }
    }
}

/// The page arithmetic and the cursor texts, without a store.
@Suite struct PagingCoreTests {
    @Test func aPageFromTheRowsFetched() {
        // Forward: one row more than the page means a next page; a page reached by a cursor has a previous one.
        let first = KeysetPage(fetched: [9, 8, 7, 6] as [Int64], limit: 3, cursor: nil, key: { $0 })
        #expect(first.rows == [9, 8, 7])
        #expect(first.next == .before(7))
        #expect(first.previous == nil)
        let last = KeysetPage(fetched: [3, 2] as [Int64], limit: 3, cursor: .before(4), key: { $0 })
        #expect(last.rows == [3, 2])
        #expect(last.next == nil)
        #expect(last.previous == .after(3))
        // Back: the extra row is the newest; without it this is the first page.
        let back = KeysetPage(fetched: [9, 8, 7, 6] as [Int64], limit: 3, cursor: .after(5), key: { $0 })
        #expect(back.rows == [8, 7, 6])
        #expect(back.previous == .after(8))
        #expect(back.next == .before(6))
        let top = KeysetPage(fetched: [7, 6] as [Int64], limit: 3, cursor: .after(5), key: { $0 })
        #expect(top.previous == nil)
        #expect(top.next == .before(6))
        let none = KeysetPage(fetched: [] as [Int64], limit: 3, cursor: nil, key: { $0 })
        #expect(none.rows.isEmpty && none.next == nil && none.previous == nil)
    }

    @Test func cursorTexts() {
        #expect(TimelineKey(text: "1790000000000-42") == TimelineKey(occurredAtMs: 1_790_000_000_000, rowID: 42))
        #expect(TimelineKey(occurredAtMs: 5, rowID: 7).text == "5-7")
        for bad in ["", "1", "1-", "-1", "1-2-3", "a-1", "1-+2", " 1-2", "1234567890123456789-1", "1-0x2"] {
            #expect(TimelineKey(text: bad) == nil, "\(bad)")
        }
        #expect(PageKeys.flagID("42") == 42)
        #expect(PageKeys.flagID("-42") == nil)
        #expect(PageKeys.flagID("1234567890123456789") == nil)
        #expect(PageKeys.flagID("") == nil)
        #expect(TimelineKey(occurredAtMs: 1, rowID: 9) < TimelineKey(occurredAtMs: 2, rowID: 1))
        #expect(TimelineKey(occurredAtMs: 2, rowID: 1) < TimelineKey(occurredAtMs: 2, rowID: 2))
    }
}
