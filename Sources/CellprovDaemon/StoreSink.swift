import CellprovCore
import CellprovReporter
import CellprovStore
import CellprovSystemd
import FoundationEssentials
import Logging

/// Observations into the state store (change detection and outbox in one transaction), events into the log
/// (redacted) and the reporter woken for delivery.
public final class StoreSink: ObservationSink {
    let store: StateStore
    let reporter: Reporter?
    let logger: Logger

    public init(store: StateStore, reporter: Reporter?, logger: Logger) {
        self.store = store
        self.reporter = reporter
        self.logger = logger
        do {
            try store.clearPresence()
        } catch {
            logger.warning("cannot reset the live view: \(error)")
        }
    }

    public func presence(_ slot: ModuleSlot, present: Bool) async {
        do {
            try store.setPresence(slot: slot.key, port: slot.port, present: present)
        } catch {
            logger.warning("cannot record the slot's presence: \(error)", metadata: ["slot": "\(slot.key)"])
        }
    }

    public func observe(_ observation: Observation, presentSlots: Set<String>) async -> Bool {
        try? store.recordRead(
            slot: observation.slot.key, port: observation.slot.port, valid: observation.report.isValid,
            problems: observation.report.problems.map(\.code.rawValue), at: observation.observedAt)
        let events: [IdentityEvent]
        do {
            events = try store.commit(observation, presentSlots: presentSlots)
        } catch {
            // A full disk or a failing store: the observation is not lost for good, the next read (re-probe,
            // URC, SIGHUP) brings it again and the change detector compares against the last committed record.
            logger.error(
                "cannot record the observation; reading again in 30 s: \(error)",
                metadata: ["slot": "\(observation.slot.key)"])
            return false
        }
        logger.debug(
            "observation committed", metadata: ["slot": "\(observation.slot.key)", "events": "\(events.count)"])
        for event in events { log(event, observation: observation) }
        if !events.isEmpty { reporter?.wake() }
        return true
    }

    public func statusSummary() async -> String? {
        guard let depth = try? store.outboxDepth() else { return nil }
        var text = "outbox \(depth)"
        if depth > 0, reporter == nil { text += " (no backend)" }
        if reporter != nil, (try? store.credentialsRefused()) != nil { text += "; backend refuses our credentials" }
        return text
    }

    private func log(_ event: IdentityEvent, observation: Observation) {
        let r = observation.report
        var meta: Logger.Metadata = [
            "event": "\(event.type.rawValue)", "event_id": "\(event.id.uuidString.lowercased())",
            "slot": "\(event.slot)", "sequence": "\(event.sequence)", "severity": "\(event.severity.rawValue)",
        ]
        if let imei = r.imei {
            meta["tac"] = "\(imei.tac)"
            meta["imei_ref"] = "\(imei.reference)"
        }
        if let serial = event.module.usbSerial { meta["usb_serial"] = "\(serial)" }
        if let source = event.module.source { meta["source"] = "\(source.rawValue)" }
        let id: CellprovMessageID
        let text: String
        switch event.type {
        case .enrolled:
            id = .enrolled
            text = "enrolled: \(event.identity)"
        case .simChanged:
            id = .simChanged
            text = "SIM changed: \(event.previous.map { "\($0)" } ?? "none") -> \(event.identity); re-enrollment"
        case .simRemoved:
            id = .simChanged
            text = "SIM removed: \(event.previous.map { "\($0)" } ?? "unknown")"
        case .simInserted:
            id = .simChanged
            text = "SIM inserted again: \(event.identity)"
        case .imeiChanged:
            id = .imeiChanged
            let how = switch event.usbSerialChanged {
            case .some(false): "same module (USB serial unchanged): possible tampering"
            case .some(true): "different module (USB serial changed): service swap?"
            case nil: "module without USB serial"
            }
            text = "IMEI changed on this slot: \(event.previous.map { "\($0)" } ?? "?") -> \(event.identity); \(how)"
        case .identityInvalid:
            id = .identityProblem
            text = "invalid identity reported: " + event.problems.map(\.code.rawValue).joined(separator: ", ")
        case .duplicateIMEI:
            id = .duplicateIMEI
            text = "the same IMEI is reported by slot(s) \((event.otherSlots ?? []).joined(separator: ", "))"
        }
        meta["MESSAGE_ID"] = "\(id.id)"
        switch event.severity {
        case .info: logger.notice("\(text)", metadata: meta)
        case .warning: logger.warning("\(text)", metadata: meta)
        case .critical: logger.critical("\(text)", metadata: meta)
        }
    }
}
