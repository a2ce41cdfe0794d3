/// What cellprov knows about each module vendor's AT dialect, as data.
///
/// The ICCID commands are those of the vendors' AT manuals (Quectel EC2x AT Commands Manual: AT+QCCID; Huawei
/// ME909s AT Command Interface Specification: AT^ICCID?; Telit AT Commands Reference Guide: AT#CCID; SIMCom
/// SIM7500/7600 AT Command Manual: AT+CICCID; Cinterion/Thales PLS8 AT Command Set: AT^SCID; Sierra Wireless
/// MC/EM74xx AT Command Reference: AT!ICCID?), the same ones ModemManager's vendor plugins use. Whether an answer is
/// nibble-swapped (Huawei's ^ICCID is on some firmware, not on other) is decided from the value itself by
/// ``ICCID/validate(_:)``, not per vendor.
public struct VendorDialect: Sendable, Equatable {
    public var name: String
    /// Lower-cased substrings of the `AT+CGMI` answer that identify the vendor.
    public var manufacturerMatches: [String]
    /// The vendor's own ICCID command, tried after AT+CCID.
    public var iccidCommand: String?
    /// URCs that mean the SIM changed state (used by the daemon to re-read identities).
    public var simURCPrefixes: [String]

    public init(
        name: String, manufacturerMatches: [String], iccidCommand: String?, simURCPrefixes: [String] = []
    ) {
        self.name = name
        self.manufacturerMatches = manufacturerMatches
        self.iccidCommand = iccidCommand
        self.simURCPrefixes = simURCPrefixes
    }
}

public enum VendorCatalog {
    public static let dialects: [VendorDialect] = [
        VendorDialect(
            name: "quectel", manufacturerMatches: ["quectel"], iccidCommand: "AT+QCCID",
            simURCPrefixes: ["+QUSIM:", "+QSIMSTAT:", "+QIND: SMS DONE"]),
        VendorDialect(
            name: "huawei", manufacturerMatches: ["huawei"], iccidCommand: "AT^ICCID?",
            simURCPrefixes: ["^SIMST:"]),
        VendorDialect(name: "telit", manufacturerMatches: ["telit"], iccidCommand: "AT#CCID", simURCPrefixes: ["#QSS:"]),
        VendorDialect(
            name: "simcom", manufacturerMatches: ["simcom"], iccidCommand: "AT+CICCID",
            simURCPrefixes: ["+SIMCARD:", "+CSMINS:"]),
        VendorDialect(
            name: "cinterion", manufacturerMatches: ["cinterion", "thales", "gemalto", "siemens"],
            iccidCommand: "AT^SCID", simURCPrefixes: ["+CIEV: simstatus", "^SIMSTATUS", "^SCKS:"]),
        VendorDialect(name: "sierra", manufacturerMatches: ["sierra"], iccidCommand: "AT!ICCID?"),
        VendorDialect(
            name: "ublox", manufacturerMatches: ["u-blox", "ublox"], iccidCommand: nil, simURCPrefixes: ["+UUSIMSTAT:"]),
        // Fibocom reports SIM hot-swap without being asked (ModemManager's fibocom plugin,
        // mm_shared_fibocom_setup_sim_hot_swap()).
        VendorDialect(
            name: "fibocom", manufacturerMatches: ["fibocom"], iccidCommand: "AT+ICCID",
            simURCPrefixes: ["+SIM: Inserted", "+SIM: Removed", "+SIM DROP"]),
        VendorDialect(name: "zte", manufacturerMatches: ["zte"], iccidCommand: "AT+ZGETICCID"),
        // nRF91 AT Commands Reference (AT%XICCID -> "%XICCID: <iccid, F-padded>"); Zephyr's nordic_nrf91_slm driver
        // matches "%XICCID: ". The modem has no AT+CCID. SIM URC "%XSIM: <state>".
        VendorDialect(
            name: "nordic", manufacturerMatches: ["nordic"], iccidCommand: "AT%XICCID", simURCPrefixes: ["%XSIM:"]),
        // Sequans Monarch (GM01Q/GM02S): AT+SQNCCID -> `+SQNCCID: "<iccid>",""` (DPTechnics Walter driver, Sequans
        // module notes on GitHub).
        VendorDialect(name: "sequans", manufacturerMatches: ["sequans"], iccidCommand: "AT+SQNCCID"),
    ]

    /// The dialect whose manufacturer string matches the `AT+CGMI` answer, if any.
    public static func dialect(forManufacturer manufacturer: String?) -> VendorDialect? {
        guard let m = manufacturer?.lowercased() else { return nil }
        return dialects.first { d in d.manufacturerMatches.contains { m.contains($0) } }
    }

    /// URCs every vendor may send when the SIM changes state (3GPP TS 27.007 +CPIN and common vendor forms).
    public static let genericSIMURCPrefixes = ["+CPIN:", "+QUSIM:", "^SIMST:", "+SIMCARD:", "#QSS:", "+UUSIMSTAT:"]

    /// True if a URC suggests the SIM (and so the IMSI/ICCID) may have changed.
    public static func isSIMEvent(_ urc: String) -> Bool {
        genericSIMURCPrefixes.contains { urc.hasPrefix($0) }
            || dialects.contains { d in d.simURCPrefixes.contains { urc.hasPrefix($0) } }
    }
}

/// The generic read of EF_ICCID (file id 0x2FE2 = 12258, 10 bytes) through restricted SIM access, 3GPP TS 27.007
/// §8.18 and TS 31.102 §4.1.1 / TS 51.011 §10.1.1; answered as nibble-swapped BCD.
public let crsmReadICCIDCommand = "AT+CRSM=176,12258,0,0,10"

/// The generic read of EF_IMSI (file id 0x6F07 = 28423, 9 bytes: a length byte and 8 bytes of swapped BCD) through
/// restricted SIM access, 3GPP TS 27.007 §8.18 and TS 31.102 §4.2.2; the IMSI fallback when `AT+CIMI` fails
/// (ROOter's modem scripts, for one, do exactly this). Needs the PIN, as AT+CIMI does.
public let crsmReadIMSICommand = "AT+CRSM=176,28423,0,0,9"

/// The last generic ICCID command, after AT+CCID, the vendor's and the EF_ICCID read: `AT+ICCID`, answered
/// `+ICCID: <iccid>` or `ICCID: <iccid>` by Fibocom, some Sierra and MediaTek-based modules.
public let plusICCIDCommand = "AT+ICCID"
