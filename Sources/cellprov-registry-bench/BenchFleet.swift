import CellprovCore
import CellprovRegistryCore
@_spi(Bench) import CellprovRegistryStore

/// The synthetic fleet of the incident benchmark: `units` units of ten field events each, every value a pure
/// function of the unit's number, so that the benchmark can check each answer against what it loaded.
///
/// Unit `n` (serial `BENCH-%07d`) has one field slot `usb-1` with a Quectel module: model `models[r % 4]` and
/// firmware revision `<model>EFAR06A<rr>M4G` for `r = n % 100` (so a revision selects 1 % of the fleet: 10 000
/// units of 1 000 000; `EC25EFAR06A06M4G` is `r = 6`), IMEI of the model's TAC. Its ten events, 14 days apart
/// (event `k` of unit `n` at 2026-01-01 + 14 days × k + n seconds, received 2 s later, or 3 hours later for
/// one event in 50), tell the story of its SIMs:
///
///     0 enrolled (SIM 1)         1 identity_invalid (no SIM read)   2 sim_removed     3 sim_inserted (SIM 1)
///     4 sim_removed              5 sim_inserted (SIM 1)             6 sim_changed (SIM 2)
///     7 identity_invalid         8 sim_removed                      9 sim_inserted (SIM 2)
///
/// SIM 2 is a new card, except in the pairs `n % 20 == 0` (the giver) and `n + 1` (the receiver): the receiver's
/// SIM 2 is the giver's SIM 1, which moved between the two units at event 6 (the giver gets a new card one second
/// earlier). An as-of search for a giver's first SIM therefore answers the giver before event 6 and the receiver
/// after it, where a search of today finds only the receiver.
struct BenchFleet: Sendable {
    let units: Int

    static let eventsPerUnit = 10
    static let models = ["EG25", "EC21", "EC25", "BG96"]
    static let tacs = ["86657105", "86765203", "86107303", "86614004"]
    static let manufacturer = "Quectel"
    /// 2026-01-01T00:00:00Z, in ms.
    static let start: Int64 = 1_767_225_600_000
    static let eventGap: Int64 = 14 * 86_400_000

    init(units: Int) throws {
        guard units >= 40, units <= 1_000_000 else {
            throw BenchError("the incident benchmark loads 40 to 1 000 000 units (IMEIs are unique up to a million)")
        }
        self.units = units
    }

    // MARK: Values of unit n

    static func serial(_ n: Int) -> String { "BENCH-" + pad(n, 7) }
    static func revisionIndex(_ n: Int) -> Int { n % 100 }
    static func model(_ n: Int) -> String { models[revisionIndex(n) % 4] }
    static func revision(_ n: Int) -> String { revision(index: revisionIndex(n)) }
    static func revision(index r: Int) -> String { models[r % 4] + "EFAR06A" + pad(r, 2) + "M4G" }
    static func tac(_ n: Int) -> String { tacs[revisionIndex(n) % 4] }
    static func imei(_ n: Int) -> String { luhn(tac(n) + pad(n % 1_000_000, 6)) }
    static func usbSerial(_ n: Int) -> String { "QC" + pad(n, 8) }

    struct SIM: Sendable, Equatable {
        var imsi: String
        var iccid: String
    }

    /// The unit's first card.
    static func sim1(_ n: Int) -> SIM { SIM(imsi: "26201" + pad(n, 10), iccid: luhn("89492260" + pad(n, 10))) }
    /// The card it has after event 6: its giver's first card for a receiver, a new card otherwise.
    static func sim2(_ n: Int) -> SIM {
        isReceiver(n) ? sim1(n - 1) : SIM(imsi: "26202" + pad(n, 10), iccid: luhn("89492261" + pad(n, 10)))
    }
    static func isGiver(_ n: Int) -> Bool { n % 20 == 0 }
    static func isReceiver(_ n: Int) -> Bool { n % 20 == 1 }

    /// Device time of event `k` of unit `n`, ms.
    static func occurredAt(_ n: Int, _ k: Int) -> Int64 { start + Int64(k) * eventGap + Int64(n) * 1000 }
    static func receivedAt(_ n: Int, _ k: Int) -> Int64 {
        occurredAt(n, k) + ((n + k) % 50 == 0 ? 3 * 3_600_000 : 2000)
    }

    struct Event: Sendable {
        var k: Int
        var type: String
        var severity: String
        var sim: SIM?
        var previousSIM: SIM?
        var hasPrevious: Bool
    }

    /// The unit's events, in order.
    static func script(_ n: Int) -> [Event] {
        let s1 = sim1(n)
        let s2 = sim2(n)
        return [
            Event(k: 0, type: "enrolled", severity: "info", sim: s1, previousSIM: nil, hasPrevious: false),
            Event(k: 1, type: "identity_invalid", severity: "warning", sim: nil, previousSIM: s1, hasPrevious: true),
            Event(k: 2, type: "sim_removed", severity: "warning", sim: nil, previousSIM: s1, hasPrevious: true),
            Event(k: 3, type: "sim_inserted", severity: "info", sim: s1, previousSIM: nil, hasPrevious: true),
            Event(k: 4, type: "sim_removed", severity: "warning", sim: nil, previousSIM: s1, hasPrevious: true),
            Event(k: 5, type: "sim_inserted", severity: "info", sim: s1, previousSIM: nil, hasPrevious: true),
            Event(k: 6, type: "sim_changed", severity: "warning", sim: s2, previousSIM: s1, hasPrevious: true),
            Event(k: 7, type: "identity_invalid", severity: "warning", sim: nil, previousSIM: s2, hasPrevious: true),
            Event(k: 8, type: "sim_removed", severity: "warning", sim: nil, previousSIM: s2, hasPrevious: true),
            Event(k: 9, type: "sim_inserted", severity: "info", sim: s2, previousSIM: nil, hasPrevious: true),
        ]
    }

    /// The card in unit `n`'s slot at device time `t` (ms), by the holding rule: an event reporting a card starts
    /// it, one reporting none ends it, except `identity_invalid` (a failed read).
    static func sim(_ n: Int, at t: Int64) -> SIM? {
        var current: SIM?
        for e in script(n) where occurredAt(n, e.k) <= t {
            if let s = e.sim { current = s } else if e.type != "identity_invalid" { current = nil }
        }
        return current
    }

    /// Event id of event `k` of unit `n`: a version-4-shaped lowercase UUID.
    static func eventID(_ n: Int, _ k: Int) -> String {
        "b3e1c0de-0000-4000-8000-" + hex(n * 16 + k, 12)
    }

    // MARK: Rows

    /// The rows ingest would have written for unit `n`: its events (with the JSON body as cellprovd sends it),
    /// the unit, its slot as the last event left it, and the references the events indexed (the registry's own,
    /// under `registryKey`, and those the device reported, under its own key).
    struct UnitRows {
        var unit: [BulkValue]
        var slot: [BulkValue]
        var events: [[BulkValue]]
        var refs: [String]
    }

    static let unitColumns = ["serial", "created_at", "first_seen", "last_seen"]
    static let slotColumns = [
        "serial", "origin", "slot", "imei", "imsi", "iccid", "last_iccid", "tac", "manufacturer", "model", "revision",
        "source", "last_event_type", "occurred_at", "updated_at", "max_sequence",
    ]
    static let eventColumns = [
        "event_id", "serial", "origin", "type", "slot", "sequence", "severity", "occurred_at", "received_at", "imei",
        "imsi", "iccid", "prev_imei", "prev_imsi", "prev_iccid", "payload",
    ]

    static func rows(_ n: Int, registryKey: Pseudonymizer) -> UnitRows {
        let serial = serial(n)
        let imei = imei(n)
        let device = Pseudonymizer(key: Array(("bench-device-key-" + serial).utf8))
        var refs = Set<String>()
        var events = [[BulkValue]]()
        events.reserveCapacity(eventsPerUnit)
        var lastReceived: Int64 = 0
        var firstReceived = Int64.max
        let script = script(n)
        for e in script {
            let occurred = occurredAt(n, e.k)
            let received = receivedAt(n, e.k)
            lastReceived = max(lastReceived, received)
            firstReceived = min(firstReceived, received)
            for (kind, value) in [("imei", imei), ("imsi", e.sim?.imsi), ("iccid", e.sim?.iccid)] {
                if let value {
                    refs.insert(registryKey.reference(kind: kind, value: value))
                    refs.insert(device.reference(kind: kind, value: value))
                }
            }
            let previousIMEI: String? = e.hasPrevious ? imei : nil
            events.append([
                .text(eventID(n, e.k)), .text(serial), .text("device"), .text(e.type), .text("usb-1"),
                .integer(Int64(e.k + 1)), .text(e.severity), .integer(occurred), .integer(received), .text(imei),
                BulkValue(e.sim?.imsi), BulkValue(e.sim?.iccid), BulkValue(previousIMEI), BulkValue(e.previousSIM?.imsi),
                BulkValue(e.previousSIM?.iccid), .text(payload(n, e, imei: imei, device: device)),
            ])
        }
        let last = script[script.count - 1]
        let unit: [BulkValue] = [.text(serial), .integer(firstReceived), .integer(firstReceived), .integer(lastReceived)]
        let slot: [BulkValue] = [
            .text(serial), .text("device"), .text("usb-1"), .text(imei), BulkValue(last.sim?.imsi), BulkValue(last.sim?.iccid),
            BulkValue(last.sim?.iccid), .text(tac(n)), .text(manufacturer), .text(model(n)), .text(revision(n)),
            .text("at"), .text(last.type), .integer(occurredAt(n, last.k)), .integer(receivedAt(n, last.k)),
            .integer(Int64(eventsPerUnit)),
        ]
        return UnitRows(unit: unit, slot: slot, events: events, refs: refs.sorted())
    }

    /// The event's JSON body, as `EnrollmentRequest.jsonBytes()` writes it (the benchmark decodes samples of it
    /// and compares them with the script), about 600 bytes.
    static func payload(_ n: Int, _ e: Event, imei: String, device: Pseudonymizer) -> String {
        func identity(_ sim: SIM?) -> String {
            guard let sim else { return "{\"imei\":\"\(imei)\"}" }
            return "{\"imei\":\"\(imei)\",\"imsi\":\"\(sim.imsi)\",\"iccid\":\"\(sim.iccid)\"}"
        }
        var s = "{\"event_id\":\"\(eventID(n, e.k))\",\"type\":\"\(e.type)\",\"occurred_at\":\""
        s += rfc3339(occurredAt(n, e.k))
        s += "\",\"sequence\":\(e.k + 1),\"severity\":\"\(e.severity)\",\"device\":{\"serial\":\"\(serial(n))\"},"
        s += "\"module\":{\"slot\":\"usb-1\",\"usb_serial\":\"\(usbSerial(n))\",\"manufacturer\":\"\(manufacturer)\","
        s += "\"model\":\"\(model(n))\",\"revision\":\"\(revision(n))\",\"source\":\"at\"},"
        s += "\"identity\":" + identity(e.sim) + ","
        s += "\"previous\":" + (e.hasPrevious ? identity(e.previousSIM) : "null") + ","
        s += "\"usb_serial_changed\":false,\"problems\":"
        s +=
            e.type == "identity_invalid"
            ? "[{\"code\":\"sim_unreadable\",\"field\":\"iccid\",\"severity\":\"warning\","
                + "\"message\":\"the SIM did not answer AT+CCID within 5 s\"}]," : "[],"
        s += "\"references\":{\"imei\":\"\(device.reference(kind: "imei", value: imei))\""
        if let sim = e.sim {
            s += ",\"imsi\":\"\(device.reference(kind: "imsi", value: sim.imsi))\""
            s += ",\"iccid\":\"\(device.reference(kind: "iccid", value: sim.iccid))\""
        }
        s += "}}"
        return s
    }

    // MARK: Formatting

    static func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    static func hex(_ n: Int, _ width: Int) -> String {
        let s = String(n, radix: 16)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// `payload` followed by its Luhn check digit.
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload) ?? 0) }

    /// RFC 3339 UTC, whole seconds (the API's form), of a time in ms.
    static func rfc3339(_ ms: Int64) -> String {
        let seconds = ms / 1000
        let days = seconds / 86_400
        let rest = seconds % 86_400
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468
        let era = z / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return pad(Int(year), 4) + "-" + pad(Int(month), 2) + "-" + pad(Int(day), 2) + "T" + pad(Int(rest / 3600), 2)
            + ":" + pad(Int(rest / 60 % 60), 2) + ":" + pad(Int(rest % 60), 2) + "Z"
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

extension BenchFleet {
    /// Loads the fleet into `store`, printing its progress and rate.
    func loadReporting(_ store: any RegistryStore & BulkLoadable, _ name: String) async throws {
        let clock = ContinuousClock()
        let started = clock.now
        let key = try await store.pseudonymKey()
        let bytes = try await load(store, registryKey: key) { done in
            if done % 100_000 == 0 { print("\(name) … \(done) units loaded") }
        }
        let seconds = ms(clock.now - started) / 1000
        let events = units * BenchFleet.eventsPerUnit
        print(
            "\(name) loaded \(units) units, \(events) events (payload mean \(bytes / max(1, events)) bytes)"
                + " in \(fmt(seconds, 1)) s (\(fmt(Double(events) / seconds, 0)) events/s)")
    }
}
