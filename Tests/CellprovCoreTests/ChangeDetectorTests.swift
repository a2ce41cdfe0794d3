import CellprovCore
import Foundation
import Testing

// Table-driven tests of the change detector. All identifiers are constructed here: IMEIs and ICCIDs get their
// Luhn check digit computed (so they validate clean), and none is a placeholder.

// MARK: - Fixtures

/// Values built for these tests.
enum CDValue {
    static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }

    static let imeiA = luhn("35693803564380")
    static let imeiB = luhn("86144205219734")
    static let imeiC = luhn("49015420323751")
    static let imeiBadCheck: String = {
        let good = luhn("35693803564380")
        let last = Int(String(good.last!))!
        return String(good.dropLast()) + String((last + 1) % 10)
    }()
    static let imeiPlaceholder = "000000000000000"
    static let imeisv = "3569380356438001"

    static let imsi1 = "310260123456789"
    static let imsi2 = "262019876543210"
    static let imsi3 = "234150555000111"

    static let iccid1 = luhn("894420005367105249")
    static let iccid2 = luhn("891004234814455936")
    static let iccid3 = luhn("893107012345678901")
    static let iccidBadPrefix = luhn("991004234814455936")

    /// EIDs with SGP.29 check digits (pySim's GetEuiccData vector, and two made here with their check digits).
    static let eid1 = "89882119900000000000000000000005"
    static let eid2 = "89049032000000000000000000000163"

    static let usbSlot = "pci-0000:00:14.0-usb-0:1:1.0"
    static let otherSlot = "pci-0000:00:14.0-usb-0:2:1.0"
    static let uartSlot = "/dev/ttyS1"

    static let t0 = Date(timeIntervalSince1970: 1_750_000_000)
    static let t1 = Date(timeIntervalSince1970: 1_750_000_600)
}

/// One read, described by its raw values and extra problems.
struct CDRead: Sendable {
    var slot = CDValue.usbSlot
    var usbSerial: String? = "SER-1"
    var imei: String? = CDValue.imeiA
    var imsi: String? = CDValue.imsi1
    var iccid: String? = CDValue.iccid1
    var revision: String? = "EG25GGBR07A08M2G"
    var eid: String? = nil
    var simSlot: Int? = nil
    var problems: [Problem] = []

    var observation: Observation {
        var report = IdentityReport(
            port: "/dev/ttyUSB2", manufacturer: "Quectel", model: "EG25", revision: revision, commandCount: 8)
        var found: [Problem] = []
        if let imei {
            let v = IMEI.validate(imei)
            report.imei = v.value
            found += v.problems
        }
        if let imsi {
            let v = IMSI.validate(imsi)
            report.imsi = v.value
            found += v.problems
        }
        if let iccid {
            let v = ICCID.validate(iccid)
            report.iccid = v.value
            found += v.problems
        }
        if let eid {
            let v = EID.validate(eid)
            report.eid = v.value
            report.eidStatus = v.value == nil ? .invalid : .read
            found += v.problems
        }
        report.simSlot = simSlot
        report.problems = found + problems
        let origin: ModuleSlot.Origin = slot.hasPrefix("/dev/") ? .static : .udev
        return Observation(
            slot: ModuleSlot(key: slot, port: "/dev/ttyUSB2", usbSerial: usbSerial, origin: origin), report: report,
            observedAt: CDValue.t1, reason: "test")
    }

    // Reads of the usual situations.
    static let full = CDRead()
    static func noSIM(imei: String = CDValue.imeiA) -> CDRead {
        CDRead(imei: imei, imsi: nil, iccid: nil, problems: [CDProblem.simNotInserted])
    }
    static func pinLocked(iccid: String? = CDValue.iccid1) -> CDRead {
        CDRead(imsi: nil, iccid: iccid, problems: [CDProblem.simPIN])
    }
}

/// Problems as the identity reader makes them.
enum CDProblem {
    static let simNotInserted = Problem(.simNotInserted, field: .sim, message: "no SIM card is inserted")
    static let simPIN = Problem(.simPINRequired, field: .sim, message: "the SIM waits for its PIN")
    static let simFailure = Problem(.simFailure, field: .sim, message: "the SIM card failed")
    static let portBusy = Problem(.portBusy, field: .port, message: "the port is held by another process")
    static let portClosed = Problem(.portClosed, field: .port, message: "the port closed during the read")
    static let noResponse = Problem(.noResponse, field: .port, message: "the modem did not answer AT commands")
    static let readTimeout = Problem(.timeout, field: .port, message: "the read did not finish in time")
    static let commandTimeout = Problem(
        .timeout, field: .modem, severity: .warning, message: "a command got no answer in time")
    static let imeiMissing = Problem(.imeiMissing, field: .imei, message: "the modem reported no IMEI")
}

/// Stored records.
func cdRecord(
    slot: String = CDValue.usbSlot, usbSerial: String? = "SER-1", imei: String? = CDValue.imeiA,
    imsi: String? = CDValue.imsi1, iccid: String? = CDValue.iccid1, simPresent: Bool = true, enrolled: Bool = true,
    sequence: Int = 1, revision: String? = "EG25GGBR07A08M2G", lastInvalid: IdentitySnapshot? = nil,
    eid: String? = nil, simSlot: Int? = nil
) -> SlotRecord {
    SlotRecord(
        slot: slot,
        module: ModuleInfo(usbSerial: usbSerial, manufacturer: "Quectel", model: "EG25", revision: revision),
        identity: IdentitySnapshot(imei: imei, imsi: imsi, iccid: iccid, eid: eid, simSlot: simSlot),
        simPresent: simPresent,
        enrolled: enrolled, sequence: sequence, lastInvalid: lastInvalid, updatedAt: CDValue.t0)
}

/// Numbered UUIDs, in the order asked.
final class CDIDSource {
    var next = 1
    func make() -> UUID {
        defer { next += 1 }
        return UUID(uuidString: String(format: "00000000-0000-0000-0000-%012d", next))!
    }
}

func cdEvaluate(_ previous: SlotRecord?, _ read: CDRead, others: [SlotRecord] = [], ids: CDIDSource = CDIDSource())
    -> ChangeResult
{
    ChangeDetector.evaluate(
        previous: previous, observation: read.observation, others: others, now: CDValue.t1, makeID: ids.make)
}

// MARK: - Tests

@Suite("ChangeDetector")
struct ChangeDetectorTests {
    /// One observation against one stored state, and what must come out.
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var previous: SlotRecord?
        var read: CDRead
        var others: [SlotRecord] = []
        var events: [IdentityEventType]
        var severities: [EventSeverity] = []
        /// Whether a record must be returned for storage.
        var stores: Bool
        /// More checks on the result.
        var check: (@Sendable (ChangeResult) -> Void)? = nil

        var testDescription: String { name }
    }

    static let cases: [Case] = [
        // Events, one case (or more) per type.
        Case(
            name: "enrolled: first full valid identity on a new slot", previous: nil, read: .full,
            events: [.enrolled], severities: [.info], stores: true,
            check: { r in
                #expect(r.events[0].identity == IdentitySnapshot(imei: CDValue.imeiA, imsi: CDValue.imsi1, iccid: CDValue.iccid1))
                #expect(r.events[0].previous == nil)
                #expect(r.record?.enrolled == true && r.record?.simPresent == true)
                #expect(r.record?.sequence == 1)
            }),
        Case(
            name: "enrolled: after reads without SIM were tracked silently",
            previous: cdRecord(imsi: nil, iccid: nil, simPresent: false, enrolled: false, sequence: 0), read: .full,
            events: [.enrolled], severities: [.info], stores: true),
        Case(
            name: "enrolled: warnings (test network IMSI) are carried, not blocking", previous: nil,
            read: CDRead(imsi: "001010123456789"), events: [.enrolled], severities: [.info], stores: true,
            check: { r in #expect(r.events[0].problems.map(\.code) == [.imsiTestNetwork]) }),
        Case(
            name: "sim_changed: same IMEI, other ICCID and IMSI", previous: cdRecord(),
            read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2), events: [.simChanged], severities: [.warning],
            stores: true,
            check: { r in
                #expect(r.events[0].previous == IdentitySnapshot(imei: CDValue.imeiA, imsi: CDValue.imsi1, iccid: CDValue.iccid1))
                #expect(r.events[0].identity == IdentitySnapshot(imei: CDValue.imeiA, imsi: CDValue.imsi2, iccid: CDValue.iccid2))
                #expect(r.record?.identity.iccid == CDValue.iccid2)
            }),
        Case(
            name: "sim_changed: same ICCID, other IMSI", previous: cdRecord(), read: CDRead(imsi: CDValue.imsi2),
            events: [.simChanged], severities: [.warning], stores: true),
        Case(
            name: "sim_changed: PIN-locked SIM with another ICCID (IMSI unreadable)", previous: cdRecord(),
            read: .pinLocked(iccid: CDValue.iccid2), events: [.simChanged], severities: [.warning], stores: true,
            check: { r in
                #expect(r.events[0].identity == IdentitySnapshot(imei: CDValue.imeiA, imsi: nil, iccid: CDValue.iccid2))
                #expect(r.events[0].problems.map(\.code) == [.simPINRequired])
            }),
        Case(
            name: "sim_changed: SIM back after removal with another ICCID",
            previous: cdRecord(simPresent: false), read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2),
            events: [.simChanged], severities: [.warning], stores: true,
            check: { r in #expect(r.events[0].previous?.iccid == CDValue.iccid1) }),
        // Issue 15: which kind of SIM change, from the card (EID) and the active slot.
        Case(
            name: "profile_switched: same EID, other ICCID and IMSI (remote eSIM profile switch)",
            previous: cdRecord(eid: CDValue.eid1),
            read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2, eid: CDValue.eid1),
            events: [.profileSwitched], severities: [.info], stores: true,
            check: { r in
                #expect(r.events[0].previous?.eid == CDValue.eid1 && r.events[0].identity.eid == CDValue.eid1)
                #expect(r.events[0].identity.iccid == CDValue.iccid2)
                #expect(r.record?.identity.iccid == CDValue.iccid2 && r.record?.identity.eid == CDValue.eid1)
            }),
        Case(
            name: "sim_changed: another eUICC (EID differs) with another ICCID",
            previous: cdRecord(eid: CDValue.eid1),
            read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2, eid: CDValue.eid2),
            events: [.simChanged], severities: [.warning], stores: true,
            check: { r in #expect(r.events[0].identity.eid == CDValue.eid2) }),
        Case(
            name: "sim_changed: an eUICC replaced by a plain SIM (no EID on one side)",
            previous: cdRecord(eid: CDValue.eid1), read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2),
            events: [.simChanged], severities: [.warning], stores: true),
        Case(
            name: "sim_changed: an EID that could not be read is not taken for the same card",
            previous: cdRecord(eid: CDValue.eid1),
            read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2, eid: "89882119900000000000000000000006"),
            events: [.simChanged], severities: [.warning], stores: true,
            check: { r in
                #expect(r.events[0].identity.eid == nil)
                #expect(r.events[0].problems.map(\.code) == [.eidInvalid])
            }),
        Case(
            name: "sim_slot_switched: failover to the second slot's card",
            previous: cdRecord(simSlot: 1),
            read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2, simSlot: 2),
            events: [.simSlotSwitched], severities: [.notice], stores: true,
            check: { r in
                #expect(r.events[0].previous?.simSlot == 1 && r.events[0].identity.simSlot == 2)
                #expect(r.record?.identity.simSlot == 2)
            }),
        Case(
            name: "sim_slot_switched: back to slot 1, whose eUICC is known (the slot decides, not the EID)",
            previous: cdRecord(imsi: CDValue.imsi2, iccid: CDValue.iccid2, simSlot: 2),
            read: CDRead(eid: CDValue.eid1, simSlot: 1), events: [.simSlotSwitched], severities: [.notice],
            stores: true),
        Case(
            name: "profile_clone_suspected: the same ICCID from another eUICC",
            previous: cdRecord(eid: CDValue.eid1), read: CDRead(eid: CDValue.eid2),
            events: [.profileCloneSuspected], severities: [.critical], stores: true,
            check: { r in
                #expect(r.events[0].previous?.eid == CDValue.eid1 && r.events[0].identity.eid == CDValue.eid2)
                #expect(r.record?.identity.eid == CDValue.eid2)
            }),
        Case(
            name: "nothing: an EID and a slot read for the first time on the same SIM are recorded silently",
            previous: cdRecord(), read: CDRead(eid: CDValue.eid1, simSlot: 1), events: [], stores: true,
            check: { r in
                #expect(r.record?.identity.eid == CDValue.eid1 && r.record?.identity.simSlot == 1)
            }),
        Case(
            name: "nothing: an EID or slot not read this time keeps the recorded ones",
            previous: cdRecord(eid: CDValue.eid1, simSlot: 1), read: .full, events: [], stores: false),
        Case(
            name: "enrolled: an eUICC in slot 1 carries its EID and slot", previous: nil,
            read: CDRead(eid: CDValue.eid1, simSlot: 1), events: [.enrolled], severities: [.info], stores: true,
            check: { r in
                #expect(r.events[0].identity.eid == CDValue.eid1 && r.events[0].identity.simSlot == 1)
            }),
        Case(
            name: "imei_changed: same USB serial, new IMEI (tampering)", previous: cdRecord(),
            read: CDRead(imei: CDValue.imeiB), events: [.imeiChanged], severities: [.critical], stores: true,
            check: { r in
                #expect(r.events[0].usbSerialChanged == false)
                #expect(r.events[0].previous?.imei == CDValue.imeiA)
                #expect(r.events[0].identity.imei == CDValue.imeiB)
                #expect(r.record?.identity.imei == CDValue.imeiB)
            }),
        Case(
            name: "imei_changed: another USB serial (service swap)", previous: cdRecord(),
            read: CDRead(usbSerial: "SER-2", imei: CDValue.imeiB), events: [.imeiChanged], severities: [.warning],
            stores: true,
            check: { r in
                #expect(r.events[0].usbSerialChanged == true)
                #expect(r.record?.module.usbSerial == "SER-2")
            }),
        Case(
            name: "imei_changed: serial on one side only counts as another module", previous: cdRecord(usbSerial: nil),
            read: CDRead(usbSerial: "SER-2", imei: CDValue.imeiB), events: [.imeiChanged], severities: [.warning],
            stores: true, check: { r in #expect(r.events[0].usbSerialChanged == true) }),
        Case(
            name: "imei_changed: static UART slot, no serial on either side (cannot tell: critical)",
            previous: cdRecord(slot: CDValue.uartSlot, usbSerial: nil),
            read: CDRead(slot: CDValue.uartSlot, usbSerial: nil, imei: CDValue.imeiB), events: [.imeiChanged],
            severities: [.critical], stores: true, check: { r in #expect(r.events[0].usbSerialChanged == nil) }),
        Case(
            name: "imei_changed: new module without SIM, reported once (no sim_removed too)", previous: cdRecord(),
            read: CDRead(usbSerial: "SER-2", imei: CDValue.imeiB, imsi: nil, iccid: nil, problems: [CDProblem.simNotInserted]),
            events: [.imeiChanged], severities: [.warning], stores: true,
            check: { r in
                #expect(r.record?.simPresent == false)
                #expect(r.record?.identity == IdentitySnapshot(imei: CDValue.imeiB))
            }),
        Case(
            name: "sim_removed: SIM gone after a SIM was present", previous: cdRecord(), read: .noSIM(),
            events: [.simRemoved], severities: [.warning], stores: true,
            check: { r in
                #expect(r.events[0].previous == IdentitySnapshot(imei: CDValue.imeiA, imsi: CDValue.imsi1, iccid: CDValue.iccid1))
                #expect(r.events[0].identity == IdentitySnapshot(imei: CDValue.imeiA))
                #expect(r.record?.simPresent == false)
                #expect(r.record?.identity.iccid == CDValue.iccid1, "the removed SIM is remembered")
            }),
        Case(
            name: "sim_inserted: the same SIM put back", previous: cdRecord(simPresent: false), read: .full,
            events: [.simInserted], severities: [.info], stores: true,
            check: { r in #expect(r.record?.simPresent == true) }),
        Case(
            name: "sim_inserted: the same SIM put back, PIN-locked (identity completed from the record)",
            previous: cdRecord(simPresent: false), read: .pinLocked(), events: [.simInserted], severities: [.info],
            stores: true, check: { r in #expect(r.events[0].identity.imsi == CDValue.imsi1) }),
        Case(
            name: "identity_invalid: IMEI check digit wrong on a new slot", previous: nil,
            read: CDRead(imei: CDValue.imeiBadCheck), events: [.identityInvalid], severities: [.warning], stores: true,
            check: { r in
                #expect(r.events[0].identity.imei == CDValue.imeiBadCheck, "the digits read are reported")
                #expect(r.events[0].problems.map(\.code) == [.imeiChecksum])
                #expect(r.record?.enrolled == false)
                #expect(r.record?.identity == IdentitySnapshot())
                #expect(r.record?.lastInvalid?.imei == CDValue.imeiBadCheck)
            }),
        Case(
            name: "identity_invalid: placeholder IMEI from the enrolled module (critical)", previous: cdRecord(),
            read: CDRead(imei: CDValue.imeiPlaceholder), events: [.identityInvalid], severities: [.critical],
            stores: true,
            check: { r in
                #expect(r.events[0].previous?.imei == CDValue.imeiA)
                #expect(r.record?.identity.imei == CDValue.imeiA, "the last good identity is kept")
            }),
        Case(
            name: "identity_invalid: placeholder IMEI from another module (warning)", previous: cdRecord(),
            read: CDRead(usbSerial: "SER-9", imei: CDValue.imeiPlaceholder), events: [.identityInvalid],
            severities: [.warning], stores: true),
        Case(
            name: "identity_invalid: an IMEISV is no IMEI", previous: nil, read: CDRead(imei: CDValue.imeisv),
            events: [.identityInvalid], severities: [.warning], stores: true,
            check: { r in
                #expect(r.events[0].identity == IdentitySnapshot(imei: nil, imsi: CDValue.imsi1, iccid: CDValue.iccid1))
            }),
        Case(
            name: "identity_invalid: ICCID with a wrong prefix; the IMSI still matches, no SIM event",
            previous: cdRecord(), read: CDRead(iccid: CDValue.iccidBadPrefix), events: [.identityInvalid],
            severities: [.warning], stores: true,
            check: { r in #expect(r.record?.identity.iccid == CDValue.iccid1) }),
        Case(
            name: "identity_invalid: never enrolls a slot", previous: nil,
            read: CDRead(iccid: CDValue.iccidBadPrefix), events: [.identityInvalid], severities: [.warning],
            stores: true, check: { r in #expect(r.record?.enrolled == false) }),
        Case(
            name: "imei_changed and identity_invalid: a module swap with a bad SIM reports both", previous: cdRecord(),
            read: CDRead(usbSerial: "SER-2", imei: CDValue.imeiB, iccid: CDValue.iccidBadPrefix),
            events: [.imeiChanged, .identityInvalid], severities: [.warning, .warning], stores: true),
        Case(
            name: "duplicate_imei: enrolling with another slot's IMEI", previous: nil, read: .full,
            others: [cdRecord(slot: CDValue.otherSlot, usbSerial: "SER-2")], events: [.enrolled, .duplicateIMEI],
            severities: [.info, .critical], stores: true,
            check: { r in
                #expect(r.events[1].otherSlots == [CDValue.otherSlot])
                #expect(r.events[1].identity.imei == CDValue.imeiA)
                #expect(r.events.map(\.sequence) == [1, 2])
            }),
        Case(
            name: "duplicate_imei: an IMEI change onto another slot's IMEI", previous: cdRecord(),
            read: CDRead(usbSerial: "SER-3", imei: CDValue.imeiB),
            others: [
                cdRecord(slot: "z-slot", usbSerial: "SER-4", imei: CDValue.imeiB),
                cdRecord(slot: CDValue.otherSlot, usbSerial: "SER-2", imei: CDValue.imeiB),
                cdRecord(slot: "c-slot", usbSerial: "SER-5", imei: CDValue.imeiC),
            ],
            events: [.imeiChanged, .duplicateIMEI], severities: [.warning, .critical], stores: true,
            check: { r in #expect(r.events[1].otherSlots == [CDValue.otherSlot, "z-slot"]) }),
        Case(
            name: "duplicate_imei: before enrollment too (no SIM yet)", previous: nil, read: .noSIM(),
            others: [cdRecord(slot: CDValue.otherSlot, usbSerial: "SER-2")], events: [.duplicateIMEI],
            severities: [.critical], stores: true, check: { r in #expect(r.record?.enrolled == false) }),

        // No event.
        Case(name: "same identity read again", previous: cdRecord(), read: .full, events: [], stores: false),
        Case(
            name: "port busy", previous: cdRecord(), read: CDRead(imei: nil, imsi: nil, iccid: nil, problems: [CDProblem.portBusy]),
            events: [], stores: false),
        Case(
            name: "no response from the modem", previous: cdRecord(),
            read: CDRead(imei: nil, imsi: nil, iccid: nil, problems: [CDProblem.noResponse]), events: [], stores: false),
        Case(
            name: "port closed mid-read, after another IMEI was read", previous: cdRecord(),
            read: CDRead(imei: CDValue.imeiB, imsi: nil, iccid: nil, problems: [CDProblem.portClosed]), events: [],
            stores: false),
        Case(
            name: "read timed out with the SIM values missing", previous: cdRecord(),
            read: CDRead(imsi: nil, iccid: nil, problems: [CDProblem.readTimeout]), events: [], stores: false),
        Case(
            name: "port failure on a new slot stores nothing", previous: nil,
            read: CDRead(imei: nil, imsi: nil, iccid: nil, problems: [CDProblem.portBusy]), events: [], stores: false),
        // Rule 8: firmware.
        Case(
            name: "firmware_changed: same module, same IMEI, another revision", previous: cdRecord(),
            read: CDRead(revision: "EG25GGBR07A08M2G_01.003"), events: [.firmwareChanged], severities: [.info],
            stores: true,
            check: { r in
                let e = r.events[0]
                #expect(e.previousRevision == "EG25GGBR07A08M2G")
                #expect(e.module.revision == "EG25GGBR07A08M2G_01.003")
                #expect(e.identity == IdentitySnapshot(imei: CDValue.imeiA, imsi: CDValue.imsi1, iccid: CDValue.iccid1))
                #expect(e.previous == nil && e.usbSerialChanged == nil && e.otherSlots == nil)
                #expect(e.sequence == 2)
                #expect(r.record?.module.revision == "EG25GGBR07A08M2G_01.003")
                #expect(r.record?.sequence == 2)
                #expect(r.record?.updatedAt == CDValue.t1)
            }),
        Case(
            name: "firmware_changed: a downgrade is a change too", previous: cdRecord(revision: "EG25GGBR07A08M2G_01.003"),
            read: CDRead(revision: "EG25GGBR07A08M2G"), events: [.firmwareChanged], severities: [.info], stores: true,
            check: { r in #expect(r.events[0].previousRevision == "EG25GGBR07A08M2G_01.003") }),
        Case(
            name: "firmware_changed: another USB serial with the same IMEI is still the same module (IMEI decides)",
            previous: cdRecord(), read: CDRead(usbSerial: "SER-9", revision: "EG25GGBR07A09M2G"),
            events: [.firmwareChanged], severities: [.info], stores: true,
            check: { r in #expect(r.record?.module.usbSerial == "SER-9") }),
        Case(
            name: "firmware_changed after sim_changed in the same read, numbered in that order", previous: cdRecord(),
            read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2, revision: "EG25GGBR07A09M2G"),
            events: [.simChanged, .firmwareChanged], severities: [.warning, .info], stores: true,
            check: { r in
                #expect(r.events.map(\.sequence) == [2, 3])
                #expect(r.events[1].identity.iccid == CDValue.iccid2, "the slot's identity after the SIM change")
                #expect(r.events[0].previousRevision == nil)
            }),
        Case(
            name: "firmware_changed with the SIM taken out: identity is the IMEI alone", previous: cdRecord(),
            read: CDRead(imsi: nil, iccid: nil, revision: "EG25GGBR07A09M2G", problems: [CDProblem.simNotInserted]),
            events: [.simRemoved, .firmwareChanged], severities: [.warning, .info], stores: true,
            check: { r in #expect(r.events[1].identity == IdentitySnapshot(imei: CDValue.imeiA)) }),
        Case(
            name: "firmware_changed with the SIM PIN-locked: identity is the slot's known SIM", previous: cdRecord(),
            read: CDRead(imsi: nil, revision: "EG25GGBR07A09M2G", problems: [CDProblem.simPIN]),
            events: [.firmwareChanged], severities: [.info], stores: true,
            check: { r in
                #expect(r.events[0].identity == IdentitySnapshot(imei: CDValue.imeiA, imsi: CDValue.imsi1, iccid: CDValue.iccid1))
            }),
        Case(
            name: "revision not answered: the recorded one is kept, nothing to store", previous: cdRecord(),
            read: CDRead(revision: nil), events: [], stores: false),
        Case(
            name: "revision answered blank: as not answered", previous: cdRecord(), read: CDRead(revision: "  "),
            events: [], stores: false, check: { r in #expect(r.record == nil) }),
        Case(
            name: "revision read for the first time (none recorded): recorded, no event",
            previous: cdRecord(revision: nil), read: .full, events: [], stores: true,
            check: { r in #expect(r.record?.module.revision == "EG25GGBR07A08M2G") }),
        Case(
            name: "a blank recorded revision is none: recorded, no event", previous: cdRecord(revision: ""),
            read: .full, events: [], stores: true),
        Case(
            name: "revision change before enrollment: recorded silently",
            previous: cdRecord(
                imsi: nil, iccid: nil, simPresent: false, enrolled: false, sequence: 0, revision: "EG25GGBR07A07M2G"),
            read: .noSIM(), events: [], stores: true,
            check: { r in #expect(r.record?.module.revision == "EG25GGBR07A08M2G") }),
        Case(
            name: "revision change with an IMEI change: imei_changed only (a new module)", previous: cdRecord(),
            read: CDRead(usbSerial: "SER-2", imei: CDValue.imeiB, revision: "EG25GGBR07A09M2G"),
            events: [.imeiChanged], severities: [.warning], stores: true,
            check: { r in
                #expect(r.events[0].previousRevision == nil)
                #expect(r.record?.module.revision == "EG25GGBR07A09M2G")
            }),
        Case(
            name: "revision change with an invalid IMEI: no firmware_changed (the IMEI cannot be compared)",
            previous: cdRecord(), read: CDRead(imei: CDValue.imeiBadCheck, revision: "EG25GGBR07A09M2G"),
            events: [.identityInvalid], severities: [.critical], stores: true),
        Case(
            name: "firmware_changed before identity_invalid of a bad ICCID in the same read", previous: cdRecord(),
            read: CDRead(iccid: CDValue.iccidBadPrefix, revision: "EG25GGBR07A09M2G"),
            events: [.firmwareChanged, .identityInvalid], severities: [.info, .warning], stores: true),
        Case(name: "PIN-locked SIM, same ICCID", previous: cdRecord(), read: .pinLocked(), events: [], stores: false),
        Case(
            name: "PIN-locked SIM, ICCID unreadable too", previous: cdRecord(), read: .pinLocked(iccid: nil), events: [],
            stores: false),
        Case(
            name: "invalid identity read again", previous: cdRecord(lastInvalid: IdentitySnapshot(
                imei: CDValue.imeiPlaceholder, imsi: CDValue.imsi1, iccid: CDValue.iccid1)),
            read: CDRead(imei: CDValue.imeiPlaceholder), events: [], stores: false),
        Case(
            name: "invalid identity on a new slot read again",
            previous: cdRecord(imei: nil, imsi: nil, iccid: nil, simPresent: false, enrolled: false, sequence: 1,
                lastInvalid: IdentitySnapshot(imei: CDValue.imeiBadCheck, imsi: CDValue.imsi1, iccid: CDValue.iccid1)),
            read: CDRead(imei: CDValue.imeiBadCheck), events: [], stores: false),
        Case(
            name: "no SIM, still no SIM", previous: cdRecord(simPresent: false), read: .noSIM(), events: [],
            stores: false),
        Case(
            name: "SIM failure: cannot tell, no sim_removed", previous: cdRecord(),
            read: CDRead(imsi: nil, iccid: nil, problems: [CDProblem.simFailure]), events: [], stores: false),
        Case(
            name: "IMSI command timed out: a missing IMSI is no change", previous: cdRecord(),
            read: CDRead(imsi: nil, problems: [CDProblem.commandTimeout]), events: [], stores: false),
        Case(
            name: "IMEI not answered: nothing concluded", previous: cdRecord(),
            read: CDRead(imei: nil, problems: [CDProblem.imeiMissing]), events: [], stores: false),
        Case(
            name: "IMEI not answered on a new slot: no record", previous: nil,
            read: CDRead(imei: nil, problems: [CDProblem.imeiMissing]), events: [], stores: false),
        Case(
            name: "duplicate already known: IMEI unchanged, no repeat", previous: cdRecord(), read: .full,
            others: [cdRecord(slot: CDValue.otherSlot, usbSerial: "SER-2")], events: [], stores: false),
        Case(
            name: "first read without SIM: tracked, not enrolled, no event", previous: nil, read: .noSIM(),
            events: [], stores: true,
            check: { r in
                #expect(r.record?.enrolled == false)
                #expect(r.record?.identity == IdentitySnapshot(imei: CDValue.imeiA))
                #expect(r.record?.sequence == 0)
            }),
        Case(
            name: "first read PIN-locked: tracked, not enrolled, no event", previous: nil, read: .pinLocked(),
            events: [], stores: true, check: { r in #expect(r.record?.enrolled == false) }),
        Case(
            name: "IMSI readable after PIN entry: sim_changed completes the identity",
            previous: cdRecord(imsi: nil, iccid: CDValue.iccid2), read: CDRead(iccid: CDValue.iccid2),
            events: [.simChanged], severities: [.warning], stores: true,
            check: { r in
                #expect(r.record?.identity.imsi == CDValue.imsi1)
                #expect(r.events.first?.previous?.imsi == nil)
                #expect(r.events.first?.identity.imsi == CDValue.imsi1)
            }),
        Case(
            name: "clean read after an invalid one clears lastInvalid, no event",
            previous: cdRecord(lastInvalid: IdentitySnapshot(imei: CDValue.imeiPlaceholder)), read: .full, events: [],
            stores: true, check: { r in #expect(r.record?.lastInvalid == nil) }),
    ]

    @Test("one observation", arguments: cases)
    func table(_ c: Case) {
        let ids = CDIDSource()
        let result = cdEvaluate(c.previous, c.read, others: c.others, ids: ids)
        #expect(result.events.map(\.type) == c.events)
        if !c.severities.isEmpty { #expect(result.events.map(\.severity) == c.severities) }
        #expect((result.record != nil) == c.stores)
        // Invariants of every result.
        let base = c.previous?.sequence ?? 0
        #expect(result.events.map(\.sequence) == Array((base + 1)..<(base + 1 + result.events.count)))
        let expectedIDs = CDIDSource()
        #expect(result.events.map(\.id) == result.events.map { _ in expectedIDs.make() }, "ids asked in event order")
        for e in result.events {
            #expect(e.slot == c.read.slot)
            #expect(e.occurredAt == CDValue.t1)
            if e.type != .imeiChanged { #expect(e.usbSerialChanged == nil) }
            #expect((e.otherSlots != nil) == (e.type == .duplicateIMEI))
            #expect(e.problems == c.read.observation.report.problems)
        }
        if !result.events.isEmpty { #expect(result.record != nil, "events always come with a record") }
        if let record = result.record {
            #expect(record.sequence == base + result.events.count)
            #expect(record.slot == c.read.slot)
            #expect(record.updatedAt == CDValue.t1)
        }
        c.check?(result)
    }

    @Test("every event type is exercised by the table")
    func coverage() {
        let seen = Set(Self.cases.flatMap(\.events))
        #expect(seen == Set(IdentityEventType.allCases))
    }

    // MARK: Sequences

    /// A step of a slot's life: a read and the events it must give.
    struct Step: Sendable {
        var read: CDRead
        var events: [IdentityEventType]
        var severities: [EventSeverity] = []
    }

    struct Story: Sendable, CustomTestStringConvertible {
        var name: String
        var steps: [Step]
        var testDescription: String { name }
    }

    static let stories: [Story] = [
        Story(name: "enroll, swap, remove, insert same, insert other, IMEI changes", steps: [
            Step(read: .full, events: [.enrolled], severities: [.info]),
            Step(read: .full, events: []),
            Step(read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2), events: [.simChanged], severities: [.warning]),
            Step(read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2), events: []),
            Step(read: .noSIM(), events: [.simRemoved], severities: [.warning]),
            Step(read: .noSIM(), events: []),
            Step(read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2), events: [.simInserted], severities: [.info]),
            Step(read: .noSIM(), events: [.simRemoved]),
            Step(read: CDRead(imsi: CDValue.imsi3, iccid: CDValue.iccid3), events: [.simChanged], severities: [.warning]),
            Step(read: CDRead(imei: CDValue.imeiB, imsi: CDValue.imsi3, iccid: CDValue.iccid3), events: [.imeiChanged],
                 severities: [.critical]),
            Step(read: CDRead(imei: CDValue.imeiB, imsi: CDValue.imsi3, iccid: CDValue.iccid3), events: []),
            Step(read: CDRead(usbSerial: "SER-2", imei: CDValue.imeiC, imsi: CDValue.imsi3, iccid: CDValue.iccid3),
                 events: [.imeiChanged], severities: [.warning]),
            Step(read: CDRead(usbSerial: "SER-2", imei: CDValue.imeiC, imsi: CDValue.imsi3, iccid: CDValue.iccid3),
                 events: []),
        ]),
        Story(name: "port failures in between change nothing", steps: [
            Step(read: CDRead(imei: nil, imsi: nil, iccid: nil, problems: [CDProblem.portBusy]), events: []),
            Step(read: .full, events: [.enrolled]),
            Step(read: CDRead(imei: nil, imsi: nil, iccid: nil, problems: [CDProblem.portClosed]), events: []),
            Step(read: .full, events: []),
        ]),
        Story(name: "PIN lock: same SIM locked, unlocked, swapped while locked, unlocked", steps: [
            Step(read: .full, events: [.enrolled]),
            Step(read: .pinLocked(), events: []),
            Step(read: .full, events: []),
            Step(read: .pinLocked(iccid: CDValue.iccid2), events: [.simChanged]),
            Step(read: .pinLocked(iccid: CDValue.iccid2), events: []),
            Step(read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2), events: [.simChanged]),
            Step(read: CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2), events: []),
            Step(read: CDRead(imsi: CDValue.imsi3, iccid: CDValue.iccid2), events: [.simChanged]),
        ]),
        Story(name: "invalid identity: reported once, again after a clean read", steps: [
            Step(read: CDRead(imei: CDValue.imeiPlaceholder), events: [.identityInvalid], severities: [.warning]),
            Step(read: CDRead(imei: CDValue.imeiPlaceholder), events: []),
            Step(read: CDRead(imei: CDValue.imeiBadCheck), events: [.identityInvalid]),
            Step(read: .full, events: [.enrolled]),
            Step(read: CDRead(imei: CDValue.imeiBadCheck), events: [.identityInvalid], severities: [.critical]),
            Step(read: CDRead(imei: CDValue.imeiBadCheck), events: []),
            Step(read: .full, events: []),
            Step(read: CDRead(imei: CDValue.imeiBadCheck), events: [.identityInvalid], severities: [.critical]),
        ]),
        Story(name: "no SIM at first: no event until the full identity", steps: [
            Step(read: .noSIM(), events: []),
            Step(read: .noSIM(imei: CDValue.imeiB), events: []),
            Step(read: .pinLocked(), events: []),
            Step(read: .full, events: [.enrolled]),
            Step(read: .noSIM(), events: [.simRemoved]),
        ]),
        Story(name: "firmware update between reads: one event, then nothing while it stays", steps: [
            Step(read: .full, events: [.enrolled]),
            Step(read: CDRead(revision: "EG25GGBR07A08M2G_01.003"), events: [.firmwareChanged], severities: [.info]),
            Step(read: CDRead(revision: "EG25GGBR07A08M2G_01.003"), events: []),
            Step(read: CDRead(revision: nil), events: []),
            Step(read: CDRead(revision: "EG25GGBR07A08M2G_01.003"), events: []),
            Step(read: CDRead(revision: "EG25GGBR07A08M2G"), events: [.firmwareChanged]),
        ]),
    ]

    @Test("a slot's story, stored between steps", arguments: stories)
    func story(_ s: Story) {
        var stored: SlotRecord?
        var sequences: [Int] = []
        let ids = CDIDSource()
        for (index, step) in s.steps.enumerated() {
            let result = cdEvaluate(stored, step.read, ids: ids)
            #expect(result.events.map(\.type) == step.events, "step \(index + 1)")
            if !step.severities.isEmpty {
                #expect(result.events.map(\.severity) == step.severities, "step \(index + 1)")
            }
            sequences += result.events.map(\.sequence)
            if let record = result.record { stored = record }
        }
        #expect(sequences == sequences.indices.map { $0 + 1 }, "1, 2, 3 ... across the whole story")
        #expect((stored?.sequence ?? 0) == sequences.count)
        #expect(ids.next - 1 == sequences.count, "one id per event")
    }

    @Test("sequence numbers continue from the record, in event order")
    func sequenceNumbering() {
        let previous = cdRecord(sequence: 41)
        let others = [cdRecord(slot: CDValue.otherSlot, usbSerial: "SER-2", imei: CDValue.imeiB)]
        let result = cdEvaluate(
            previous, CDRead(usbSerial: "SER-3", imei: CDValue.imeiB, iccid: CDValue.iccidBadPrefix), others: others)
        #expect(result.events.map(\.type) == [.imeiChanged, .duplicateIMEI, .identityInvalid])
        #expect(result.events.map(\.sequence) == [42, 43, 44])
        #expect(result.record?.sequence == 44)
        let again = cdEvaluate(
            result.record, CDRead(usbSerial: "SER-3", imei: CDValue.imeiB, iccid: CDValue.iccidBadPrefix), others: others)
        #expect(again.events.isEmpty)
        #expect(again.record == nil)
    }

    // MARK: Duplicates

    @Test("duplicate IMEI across two slots: reported once, by the slot that took the IMEI")
    func duplicates() {
        let a = CDRead(slot: CDValue.usbSlot, usbSerial: "SER-A")
        let b = CDRead(slot: CDValue.otherSlot, usbSerial: "SER-B", imsi: CDValue.imsi2, iccid: CDValue.iccid2)
        let ra = cdEvaluate(nil, a)
        #expect(ra.events.map(\.type) == [.enrolled])
        let recA = ra.record!

        let rb = cdEvaluate(nil, b, others: [recA])
        #expect(rb.events.map(\.type) == [.enrolled, .duplicateIMEI])
        #expect(rb.events.last?.otherSlots == [CDValue.usbSlot])
        #expect(rb.events.last?.severity == .critical)
        var recB = rb.record!

        // Re-reads and a daemon restart (same stored records): nothing more, from either slot.
        #expect(cdEvaluate(recA, a, others: [recB]).events.isEmpty)
        #expect(cdEvaluate(recB, b, others: [recA]).events.isEmpty)

        // B gets its own IMEI: only the change. Back to A's IMEI: the duplicate starts again.
        var bOwn = b
        bOwn.usbSerial = "SER-C"
        bOwn.imei = CDValue.imeiC
        let rb2 = cdEvaluate(recB, bOwn, others: [recA])
        #expect(rb2.events.map(\.type) == [.imeiChanged])
        recB = rb2.record!
        let rb3 = cdEvaluate(recB, b, others: [recA])
        #expect(rb3.events.map(\.type) == [.imeiChanged, .duplicateIMEI])
        #expect(rb3.events.map(\.sequence) == [4, 5])

        // A record of the slot itself among `others` is no duplicate.
        #expect(cdEvaluate(nil, a, others: [recA]).events.map(\.type) == [.enrolled])
    }

    @Test("invalid IMEIs are not checked for duplicates")
    func placeholdersAreNotDuplicates() {
        let others = [cdRecord(slot: CDValue.otherSlot, imei: CDValue.imeiPlaceholder)]
        let result = cdEvaluate(nil, CDRead(imei: CDValue.imeiPlaceholder), others: others)
        #expect(result.events.map(\.type) == [.identityInvalid])
    }

    // MARK: Module info

    @Test("module info of another module is taken as read, nothing kept from the old one")
    func moduleInfoAfterSwap() {
        let result = cdEvaluate(cdRecord(), CDRead(usbSerial: "SER-2", imei: CDValue.imeiB, revision: nil))
        #expect(result.record?.module == ModuleInfo(usbSerial: "SER-2", manufacturer: "Quectel", model: "EG25"))
        #expect(result.events.first?.module == result.record?.module)
    }

    // MARK: Wire form

    @Test("events encode with snake_case keys and the API's null rule (previous null, others absent), and decode back")
    func wireForm() throws {
        let result = cdEvaluate(nil, .noSIM(), others: [cdRecord(slot: CDValue.otherSlot)])
        let event = try #require(result.events.first)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(event)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == [
            "id", "type", "slot", "sequence", "occurred_at", "severity", "module", "identity", "previous",
            "other_slots", "problems",
        ])
        #expect(object["id"] as? String == event.id.uuidString.lowercased())  // one spelling everywhere
        #expect(object["state_lost"] == nil)
        #expect(object["type"] as? String == "duplicate_imei")
        #expect(object["previous"] is NSNull)
        #expect(object["usb_serial_changed"] == nil)
        let identity = try #require(object["identity"] as? [String: Any])
        #expect(identity["imsi"] == nil && identity["iccid"] == nil)
        #expect(identity["imei"] as? String == CDValue.imeiA)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        #expect(try decoder.decode(IdentityEvent.self, from: data) == event)

        let record = try #require(result.record)
        let recordData = try encoder.encode(record)
        let recordObject = try #require(try JSONSerialization.jsonObject(with: recordData) as? [String: Any])
        #expect(recordObject["last_invalid"] == nil)
        #expect(recordObject["sim_present"] as? Bool == false)
        #expect(try decoder.decode(SlotRecord.self, from: recordData) == record)
    }

    @Test("firmware_changed encodes previous_revision beside module.revision, and decodes back")
    func firmwareWireForm() throws {
        let result = cdEvaluate(cdRecord(), CDRead(revision: "EG25GGBR07A09M2G"))
        let event = try #require(result.events.first)
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(event)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["type"] as? String == "firmware_changed")
        #expect(object["previous_revision"] as? String == "EG25GGBR07A08M2G")
        #expect((object["module"] as? [String: Any])?["revision"] as? String == "EG25GGBR07A09M2G")
        #expect(object["previous"] is NSNull)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        #expect(try decoder.decode(IdentityEvent.self, from: data) == event)
        // Other events leave the key out.
        let other = try encoder.encode(try #require(cdEvaluate(nil, .full).events.first))
        let otherObject = try #require(try JSONSerialization.jsonObject(with: other) as? [String: Any])
        #expect(otherObject["previous_revision"] == nil)
    }

    @Test("printing a record or an event shows no identifier digits")
    func redacted() {
        let result = cdEvaluate(cdRecord(), CDRead(imsi: CDValue.imsi2, iccid: CDValue.iccid2))
        let texts = [
            String(describing: result), String(reflecting: result), "\(result.events)", "\(result.record!)",
        ]
        for text in texts {
            for digits in [CDValue.imeiA, CDValue.imsi1, CDValue.imsi2, CDValue.iccid1, CDValue.iccid2] {
                #expect(!text.contains(digits))
            }
        }
        #expect(result.events[0].identity.description.hasPrefix("IMEI(TAC \(CDValue.imeiA.prefix(8)), ref "))
        // The serial digits of the IMEI never show, only the TAC.
        for text in texts { #expect(!text.contains(String(CDValue.imeiA.dropFirst(8).prefix(6)))) }
    }

    @Test("event type names are the backend's")
    func typeNames() {
        #expect(IdentityEventType.allCases.map(\.rawValue) == [
            "enrolled", "sim_changed", "profile_switched", "sim_slot_switched", "profile_clone_suspected",
            "imei_changed", "sim_removed", "sim_inserted", "identity_invalid", "duplicate_imei", "firmware_changed",
        ])
    }

    @Test("the fixtures validate as intended")
    func fixtures() {
        for imei in [CDValue.imeiA, CDValue.imeiB, CDValue.imeiC] { #expect(IMEI.validate(imei).problems.isEmpty) }
        for iccid in [CDValue.iccid1, CDValue.iccid2, CDValue.iccid3] { #expect(ICCID.validate(iccid).problems.isEmpty) }
        for imsi in [CDValue.imsi1, CDValue.imsi2, CDValue.imsi3] { #expect(IMSI.validate(imsi).problems.isEmpty) }
        #expect(IMEI.validate(CDValue.imeiBadCheck).problems.map(\.code) == [.imeiChecksum])
        #expect(CDRead.full.observation.report.isValid)
    }
}
