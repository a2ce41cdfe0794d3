import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation

/// What both backends share for the questions about the past (``RegistryStore/searchHolders(_:at:limit:)``,
/// ``RegistryStore/unit(serial:at:)``): how the candidate units are found and how the stored rows become the
/// domain's answer. The intervals themselves are ``Holdings``' (CellprovRegistryCore).
///
/// Candidates come from `refs`: every stored event indexes the registry's own reference of each identifier it
/// carries for its unit (``StoreSupport/references(reported:identity:key:)``), so the units that ever reported a
/// value are one primary-key lookup of its reference, with no index on `events` beyond `events_serial` (and
/// nothing more for ingest to write). A reference is 40 bits: a unit found through a colliding one has no event
/// with the value and drops out when the intervals are computed from its events.
enum StoreHistory {
    /// At most this many units are read per searched identifier (a SIM used in more units than this is a test
    /// card; the answer is bounded by the caller's limit anyway).
    static let candidateLimit = 1000

    /// The references under the registry's key of the searched identifiers.
    static func references(_ ids: [(kind: HeldIdentifierKind, value: String)], key: [UInt8]) -> [String] {
        let p = Pseudonymizer(key: key)
        return Array(Set(ids.map { p.reference(kind: $0.kind.rawValue, value: $0.value) })).sorted()
    }

    /// The holders of `ids` among `events` (field events of the candidate units), ordered, at most `limit`.
    static func holders(
        _ ids: [(kind: HeldIdentifierKind, value: String)], events: [SlotEventRecord], at: Date?, limit: Int
    ) -> [(serial: String, holdings: [Holding])] {
        Array(Holdings.holders(Holdings.intervals(of: ids, events: events), at: at).prefix(limit))
    }

    /// The holders with their summaries (units without one, removed meanwhile, are left out).
    static func join(_ holders: [(serial: String, holdings: [Holding])], _ summaries: [UnitSummary])
        -> [IdentifierHolder]
    {
        let bySerial = Dictionary(summaries.map { ($0.serial, $0) }, uniquingKeysWith: { a, _ in a })
        return holders.compactMap { h in bySerial[h.serial].map { IdentifierHolder(unit: $0, holdings: h.holdings) } }
    }

    /// A slot as its last event at or before the moment left it; the module's names from that event's payload, its
    /// time the event's device time (the moment asked about is one too).
    static func slotState(_ e: SlotEventRecord, payload: String?) -> SlotState {
        let module = payload.flatMap { try? EnrollmentRequest.decode(Array($0.utf8)).module }
        return SlotState(
            slot: e.slot, identity: e.identity, manufacturer: module?.manufacturer, model: module?.model,
            revision: module?.revision, source: module?.source ?? "at", lastEventType: e.type, updatedAt: e.occurredAt,
            origin: e.origin)
    }

    /// The flags as they stood at `t` (``RegistryStore/unit(serial:at:)``): `flags` are those raised by `t`; one
    /// resolved after `t` was open then.
    static func flagsAsOf(_ flags: [RegistryFlag], at t: Date) -> [RegistryFlag] {
        flags.map { f in
            guard let resolved = f.resolvedAt, resolved > t else { return f }
            var open = f
            open.resolvedAt = nil
            open.resolvedBy = nil
            open.resolutionNote = nil
            return open
        }
    }

    /// The unit page's content as of `t`.
    static func detail(
        serial: String, at t: Date, slots: [SlotState], fieldEvents: [SlotEventRecord], lost: LostState?, timeline: [TimelineEntry], flags: [RegistryFlag]
    ) -> UnitDetail {
        let lostThen = lost.flatMap { $0.markedAt <= t ? $0 : nil }
        let asOf = flagsAsOf(flags, at: t)
        // Device times, as the moment: the unit's first and last field event by then (its `first_seen` and
        // `last_seen` of now are receive times, which a late delivery puts after the moment).
        let seen = fieldEvents.filter { $0.origin == .device && $0.occurredAt <= t }.map(\.occurredAt)
        let summary = UnitSummary(
            serial: serial, slots: slots, lost: lostThen != nil, firstSeen: seen.min(), lastSeen: seen.max(),
            openFlags: asOf.filter(\.isOpen).count)
        return UnitDetail(
            summary: summary, manufacturing: timeline.filter { $0.origin == .factory }, timeline: timeline, flags: asOf,
            lost: lostThen)
    }
}
