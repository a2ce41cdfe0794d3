import CellprovCore
import CellprovFuzzSupport

// Fuzz target: every answer and identity parser on arbitrary answer lines.
//
// Input: the information lines of an answer, separated by LF (what the framer hands on never holds CR or LF, but
// the parsers must not rely on it). Every extractor runs (IMEI, IMSI, ICCID, +CRSM, +CPIN, text), each extracted
// value and each whole line goes through the identity validators, and every line through the final-result and
// +CME ERROR parsers and the vendor catalog.
// Properties: a validated identifier is all digits of a legal length; no description, debug description, mirror
// or problem message shows its digits (the privacy rule); problem messages and +CME ERROR descriptions hold no
// run of 6 digits; the MNC length is 2 or 3.

func checkRedacted(_ digits: String, _ texts: [String], _ what: String) {
    for text in texts {
        fuzzRequire(!text.contains(digits), "\(what) shows its digits: \(text.count) characters")
    }
}

func checkProblems(_ problems: [Problem]) {
    for p in problems {
        fuzzRequire(!containsDigitRun(p.message), "problem message with a digit run (\(p.code))")
    }
}

func validateAll(_ raw: String) {
    let imei = IMEI.validate(raw)
    checkProblems(imei.problems)
    if let v = imei.value {
        let d = v.unredacted
        fuzzRequire(d.utf8.count == 15 && d.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }, "IMEI not 15 digits")
        let mirrored = String(describing: v.customMirror.children.first?.value)
        checkRedacted(d, [v.description, v.debugDescription, mirrored], "IMEI")
    }
    let imsi = IMSI.validate(raw)
    checkProblems(imsi.problems)
    if let v = imsi.value {
        let d = v.unredacted
        fuzzRequire((6...15).contains(d.utf8.count) && d.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }, "IMSI digits")
        checkRedacted(d, [v.description, v.debugDescription], "IMSI")
        let mnc = MNCTable.mncLength(forIMSI: d)
        fuzzRequire(mnc == 2 || mnc == 3, "MNC length \(mnc)")
    }
    let iccid = ICCID.validate(raw)
    checkProblems(iccid.problems)
    if let v = iccid.value {
        let d = v.unredacted
        fuzzRequire(
            (18...20).contains(d.utf8.count)
                && d.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x46) },
            "ICCID characters")
        checkRedacted(d, [v.description, v.debugDescription], "ICCID")
    }
    if !raw.isEmpty, raw.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
        if let check = Luhn.checkDigit(for: raw) { fuzzRequire((0...9).contains(check), "Luhn digit \(check)") }
        _ = Luhn.isValid(raw)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let text = String(decoding: input.rest(), as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)

    let extracted = [
        ATResponse.imei(in: lines), ATResponse.imsi(in: lines), ATResponse.iccid(in: lines),
        ATResponse.crsmData(in: lines), ATResponse.pinState(in: lines),
        ATResponse.text(in: lines, tags: ["+CGMI:", "+GMI:", "Manufacturer:"]),
    ]
    for value in extracted.compactMap({ $0 }) { validateAll(value) }
    if let manufacturer = extracted[5] { _ = VendorCatalog.dialect(forManufacturer: manufacturer) }

    for line in lines.prefix(64) {
        validateAll(line)
        if let final = ATFinalResult(line: line), case .cmeError(let e) = final {
            _ = e.simCondition
            fuzzRequire(!containsDigitRun(e.description), "+CME ERROR description with a digit run")
        }
        _ = VendorCatalog.isSIMEvent(line)
        _ = ATLineClassifier.isURC(line)
    }
    return 0
}

FuzzDriver.main(fuzzOne)
