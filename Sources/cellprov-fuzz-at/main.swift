import CellprovCore
import CellprovFuzzSupport

// Fuzz target: ATFramer and ATLineClassifier on an arbitrary byte stream, fed in an arbitrary chunking.
//
// Input: [line-limit selector] [pending-command selector] [k] [k chunk sizes] [the modem's bytes...]
// Properties: memory stays bounded (never more than the line limit buffered); every line is printable ASCII,
// trimmed, non-empty and within the limit; the chunking does not change the outputs; the classifier is
// consistent with the final-result parser and never makes an echo or an answer line out of an idle port's input.

let lineLimits = [1, 2, 3, 16, 64, 1024]
let commands: [(String?, String?)] = [
    (nil, nil), ("AT+CGSN", "+CGSN:"), ("AT+CPIN?", "+CPIN:"), ("AT+CCID", "+CCID:"), ("ATE0", nil),
    ("AT+CIMI", "+CIMI:"), ("AT+QCCID", "+QCCID:"), ("AT+CRSM=176,12258,0,0,10", "+CRSM:"), ("AT+CGMI", nil),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let limit = lineLimits[Int(input.byte()) % lineLimits.count]
    let (command, prefix) = commands[Int(input.byte()) % commands.count]
    let chunkSizes = input.bytes(Int(input.byte() % 16)).map { max(1, Int($0)) }
    let stream = input.rest()

    // The reference: everything at once.
    var whole = ATFramer(maxLineLength: limit)
    let expected = whole.feed(stream)
    fuzzRequire(whole.bufferedByteCount <= limit, "framer buffers more than its limit")

    // The same bytes in the fuzzer's chunking (cycled), with the invariants checked after every chunk.
    var framer = ATFramer(maxLineLength: limit)
    var outputs: [ATFramer.Output] = []
    var offset = 0
    var turn = 0
    while offset < stream.count {
        let n = chunkSizes.isEmpty ? stream.count : chunkSizes[turn % chunkSizes.count]
        let end = min(stream.count, offset + n)
        outputs += framer.feed(stream[offset..<end])
        fuzzRequire(framer.bufferedByteCount <= limit, "framer buffers more than its limit")
        offset = end
        turn += 1
    }
    fuzzRequire(outputs == expected, "chunking changed the framer's outputs")

    let classifier = ATLineClassifier()
    var accounted = 0
    for output in outputs {
        switch output {
        case .line(let line):
            fuzzRequire(!line.isEmpty, "empty line")
            fuzzRequire(line.utf8.count <= limit, "line over the limit")
            fuzzRequire(line.utf8.allSatisfy { (0x20...0x7E).contains($0) || $0 == 0x09 }, "unprintable byte in a line")
            fuzzRequire(line.first != " " && line.first != "\t" && line.last != " " && line.last != "\t", "untrimmed")
            accounted += line.utf8.count
            let kind = classifier.classify(line, pendingCommand: command, expectedPrefix: prefix)
            switch kind {
            case .final(let result):
                fuzzRequire(ATFinalResult(line: line) == result, "classifier and final-result parser disagree")
            case .echo:
                fuzzRequire(command != nil && classifier.isEcho(line, of: command!), "echo without its command")
            case .foreignEcho:
                fuzzRequire(ATLineClassifier.isCommandLine(line), "a foreign echo that is no command line")
            case .information:
                fuzzRequire(command != nil, "an answer line while no command is pending")
                fuzzRequire(!ATLineClassifier.isCommandLine(line), "a command line taken as an answer")
            case .implausible:
                fuzzRequire(command != nil, "an implausible answer line while no command is pending")
            case .unsolicited:
                break
            }
            if command == nil, case .final = kind {
                fuzzRequire(!line.allSatisfy(\.isNumber), "a bare digit taken as a final result on an idle port")
            }
            _ = ATLineClassifier.isURC(line)
        case .garbage(let dropped):
            fuzzRequire(dropped >= 1, "garbage of no bytes")
            accounted += dropped
        case .prompt:
            accounted += 2
        }
    }
    fuzzRequire(accounted <= stream.count, "the framer reports more bytes than it was given")
    return 0
}

FuzzDriver.main(fuzzOne)
