import FoundationEssentials

/// The durable queue of events waiting for delivery, as the reporter sees it: events oldest first (global order,
/// which is also each slot's order) and the four ways one attempt ends. The daemon's state store implements it
/// (CellprovStore); the reporter (CellprovReporter) depends on this contract, not on the store, so that neither
/// edge imports the other. Each call is durable when it returns.
public protocol Outbox: Sendable {
    /// Up to `limit` events waiting, oldest first.
    func pending(limit: Int) throws -> [IdentityEvent]
    /// The backend accepted the event (2xx, or 409: it has it already): it leaves the queue.
    func delivered(_ id: UUID) throws
    /// The backend refused the event itself for good (400/413/422): it leaves the queue, kept with the reason.
    func rejected(_ id: UUID, reason: String) throws
    /// The backend refused our credentials (401/403): the event waits; the attempt is counted.
    func refused(_ id: UUID, reason: String) throws
    /// The attempt failed in a way worth retrying (network, 5xx, timeout): the event waits; the attempt is counted.
    func attemptFailed(_ id: UUID, error: String) throws
}
