import CellprovCore
import CellprovRegistryCore
import Foundation
import Testing

/// Carrier reconciliation with an EID column (IoT portals that manage eSIM profiles export it beside ICCID and
/// IMSI): detected header names, a configured name, EIDs unknown to the fleet, profiles of fleet cards that are not
/// enabled, cells that are no valid EID.
@Suite struct ReconciliationEIDTests {
    @Test(arguments: ["EID", "eid", "eUICC ID", "EUICC_EID", "SIM EID"])
    func detectsTheEIDColumn(_ name: String) throws {
        let csv = Array("ICCID,Status,\(name)\n\(TestID.iccid(1)),active,\(TestID.eid(1))\n".utf8)
        let r = try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: [])
        #expect(r.eidColumn == name)
        #expect(r.carrierEIDs == 1)
        #expect(r.count(.eidUnknownToFleet) == 1)
    }

    @Test func withoutAnEIDColumnNothingChanges() throws {
        let csv = Array("ICCID,Status\n\(TestID.iccid(1)),active\n".utf8)
        let r = try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: [])
        #expect(r.eidColumn == nil && r.carrierEIDs == 0)
        #expect(r.findings.map(\.kind) == [.simActiveUnassigned])
        #expect(!r.summaryLines.contains { $0.0 == "EID column" })
    }

    @Test func eidsUnknownToTheFleet() throws {
        let fleetCard = TestID.eid(10)
        let strangerCard = TestID.eid(11)
        let stockCard = TestID.eid(12)
        let unreadCard = TestID.eid(13)
        let rows = [
            // The fleet card's enabled profile: matched.
            "\(TestID.iccid(10));\(TestID.imsi(10));Activated;\(fleetCard)",
            // Another profile of the fleet card, active but not enabled: no sim_active_unassigned.
            "\(TestID.iccid(11));\(TestID.imsi(11));Activated;\(fleetCard)",
            // A card no unit reports, two active profiles: one eid_unknown_to_fleet (and each profile unassigned).
            "\(TestID.iccid(12));\(TestID.imsi(12));Activated;\(strangerCard)",
            "\(TestID.iccid(13));\(TestID.imsi(13));Activated;\(strangerCard)",
            // A stock card (inventory): nothing.
            "\(TestID.iccid(14));\(TestID.imsi(14));Inventory;\(stockCard)",
            // A card whose profile is in a unit that did not report an EID: the card is in that unit.
            "\(TestID.iccid(15));\(TestID.imsi(15));Activated;\(unreadCard)",
            // A cell that is no EID (a spreadsheet's rounding): left out, the SIM is still compared.
            "\(TestID.iccid(16));\(TestID.imsi(16));Activated;8.90490320000E+31",
        ]
        let csv = Array(("ICCID;IMSI;Status;eUICC ID\n" + rows.joined(separator: "\n") + "\n").utf8)
        let assignments = [
            SIMAssignment(serial: "GW-1", slot: "s", iccid: TestID.iccid(10), imsi: TestID.imsi(10), eid: fleetCard),
            SIMAssignment(serial: "GW-2", slot: "s", iccid: TestID.iccid(15), imsi: TestID.imsi(15)),
            SIMAssignment(serial: "GW-3", slot: "s", iccid: TestID.iccid(16), imsi: TestID.imsi(16)),
        ]
        let r = try Reconciliation.reconcile(csv: csv, mapping: nil, assignments: assignments)
        let unknown = r.findings.filter { $0.kind == .eidUnknownToFleet }
        #expect(unknown.count == 1)
        #expect(unknown.first?.flag.evidence.eid == strangerCard)
        #expect(unknown.first?.flag.dedupeKey == "eid_unknown_to_fleet:\(strangerCard)")
        #expect(unknown.first?.flag.serial == nil && unknown.first?.flag.severity == .warning)
        let unassigned = Set(r.findings.filter { $0.kind == .simActiveUnassigned }.compactMap(\.flag.evidence.iccid))
        #expect(unassigned == [TestID.iccid(12), TestID.iccid(13)])
        #expect(r.profilesOnFleetCards == 1)
        #expect(r.carrierEIDs == 4 && r.invalidEIDs == 1)
        #expect(r.count(.simUnknownToCarrier) == 0 && r.count(.imsiICCIDMismatch) == 0)
        // No identifier digits in summaries or report lines.
        for f in r.findings { #expect(identifierDigitRuns(f.flag.summary).isEmpty, "\(f.flag.summary)") }
        for (label, value) in r.summaryLines {
            #expect(!(label + value).contains(/[0-9]{6}/), "\(label): \(value)")
        }
        let byLabel = Dictionary(r.summaryLines.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        #expect(byLabel["EID column"] == "eUICC ID")
        #expect(byLabel["eid_unknown_to_fleet"] == "1")
    }

    @Test func configuredEIDColumn() throws {
        let csv = Array("Karte,Karten-Kennung\n\(TestID.iccid(20)),\(TestID.eid(20))\n".utf8)
        let mapping = try #require(ColumnMapping.configured(iccid: "Karte", imsi: nil, status: nil, eid: "Karten-Kennung"))
        let r = try Reconciliation.reconcile(csv: csv, mapping: mapping, assignments: [])
        #expect(r.eidColumn == "Karten-Kennung" && r.count(.eidUnknownToFleet) == 1)
        #expect(throws: ReconciliationError.self) {
            try Reconciliation.reconcile(
                csv: csv, mapping: ColumnMapping(iccid: "Karte", eid: "EID"), assignments: [])
        }
    }
}
