import CellprovCore
import CellprovDaemon
@testable import CellprovStore
import Foundation
import Testing

/// The `[hawkbit]` attributes as a table: a state view in, the attributes hawkBit is sent out. Pure: no store, no
/// network.
@Suite struct HawkBitAttributesTests {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }
    static let imei = luhn("35693803564380")
    static let imsi = "262014455667788"
    static let iccid = luhn("894920000445566778")
    static let eid = "89049032004008882600001234567890"
    static let slotA = "pci-0000:00:14.0-usb-0:1:1.0"
    static let changed = Date(timeIntervalSince1970: 1_796_631_111)  // 2026-12-07T08:11:51Z

    static func slot(
        _ key: String, identity: IdentitySnapshot?, module: ModuleInfo = ModuleInfo(
            manufacturer: "Quectel", model: "EC25", revision: "EC25EFAR06A06M4G"),
        simPresent: Bool = true, read: (valid: Bool, problems: [String])? = (true, [])
    ) -> StatusView.Slot {
        let record = identity.map {
            SlotRecord(slot: key, module: module, identity: $0, simPresent: simPresent, enrolled: true, sequence: 1,
                updatedAt: changed)
        }
        let live = read.map {
            StateStore.LiveSlot(
                slot: key, port: "/dev/ttyUSB2", present: true, lastReadAt: changed, valid: $0.valid,
                problems: $0.problems)
        }
        return StatusView.Slot(slot: key, record: record, live: live)
    }

    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var view: @Sendable () -> StatusView
        var identifiers: HawkBitAttributes.Identifiers
        /// Expected values; `masked:KIND:DIGITS` stands for the identifier type's own redacted text.
        var expected: [String: String]
        var description: String { name }
    }

    static let emptyModem = Dictionary(uniqueKeysWithValues: HawkBitAttributes.fields.map { ($0, "") })

    static func modem(_ n: Int, _ values: [String: String]) -> [String: String] {
        var out: [String: String] = [:]
        for (field, value) in emptyModem.merging(values, uniquingKeysWith: { $1 }) {
            out["cellprov_modem\(n)_\(field)"] = value
        }
        return out
    }

    static let cases: [Case] = [
        Case(name: "no slot", view: { StatusView(slots: []) }, identifiers: .masked, expected: ["cellprov_modems": "0"]),
        Case(
            name: "one modem, masked",
            view: { StatusView(slots: [slot(slotA, identity: IdentitySnapshot(imei: imei, imsi: imsi, iccid: iccid))]) },
            identifiers: .masked,
            expected: ["cellprov_modems": "1"].merging(
                modem(1, [
                    "slot": slotA, "module": "Quectel EC25 EC25EFAR06A06M4G", "imei": "masked:imei:\(imei)",
                    "imsi": "masked:imsi:\(imsi)", "iccid": "masked:iccid:\(iccid)", "read_status": "ok",
                    "sim_state": "ready", "last_change": "2026-12-07T08:11:51Z",
                ]), uniquingKeysWith: { $1 })),
        Case(
            name: "one modem, full digits, an eUICC",
            view: {
                StatusView(slots: [
                    slot(slotA, identity: IdentitySnapshot(imei: imei, imsi: imsi, iccid: iccid, eid: eid))
                ])
            },
            identifiers: .full,
            expected: ["cellprov_modems": "1"].merging(
                modem(1, [
                    "slot": slotA, "module": "Quectel EC25 EC25EFAR06A06M4G", "imei": imei, "imsi": imsi,
                    "iccid": iccid, "eid": eid, "read_status": "ok", "sim_state": "ready",
                    "last_change": "2026-12-07T08:11:51Z",
                ]), uniquingKeysWith: { $1 })),
        Case(
            name: "SIM removed: the last SIM kept, the state says absent",
            view: {
                StatusView(slots: [
                    slot(
                        slotA, identity: IdentitySnapshot(imei: imei, imsi: imsi, iccid: iccid), simPresent: false,
                        read: (false, [Problem.Code.simNotInserted.rawValue]))
                ])
            },
            identifiers: .full,
            expected: ["cellprov_modems": "1"].merging(
                modem(1, [
                    "slot": slotA, "module": "Quectel EC25 EC25EFAR06A06M4G", "imei": imei, "imsi": imsi,
                    "iccid": iccid, "read_status": "error", "sim_state": "absent",
                    "last_change": "2026-12-07T08:11:51Z",
                ]), uniquingKeysWith: { $1 })),
        Case(
            name: "a slot seen, never read: every field sent, empty",
            view: { StatusView(slots: [slot("/dev/ttyS1", identity: nil, read: nil)]) },
            identifiers: .masked,
            expected: ["cellprov_modems": "1"].merging(
                modem(1, ["slot": "/dev/ttyS1", "read_status": "not_read", "sim_state": "unknown"]),
                uniquingKeysWith: { $1 })),
        Case(
            name: "hostile module text: cleaned and cut to 128",
            view: {
                StatusView(slots: [
                    slot(
                        slotA, identity: IdentitySnapshot(imei: imei),
                        module: ModuleInfo(manufacturer: "Télit~", model: String(repeating: "M", count: 300)),
                        simPresent: false, read: (false, [Problem.Code.simNotInserted.rawValue]))
                ])
            },
            identifiers: .full,
            expected: ["cellprov_modems": "1"].merging(
                modem(1, [
                    "slot": slotA, "module": "T?lit? " + String(repeating: "M", count: 121), "imei": imei,
                    "read_status": "error", "sim_state": "absent", "last_change": "2026-12-07T08:11:51Z",
                ]), uniquingKeysWith: { $1 })),
    ]

    static func resolve(_ value: String) -> String {
        guard value.hasPrefix("masked:") else { return value }
        let parts = value.split(separator: ":", maxSplits: 2).map(String.init)
        switch parts[1] {
        case "imei": return IMEI.validate(parts[2]).value!.description
        case "imsi": return IMSI.validate(parts[2]).value!.description
        case "iccid": return ICCID.validate(parts[2]).value!.description
        default: return EID.validate(parts[2]).value!.description
        }
    }

    @Test(arguments: cases)
    func mapping(_ c: Case) throws {
        let out = HawkBitAttributes.attributes(c.view(), identifiers: c.identifiers)
        #expect(out == c.expected.mapValues(Self.resolve))
        for (key, value) in out {
            #expect(HawkBitDDI.isValidKey(key), "\(key)")
            #expect(HawkBitDDI.isValidValue(value), "\(key)")
        }
        _ = try HawkBitDDI.body(out)
        if c.identifiers == .masked {
            for secret in [Self.imei, Self.imsi, Self.iccid, String(Self.imei.dropFirst(8).prefix(6))] {
                #expect(!out.values.contains { $0.contains(secret) }, "masked attributes carry digits")
            }
        }
    }

    /// Masked text is the identifier types' own (the journal's and the registry's): `IMEI(TAC …, ref …)`.
    @Test func maskedIsTheJournalsText() {
        let out = HawkBitAttributes.attributes(
            StatusView(slots: [Self.slot(Self.slotA, identity: IdentitySnapshot(imei: Self.imei))]), identifiers: .masked)
        let value = out["cellprov_modem1_imei"] ?? ""
        #expect(value.hasPrefix("IMEI(TAC 35693803, ref "), "\(value)")
    }

    /// Ten modems: all counted, eight described, within hawkBit's default quota of 100 with room to spare.
    @Test func modemsBeyondTheEighthAreCountedNotDescribed() {
        let slots = (1...10).map { Self.slot(String(format: "/dev/ttyS%02d", $0), identity: IdentitySnapshot(imei: Self.imei)) }
        let out = HawkBitAttributes.attributes(StatusView(slots: slots), identifiers: .masked)
        #expect(out["cellprov_modems"] == "10")
        #expect(out["cellprov_modem8_slot"] == "/dev/ttyS08")
        #expect(out["cellprov_modem9_slot"] == nil)
        #expect(out.count == 1 + 8 * HawkBitAttributes.fields.count)
        #expect(out.count <= HawkBitDDI.defaultAttributeQuota - 20)
    }
}
