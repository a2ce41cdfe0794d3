import ArgumentParser
import CellprovCore
import CellprovEnrollmentAPI
import CellprovStore
import CellprovSystemd
import FoundationEssentials

struct StateOptions: ParsableArguments {
    @Option(help: "The daemon's state directory.")
    var stateDirectory: String = DaemonDefaults.stateDirectory

    func openStore() throws -> StateStore {
        do {
            try PseudonymKey.configure(stateDirectory: stateDirectory)
            return try StateStore(readOnlyDirectory: stateDirectory)
        } catch {
            StandardStream.error.write("cellprov: \(error)\n")
            throw ExitCode(2)
        }
    }
}

enum DaemonDefaults {
    static var stateDirectory: String {
        ProcessInfo.processInfo.environment["CELLPROV_STATE_DIRECTORY"] ?? "/var/lib/cellprov"
    }
}

/// `cellprov status`: the slots the daemon remembers, their identities (redacted), the outbox.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the daemon's modules, their identities (redacted), the last event and the outbox.",
        discussion: """
            Reads the state database read-only; safe while cellprovd runs. Exit status 2: no state. \
            --json prints one versioned object with full identifiers (docs/operations.md, "cellprov status --json").
            """)

    @OptionGroup var state: StateOptions

    @Flag(help: "One JSON object (version 1): slots with full identifiers, read status, last event, outbox.")
    var json = false

    func run() throws {
        let store = try state.openStore()
        if json {
            let view: StatusView
            do {
                view = try StatusView(store: store)
            } catch {
                StandardStream.error.write("cellprov: \(error)\n")
                throw ExitCode(2)
            }
            print(try StatusDocument(view, stateDirectory: state.stateDirectory).json())
            return
        }
        let records = try store.slotRecords()
        let history = try store.events()
        let depth = try store.outboxDepth()
        let live = Dictionary(uniqueKeysWithValues: try store.liveSlots().map { ($0.slot, $0) })
        var lastEvent: [String: StoredEvent] = [:]
        for e in history where lastEvent[e.event.slot] == nil { lastEvent[e.event.slot] = e }  // newest first

        print("state:  \(store.path)")
        var outbox = "outbox: \(depth) event\(depth == 1 ? "" : "s") waiting for delivery"
        if let error = try store.lastDeliveryError() { outbox += "; last delivery error: \(error)" }
        print(outbox)
        if let refused = try store.credentialsRefused() {
            let status = refused.prefix { $0 != ":" }
            print("backend: backend refuses our credentials (\(status)); events wait and are retried. Renew the token "
                + "file or the client certificate, then: systemctl reload cellprovd")
        }
        if let loss = try store.lastStateLoss() {
            let what = switch loss.reason {
            case .databaseMissing: "the database was missing"
            case .databaseEmpty: "the database was empty"
            case .databaseDamaged: "the database was damaged"
            case .databaseRestored: "an older copy of the database was put back (numbering kept)"
            }
            print("state loss: \(what), found \(loss.detectedAt.formatted(.iso8601)); "
                + "\(loss.eventsSalvaged) event(s) salvaged, \(loss.eventsLost) lost (see the journal)")
        }
        let present = live.values.filter(\.present).count
        print("slots:  \(Set(records.map(\.slot)).union(live.keys).count) known, \(present) modem\(present == 1 ? "" : "s") present at the daemon's last look")
        let f = Date.ISO8601FormatStyle()
        for r in records {
            print("")
            print("slot \(r.slot)")
            let module = [r.module.manufacturer, r.module.model, r.module.revision].compactMap { $0 }
                .joined(separator: " ")
            print("  module:    \(module.isEmpty ? "-" : module)\(r.module.usbSerial.map { " (USB serial \($0))" } ?? "")")
            print("  IMEI:      \(r.identity.redactedIMEI)")
            print("  IMSI:      \(r.identity.redactedIMSI)")
            print("  ICCID:     \(r.identity.redactedICCID)")
            if r.identity.eid != nil { print("  EID:       \(r.identity.redactedEID)  (the eUICC; ICCID/IMSI are its profile)") }
            if let slot = r.identity.simSlot { print("  SIM slot:  \(slot) (active)") }
            print("  SIM:       \(r.simPresent ? "present" : "absent")   enrolled: \(r.enrolled ? "yes" : "no")")
            if let l = live[r.slot] {
                var now = l.present ? "present on \(l.port)" : "not present (last on \(l.port))"
                if let at = l.lastReadAt {
                    now += "; last read \(f.format(at)): "
                    now += l.problems.isEmpty ? "ok" : l.problems.joined(separator: ", ")
                }
                print("  now:       \(now)")
            }
            print("  changed:   \(f.format(r.updatedAt))")
            if let e = lastEvent[r.slot] {
                print("  last event: #\(e.event.sequence) \(e.event.type.rawValue) at \(f.format(e.event.occurredAt)) (\(e.state.rawValue))")
            }
        }
        let recorded = Set(records.map(\.slot))
        for l in live.values.sorted(by: { $0.slot < $1.slot }) where !recorded.contains(l.slot) {
            print("")
            print("slot \(l.slot)  (no identity recorded yet)")
            var now = l.present ? "present on \(l.port)" : "not present (last on \(l.port))"
            if let at = l.lastReadAt {
                now += "; last read \(f.format(at)): " + (l.problems.isEmpty ? "ok" : l.problems.joined(separator: ", "))
            }
            print("  now:       \(now)")
        }
    }
}

/// `cellprov events`: the event history, oldest first; `--json` is a data channel with full identifiers.
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Show the event history (enrolled, sim_changed, imei_changed, ...) and each event's delivery.",
        discussion: "Identifiers are redacted in the table; --json prints full digits (a data channel).")

    @OptionGroup var state: StateOptions

    @Flag(help: "One JSON object per event per line, full identifiers.")
    var json = false

    @Option(help: "Only the most recent N events.")
    var limit: Int?

    @Option(
        name: .customLong("requeue"),
        help: "Put a rejected event back in the outbox (its event id); the daemon sends it at its next attempt.")
    var requeue: String?

    func validate() throws {
        if let limit, limit <= 0 { throw ValidationError("--limit must be positive") }
        if let requeue, UUID(uuidString: requeue) == nil {
            throw ValidationError("--requeue takes an event id (a UUID, as cellprov events --json prints it)")
        }
    }

    func run() throws {
        if let requeue, let id = UUID(uuidString: requeue) {
            let done: Bool
            do {
                done = try StateStore.requeue(directory: state.stateDirectory, id: id)
            } catch {
                StandardStream.error.write("cellprov: \(error)\n")
                throw ExitCode(2)
            }
            guard done else {
                StandardStream.error.write("cellprov: no rejected event \(requeue.lowercased())\n")
                throw ExitCode(1)
            }
            print("\(requeue.lowercased()): back in the outbox; cellprovd sends it at its next attempt "
                + "(systemctl reload cellprovd to send it now)")
            return
        }
        let store = try state.openStore()
        let events = try store.events(limit: limit).reversed()
        if json {
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for e in events {
                let line = EventLine(event: e.event, delivery: .init(e))
                print(String(decoding: try encoder.encode(line), as: UTF8.self))
            }
            return
        }
        let f = Date.ISO8601FormatStyle()
        for e in events {
            let ev = e.event
            var line = "\(f.format(ev.occurredAt))  \(ev.slot)  #\(ev.sequence)  \(ev.type.rawValue)"
            line += "  [\(ev.severity.rawValue)]  \(e.state.rawValue)"
            print(line)
            print("    now:      \(ev.identity)")
            if let p = ev.previous { print("    previous: \(p)") }
            if let changed = ev.usbSerialChanged { print("    usb serial changed: \(changed)") }
            if let others = ev.otherSlots { print("    also on: \(others.joined(separator: ", "))") }
            if ev.type == .firmwareChanged {
                let clean = { (text: String?) in WireText.cleaned(text, maxBytes: 256) ?? "?" }
                print("    firmware: \(clean(ev.previousRevision)) -> \(clean(ev.module.revision))")
            }
            if !ev.problems.isEmpty { print("    problems: \(ev.problems.map(\.code.rawValue).joined(separator: ", "))") }
            if let err = e.lastError { print("    delivery: \(err)") }
        }
    }
}

/// One line of `cellprov events --json`: the event's own keys, and `delivery` (its outbox state; keys with no
/// value are written as null, so a consumer sees every key on every line).
struct EventLine: Encodable {
    var event: IdentityEvent
    var delivery: Delivery

    struct Delivery: Encodable {
        var state: String
        var attempts: Int
        var lastError: String?
        var deliveredAt: Date?

        init(_ e: StoredEvent) {
            state = e.state.rawValue
            attempts = e.attempts
            lastError = e.lastError
            deliveredAt = e.deliveredAt
        }

        enum CodingKeys: String, CodingKey {
            case state, attempts
            case lastError = "last_error"
            case deliveredAt = "delivered_at"
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(state, forKey: .state)
            try c.encode(attempts, forKey: .attempts)
            try c.encode(lastError, forKey: .lastError)  // Optional.encode writes null
            try c.encode(deliveredAt, forKey: .deliveredAt)
        }
    }

    enum CodingKeys: String, CodingKey { case delivery }

    func encode(to encoder: any Encoder) throws {
        try event.encode(to: encoder)  // the event's keys, in the same object
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(delivery, forKey: .delivery)
    }
}
