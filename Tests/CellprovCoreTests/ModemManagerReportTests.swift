import CellprovCore
import Foundation
import Testing

/// ModemManager's published values become a report through the same validation as an AT read.
@Suite("IdentityReport from ModemManager")
struct ModemManagerReportTests {
    // Constructed identities (no real device or subscriber).
    static let imei = "866761047392185"
    static let imsi = "262017394021857"
    static let iccid = "89491077394021857360"
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }

    static func modem(
        imei: String? = nil, equipment: String? = ModemManagerReportTests.luhn("86676104739218"),
        sim: String? = "/org/freedesktop/ModemManager1/SIM/0", imsi: String? = ModemManagerReportTests.imsi,
        iccid: String? = ModemManagerReportTests.luhn("8949107739402185736"), state: Int32? = 8,
        lock: UInt32? = ModemManagerModem.Lock.none, failed: UInt32? = 0
    ) -> ModemManagerModem {
        ModemManagerModem(
            objectPath: "/org/freedesktop/ModemManager1/Modem/0",
            device: "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1", equipmentIdentifier: equipment, imei: imei,
            manufacturer: "Quectel", model: "EC25", revision: "EC25EFAR06A06M4G", state: state, failedReason: failed,
            unlockRequired: lock, primaryPort: "ttyUSB2", ports: ["ttyUSB2", "wwan0"], simPath: sim, simIMSI: imsi,
            simICCID: iccid)
    }

    @Test func validModem() {
        let m = Self.modem()
        let r = IdentityReport(modemManager: m)
        #expect(r.isValid)
        #expect(r.problems.isEmpty)
        #expect(r.imei?.unredacted == Self.luhn("86676104739218"))
        #expect(r.imsi?.unredacted == Self.imsi)
        #expect(r.iccid?.unredacted == Self.luhn("8949107739402185736"))
        #expect(r.port == "/dev/ttyUSB2")
        #expect(r.manufacturer == "Quectel" && r.model == "EC25")
        #expect(r.commandCount == 0)
        #expect(m.isReadyToReport)
    }

    /// Issue 15: Sim.Eid, Sim.SimType, Modem.SimSlots and Modem.PrimarySimSlot.
    @Test(arguments: [
        // (Eid, SimType, slots, primary) -> (eid read, status, slot)
        ("89882119900000000000000000000005", 2 as UInt32?, 2, 2 as UInt32?, true, EIDReadStatus.read, 2 as Int?),
        ("89882119900000000000000000000006", 2, 0, nil, false, .invalid, nil),  // check digits wrong
        ("", 1, 1, 0, false, .noEUICC, nil),  // a physical plain SIM, one slot
        ("", nil, 0, nil, false, .notAttempted, nil),  // ModemManager before 1.16: nothing said
        ("", 2, 2, 1, false, .notAttempted, 1),  // an eSIM whose EID ModemManager could not read (over AT)
    ])
    func cardAndSlot(
        eid: String, type: UInt32?, slots: Int, primary: UInt32?, read: Bool, status: EIDReadStatus, slot: Int?
    ) {
        var m = Self.modem()
        m.simEID = eid
        m.simType = type
        m.simSlots = (0..<slots).map { "/org/freedesktop/ModemManager1/SIM/\($0)" }
        m.primarySimSlot = primary
        let r = IdentityReport(modemManager: m)
        #expect((r.eid?.unredacted == eid) == read)
        #expect(r.eidStatus == status)
        #expect(r.simSlot == slot)
        #expect(r.isValid, "the EID is an addition: the IMEI/IMSI/ICCID read stays valid")
        #expect(r.problems.map(\.code) == (status == .invalid ? [.eidInvalid] : []))
        #expect(!"\(m)".contains(eid) || eid.isEmpty)
    }

    @Test func modem3gppImeiIsPreferred() {
        let other = Self.luhn("35290611482913")
        let r = IdentityReport(modemManager: Self.modem(imei: other))
        #expect(r.imei?.unredacted == other)
        // An empty Modem3gpp.Imei falls back to the equipment identifier.
        #expect(IdentityReport(modemManager: Self.modem(imei: "")).imei?.unredacted == Self.luhn("86676104739218"))
    }

    @Test func sameValidationAsAT() {
        // A bad check digit is kept with an error, exactly as from AT+CGSN.
        let bad = "866761047392180"
        let r = IdentityReport(modemManager: Self.modem(equipment: bad))
        #expect(r.imei?.unredacted == bad)
        #expect(r.problems.map(\.code) == IMEI.validate(bad).problems.map(\.code))
        #expect(!r.isValid)
        // A CDMA MEID (14 hex digits) is not an IMEI: refused, not kept.
        let meid = IdentityReport(modemManager: Self.modem(equipment: "A1000012345678"))
        #expect(meid.imei == nil)
        #expect(meid.problems.contains { $0.code == .imeiFormat })
    }

    @Test func missingValues() {
        let r = IdentityReport(modemManager: Self.modem(equipment: nil, imsi: "", iccid: nil))
        #expect(Set(r.problems.map(\.code)) == [.imeiMissing, .imsiMissing, .iccidMissing])
    }

    @Test func simStates() {
        #expect(IdentityReport(modemManager: Self.modem(sim: nil)).problems.map(\.code) == [.simNotInserted])
        let failed = Self.modem(sim: nil, state: ModemManagerModem.State.failed,
                                failed: ModemManagerModem.FailedReason.simMissing)
        #expect(IdentityReport(modemManager: failed).problems.map(\.code) == [.simNotInserted])
        let pin = Self.modem(imsi: "", state: ModemManagerModem.State.locked, lock: ModemManagerModem.Lock.simPIN)
        #expect(IdentityReport(modemManager: pin).problems.map(\.code) == [.simPINRequired])
        let puk = Self.modem(state: ModemManagerModem.State.locked, lock: ModemManagerModem.Lock.simPUK)
        #expect(IdentityReport(modemManager: puk).problems.map(\.code) == [.simPUKRequired])
        #expect(!Self.modem(state: ModemManagerModem.State.initializing).isReadyToReport)
        #expect(!Self.modem(state: nil).isReadyToReport)
        #expect(Self.modem(state: ModemManagerModem.State.failed).isReadyToReport)
        #expect(Self.modem(sim: nil, state: ModemManagerModem.State.failed).isReadyToReport)
        // Enabled but no SIM object and no failure: the SIM state is not known yet.
        #expect(!Self.modem(sim: nil, state: 8).isReadyToReport)
    }

    @Test func printsNoDigits() {
        let m = Self.modem()
        let texts = [
            m.description, m.debugDescription, String(describing: m), String(reflecting: m),
            "\(Mirror(reflecting: m).children.map(\.value))",
        ]
        for text in texts {
            #expect(!text.contains(Self.luhn("86676104739218")))
            #expect(!text.contains(Self.imsi))
            #expect(!text.contains(Self.luhn("8949107739402185736")))
            #expect(!text.contains("7392185"))
        }
    }

    @Test func moduleInfoCarriesTheSource() throws {
        let slot = ModuleSlot(key: "pci-0000:00:14.0-usb-0:1", port: "/dev/ttyUSB2", origin: .modemmanager)
        let info = ModuleInfo(slot: slot, report: IdentityReport(modemManager: Self.modem()))
        #expect(info.source == .modemmanager)
        let json = String(decoding: try JSONEncoder().encode(info), as: UTF8.self)
        #expect(json.contains("\"source\":\"modemmanager\""))
        // AT reads keep their record form unchanged (no source key); old records decode with source nil.
        let at = ModuleInfo(
            slot: ModuleSlot(key: "k", port: "/dev/ttyUSB3", origin: .udev), report: IdentityReport(port: "p"))
        #expect(at.source == nil)
        #expect(!String(decoding: try JSONEncoder().encode(at), as: UTF8.self).contains("source"))
        let stored = #"{"usb_serial":null,"manufacturer":"Q","model":null,"revision":null}"#
        let old = try JSONDecoder().decode(ModuleInfo.self, from: Data(stored.utf8))
        #expect(old.source == nil && old.manufacturer == "Q")
    }
}
