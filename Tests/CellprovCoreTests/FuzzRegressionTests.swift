import CellprovCore
import Testing

// Inputs found by the fuzz targets (Sources/cellprov-fuzz-*, scripts/fuzz.sh), kept as regression tests: each
// failed before its fix. docs/robustness.md lists them.

@Suite("Fuzz findings: AT and identity parsers")
struct FuzzRegressionTests {
    /// True if `text` holds a run of 6 or more ASCII digits (what the redaction rules forbid in log text).
    static func hasDigitRun(_ text: String) -> Bool {
        var run = 0
        for b in text.utf8 {
            run = (b >= 0x30 && b <= 0x39) ? run + 1 : 0
            if run >= 6 { return true }
        }
        return false
    }

    /// cellprov-fuzz-parsers: "+CME ERROR: SIM 320415" printed its digits through CMEError.description, whose
    /// contract is redacted-safe text; a numeric "code" of any length (an IMSI) did too.
    @Test(
        "a +CME ERROR description shows no identifier digits",
        arguments: [
            "+CME ERROR: SIM 320415", "+CME ERROR: 262011234567890", "+CME ERROR: \"89490200001234567899\"",
            "+CME ERROR: 99999999999999999999999", "+CME ERROR: imei 35693803 5643809 1",
        ])
    func cmeDescriptionRedacted(_ line: String) throws {
        let result = try #require(ATFinalResult(line: line))
        guard case .cmeError(let error) = result else {
            Issue.record("not a +CME ERROR")
            return
        }
        #expect(!Self.hasDigitRun(error.description), "\(error.description)")
    }

    @Test("short +CME ERROR codes and texts are still shown")
    func cmeDescriptionKept() throws {
        guard case .cmeError(let numeric)? = ATFinalResult(line: "+CME ERROR: 10"),
            case .cmeError(let verbose)? = ATFinalResult(line: "+CME ERROR: SIM busy")
        else {
            Issue.record("not parsed")
            return
        }
        #expect(numeric.description == "+CME ERROR 10")
        #expect(verbose.description == "+CME ERROR \"SIM busy\"")
    }
}

@Suite("Soak findings")
struct SoakRegressionTests {
    /// make soak: the Cinterion slots (2 of 16) never noticed a SIM swap until the re-probe timer, because their
    /// card-holder URC (^SCKS: 0 on removal, ^SCKS: 1 on insertion) was not a SIM event for the daemon.
    @Test("Cinterion's ^SCKS card-holder URCs are SIM events", arguments: ["^SCKS: 0", "^SCKS: 1", "^SCKS: 2"])
    func cinterionCardHolderURC(_ urc: String) {
        #expect(VendorCatalog.isSIMEvent(urc))
        #expect(ATLineClassifier.isURC(urc))
    }
}
