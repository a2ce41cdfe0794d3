/// The vendors' SIM hot-swap reports as their modules behave (CellprovCore's `SIMReportSetup` has the sources):
/// off until the host sends the enable command, so that a swap on a module nobody switched them on for goes
/// unreported, as on the real modules. Once on, a removal sends the report URC and the vendor's SIM URCs, an
/// insertion likewise. The query answers the current setting; where the vendor has a card-holder detection
/// setting it is answered too (`simDetectionOff`: detection off, and then no swap is reported at all).
struct SimulatedSIMReports: Sendable {
    /// The command's name, e.g. `+QSIMSTAT`: `?` reads, `=0`/`=1` sets.
    var command: String
    /// The read's answer; `%E` is the setting (0/1), `%S` the SIM (0 removed, 1 inserted).
    var answer: String
    /// The report URC; `%S` as above.
    var urc: String
    /// The detection setting's name (`+QSIMDET`) and answer (`%D` 0/1), where the vendor has one.
    var detectionCommand: String? = nil
    var detectionAnswer: String? = nil

    static func forProfile(_ profile: VendorProfile) -> SimulatedSIMReports? {
        switch profile {
        // Quectel AT Commands Manual §4.13/§4.14.
        case .quectel:
            SimulatedSIMReports(
                command: "+QSIMSTAT", answer: "+QSIMSTAT: %E,%S", urc: "+QSIMSTAT: 1,%S",
                detectionCommand: "+QSIMDET", detectionAnswer: "+QSIMDET: %D,0")
        // ModemManager's Telit plugin and tests: `#QSS: <mode>,<status>`, URC `#QSS: <status>`.
        case .telit: SimulatedSIMReports(command: "#QSS", answer: "#QSS: %E,%S", urc: "#QSS: %S")
        // MC75 AT manual §13.4: `^SCKS: <mode>, <SimStatus>`; ModemManager's URC regex `\^SCKS:\s*([0-3])`.
        case .cinterion: SimulatedSIMReports(command: "^SCKS", answer: "^SCKS: %E, %S", urc: "^SCKS: %S")
        // Drivers that parse real SIMCom output (+CSMINS: <n>,<inserted>); SIMCom T900 user guide (+CSDT: <mode>).
        case .simcom:
            SimulatedSIMReports(
                command: "+CSMINS", answer: "+CSMINS: %E,%S", urc: "+CSMINS: 1,%S", detectionCommand: "+CSDT",
                detectionAnswer: "+CSDT: %D")
        default: nil
        }
    }

    /// The answer to `name` + `suffix` when it is this vendor's command; nil otherwise. `on` is set by `=1`/`=0`.
    func handle(name: String, suffix: String, on: inout Bool, simPresent: Bool, detectionOff: Bool) -> Outcome? {
        let sim = simPresent ? "1" : "0"
        if name == command {
            switch suffix {
            case "?":
                return .info([answer.replacing("%E", with: on ? "1" : "0").replacing("%S", with: sim)])
            case "=1", "=0":
                on = suffix == "=1"
                return .ok
            case "=?":
                return .info(["\(command): (0,1)"])
            default:
                return .error("ERROR")
            }
        }
        if let detectionCommand, let detectionAnswer, name == detectionCommand, suffix == "?" {
            return .info([detectionAnswer.replacing("%D", with: detectionOff ? "0" : "1")])
        }
        return nil
    }
}
