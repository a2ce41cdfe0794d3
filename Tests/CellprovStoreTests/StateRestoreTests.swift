import CellprovCore
import CellprovEnrollmentAPI
import CellprovStore
import CellprovTestKit
import Foundation
import Testing

// A state database put back from a backup while `state.marker` stayed (issue 19 row 14, case a): the store notices
// at open that the database is older than the marker, keeps numbering after the marker's sequences (no sequence
// number is used twice), records it as a state loss and tells the backend with each slot's next event
// (`state_lost`, reason `database_restored`). Real SQLite files in a temp dir; the backup is a copy of the closed
// database's files, as a file-level backup takes it.

private enum SRValue {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }

    static let imei = luhn("35693803564380")
    static let imeiB = luhn("86144205219734")
    static let imsis = ["310260123456789", "262019876543210", "208150123456780", "234159876543211"]
    static let iccids = [
        luhn("894420005367105249"), luhn("891004234814455936"), luhn("893315020000012345"),
        luhn("894430000000054321"),
    ]
    static let slotA = "pci-0000:00:14.0-usb-0:1:1.0"
    static let slotB = "pci-0000:00:14.0-usb-0:2:1.0"

    static var all: [String] { [imei, imeiB] + imsis + iccids }
}

/// A read of `slot` with the module's IMEI and SIM number `sim` (validated as the identity reader does).
private func srObservation(slot: String = SRValue.slotA, imei: String = SRValue.imei, sim: Int) -> Observation {
    fixtureObservation(slot: slot, imei: imei, imsi: SRValue.imsis[sim], iccid: SRValue.iccids[sim])
}

/// Copies the closed database's files (state.db and its WAL, when there is one) from `from` to `to`, replacing
/// what is there; the marker is not touched.
private func copyDatabase(from: String, to: String) throws {
    let fm = FileManager.default
    for suffix in ["", "-wal", "-shm"] {
        try? fm.removeItem(atPath: to + "/state.db" + suffix)
    }
    for suffix in ["", "-wal"] where fm.fileExists(atPath: from + "/state.db" + suffix) {
        try fm.copyItem(atPath: from + "/state.db" + suffix, toPath: to + "/state.db" + suffix)
    }
}

private func openStore(_ dir: TemporaryDirectory) throws -> (StateStore, [StoreIncident]) {
    var incidents: [StoreIncident] = []
    let store = try StateStore(directory: dir.path, onIncident: { incidents.append($0) })
    return (store, incidents)
}

@Suite struct StateRestoreTests {
    @Test func restoredDatabaseKeepsNumberingAndTellsTheBackend() throws {
        let dir = try TemporaryDirectory()
        let backup = try TemporaryDirectory()
        do {
            let (store, incidents) = try openStore(dir)
            #expect(incidents.isEmpty)
            #expect(try store.commit(srObservation(sim: 0)).map(\.sequence) == [1])
            #expect(try store.commit(srObservation(slot: SRValue.slotB, imei: SRValue.imeiB, sim: 3)).map(\.sequence) == [1])
        }
        try copyDatabase(from: dir.path, to: backup.path)  // the backup: slot A at 1, slot B at 1

        do {
            let (store, incidents) = try openStore(dir)
            #expect(incidents.isEmpty, "a plain restart is not a restore")
            #expect(try store.commit(srObservation(sim: 1)).map(\.sequence) == [2])
            #expect(try store.commit(srObservation(sim: 2)).map(\.sequence) == [3])
        }
        try copyDatabase(from: backup.path, to: dir.path)  // put back; state.marker stays

        let (store, incidents) = try openStore(dir)
        #expect(incidents.count == 1)
        let incident = try #require(incidents.first)
        #expect(incident.kind == .restored)
        #expect(incident.reason == .databaseRestored)
        #expect(incident.eventsLost == 2, "\(incident.message)")
        #expect(incident.message.contains("older copy"), "\(incident.message)")
        #expect(incident.message.contains("2 event(s) committed after that copy"), "\(incident.message)")
        for id in SRValue.all { #expect(!incident.message.contains(id)) }
        let loss = try #require(try store.lastStateLoss())
        #expect(loss.reason == .databaseRestored)
        #expect(loss.eventsLost == 2)

        // The database says slot A is at 1 with SIM 0; the marker said 3. The next event continues after 3 and
        // carries state_lost; the backend sees sequence 4, never a second 2 or 3.
        let next = try store.commit(srObservation(sim: 3))
        #expect(next.map(\.sequence) == [4])
        let first = try #require(next.first)
        #expect(first.type == .simChanged)
        #expect(first.stateLost?.reason == .databaseRestored)
        #expect(first.stateLost?.lastSequence == 3)
        #expect(first.stateLost?.eventsLost == 2)
        // On the wire: the existing state_lost object, which the input rules accept.
        let wire = EnrollmentRequest(first, deviceSerial: "GW-TEST-1")
        #expect(wire.stateLost?.reason == "database_restored")
        #expect(wire.stateLost?.lastSequence == 3)
        #expect(EnrollmentValidation.violation(of: wire, receivedAt: Date()) == nil)
        let decoded = try EnrollmentValidation.decode(try wire.jsonBytes(), receivedAt: Date())
        #expect(decoded.stateLost?.reason == "database_restored")
        // Told once per slot: the slot's following event does not carry it again.
        let after = try store.commit(srObservation(sim: 0))
        #expect(after.map(\.sequence) == [5])
        #expect(after.first?.stateLost == nil)

        // Slot B was not behind (its last sequence, 1, is in the copy): it continues at 2 and is told too.
        let b = try store.commit(srObservation(slot: SRValue.slotB, imei: SRValue.imeiB, sim: 2))
        #expect(b.map(\.sequence) == [2])
        #expect(b.first?.stateLost?.reason == .databaseRestored)
        #expect(b.first?.stateLost?.lastSequence == 1)
    }

    @Test func restartAfterTheRestoreReportsNothingMore() throws {
        let dir = try TemporaryDirectory()
        let backup = try TemporaryDirectory()
        do {
            let (store, _) = try openStore(dir)
            try store.commit(srObservation(sim: 0))
        }
        try copyDatabase(from: dir.path, to: backup.path)
        do {
            let (store, _) = try openStore(dir)
            try store.commit(srObservation(sim: 1))
        }
        try copyDatabase(from: backup.path, to: dir.path)
        do {
            let (_, incidents) = try openStore(dir)
            #expect(incidents.map(\.kind) == [.restored])
        }
        let (store, incidents) = try openStore(dir)
        #expect(incidents.isEmpty, "\(incidents.map(\.message))")
        #expect(try store.commit(srObservation(sim: 2)).map(\.sequence) == [3])
    }

    /// A transaction that failed after the marker's pre-commit update (a full disk, a crash before the commit)
    /// leaves the marker ahead in its last position only: not a restore. Those numbers were never stored nor sent,
    /// so the slot's numbering goes on from the database.
    @Test func markerAheadByAFailedTransactionIsNotARestore() throws {
        let dir = try TemporaryDirectory()
        do {
            let (store, _) = try openStore(dir)
            try store.commit(srObservation(sim: 0))
            try store.commit(srObservation(sim: 1))
        }
        let path = dir.file("state.marker")
        var marker = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        #expect(marker["committed_position"] as? Int == 2)
        marker["last_position"] = 3
        marker["slots"] = [SRValue.slotA: 3]
        try JSONSerialization.data(withJSONObject: marker).write(to: URL(fileURLWithPath: path))

        let (store, incidents) = try openStore(dir)
        #expect(incidents.isEmpty, "\(incidents.map(\.message))")
        #expect(try store.lastStateLoss() == nil)
        let next = try store.commit(srObservation(sim: 2))
        #expect(next.map(\.sequence) == [3])
        #expect(next.first?.stateLost == nil)
    }

    /// Another database than the marker's (another `database_id`) whose slots are behind the marker's: a restore
    /// too (e.g. a backup older than a state loss, which started a new database).
    @Test func anotherDatabaseBehindTheMarkerIsARestore() throws {
        let dir = try TemporaryDirectory()
        let other = try TemporaryDirectory()
        do {
            let (store, _) = try openStore(other)
            try store.commit(srObservation(sim: 0))
        }
        do {
            let (store, _) = try openStore(dir)
            try store.commit(srObservation(sim: 0))
            try store.commit(srObservation(sim: 1))
            try store.commit(srObservation(sim: 2))
        }
        try copyDatabase(from: other.path, to: dir.path)

        let (store, incidents) = try openStore(dir)
        let incident = try #require(incidents.first)
        #expect(incident.kind == .restored)
        #expect(incident.message.contains("another database"), "\(incident.message)")
        #expect(incident.eventsLost == 2)
        let next = try store.commit(srObservation(sim: 3))
        #expect(next.map(\.sequence) == [4])
        #expect(next.first?.stateLost?.reason == .databaseRestored)
    }

    /// A marker written before `committed_position` existed says nothing about restores: no incident.
    @Test func markerWithoutCommittedPositionIsNotARestore() throws {
        let dir = try TemporaryDirectory()
        let backup = try TemporaryDirectory()
        do {
            let (store, _) = try openStore(dir)
            try store.commit(srObservation(sim: 0))
        }
        try copyDatabase(from: dir.path, to: backup.path)
        do {
            let (store, _) = try openStore(dir)
            try store.commit(srObservation(sim: 1))
        }
        let path = dir.file("state.marker")
        var marker = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        marker["committed_position"] = nil
        try JSONSerialization.data(withJSONObject: marker).write(to: URL(fileURLWithPath: path))
        try copyDatabase(from: backup.path, to: dir.path)

        let (_, incidents) = try openStore(dir)
        #expect(incidents.isEmpty)
    }
}
