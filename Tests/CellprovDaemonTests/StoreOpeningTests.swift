import CellprovStore
import Foundation
import Logging
import Synchronization
import Testing

@testable import CellprovDaemon

/// The store opened beside the first reads (StoreOpening): presence changes made while it opens are written first,
/// in order, after the live view's reset; observations wait for it; a store that cannot be opened is an error for
/// whoever waits, and nothing is written anywhere.
@Suite struct StoreOpeningTests {
    let logger = Logger(label: "test")

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cellprov-opening-\(UUID())").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func presenceBeforeTheStoreIsOpenIsWrittenInOrderAfterTheReset() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A slot present in an earlier run: the reset marks it absent, then this run's changes apply.
        do {
            let earlier = try StateStore(directory: directory)
            try earlier.setPresence(slot: "old", port: "/dev/ttyUSB9", present: true)
            try earlier.setPresence(slot: "a", port: "/dev/ttyUSB0", present: true)
        }
        let gate = DispatchSemaphore(value: 0)
        let opening = StoreOpening(logger: logger) {
            gate.wait()  // still opening while the changes below arrive
            return try StateStore(directory: directory)
        }
        #expect(opening.current == nil)
        opening.setPresence(slot: "a", port: "/dev/ttyUSB0", present: true)
        opening.setPresence(slot: "b", port: "/dev/ttyUSB1", present: true)
        opening.setPresence(slot: "a", port: "/dev/ttyUSB0", present: false)
        opening.setPresence(slot: "b", port: "/dev/ttyUSB2", present: true)
        let waiter = Task { try await opening.opened() }
        gate.signal()
        let store = try await waiter.value
        let live = Dictionary(uniqueKeysWithValues: try store.liveSlots().map { ($0.slot, $0) })
        #expect(live["old"]?.present == false, "the reset comes before this run's changes")
        #expect(live["a"]?.present == false, "the last change to a slot wins")
        #expect(live["b"]?.present == true && live["b"]?.port == "/dev/ttyUSB2")
        // Open now: changes are written at once.
        opening.setPresence(slot: "c", port: "/dev/ttyUSB3", present: true)
        #expect(try store.liveSlots().contains { $0.slot == "c" && $0.present })
        #expect(opening.current != nil)
    }

    @Test func manyWaitersAllGetTheStore() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let gate = DispatchSemaphore(value: 0)
        let opening = StoreOpening(logger: logger) {
            gate.wait()
            return try StateStore(directory: directory)
        }
        let waiters = (0..<8).map { _ in Task { try await opening.opened().path } }
        try await Task.sleep(for: .milliseconds(20))  // let some of them wait before the store is there
        gate.signal()
        for waiter in waiters { #expect(try await waiter.value == directory + "/" + StateStore.fileName) }
    }

    @Test func aStoreThatCannotBeOpenedIsAnErrorForEveryWaiter() async throws {
        struct Refused: Error, CustomStringConvertible { var description: String { "refused for the test" } }
        let opening = StoreOpening(logger: logger) { throw Refused() }
        opening.setPresence(slot: "a", port: "/dev/ttyUSB0", present: true)  // dropped, nothing to write to
        await #expect {
            try await opening.opened()
        } throws: { error in
            "\(error)".contains("refused for the test")
        }
        #expect(await opening.store() == nil && opening.current == nil)
        let sink = StoreSink(opening: opening, logger: logger)
        #expect(await sink.statusSummary() == nil)
    }
}
