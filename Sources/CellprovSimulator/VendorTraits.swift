import CellprovCore
// Vendor knowledge for the simulator, kept as data (one table entry per profile).
//
// Sources for the answer formats (public material; formats re-typed, nothing copied):
// - Quectel EC25: "EC25&EC21 AT Commands Manual" V1.3 (AT+QCCID -> "+QCCID: <iccid>", AT+CMEE default 1);
//   ATI / AT+CGMR shape from a RIL log on forums.quectel.com ("EC25. CME ERROR: 13 interpretation":
//   "Quectel" / "EC25" / "Revision: EC25ECGAR06A04M1G"); bare AT+GSN / AT+CIMI and
//   `+CRSM: 144,0,"98880..."` from forums.quectel.com "EG916Q-GL cannot read ICCID using AT+CRSM";
//   SIM URCs "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE" from the same EG21-G transcript and the brief.
// - Sierra Wireless EM7455: ModemManager src/plugins/sierra/mm-sim-sierra.c sends "AT!ICCID?" and strips
//   "!ICCID:" (value not swapped); ATI layout ("Manufacturer:", "Model:", "Revision:", "IMEI:", "IMEI SV:",
//   "FSN:", "+GCAP:") and "+CCID: <iccid>" from a Sierra WP7702 notes file on GitHub.
// - Telit LE910C1: AT#CCID -> "#CCID: <iccid>" (several public Telit drivers parse exactly "#CCID: ");
//   AT+CGSN bare digits (ME310G1/ME910G1 ATC reference, "AT+CGSN ... returns the product serial number");
//   SIM hot-swap URC "#QSS: <status>" (AT#QSS, 0 = not inserted, 1 = inserted). AT+CCID is not in Telit's
//   command set here: it answers ERROR (the "vendor without +CCID" case).
// - u-blox SARA-R410M-02B: "SARA-R4/N4 series AT Commands Manual" UBX-17003787 (AT+CCID -> "+CCID: <iccid>",
//   the only ICCID command; +UUSIMSTAT URC, 0 = SIM not present, 6 = (U)SIM operational).
// - SIMCom SIM7600E-H: "SIM7500_SIM7600 Series AT Command Manual" (AT+CICCID -> "+ICCID: <iccid>";
//   AT+CGMR -> "+CGMR: <revision>"; ATI layout "Manufacturer:/Model:/Revision:/IMEI:/+GCAP:"). AT+CCID is
//   answered in the +CICCID format (as the brief asks; not verified against a manual). SIM URCs
//   "+SIMCARD: NOT AVAILABLE" (removed) and "+CPIN: READY", "SMS DONE", "PB DONE" (inserted): from memory of
//   SIM7600 logs, not verified.
// - Huawei ME909s-120: ModemManager src/plugins/huawei/mm-sim-huawei.c sends "AT^ICCID?" and strips "^ICCID:";
//   Huawei's own AT table (balong source, "AT^ICCID?" example "^ICCID: 98680036904030021872") shows the value
//   nibble-swapped BCD. AT+CGSN bare digits (Huawei MG323 AT spec 6.5). SIM URC "^SIMST: <n>"
//   (1 = valid SIM, 255 = SIM not present). AT+CCID: ERROR.
// - Cinterion PLS8-E: AT^SCID -> "^SCID: <iccid>" (many public Cinterion drivers parse "^SCID: "); AT+CGMR
//   "REVISION xx.yyy" and ATI three lines "Cinterion" / model / "REVISION ..." (a public Cinterion ALS6A
//   simulator); AT+CGSN bare (Cinterion ENS22-E ATC 4.5); SIM hot-swap URC "^SCKS: 0|1" (ModemManager's
//   cinterion plugin listens to it).
//
// Every profile: AT+CGSN answers bare digits (3GPP TS 27.007 <sn> without prefix; every manual above shows it
// that way), AT+CGSN=1 answers `+CGSN: "<imei>"` (TS 27.007 10.1.x, <snt>=1), AT+CRSM=176,12258,0,0,10 answers
// `+CRSM: 144,0,"<EF_ICCID nibble-swapped, F-padded to 20>"` (TS 27.007 8.18, TS 31.102 EF_ICCID).
// Revisions and TACs are illustrative values of the right shape, not taken from real devices.
//
// Profiles added for the answer forms other modules use (answer shapes from public sources; values illustrative):
// - Neoway N58: tagged "+CGSN: <imei>" and "+CIMI: <imsi>" (a public N58 tracker driver parses both tags),
//   AT+CCID -> "+CCID: <iccid>" (same driver sends AT+CCID).
// - Nordic nRF9160: no AT+CCID; AT%XICCID -> "%XICCID: <iccid, F-padded to 20>" (nRF91 AT Commands Reference
//   example "8901234567012345678F"; Zephyr's nordic_nrf91_slm driver); bare AT+CGSN, "+CGSN: \"...\"" for =1;
//   AT+CGMI "Nordic Semiconductor ASA" (sdk-nrf at_parser test), AT+CGMR "mfw_nrf9160_<version>" (public mocks).
// - Manufacturer strings of Neoway, Sequans, ZTE and Fibocom are the companies' names, not verified answers.
// - Sequans Monarch GM02S: no AT+CCID; AT+SQNCCID -> `+SQNCCID: "<iccid>","<eid>"`, the EID empty on a plain UICC
//   (QuickSpot/walter-arduino PR #126: the second field is the eUICC's EID, 32 digits; Sequans module notes on
//   GitHub, DPTechnics Walter driver).
// - ZTE ME3630: AT+ZGETICCID -> "+ZGETICCID: <iccid>" (SparkFun MG2639 library, ME3630 drivers on GitHub);
//   AT+CCID not assumed (ERROR).
// - Fibocom L860-GL: AT+ICCID -> "+ICCID: <iccid>" (ModemManager's fibocom plugin era drivers, FM350 mocks);
//   AT+CCID not assumed (ERROR).
// - Sierra additionally answers the generic AT+ICCID as "ICCID: <iccid>" (networkmanager-list 2013-07, a Sierra
//   module's AT+ICCID).
// Every profile reads EF_IMSI through AT+CRSM=176,28423,0,0,9 (`+CRSM: 144,0,"<EF_IMSI>"`, TS 31.102 §4.2.2).

enum ICCIDFormat: Sendable {
    /// "<tag> <iccid>" (tag includes the colon), value served verbatim.
    case tagged(String)
    /// "<tag> <nibble-swapped BCD, F-padded to 20>".
    case taggedSwapped(String)
    /// A whole answer line: "%C" is the ICCID verbatim, "%F" the ICCID F-padded to 20 characters.
    case template(String)

    func answer(_ iccid: String) -> String {
        switch self {
        case .tagged(let tag): "\(tag) \(iccid)"
        case .taggedSwapped(let tag): "\(tag) \(BCD.nibbleSwapped(iccid))"
        case .template(let line):
            line.replacing("%C", with: iccid)
                .replacing("%F", with: iccid + String(repeating: "F", count: max(0, 20 - iccid.count)))
        }
    }
}

struct VendorTraits: Sendable {
    var manufacturer: String
    var model: String
    var revision: String
    /// 8-digit TAC of the default IMEI.
    var tac: String
    /// ATI answer lines; "%M", "%m", "%R", "%I" are replaced by manufacturer, model, revision, IMEI.
    var atiLines: [String]
    /// Prefix before the AT+CGMR answer ("" for bare).
    var revisionPrefix: String
    /// Vendor ICCID command (uppercased, as typed after "AT") and its answer format.
    var vendorICCIDCommand: String?
    var vendorICCIDFormat: ICCIDFormat?
    /// AT+CCID / AT+CCID? answer format; nil = unsupported (ERROR).
    var ccidFormat: ICCIDFormat?
    /// Whether AT+CCID is this vendor's own ICCID command (u-blox): then `vendorICCIDUnsupported` disables it too.
    var ccidIsVendorCommand: Bool
    var removedURCs: [String]
    /// URCs when a SIM becomes present; "%P" is replaced by the +CPIN state (READY / SIM PIN / SIM PUK).
    var insertedURCs: [String]
    /// Unsolicited noise for the `urcNoise` quirk.
    var noiseURCs: [String]
    var defaultCMEE: Int
    /// The AT+CGSN answer line; "%I" is the IMEI.
    var imeiAnswer = "%I"
    /// The AT+CIMI answer line; "%S" is the IMSI.
    var imsiAnswer = "%S"
    /// The generic AT+ICCID answer; nil = unsupported (ERROR).
    var plusICCIDFormat: ICCIDFormat? = nil

    static func traits(for profile: VendorProfile) -> VendorTraits {
        switch profile {
        case .quectel:
            return VendorTraits(
                manufacturer: "Quectel", model: "EC25", revision: "EC25EFAR06A06M4G", tac: "86107503",
                atiLines: ["%M", "%m", "Revision: %R"], revisionPrefix: "",
                vendorICCIDCommand: "+QCCID", vendorICCIDFormat: .tagged("+QCCID:"),
                ccidFormat: .tagged("+CCID:"), ccidIsVendorCommand: false,
                removedURCs: ["+CPIN: NOT READY"],
                insertedURCs: ["+CPIN: %P", "+QUSIM: 1", "+QIND: SMS DONE"],
                noiseURCs: ["+QIND: \"csq\",20,99", "+CREG: 1", "+QIND: PB DONE", "+CGREG: 1"],
                defaultCMEE: 1)
        case .sierra:
            return VendorTraits(
                manufacturer: "Sierra Wireless, Incorporated", model: "EM7455",
                revision: "SWI9X30C_02.24.05.06 r7040 CARMD-EV-FRMWR2 2017/05/19 06:23:09", tac: "35907206",
                atiLines: [
                    "Manufacturer: %M", "Model: %m", "Revision: %R", "IMEI: %I", "IMEI SV: 9",
                    "FSN: LQ650551070110", "+GCAP: +CGSM",
                ],
                revisionPrefix: "",
                vendorICCIDCommand: "!ICCID?", vendorICCIDFormat: .tagged("!ICCID:"),
                ccidFormat: .tagged("+CCID:"), ccidIsVendorCommand: false,
                removedURCs: ["+CPIN: NOT READY"], insertedURCs: ["+CPIN: %P"],
                noiseURCs: ["+CREG: 1", "+CGREG: 1", "+CEREG: 1"],
                defaultCMEE: 0, plusICCIDFormat: .tagged("ICCID:"))
        case .telit:
            return VendorTraits(
                manufacturer: "Telit", model: "LE910C1-EU", revision: "25.21.663", tac: "35146210",
                atiLines: ["%m"], revisionPrefix: "",
                vendorICCIDCommand: "#CCID", vendorICCIDFormat: .tagged("#CCID:"),
                ccidFormat: nil, ccidIsVendorCommand: false,
                removedURCs: ["#QSS: 0"], insertedURCs: ["#QSS: 1"],
                noiseURCs: ["+CREG: 1", "#QSS: 2", "+CEREG: 1"],
                defaultCMEE: 0)
        case .ublox:
            return VendorTraits(
                manufacturer: "u-blox", model: "SARA-R410M-02B", revision: "L0.0.00.00.05.08", tac: "35272109",
                atiLines: ["%m"], revisionPrefix: "",
                vendorICCIDCommand: nil, vendorICCIDFormat: nil,
                ccidFormat: .tagged("+CCID:"), ccidIsVendorCommand: true,
                removedURCs: ["+UUSIMSTAT: 0"], insertedURCs: ["+UUSIMSTAT: 6"],
                noiseURCs: ["+CEREG: 1", "+UUSIMSTAT: 8", "+CREG: 1"],
                defaultCMEE: 0)
        case .simcom:
            return VendorTraits(
                manufacturer: "SIMCOM INCORPORATED", model: "SIMCOM_SIM7600E-H", revision: "LE20B04SIM7600M22",
                tac: "86254404",
                atiLines: ["Manufacturer: %M", "Model: %m", "Revision: %R", "IMEI: %I", "+GCAP: +CGSM,+DS,+ES"],
                revisionPrefix: "+CGMR: ",
                vendorICCIDCommand: "+CICCID", vendorICCIDFormat: .tagged("+ICCID:"),
                ccidFormat: .tagged("+ICCID:"), ccidIsVendorCommand: false,
                removedURCs: ["+SIMCARD: NOT AVAILABLE"], insertedURCs: ["+CPIN: %P", "SMS DONE", "PB DONE"],
                noiseURCs: ["+CREG: 1", "+CGREG: 1", "PB DONE"],
                defaultCMEE: 0)
        case .huawei:
            return VendorTraits(
                manufacturer: "Huawei Technologies Co., Ltd.", model: "ME909s-120", revision: "11.617.01.00.00",
                tac: "86778902",
                atiLines: ["Manufacturer: %M", "Model: %m", "Revision: %R", "IMEI: %I", "+GCAP: +CGSM,+DS,+ES"],
                revisionPrefix: "",
                vendorICCIDCommand: "^ICCID?", vendorICCIDFormat: .taggedSwapped("^ICCID:"),
                ccidFormat: nil, ccidIsVendorCommand: false,
                removedURCs: ["^SIMST: 255"], insertedURCs: ["^SIMST: 1"],
                noiseURCs: ["^RSSI: 20", "^MODE: 17,17", "^HCSQ: \"LTE\",50,40,120,20"],
                defaultCMEE: 0)
        case .cinterion:
            return VendorTraits(
                manufacturer: "Cinterion", model: "PLS8-E", revision: "REVISION 03.017", tac: "35739808",
                atiLines: ["%M", "%m", "%R"], revisionPrefix: "",
                vendorICCIDCommand: "^SCID", vendorICCIDFormat: .tagged("^SCID:"),
                ccidFormat: .tagged("+CCID:"), ccidIsVendorCommand: false,
                removedURCs: ["^SCKS: 0"], insertedURCs: ["^SCKS: 1"],
                noiseURCs: ["+CIEV: signal,3", "^SYSSTART", "+CREG: 1"],
                defaultCMEE: 0)
        case .neoway:
            return VendorTraits(
                manufacturer: "Neoway", model: "N58", revision: "N58-R07-STD-BZ-002", tac: "86409203",
                atiLines: ["%M", "%m", "%R"], revisionPrefix: "",
                vendorICCIDCommand: nil, vendorICCIDFormat: nil,
                ccidFormat: .tagged("+CCID:"), ccidIsVendorCommand: true,
                removedURCs: ["+CPIN: NOT READY"], insertedURCs: ["+CPIN: %P"],
                noiseURCs: ["+CREG: 1", "+CGREG: 1"],
                defaultCMEE: 0, imeiAnswer: "+CGSN: %I", imsiAnswer: "+CIMI: %S")
        case .nordic:
            return VendorTraits(
                manufacturer: "Nordic Semiconductor ASA", model: "nRF9160-SICA", revision: "mfw_nrf9160_1.3.5",
                tac: "35265610",
                atiLines: ["%M", "%m", "%R"], revisionPrefix: "",
                vendorICCIDCommand: "%XICCID", vendorICCIDFormat: .template("%XICCID: %F"),
                ccidFormat: nil, ccidIsVendorCommand: false,
                removedURCs: ["%XSIM: 0"], insertedURCs: ["%XSIM: 1"],
                noiseURCs: ["+CEREG: 2", "+CSCON: 1", "+CEREG: 5"],
                defaultCMEE: 0)
        case .sequans:
            return VendorTraits(
                manufacturer: "SEQUANS Communications", model: "GM02S", revision: "UE8.0.5.0", tac: "35181711",
                atiLines: ["%M", "%m", "%R"], revisionPrefix: "",
                vendorICCIDCommand: "+SQNCCID", vendorICCIDFormat: .template("+SQNCCID: \"%C\",\"%E\""),
                ccidFormat: nil, ccidIsVendorCommand: false,
                removedURCs: ["+CPIN: NOT READY"], insertedURCs: ["+CPIN: %P"],
                noiseURCs: ["+CEREG: 2", "+CEREG: 5"],
                defaultCMEE: 0)
        case .zte:
            return VendorTraits(
                manufacturer: "ZTE CORPORATION", model: "ME3630-E", revision: "ME3630E1CV1.0B05", tac: "86786802",
                atiLines: ["Manufacturer: %M", "Model: %m", "Revision: %R", "IMEI: %I"], revisionPrefix: "",
                vendorICCIDCommand: "+ZGETICCID", vendorICCIDFormat: .tagged("+ZGETICCID:"),
                ccidFormat: nil, ccidIsVendorCommand: false,
                removedURCs: ["+CPIN: NOT READY"], insertedURCs: ["+CPIN: %P"],
                noiseURCs: ["+CREG: 1", "+CEREG: 1"],
                defaultCMEE: 0)
        case .fibocom:
            return VendorTraits(
                manufacturer: "Fibocom", model: "L860-GL", revision: "18500.5001.00.05.27.12", tac: "86520402",
                atiLines: ["%M", "%m", "%R"], revisionPrefix: "",
                vendorICCIDCommand: "+ICCID", vendorICCIDFormat: .tagged("+ICCID:"),
                ccidFormat: nil, ccidIsVendorCommand: false,
                removedURCs: ["+CPIN: NOT READY"], insertedURCs: ["+CPIN: %P"],
                noiseURCs: ["+CREG: 1", "+CEREG: 1"],
                defaultCMEE: 0)
        }
    }
}

extension Luhn {
    /// `body` followed by its Luhn check digit (test identities).
    static func completed(_ body: String) -> String { body + String(checkDigit(for: body)!) }
}

enum BCD {
    /// EF_IMSI contents (3GPP TS 31.102 §4.2.2): length byte, type 001 with the parity bit in the low nibble of
    /// the next byte below the first digit, then the other digits two per byte, low nibble first, F-padded to
    /// 9 bytes.
    static func efIMSI(_ imsi: String) -> String {
        let digits = Array(imsi)
        let length = (digits.count + 2) / 2
        let parity = digits.count % 2 == 1 ? "9" : "1"
        var nibbles = [Character](parity) + digits
        while nibbles.count < 16 { nibbles.append("F") }
        var out = (length < 16 ? "0" : "") + String(length, radix: 16, uppercase: true)
        var i = 0
        while i + 1 < nibbles.count {
            out.append(nibbles[i + 1])
            out.append(nibbles[i])
            i += 2
        }
        return out
    }

    /// EF_ICCID layout: pad with F to 20 characters (or to even length if longer), then swap each pair.
    static func nibbleSwapped(_ value: String) -> String {
        var chars = Array(value)
        while chars.count < 20 || chars.count % 2 != 0 { chars.append("F") }
        var out = ""
        out.reserveCapacity(chars.count)
        var i = 0
        while i + 1 < chars.count {
            out.append(chars[i + 1])
            out.append(chars[i])
            i += 2
        }
        return out
    }
}
