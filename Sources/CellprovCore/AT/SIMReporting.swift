/// How a vendor's module is asked to report SIM insertion and removal as they happen (hot-swap URCs), and how it
/// tells whether its card holder's detection is on. Real modules send these URCs only when asked; without them a
/// swap shows at the next re-probe. Only reporting settings are changed here, never hardware detection settings
/// that depend on the board (Quectel `AT+QSIMDET` needs the holder's detect level and a reboot; Sierra HL
/// `AT+KSIMDET` a GPIO): those are only read.
///
/// Sources, per vendor (docs/udev-and-coexistence.md, "SIM swaps as they happen"):
/// - Quectel: "Module Series AT Commands Manual" §4.13 AT+QSIMDET (`+QSIMDET: <enable>,<insert_level>`, 0 =
///   disabled) and §4.14 AT+QSIMSTAT (`+QSIMSTAT: <enable>,<inserted_status>`; "writes data to NVM", so it is
///   set only when the read says it is off).
/// - Telit: ModemManager src/plugins/telit/mm-broadband-modem-telit.c `qss_setup_step()` (`#QSS?`, then
///   `#QSS=1`), mm-modem-helpers-telit.c `mm_telit_parse_qss_query()` (`#QSS: <mode>,<status>`); ME310G1 AT
///   manual (`<mode>` 0 = URCs off).
/// - Thales/Cinterion: ModemManager src/plugins/cinterion/mm-broadband-modem-cinterion.c
///   `modem_setup_sim_hot_swap()` (`^SCKS=1`); MC75 AT manual §13.4 (`AT^SCKS?` -> `^SCKS: <mode>, <SimStatus>`;
///   the mode is lost at AT+CFUN, so it is set again every port session).
/// - SIMCom: `AT+CSMINS=1` / `+CSMINS: <n>,<inserted>` from drivers that parse real output (a SIM5300 driver,
///   an Asterisk channel driver; no SIMCom manual found); `AT+CSDT?` -> `+CSDT: <mode>`, 0 = detection off
///   (SIMCom T900 user guide).
/// - Fibocom (`+SIM: Inserted`, `+SIM: Removed`, `+SIM DROP`: ModemManager src/plugins/fibocom/mm-shared-fibocom.c
///   `mm_shared_fibocom_setup_sim_hot_swap()`) and Huawei (`^SIMST:`) report without being asked: nothing to switch on.
/// - u-blox (`+CIEV: <simind>` after `AT+CMER=1,0,0,1,0` and `AT+UDCONF=50,1`, ModemManager's ublox plugin) is
///   left alone: `+CMER` switches every indicator's URCs at once, and `UDCONF=50` is a stored board setting.
public struct SIMReportSetup: Sendable, Equatable {
    /// The read of the reporting setting, e.g. `AT+QSIMSTAT?`.
    public var query: String
    /// The answer's tag, e.g. `+QSIMSTAT:`; its first field is the reporting mode (0 = off).
    public var tag: String
    /// Sent when the read says reporting is off (or cannot say), e.g. `AT+QSIMSTAT=1`.
    public var enable: String
    /// The read of the card holder's detection setting, where the module has one: `AT+QSIMDET?`.
    public var detectionQuery: String?
    /// Its answer's tag (`+QSIMDET:`); first field 0 = detection off.
    public var detectionTag: String?

    public init(query: String, tag: String, enable: String, detectionQuery: String? = nil, detectionTag: String? = nil) {
        self.query = query
        self.tag = tag
        self.enable = enable
        self.detectionQuery = detectionQuery
        self.detectionTag = detectionTag
    }

    /// The setups by vendor dialect name (``VendorDialect/name``).
    public static let byVendor: [String: SIMReportSetup] = [
        "quectel": SIMReportSetup(
            query: "AT+QSIMSTAT?", tag: "+QSIMSTAT:", enable: "AT+QSIMSTAT=1", detectionQuery: "AT+QSIMDET?",
            detectionTag: "+QSIMDET:"),
        "telit": SIMReportSetup(query: "AT#QSS?", tag: "#QSS:", enable: "AT#QSS=1"),
        "cinterion": SIMReportSetup(query: "AT^SCKS?", tag: "^SCKS:", enable: "AT^SCKS=1"),
        "simcom": SIMReportSetup(
            query: "AT+CSMINS?", tag: "+CSMINS:", enable: "AT+CSMINS=1", detectionQuery: "AT+CSDT?",
            detectionTag: "+CSDT:"),
    ]

    /// The first numeric field of a tagged answer (`+QSIMSTAT: 1,1` -> 1; `+QSIMDET: (1,1),(0,0)`, the per-slot form
    /// of dual-slot firmware, -> 1, the active slot's; a blank before the colon is tolerated): nil when the line is
    /// not that answer or the field is not a number.
    public static func firstField(of line: String, tag: String) -> Int? {
        var text = Substring(line.trimmingWhitespace(newlines: true))
        let bare = tag.hasSuffix(":") ? String(tag.dropLast()) : tag
        guard text.hasPrefix(bare) else { return nil }
        text = text.dropFirst(bare.count)
        text = text.drop { $0 == " " }
        guard text.first == ":" else { return nil }
        text = text.dropFirst().drop { $0 == " " || $0 == "(" }
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count <= 3 else { return nil }
        return Int(digits)
    }
}

/// What the port session learned about SIM hot-swap reports.
public enum SIMReportingState: String, Sendable, Equatable, Codable {
    /// The module reports insertion and removal (switched on now, or already on).
    case on
    /// Reports are on, but the module says its card holder's detection is off: swaps show at the next re-probe.
    case detectionOff = "detection_off"
    /// The module refused the commands: swaps show at the next re-probe.
    case refused
    /// The vendor reports without being asked, or has no known command: nothing was sent.
    case notApplicable = "not_applicable"
}
