import CellprovCore
import Foundation

/// Which identifier an interval of ``Holding`` is about.
public enum HeldIdentifierKind: String, Sendable, Codable, CaseIterable {
    case imei
    case imsi
    case iccid
    case eid

    /// The value of this kind in a snapshot.
    public func value(in identity: IdentitySnapshot) -> String? {
        switch self {
        case .imei: return identity.imei
        case .imsi: return identity.imsi
        case .iccid: return identity.iccid
        case .eid: return identity.eid
        }
    }
}

/// One stored event as the holding computation needs it: where it belongs (unit, origin, slot), its two times and
/// the identity after it. `rowID` is the store's insertion order: it breaks ties between events of one slot with
/// the same `occurred_at` (events of one read share it).
public struct SlotEventRecord: Sendable, Equatable {
    public var serial: String
    public var origin: EventOrigin
    public var slot: String
    public var eventID: String
    public var type: String
    public var rowID: Int64
    public var occurredAt: Date
    public var receivedAt: Date
    public var identity: IdentitySnapshot

    public init(
        serial: String, origin: EventOrigin = .device, slot: String, eventID: String, type: String, rowID: Int64,
        occurredAt: Date, receivedAt: Date, identity: IdentitySnapshot
    ) {
        self.serial = serial
        self.origin = origin
        self.slot = slot
        self.eventID = eventID
        self.type = type
        self.rowID = rowID
        self.occurredAt = occurredAt
        self.receivedAt = receivedAt
        self.identity = identity
    }
}

/// An interval in which one slot of one unit held an identifier (``Holdings``): from the first event of the slot
/// reporting it to the next event of the slot reporting another value or none (`until` nil: the slot holds it
/// still). Both ends are device times (`occurred_at`), each with the registry's receive time of the same event.
public struct Holding: Sendable, Equatable {
    public var serial: String
    public var origin: EventOrigin
    public var slot: String
    public var kind: HeldIdentifierKind
    /// The identifier's digits (a data channel: masked when shown).
    public var value: String
    public var from: Date
    public var fromReceived: Date
    public var fromEventID: String
    public var until: Date?
    public var untilReceived: Date?
    public var untilEventID: String?

    public init(
        serial: String, origin: EventOrigin = .device, slot: String, kind: HeldIdentifierKind, value: String,
        from: Date, fromReceived: Date, fromEventID: String, until: Date? = nil, untilReceived: Date? = nil,
        untilEventID: String? = nil
    ) {
        self.serial = serial
        self.origin = origin
        self.slot = slot
        self.kind = kind
        self.value = value
        self.from = from
        self.fromReceived = fromReceived
        self.fromEventID = fromEventID
        self.until = until
        self.untilReceived = untilReceived
        self.untilEventID = untilEventID
    }

    /// Open-ended: the slot's current value.
    public var isCurrent: Bool { until == nil }

    /// Whether the slot held the identifier at `t` (device time): `from` inclusive, `until` exclusive.
    public func covers(_ t: Date) -> Bool {
        from <= t && (until.map { t < $0 } ?? true)
    }
}

/// A unit that held a searched identifier, with its summary and the intervals (newest first).
public struct IdentifierHolder: Sendable, Equatable {
    public var unit: UnitSummary
    public var holdings: [Holding]

    public init(unit: UnitSummary, holdings: [Holding]) {
        self.unit = unit
        self.holdings = holdings
    }
}

/// Who held an identifier when, from the stored events alone (no I/O): the stores fetch the candidate events, this
/// computes the intervals, the HTTP layer shows them. Table-tested in HoldingsTests.
public enum Holdings {
    /// A receive time further than this from the device's `occurred_at` is shown beside it (a late delivery, or a
    /// device clock that is off); closer, the two are the same moment for a person.
    public static let clockDisagreement: TimeInterval = 60

    /// Whether the receive time `received` disagrees with the device time `occurred` (``clockDisagreement``).
    public static func disagree(_ occurred: Date, _ received: Date) -> Bool {
        abs(received.timeIntervalSince(occurred)) > clockDisagreement
    }

    /// Events in the order the slot lived them: `occurred_at`, then the store's order (a late event takes its
    /// place by its device time, not by when it arrived).
    public static func ordered(_ events: [SlotEventRecord]) -> [SlotEventRecord] {
        events.sorted { ($0.occurredAt, $0.rowID) < ($1.occurredAt, $1.rowID) }
    }

    /// The intervals in which one slot held `value` of `kind`. `events` are that slot's events, in any order.
    /// An interval starts at an event reporting the value while the slot did not hold it, and ends at the next event
    /// that reports another value or none, except an `identity_invalid` event reporting none: that read failed, it
    /// is not a removal. The last interval is open-ended when no event ends it.
    public static func intervals(of value: String, kind: HeldIdentifierKind, slotEvents events: [SlotEventRecord])
        -> [Holding]
    {
        var out: [Holding] = []
        var open: Holding?
        for e in ordered(events) {
            let reported = kind.value(in: e.identity)
            if reported == value {
                if open == nil {
                    open = Holding(
                        serial: e.serial, origin: e.origin, slot: e.slot, kind: kind, value: value, from: e.occurredAt,
                        fromReceived: e.receivedAt, fromEventID: e.eventID)
                }
            } else if var h = open {
                if reported == nil && e.type == "identity_invalid" { continue }
                h.until = e.occurredAt
                h.untilReceived = e.receivedAt
                h.untilEventID = e.eventID
                out.append(h)
                open = nil
            }
        }
        if let open { out.append(open) }
        return out
    }

    /// Every interval in which any slot among `events` held any of `values` (kind and digits). `events` may mix
    /// units and slots; each slot is computed on its own.
    public static func intervals(
        of values: [(kind: HeldIdentifierKind, value: String)], events: [SlotEventRecord]
    ) -> [Holding] {
        struct SlotKey: Hashable {
            var serial: String
            var origin: EventOrigin
            var slot: String
        }
        var bySlot: [SlotKey: [SlotEventRecord]] = [:]
        var order: [SlotKey] = []
        for e in events {
            let key = SlotKey(serial: e.serial, origin: e.origin, slot: e.slot)
            if bySlot[key] == nil { order.append(key) }
            bySlot[key, default: []].append(e)
        }
        var out: [Holding] = []
        for key in order {
            let slotEvents = bySlot[key]!
            for (kind, value) in values where slotEvents.contains(where: { kind.value(in: $0.identity) == value }) {
                out += intervals(of: value, kind: kind, slotEvents: slotEvents)
            }
        }
        return out
    }

    /// The holders in the order an answer lists them, each with its intervals newest first.
    ///
    /// Without `at`: every unit with an interval, current holders first (a unit with an open-ended interval), then
    /// by their interval's end, most recent first; ties by serial. With `at`: only the intervals covering `at`
    /// (device time), the units in serial order.
    public static func holders(_ holdings: [Holding], at: Date? = nil) -> [(serial: String, holdings: [Holding])] {
        let kept = at.map { t in holdings.filter { $0.covers(t) } } ?? holdings
        var bySerial: [String: [Holding]] = [:]
        for h in kept { bySerial[h.serial, default: []].append(h) }
        func newestFirst(_ a: Holding, _ b: Holding) -> Bool {
            switch (a.until, b.until) {
            case (nil, nil): return a.from > b.from
            case (nil, _): return true
            case (_, nil): return false
            case (let x?, let y?): return x != y ? x > y : a.from > b.from
            }
        }
        let units = bySerial.map { (serial: $0.key, holdings: $0.value.sorted(by: newestFirst)) }
        return units.sorted { a, b in
            let x = a.holdings[0]
            let y = b.holdings[0]
            if at == nil, x.until != y.until || x.from != y.from { return newestFirst(x, y) }
            return a.serial < b.serial
        }
    }

    /// Each slot's last event at or before `at` (device time): the slots as they stood then. Slots whose first
    /// event is later are left out. In slot order (origin, slot).
    public static func slotsAsOf(_ events: [SlotEventRecord], at: Date) -> [SlotEventRecord] {
        var last: [String: SlotEventRecord] = [:]
        for e in ordered(events) where e.occurredAt <= at {
            last[e.origin.rawValue + "\u{0}" + e.slot] = e
        }
        return last.values.sorted { ($0.origin.rawValue, $0.slot) < ($1.origin.rawValue, $1.slot) }
    }

    /// The identifiers a search names, as (kind, digits) pairs: IMEI, IMSI, ICCID, EID (a 15-digit text is tried
    /// as both IMEI and IMSI). Serials, TACs and references name no identifier of one card or module.
    public static func identifiers(of terms: SearchTerms) -> [(kind: HeldIdentifierKind, value: String)] {
        var out: [(kind: HeldIdentifierKind, value: String)] = []
        if let v = terms.imei { out.append((.imei, v)) }
        if let v = terms.imsi { out.append((.imsi, v)) }
        if let v = terms.iccid { out.append((.iccid, v)) }
        if let v = terms.eid { out.append((.eid, v)) }
        return out
    }
}
