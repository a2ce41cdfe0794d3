import CellprovCore
import CellprovDaemon
import CellprovModem
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

/// Slots read through ModemManager in the Supervisor: one reader per slot, the AT session wins.
@Suite("Supervisor: ModemManager slots")
struct ModemManagerSupervisorTests {
    final class RecordingSink: ObservationSink {
        let seen = NIOLockedValueBox<[(Observation, Set<String>)]>([])
        let presences = NIOLockedValueBox<[(String, Bool)]>([])
        func observe(_ observation: Observation, presentSlots: Set<String>) async -> Bool {
            seen.withLockedValue { $0.append((observation, presentSlots)) }
            return true
        }
        func statusSummary() async -> String? { nil }
        func presence(_ slot: ModuleSlot, present: Bool) async { presences.withLockedValue { $0.append((slot.key, present)) } }
    }

    static let key = "pci-0000:00:14.0-usb-0:1"

    func make() -> (Supervisor, RecordingSink) {
        let sink = RecordingSink()
        let logger = Logger(label: "test")
        let supervisor = Supervisor(
            reader: IdentityReader(logger: logger), interval: .seconds(600), logger: logger, sink: sink,
            onStatus: { _ in })
        return (supervisor, sink)
    }

    func observation(_ slot: ModuleSlot) -> Observation {
        Observation(slot: slot, report: IdentityReport(port: slot.port), reason: "ModemManager")
    }

    @Test func externalSlotIsObservedAndCounted() async {
        let (supervisor, sink) = make()
        let slot = ModuleSlot(key: Self.key, port: "/dev/ttyUSB2", origin: .modemmanager)
        #expect(await supervisor.addExternal(slot))
        #expect(await supervisor.slotKeys == [Self.key])
        await supervisor.observeExternal(observation(slot))
        let seen = sink.seen.withLockedValue { $0 }
        #expect(seen.count == 1)
        #expect(seen.first?.1 == [Self.key])
        #expect(await supervisor.statusLine().hasPrefix("1 modem,"))
        await supervisor.removeExternal(key: Self.key, reason: "test")
        #expect(await supervisor.slotKeys.isEmpty)
        // Not a slot any more: ignored.
        await supervisor.observeExternal(observation(slot))
        #expect(sink.seen.withLockedValue { $0.count } == 1)
        #expect(sink.presences.withLockedValue { $0.map(\.1) } == [true, false])
    }

    @Test func atSessionWins() async {
        let (supervisor, sink) = make()
        let external = ModuleSlot(key: Self.key, port: "/dev/ttyUSB2", origin: .modemmanager)
        #expect(await supervisor.addExternal(external))
        // udev brings an AT port for the same slot (a path that does not exist: the session's open fails).
        let at = ModuleSlot(key: Self.key, port: "/nonexistent/ttyUSB3", origin: .udev)
        await supervisor.add(at)
        #expect(await supervisor.hasATSession(key: Self.key))
        #expect(await supervisor.externalKeys.isEmpty)
        #expect(!(await supervisor.addExternal(external)))
        let before = sink.seen.withLockedValue { $0.filter { $0.0.slot.origin == .modemmanager }.count }
        await supervisor.observeExternal(observation(external))
        #expect(sink.seen.withLockedValue { $0.filter { $0.0.slot.origin == .modemmanager }.count } == before)
        await supervisor.stopAll()
    }

    @Test func aSessionOnOneOfTheModemsPortsCounts() async {
        let (supervisor, _) = make()
        await supervisor.add(ModuleSlot(key: "/nonexistent/ttyS1", port: "/nonexistent/ttyS1", origin: .static))
        #expect(await supervisor.hasATSession(key: "platform-serial8250", ports: ["/nonexistent/ttyS1"]))
        #expect(!(await supervisor.hasATSession(key: "platform-serial8250", ports: ["/dev/ttyS2"])))
        await supervisor.stopAll()
    }
}
