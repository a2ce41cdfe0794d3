import CellprovRegistryCore
import GRDB
import NIOConcurrencyHelpers

/// Group commit for the SQLite store's ingest. SQLite has one writer and `synchronous=FULL` makes every COMMIT wait
/// for an fsync of the WAL; committing each event alone caps the store at one event per fsync whatever the number of
/// devices. Here the events that arrive while the writer is busy (with the previous batch's commit, or another
/// write) wait in a queue, and the writer stores them together, in arrival order, in one IMMEDIATE transaction:
///
/// - each event runs in its own SAVEPOINT: an error in one (a constraint, a bug) rolls back that event only and fails
///   only its request; a later event of the batch sees what the earlier ones wrote (its flag rules read it);
/// - every request is answered after the COMMIT that holds its event returned (durable: `synchronous=FULL`); when the
///   BEGIN or the COMMIT fails, or SQLite rolls the whole transaction back on its own (SQLITE_FULL, SQLITE_IOERR,
///   SQLITE_BUSY, SQLITE_NOMEM), every request of the batch fails and nothing of it is stored;
/// - a batch holds at most ``maxBatch`` events; the rest wait for the next one. Each batch is one job on the writer's
///   queue, so other writes (`device add`, a lost mark) take their turn between two batches.
///
/// One event alone (one device, a quiet fleet) is one transaction without a savepoint, as before.
final class SQLiteIngestQueue: Sendable {
    /// One event's writes and rule reads, run on the writer connection inside the batch's transaction.
    typealias Work = @Sendable (Database) throws -> IngestOutcome

    /// Counts since the store opened (tests; a batch's size is what group commit gained).
    struct Stats: Sendable, Equatable {
        var batches = 0
        var events = 0
        var largest = 0
    }

    private struct Pending {
        var id: UInt64
        var work: Work
        var continuation: CheckedContinuation<IngestOutcome, any Error>
    }

    private struct State {
        var pending: [Pending] = []
        var nextID: UInt64 = 0
        /// A batch job is on the writer's queue (or running): new events wait for it.
        var scheduled = false
        var stats = Stats()
    }

    static let defaultMaxBatch = 128

    let maxBatch: Int
    private let pool: DatabasePool
    private let state = NIOLockedValueBox(State())
    private let describe: @Sendable (any Error) -> any Error

    /// `describe` turns an error of the writer into what the request's caller gets.
    init(pool: DatabasePool, maxBatch: Int = SQLiteIngestQueue.defaultMaxBatch, describe: @escaping @Sendable (any Error) -> any Error) {
        precondition(maxBatch > 0)
        self.pool = pool
        self.maxBatch = maxBatch
        self.describe = describe
    }

    var stats: Stats { state.withLockedValue { $0.stats } }
    /// Events waiting for a batch (tests).
    var pendingCount: Int { state.withLockedValue { $0.pending.count } }

    /// Stores one event in the next batch; returns once the batch's COMMIT returned. A caller cancelled while its
    /// event still waits (the HTTP layer's deadline passed, the request was answered 503) takes it out of the queue:
    /// the writer does not spend time on an answer nobody waits for, and the device sends the event again. Once its
    /// batch has begun, the event is written and committed whatever happens to the caller.
    func submit(_ work: @escaping Work) async throws -> IngestOutcome {
        let id = state.withLockedValue { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let start = self.state.withLockedValue { s -> Bool in
                    s.pending.append(Pending(id: id, work: work, continuation: continuation))
                    guard !s.scheduled else { return false }
                    s.scheduled = true
                    return true
                }
                if start { self.schedule() }
            }
        } onCancel: {
            let removed = self.state.withLockedValue { s -> Pending? in
                guard let i = s.pending.firstIndex(where: { $0.id == id }) else { return nil }
                return s.pending.remove(at: i)
            }
            removed?.continuation.resume(throwing: CancellationError())
        }
    }

    private func schedule() {
        pool.asyncWriteWithoutTransaction { db in self.drain(db) }
    }

    /// One batch: what is pending now, up to ``maxBatch`` (nothing when every waiting caller was cancelled).
    private func drain(_ db: Database) {
        let batch = state.withLockedValue { s -> [Pending] in
            let n = min(s.pending.count, maxBatch)
            let batch = Array(s.pending.prefix(n))
            s.pending.removeFirst(n)
            return batch
        }
        let results = batch.isEmpty ? [] : Self.commit(batch.map(\.work), db)
        let more = state.withLockedValue { s -> Bool in
            if !batch.isEmpty {
                s.stats.batches += 1
                s.stats.events += batch.count
                s.stats.largest = max(s.stats.largest, batch.count)
            }
            if s.pending.isEmpty {
                s.scheduled = false
                return false
            }
            return true
        }
        for (pending, result) in zip(batch, results) {
            pending.continuation.resume(with: result.mapError(describe))
        }
        if more { schedule() }
    }

    /// Runs `works` in order in one IMMEDIATE transaction, each in its own savepoint, and commits. An event's own
    /// error fails that event; a failed BEGIN or COMMIT, or a transaction SQLite rolled back, fails every event.
    static func commit(_ works: [Work], _ db: Database) -> [Result<IngestOutcome, any Error>] {
        var results = [Result<IngestOutcome, any Error>?](repeating: nil, count: works.count)
        do {
            try db.inTransaction(.immediate) {
                if works.count == 1 {
                    results[0] = .success(try works[0](db))
                    return .commit
                }
                let savepoint = try db.cachedStatement(sql: "SAVEPOINT ingest")
                let release = try db.cachedStatement(sql: "RELEASE ingest")
                let rollback = try db.cachedStatement(sql: "ROLLBACK TO ingest")
                for (i, work) in works.enumerated() {
                    try savepoint.execute()
                    do {
                        let outcome = try work(db)
                        try release.execute()
                        results[i] = .success(outcome)
                    } catch {
                        // SQLite rolled the whole transaction back (it does on SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY,
                        // SQLITE_NOMEM): the earlier events of the batch are gone with it.
                        guard db.isInsideTransaction else { throw error }
                        try rollback.execute()
                        try release.execute()
                        results[i] = .failure(error)
                    }
                }
                return .commit
            }
        } catch {
            for i in results.indices {
                if case .failure? = results[i] { continue }
                results[i] = .failure(error)
            }
        }
        return results.map { $0! }
    }
}
