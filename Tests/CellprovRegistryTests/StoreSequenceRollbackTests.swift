import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import Testing

// A device whose numbering went back (issue 19 row 14, case b: its whole state directory put back from a backup,
// which the daemon cannot notice): a field event whose (unit, slot) sequence an earlier stored event already has,
// with another event id, is stored (nothing lost), raises `state_rolled_back` (warning, one open flag per unit) and
// is marked on the timeline. A re-sent event (the same event id) stays a duplicate; a lower sequence that repeats
// none (an operator's requeue filling a gap) and factory records raise nothing. On SQLite, and on PostgreSQL under
// scripts/with-postgres.sh.

@Suite struct StoreSequenceRollbackTests {
    static let hour: TimeInterval = 3600

    @Test(arguments: StoreBackend.available)
    func repeatedSequenceIsStoredFlaggedAndMarked(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let serial = "GW-ROLL"
            let first = event(imei: TestID.imei(70), imsi: TestID.imsi(70), iccid: TestID.iccid(70), sequence: 1)
            let second = event(
                "sim_changed", imei: TestID.imei(70), imsi: TestID.imsi(71), iccid: TestID.iccid(71),
                previous: .init(imei: TestID.imei(70), imsi: TestID.imsi(70), iccid: TestID.iccid(70)),
                severity: "warning", sequence: 2, at: t0.addingTimeInterval(Self.hour))
            let third = event(
                "sim_changed", imei: TestID.imei(70), imsi: TestID.imsi(72), iccid: TestID.iccid(72),
                previous: .init(imei: TestID.imei(70), imsi: TestID.imsi(71), iccid: TestID.iccid(71)),
                severity: "warning", sequence: 3, at: t0.addingTimeInterval(2 * Self.hour))
            for e in [first, second, third] { #expect(try await store.field(e, serial) == []) }

            // The backup's pending event sent again after the restore: the same event id, a duplicate, no flag.
            let resent = try await store.ingest(
                second, serial: serial, origin: .device, references: [], receivedAt: t0.addingTimeInterval(3 * Self.hour))
            #expect(resent == .duplicate)

            // The restored daemon numbers its next event 2 again.
            let again = event(
                "sim_changed", imei: TestID.imei(70), imsi: TestID.imsi(73), iccid: TestID.iccid(73),
                previous: .init(imei: TestID.imei(70), imsi: TestID.imsi(70), iccid: TestID.iccid(70)),
                severity: "warning", sequence: 2, at: t0.addingTimeInterval(4 * Self.hour))
            #expect(try await store.field(again, serial, at: t0.addingTimeInterval(4 * Self.hour)) == [.stateRolledBack])
            let flag = try #require(try await store.flags(openOnly: true, limit: 10).first { $0.flag.kind == .stateRolledBack })
            #expect(flag.flag.severity == .warning)
            #expect(flag.flag.serial == serial)
            #expect(flag.flag.slot == "usb-1")
            #expect(flag.flag.evidence.eventIDs == [second.eventID, again.eventID])
            #expect(flag.flag.summary.contains("sequence 2"))
            for digits in [TestID.imei(70), TestID.imsi(73), TestID.iccid(73)] {
                #expect(!flag.flag.summary.contains(digits))
            }

            // Its next one (3 again) is stored too; the unit's flag is open already: not raised twice.
            let againThird = event(
                "sim_changed", imei: TestID.imei(70), imsi: TestID.imsi(74), iccid: TestID.iccid(74),
                previous: .init(imei: TestID.imei(70), imsi: TestID.imsi(73), iccid: TestID.iccid(73)),
                severity: "warning", sequence: 3, at: t0.addingTimeInterval(5 * Self.hour))
            #expect(try await store.field(againThird, serial, at: t0.addingTimeInterval(5 * Self.hour)) == [])
            #expect(try await store.openFlagCounts()[.stateRolledBack] == 1)

            // Nothing lost: every event on the timeline, the repeats marked with the event they repeat.
            let unit = try #require(try await store.unit(serial: serial))
            #expect(unit.timeline.map(\.eventID)
                == [first.eventID, second.eventID, third.eventID, again.eventID, againThird.eventID])
            #expect(unit.timeline.map(\.reusesSequenceOf)
                == [nil, nil, nil, second.eventID, third.eventID])
            // The slot shows the latest identity (the event that came last).
            #expect(unit.summary.slots.first { $0.slot == "usb-1" }?.identity.iccid == TestID.iccid(74))

            // A slot's numbering continuing (4, above everything stored) raises nothing more and is not marked.
            let fourth = event(
                "sim_changed", imei: TestID.imei(70), imsi: TestID.imsi(75), iccid: TestID.iccid(75),
                severity: "warning", sequence: 4, at: t0.addingTimeInterval(6 * Self.hour))
            #expect(try await store.field(fourth, serial, at: t0.addingTimeInterval(6 * Self.hour)) == [])

            // Resolved, a later repeat raises a new flag.
            #expect(try await store.resolveFlag(id: flag.id, by: "alice", note: "restored from backup", at: t0))
            let repeatAfter = event(
                "sim_changed", imei: TestID.imei(70), imsi: TestID.imsi(76), iccid: TestID.iccid(76),
                severity: "warning", sequence: 4, at: t0.addingTimeInterval(7 * Self.hour))
            #expect(try await store.field(repeatAfter, serial, at: t0.addingTimeInterval(7 * Self.hour))
                == [.stateRolledBack])
        }
    }

    @Test(arguments: StoreBackend.available)
    func gapsOtherSlotsOtherUnitsAndFactoryRecordsAreNotRollbacks(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            // 1 and 3 stored, then 2 (a rejected event an operator requeued): lower, but repeats nothing.
            let one = event(slot: "usb-1", imei: TestID.imei(80), iccid: TestID.iccid(80), sequence: 1)
            let three = event(
                "sim_changed", slot: "usb-1", imei: TestID.imei(80), iccid: TestID.iccid(81), severity: "warning",
                sequence: 3, at: t0.addingTimeInterval(Self.hour))
            let two = event(
                "sim_changed", slot: "usb-1", imei: TestID.imei(80), iccid: TestID.iccid(82), severity: "warning",
                sequence: 2, at: t0.addingTimeInterval(Self.hour / 2))
            for e in [one, three, two] { #expect(try await store.field(e, "GW-GAP") == []) }
            // Another slot of the unit, and another unit, start at 1 too.
            #expect(try await store.field(
                event(slot: "usb-2", imei: TestID.imei(83), iccid: TestID.iccid(83), sequence: 1), "GW-GAP") == [])
            #expect(try await store.field(
                event(slot: "usb-1", imei: TestID.imei(84), iccid: TestID.iccid(84), sequence: 1), "GW-OTHER") == [])
            // Factory records carry sequence 1 each time: not a device's numbering.
            for n in 0..<2 {
                let record = event(
                    "manufactured", slot: "usb-1", imei: TestID.imei(80), iccid: TestID.iccid(80 + n), sequence: 1)
                #expect(try await store.factory(record, "GW-GAP").contains(.stateRolledBack) == false)
            }
            #expect(try await store.openFlagCounts()[.stateRolledBack] == nil)
            let unit = try #require(try await store.unit(serial: "GW-GAP"))
            #expect(unit.timeline.allSatisfy { $0.reusesSequenceOf == nil })
        }
    }

    /// Case a as the registry sees it: the daemon noticed its database was put back and says so on the slot's next
    /// event (`state_lost`, database_restored), numbered after everything it sent: stored, shown on the timeline,
    /// no rollback.
    @Test(arguments: StoreBackend.available)
    func announcedRestoreIsShownAndIsNotARollback(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let one = event(imei: TestID.imei(90), iccid: TestID.iccid(90), sequence: 1)
            let two = event(
                "sim_changed", imei: TestID.imei(90), iccid: TestID.iccid(91), severity: "warning", sequence: 2,
                at: t0.addingTimeInterval(Self.hour))
            var announced = event(
                "sim_changed", imei: TestID.imei(90), iccid: TestID.iccid(92), severity: "warning", sequence: 3,
                at: t0.addingTimeInterval(2 * Self.hour))
            announced.stateLost = .init(
                reason: "database_restored", detectedAt: EnrollmentRequest.timestamp(t0.addingTimeInterval(Self.hour)),
                eventsSalvaged: 0, eventsLost: 1, lastSequence: 2)
            #expect(EnrollmentValidation.violation(of: announced, receivedAt: t0.addingTimeInterval(3 * Self.hour)) == nil)
            for e in [one, two, announced] { #expect(try await store.field(e, "GW-ANN") == []) }
            let unit = try #require(try await store.unit(serial: "GW-ANN"))
            #expect(unit.timeline.map(\.stateLost) == [nil, nil, "database_restored"])
            #expect(unit.timeline.allSatisfy { $0.reusesSequenceOf == nil })
        }
    }
}
