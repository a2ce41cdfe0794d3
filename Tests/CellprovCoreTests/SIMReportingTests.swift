import CellprovCore
import Testing

/// Issue 15 part 0: the vendors' SIM hot-swap report settings, read from their answers (sources in
/// SIMReportSetup's doc comment).
@Suite("SIM hot-swap reports")
struct SIMReportingTests {
    @Test(arguments: [
        // Quectel AT Commands Manual §4.14 example, and the URC form with a blank before the colon.
        ("+QSIMSTAT: 0,1", "+QSIMSTAT:", 0 as Int?),
        ("+QSIMSTAT: 1,1", "+QSIMSTAT:", 1),
        ("+QSIMSTAT : 1,0", "+QSIMSTAT:", 1),
        // §4.13, and the per-slot form of dual-slot firmware (the active slot's first).
        ("+QSIMDET: 0,1", "+QSIMDET:", 0),
        ("+QSIMDET: (1,1),(0,0)", "+QSIMDET:", 1),
        // ModemManager's Telit tests (mm_telit_parse_qss_query): with and without blanks.
        ("#QSS: 0,3", "#QSS:", 0), ("#QSS:1,3", "#QSS:", 1), ("#QSS: 0, 3", "#QSS:", 0),
        // MC75 AT manual §13.4.
        ("^SCKS: 1, 1", "^SCKS:", 1),
        // SIMCom T900 user guide (AT+CSDT?), and drivers parsing +CSMINS.
        ("+CSDT: 0", "+CSDT:", 0), ("+CSMINS: 0,1", "+CSMINS:", 0),
        // Not that answer, or no number.
        ("+QSIMSTATX: 1,1", "+QSIMSTAT:", nil), ("#QSS: ", "#QSS:", nil), ("+CPIN: READY", "#QSS:", nil),
        ("#QSS: 99999,1", "#QSS:", nil),
    ])
    func firstField(_ line: String, _ tag: String, _ expected: Int?) {
        #expect(SIMReportSetup.firstField(of: line, tag: tag) == expected)
    }

    @Test func everyVendorWithASetupHasItsURCsRecognised() {
        for (vendor, setup) in SIMReportSetup.byVendor {
            let dialect = VendorCatalog.dialects.first { $0.name == vendor }
            #expect(dialect != nil, "\(vendor) is a known dialect")
            // The URC the enable command switches on carries the query's tag.
            #expect(VendorCatalog.isSIMEvent(setup.tag + " 1,0") || VendorCatalog.isSIMEvent(setup.tag + " 0"))
            #expect(ATLineClassifier.isURC(setup.tag + " 1,0") || ATLineClassifier.isURC(setup.tag + " 0"))
            #expect(setup.enable.hasPrefix("AT") && setup.query.hasSuffix("?"))
        }
        // Fibocom reports without being asked (ModemManager's fibocom plugin).
        for urc in ["+SIM: Inserted", "+SIM: Removed", "+SIM DROP"] {
            #expect(VendorCatalog.isSIMEvent(urc) && ATLineClassifier.isURC(urc))
        }
    }
}
