import CellprovCore
import CellprovFuzzSupport
import CellprovReporter

// Fuzz target: the scrubber of the backend's answers (Reporter.outcome: the body of an HTTP answer becomes the
// reason stored and logged for a rejected event) and Redaction.scrub under it.
//
// Input: [status: 2 bytes] [body...]. Properties: a reason holds no run of 6 digits (an identifier echoed by the
// backend never reaches the store or the logs) and stays short; scrub's own output holds no such run (its
// documented guarantee). Scrub is deliberately not required to be idempotent: redacting a digit run inside a
// longer word can leave a hex word that a second pass would also redact.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let status = 100 + input.uint16() % 500
    let body = input.rest()

    switch Reporter.outcome(status: status, body: body) {
    case .delivered(let s):
        fuzzRequire(s == status, "delivered with another status")
    case .rejected(let reason), .refused(let reason), .retry(let reason):
        fuzzRequire(!containsDigitRun(reason), "an identifier-like digit run in a delivery reason")
        fuzzRequire(reason.count <= 220, "a reason of \(reason.count) characters")
    }

    let text = String(decoding: body, as: UTF8.self)
    let scrubbed = Redaction.scrub(text)
    fuzzRequire(!containsDigitRun(scrubbed), "scrub left a run of 6 digits")
    fuzzRequire(!containsDigitRun(Redaction.scrub(scrubbed)), "scrub of scrubbed text left a run of 6 digits")
    return 0
}

FuzzDriver.main(fuzzOne)
