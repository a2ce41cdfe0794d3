#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CellprovCore
import Foundation
import Testing

@testable import CellprovSimulator

/// A client on the PTY slave, opened as a program would open a serial port (O_RDWR|O_NOCTTY, raw termios).
private final class PTYClient {
    let fd: Int32

    init(_ path: String) throws {
        fd = open(path, O_RDWR | O_NOCTTY)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var tio = termios()
        tcgetattr(fd, &tio)
        cfmakeraw(&tio)
        tcsetattr(fd, TCSANOW, &tio)
    }

    deinit { close(fd) }

    func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
    }

    /// Reads until `done` says the bytes are complete, the deadline passes, or the line hangs up.
    func read(timeout: Double = 2, until done: ([UInt8]) -> Bool) -> (bytes: [UInt8], hungUp: Bool) {
        var bytes: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !done(bytes) {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let rc = poll(&pfd, 1, Int32(left * 1000) + 1)
            if rc < 0 && errno == EINTR { continue }
            if rc <= 0 { break }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n > 0 {
                bytes += buffer[0..<n]
            } else {
                return (bytes, true)  // 0 (hung-up tty) or EIO
            }
        }
        return (bytes, false)
    }

    /// Sends a command line and returns everything up to and including the final result code.
    func command(_ line: String, terminator: String = "\r", timeout: Double = 2) -> String {
        write(line + terminator)
        return readFinal(timeout: timeout)
    }

    func readFinal(timeout: Double = 2) -> String {
        let r = read(timeout: timeout) { Self.hasFinal($0) }
        return String(decoding: r.bytes, as: UTF8.self)
    }

    /// Silence for `seconds`: returns whatever arrived.
    func drain(_ seconds: Double = 0.2) -> String {
        String(decoding: read(timeout: seconds) { _ in false }.bytes, as: UTF8.self)
    }

    static func hasFinal(_ bytes: [UInt8]) -> Bool {
        let s = String(decoding: bytes.suffix(64), as: UTF8.self)
        return s.hasSuffix("\r\nOK\r\n") || s.hasSuffix("\r\nERROR\r\n")
            || (s.contains("+CME ERROR: ") && s.hasSuffix("\r\n"))
    }
}

private func makeSimulator(
    _ profile: VendorProfile = .quectel, identity: SimulatedIdentity = .init(),
    _ configure: (inout SimulatorQuirks) -> Void = { _ in }, link: String? = nil
) throws -> ModemSimulator {
    var quirks = SimulatorQuirks()
    configure(&quirks)
    return try ModemSimulator(SimulatorOptions(profile: profile, identity: identity, quirks: quirks, linkPath: link))
}

/// Opens a client and turns echo off, checking the echo of ATE0 itself.
private func quietClient(_ sim: ModemSimulator) throws -> PTYClient { try quietClient(path: sim.path) }

private func quietClient(path: String) throws -> PTYClient {
    let client = try PTYClient(path)
    #expect(client.command("ATE0") == "ATE0\r\r\nOK\r\n")
    return client
}

private let imei = "356938035643809"
private let imsi = "310150123456789"
private let iccid = "8901260000000000009"  // 19 digits
private let identity = SimulatedIdentity(imei: imei, imsi: imsi, iccid: iccid)

@Suite("SimulatorTests", .serialized)
struct SimulatorTests {
    @Test func basicIdentityAnswersAreByteExact() throws {
        let sim = try makeSimulator(.quectel, identity: identity)
        defer { sim.stop() }
        #expect(sim.path.hasPrefix("/dev/pts/"))
        let c = try PTYClient(sim.path)
        #expect(c.command("AT") == "AT\r\r\nOK\r\n")
        #expect(c.command("ATE0") == "ATE0\r\r\nOK\r\n")
        #expect(c.command("AT") == "\r\nOK\r\n")
        #expect(c.command("AT+CGSN") == "\r\n\(imei)\r\n\r\nOK\r\n")
        #expect(c.command("AT+GSN") == "\r\n\(imei)\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGSN=1") == "\r\n+CGSN: \"\(imei)\"\r\n\r\nOK\r\n")
        #expect(c.command("AT+CIMI") == "\r\n\(imsi)\r\n\r\nOK\r\n")
        #expect(c.command("AT+QCCID") == "\r\n+QCCID: \(iccid)\r\n\r\nOK\r\n")
        #expect(c.command("AT+CCID") == "\r\n+CCID: \(iccid)\r\n\r\nOK\r\n")
        #expect(c.command("AT+CCID?") == "\r\n+CCID: \(iccid)\r\n\r\nOK\r\n")
        #expect(c.command("AT+CRSM=176,12258,0,0,10") == "\r\n+CRSM: 144,0,\"981062000000000000F9\"\r\n\r\nOK\r\n")
        #expect(c.command("AT+CPIN?") == "\r\n+CPIN: READY\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGMI") == "\r\nQuectel\r\n\r\nOK\r\n")
        #expect(c.command("AT+GMM") == "\r\nEC25\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGMR") == "\r\nEC25EFAR06A06M4G\r\n\r\nOK\r\n")
        #expect(c.command("ATI") == "\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A06M4G\r\n\r\nOK\r\n")
        #expect(c.command("AT+NOSUCH") == "\r\nERROR\r\n")
        #expect(c.command("at+cimi") == "\r\n\(imsi)\r\n\r\nOK\r\n")
        #expect(c.command("ATE0Q0V1;+CMEE=1") == "\r\nOK\r\n")
        #expect(c.command("AT+CMEE?") == "\r\n+CMEE: 1\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGMI;+CGMM") == "\r\nQuectel\r\n\r\nEC25\r\n\r\nOK\r\n")
    }

    @Test func acceptsLFAndCRLFAndIgnoresEmptyLines() throws {
        let sim = try makeSimulator(.quectel, identity: identity)
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CIMI", terminator: "\n") == "\r\n\(imsi)\r\n\r\nOK\r\n")
        #expect(c.command("AT+CIMI", terminator: "\r\n") == "\r\n\(imsi)\r\n\r\nOK\r\n")
        c.write("\r\r\n\n")
        #expect(c.drain() == "")
        #expect(sim.commandLog == ["ATE0", "AT+CIMI", "AT+CIMI"])
    }

    @Test(arguments: VendorProfile.allCases)
    func vendorICCIDFormats(_ profile: VendorProfile) throws {
        let sim = try makeSimulator(profile, identity: identity)
        defer { sim.stop() }
        let c = try quietClient(sim)
        let swapped = "981062000000000000F9"
        let expected: [String: String] = [
            "quectel": "AT+QCCID|+QCCID: \(iccid)|+CCID: \(iccid)",
            "sierra": "AT!ICCID?|!ICCID: \(iccid)|+CCID: \(iccid)",
            "telit": "AT#CCID|#CCID: \(iccid)|",
            "ublox": "AT+CCID|+CCID: \(iccid)|+CCID: \(iccid)",
            "simcom": "AT+CICCID|+ICCID: \(iccid)|+ICCID: \(iccid)",
            "huawei": "AT^ICCID?|^ICCID: \(swapped)|",
            "cinterion": "AT^SCID|^SCID: \(iccid)|+CCID: \(iccid)",
            "neoway": "AT+CCID|+CCID: \(iccid)|+CCID: \(iccid)",
            "nordic": "AT%XICCID|%XICCID: \(iccid)F|",
            "sequans": "AT+SQNCCID|+SQNCCID: \"\(iccid)\",\"\"|",
            "zte": "AT+ZGETICCID|+ZGETICCID: \(iccid)|",
            "fibocom": "AT+ICCID|+ICCID: \(iccid)|",
        ]
        let parts = expected[profile.rawValue]!.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        #expect(c.command(parts[0]) == "\r\n\(parts[1])\r\n\r\nOK\r\n")
        if parts[2].isEmpty {
            #expect(c.command("AT+CCID") == "\r\nERROR\r\n")
        } else {
            #expect(c.command("AT+CCID") == "\r\n\(parts[2])\r\n\r\nOK\r\n")
        }
        #expect(c.command("AT+CRSM=176,12258,0,0,10") == "\r\n+CRSM: 144,0,\"\(swapped)\"\r\n\r\nOK\r\n")
        let traits = VendorTraits.traits(for: profile)
        let imeiLine = traits.imeiAnswer.replacingOccurrences(of: "%I", with: imei)
        #expect(c.command("AT+CGSN") == "\r\n\(imeiLine)\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGMI") == "\r\n\(traits.manufacturer)\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGMM") == "\r\n\(traits.model)\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGMR") == "\r\n\(traits.revisionPrefix)\(traits.revision)\r\n\r\nOK\r\n")
    }

    @Test(arguments: VendorProfile.allCases)
    func defaultIdentityIsValid(_ profile: VendorProfile) throws {
        let d = SimulatedIdentity.defaultIdentity(for: profile)
        let imei = try #require(d.imei)
        let iccid = try #require(d.iccid)
        #expect(imei.count == 15 && imei.allSatisfy(\.isNumber))
        #expect(Luhn.isValid(imei))
        #expect(d.imsi?.count == 15)
        #expect(iccid.count == 19 && iccid.hasPrefix("89"))
        #expect(Luhn.isValid(iccid))
        // Served when no identity is given.
        let sim = try makeSimulator(profile)
        defer { sim.stop() }
        let c = try quietClient(sim)
        let answer = VendorTraits.traits(for: profile).imeiAnswer.replacingOccurrences(of: "%I", with: imei)
        #expect(c.command("AT+CGSN") == "\r\n\(answer)\r\n\r\nOK\r\n")
        #expect(IdentityAnswer.imei(in: [answer])?.value?.unredacted == imei)
    }

    @Test(arguments: VendorProfile.allCases)
    func efIMSIReadDecodesToTheServedIMSI(_ profile: VendorProfile) throws {
        let sim = try makeSimulator(profile, identity: identity)
        defer { sim.stop() }
        let c = try quietClient(sim)
        // 15 digits: parity bit set (9), then the other 14 digits swapped in pairs.
        #expect(c.command(crsmReadIMSICommand) == "\r\n+CRSM: 144,0,\"083901511032547698\"\r\n\r\nOK\r\n")
        let line = "+CRSM: 144,0,\"\(BCD.efIMSI(imsi))\""
        #expect(IdentityAnswer.imsi(answering: crsmReadIMSICommand, in: [line])?.value?.unredacted == imsi)
        // A file the simulator does not hold: 94 04.
        #expect(c.command("AT+CRSM=176,28539,0,0,12") == "\r\n+CRSM: 148,4,\"\"\r\n\r\nOK\r\n")
    }

    @Test func efIMSIOfAnEvenLengthIMSIEndsInFiller() {
        // pySim enc_imsi layout for 14 digits: parity bit clear (1), last high nibble F.
        #expect(BCD.efIMSI("31026012345678") == "0831016210325476F8")
        #expect(IMSI.digits(fromEFIMSI: BCD.efIMSI("31026012345678")).value == "31026012345678")
    }

    @Test func quirksCIMIAndCRSMUnsupported() throws {
        let sim = try makeSimulator(.quectel, identity: identity) {
            $0.cimiUnsupported = true
            $0.crsmUnsupported = true
        }
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CMEE=1") == "\r\nOK\r\n")
        #expect(c.command("AT+CIMI") == "\r\n+CME ERROR: 4\r\n")
        #expect(c.command(crsmReadIMSICommand) == "\r\n+CME ERROR: 4\r\n")
        #expect(c.command(crsmReadICCIDCommand) == "\r\n+CME ERROR: 4\r\n")
    }

    @Test func efIMSINeedsThePINButEFICCIDDoesNot() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.simPIN = true }
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CMEE=1") == "\r\nOK\r\n")
        #expect(c.command(crsmReadIMSICommand) == "\r\n+CME ERROR: 11\r\n")
        #expect(c.command(crsmReadICCIDCommand).hasPrefix("\r\n+CRSM: 144,0,"))
    }

    @Test func genericPlusICCID() throws {
        let sierra = try makeSimulator(.sierra, identity: identity)
        defer { sierra.stop() }
        #expect(try quietClient(sierra).command("AT+ICCID") == "\r\nICCID: \(iccid)\r\n\r\nOK\r\n")
        let quectel = try makeSimulator(.quectel, identity: identity)
        defer { quectel.stop() }
        #expect(try quietClient(quectel).command("AT+ICCID") == "\r\nERROR\r\n")
    }

    @Test func nibbleSwap() {
        #expect(BCD.nibbleSwapped("8944200053671052499") == "984402003576012594F9")
        #expect(BCD.nibbleSwapped("89324102234690160476") == "98231420326409614067")
        #expect(Luhn.checkDigit(for: "35693803564380") == 9)
    }

    @Test func cmeeModesOnAbsentSIM() throws {
        let sim = try makeSimulator(.telit, identity: identity) { $0.simAbsent = true }
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CIMI") == "\r\nERROR\r\n")  // Telit default CMEE 0
        #expect(c.command("AT+CMEE=1") == "\r\nOK\r\n")
        #expect(c.command("AT+CIMI") == "\r\n+CME ERROR: 10\r\n")
        #expect(c.command("AT+CMEE=2") == "\r\nOK\r\n")
        #expect(c.command("AT+CIMI") == "\r\n+CME ERROR: SIM not inserted\r\n")
        #expect(c.command("AT+CPIN?") == "\r\n+CME ERROR: SIM not inserted\r\n")
        #expect(c.command("AT#CCID") == "\r\n+CME ERROR: SIM not inserted\r\n")
        #expect(c.command("AT+CGSN") == "\r\n\(imei)\r\n\r\nOK\r\n")  // the IMEI needs no SIM
    }

    @Test func pinLockedSIM() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.simPIN = true }
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CPIN?") == "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n")
        #expect(c.command("AT+CIMI") == "\r\n+CME ERROR: 11\r\n")  // Quectel default CMEE 1
        #expect(c.command("AT+QCCID") == "\r\n+QCCID: \(iccid)\r\n\r\nOK\r\n")
        #expect(c.command("AT+CRSM=176,12258,0,0,10") == "\r\n+CRSM: 144,0,\"981062000000000000F9\"\r\n\r\nOK\r\n")
        #expect(c.command("AT+CMEE=2;+CIMI") == "\r\n+CME ERROR: SIM PIN required\r\n")
    }

    @Test func pukLockedSIM() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.simPUK = true }
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CPIN?") == "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n")
        #expect(c.command("AT+CIMI") == "\r\n+CME ERROR: 12\r\n")
    }

    @Test func simBusyThenReady() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.simBusyTries = 2 }
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CIMI") == "\r\n+CME ERROR: 14\r\n")
        #expect(c.command("AT+CGSN") == "\r\n\(imei)\r\n\r\nOK\r\n")  // not a SIM command
        #expect(c.command("AT+CCID") == "\r\n+CME ERROR: 14\r\n")
        #expect(c.command("AT+CIMI") == "\r\n\(imsi)\r\n\r\nOK\r\n")
    }

    @Test func badIdentitiesAreServedVerbatim() throws {
        let bad = SimulatedIdentity(imei: "12345678901234X", imsi: "0", iccid: "89XX", model: "Weird")
        let sim = try makeSimulator(.quectel, identity: bad)
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CGSN") == "\r\n12345678901234X\r\n\r\nOK\r\n")
        #expect(c.command("AT+CIMI") == "\r\n0\r\n\r\nOK\r\n")
        #expect(c.command("AT+QCCID") == "\r\n+QCCID: 89XX\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGMM") == "\r\nWeird\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGMI") == "\r\nQuectel\r\n\r\nOK\r\n")
    }

    @Test func absentIMEI() throws {
        let sim = try makeSimulator(.quectel, identity: SimulatedIdentity(imsi: imsi, iccid: iccid))
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CGSN") == "\r\n+CME ERROR: 3\r\n")
        #expect(c.command("AT+CIMI") == "\r\n\(imsi)\r\n\r\nOK\r\n")
    }

    @Test func echoAlwaysKeepsEchoing() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.echoAlways = true }
        defer { sim.stop() }
        let c = try PTYClient(sim.path)
        #expect(c.command("ATE0") == "ATE0\r\r\nOK\r\n")
        #expect(c.command("AT+CIMI") == "AT+CIMI\r\r\n\(imsi)\r\n\r\nOK\r\n")
    }

    @Test func urcNoiseBeforeAnswers() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.urcNoise = true }
        defer { sim.stop() }
        let c = try PTYClient(sim.path)
        #expect(c.command("ATE0") == "ATE0\r\r\n+QIND: \"csq\",20,99\r\n\r\nOK\r\n")
        #expect(c.command("AT+CIMI") == "\r\n+CREG: 1\r\n\r\n\(imsi)\r\n\r\nOK\r\n")
    }

    @Test func swallowFirstCommands() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.swallowFirst = 2 }
        defer { sim.stop() }
        let c = try PTYClient(sim.path)
        c.write("AT\r")
        #expect(c.drain(0.3) == "")
        c.write("AT\r")
        #expect(c.drain(0.3) == "")
        #expect(c.command("ATE0") == "ATE0\r\r\nOK\r\n")
        #expect(sim.commandLog.count == 3)
    }

    @Test func silentNeverAnswers() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.silent = true }
        defer { sim.stop() }
        let c = try PTYClient(sim.path)
        c.write("AT\rATE0\rAT+CGSN\r")
        #expect(c.drain(0.3) == "")
        #expect(sim.commandLog == ["AT", "ATE0", "AT+CGSN"])
    }

    @Test func garbageBeforeFirstAnswer() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.garbageBeforeAnswers = true }
        defer { sim.stop() }
        let c = try PTYClient(sim.path)
        c.write("ATE0\r")
        let first = c.read(timeout: 5) { PTYClient.hasFinal($0) }.bytes
        #expect(first.count > 70_000)
        #expect(first.starts(with: Array("ATE0\r".utf8)))
        #expect(first.suffix(6) == ArraySlice(Array("\r\nOK\r\n".utf8)))
        // The longest stretch without a line end is the ~70 kB line.
        var longest = 0
        var run = 0
        for b in first {
            if b == 0x0D || b == 0x0A { run = 0 } else { run += 1; longest = max(longest, run) }
        }
        #expect(longest >= 70_000)
        #expect(c.command("AT+CIMI") == "\r\n\(imsi)\r\n\r\nOK\r\n")  // only before the first answer
    }

    @Test func responseDelay() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.responseDelayMilliseconds = 150 }
        defer { sim.stop() }
        let c = try PTYClient(sim.path)
        let start = Date()
        #expect(c.command("ATE0") == "ATE0\r\r\nOK\r\n")
        #expect(Date().timeIntervalSince(start) >= 0.14)
    }

    @Test func unplugAfterCommands() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.unplugAfterCommands = 3 }
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CGSN") == "\r\n\(imei)\r\n\r\nOK\r\n")
        c.write("AT+CIMI\r")
        let r = c.read(timeout: 2) { _ in false }
        #expect(r.bytes.isEmpty)
        #expect(r.hungUp)
        #expect(sim.commandLog == ["ATE0", "AT+CGSN", "AT+CIMI"])
    }

    @Test func unplugHangsUpTheClient() throws {
        let sim = try makeSimulator(.quectel, identity: identity)
        defer { sim.stop() }
        let c = try quietClient(sim)
        sim.unplug()
        let r = c.read(timeout: 2) { _ in false }
        #expect(r.hungUp)
        var pfd = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 100) == 1)
        #expect(pfd.revents & Int16(POLLHUP) != 0)
        // The kernel marks the slave "other side closed" (POLLHUP) before it finishes hanging the slave up, so a
        // write in that window may still succeed: the test allows the hang-up a moment, then wants EIO.
        let byte: [UInt8] = [0x41]
        var written = Glibc.write(c.fd, byte, 1)
        for _ in 0..<100 where written != -1 {
            usleep(10_000)
            written = Glibc.write(c.fd, byte, 1)
        }
        let writeErrno = errno
        #expect(written == -1)
        #expect(writeErrno == EIO)
        sim.stop()
        sim.stop()  // idempotent
    }

    @Test func clientsCanReconnect() throws {
        let sim = try makeSimulator(.quectel, identity: identity)
        defer { sim.stop() }
        do {
            let c = try quietClient(sim)
            #expect(c.command("AT+CGSN") == "\r\n\(imei)\r\n\r\nOK\r\n")
        }
        let c2 = try PTYClient(sim.path)
        #expect(c2.command("AT+CIMI") == "\r\n\(imsi)\r\n\r\nOK\r\n")  // echo stayed off: same modem
    }

    @Test func swapSIMEmitsURCsAndChangesIdentities() throws {
        let sim = try makeSimulator(.quectel, identity: identity)
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+QSIMSTAT=1") == "\r\nOK\r\n")
        sim.swapSIM(SimulatedIdentity(imsi: "001010000000002", iccid: "89490000000000000024"))
        let urcs = "\r\n+QSIMSTAT: 1,0\r\n\r\n+CPIN: NOT READY\r\n"
            + "\r\n+QSIMSTAT: 1,1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n"
        #expect(c.read { $0.count >= urcs.utf8.count }.bytes == Array(urcs.utf8))
        #expect(c.command("AT+CIMI") == "\r\n001010000000002\r\n\r\nOK\r\n")
        #expect(c.command("AT+QCCID") == "\r\n+QCCID: 89490000000000000024\r\n\r\nOK\r\n")
        #expect(c.command("AT+CGSN") == "\r\n\(imei)\r\n\r\nOK\r\n")  // IMEI kept when not given
    }

    @Test(arguments: [
        (VendorProfile.huawei, "\r\n^SIMST: 255\r\n", "\r\n^SIMST: 1\r\n", nil as String?),
        (VendorProfile.telit, "\r\n#QSS: 0\r\n", "\r\n#QSS: 1\r\n", "AT#QSS=1"),
        (VendorProfile.cinterion, "\r\n^SCKS: 0\r\n", "\r\n^SCKS: 1\r\n", "AT^SCKS=1"),
        (VendorProfile.ublox, "\r\n+UUSIMSTAT: 0\r\n", "\r\n+UUSIMSTAT: 6\r\n", nil),
    ])
    func simRemovalAndInsertion(_ profile: VendorProfile, removed: String, inserted: String, enable: String?) throws {
        let sim = try makeSimulator(profile, identity: identity)
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CMEE=1") == "\r\nOK\r\n")
        if let enable { #expect(c.command(enable) == "\r\nOK\r\n") }
        sim.setSIMPresent(false)
        #expect(c.read { $0.count >= removed.utf8.count }.bytes == Array(removed.utf8))
        #expect(c.command("AT+CIMI") == "\r\n+CME ERROR: 10\r\n")
        sim.setSIMPresent(true)
        #expect(c.read { $0.count >= inserted.utf8.count }.bytes == Array(inserted.utf8))
        #expect(c.command("AT+CIMI") == "\r\n\(imsi)\r\n\r\nOK\r\n")
    }

    /// Issue 15 part 0: Quectel, Telit and Cinterion report a swap only once their reports are switched on, and
    /// never with the card holder's detection off; the setting reads back.
    @Test(arguments: [
        (VendorProfile.quectel, "AT+QSIMSTAT", "+QSIMSTAT: ", "\r\n+QSIMSTAT: 1,0\r\n"),
        (VendorProfile.telit, "AT#QSS", "#QSS: ", "\r\n#QSS: 0\r\n"),
        (VendorProfile.cinterion, "AT^SCKS", "^SCKS: ", "\r\n^SCKS: 0\r\n"),
    ])
    func simReportsNeedSwitchingOn(_ profile: VendorProfile, command: String, tag: String, removed: String) throws {
        let sim = try makeSimulator(profile, identity: identity)
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command(command + "?").contains(tag + "0"))
        sim.setSIMPresent(false)
        let off = String(decoding: c.read(timeout: 0.3) { _ in false }.bytes, as: UTF8.self)
        #expect(!off.contains(removed), "off: no report URC")
        sim.setSIMPresent(true)
        _ = c.read(timeout: 0.3) { _ in false }
        #expect(c.command(command + "=1") == "\r\nOK\r\n")
        #expect(c.command(command + "?").contains(tag + "1"))
        sim.setSIMPresent(false)
        #expect(c.read { $0.count >= removed.utf8.count }.bytes.prefix(removed.utf8.count) == ArraySlice(removed.utf8))
    }

    /// Quectel's +CPIN and +QUSIM come on a swap whether or not +QSIMSTAT reports are on (ModemManager 1.20
    /// relies on +QUSIM: 1); +QSIMSTAT comes only once switched on.
    @Test func quectelSendsCPINAndQUSIMEitherWay() throws {
        let sim = try makeSimulator(.quectel, identity: identity)
        defer { sim.stop() }
        let c = try quietClient(sim)
        sim.swapSIM(SimulatedIdentity(imsi: "001010000000002", iccid: "89490000000000000024"))
        let urcs = "\r\n+CPIN: NOT READY\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n"
        #expect(c.read { $0.count >= urcs.utf8.count }.bytes == Array(urcs.utf8))
    }

    @Test func quectelWithDetectionOffReportsNothing() throws {
        let sim = try makeSimulator(.quectel, identity: identity) { $0.simDetectionOff = true }
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+QSIMDET?") == "\r\n+QSIMDET: 0,0\r\n\r\nOK\r\n")
        #expect(c.command("AT+QSIMSTAT=1") == "\r\nOK\r\n")
        sim.setSIMPresent(false)
        #expect(c.read(timeout: 0.3) { $0.count >= 4 }.bytes.isEmpty)
    }

    @Test func sendURC() throws {
        let sim = try makeSimulator(.quectel, identity: identity)
        defer { sim.stop() }
        let c = try quietClient(sim)
        sim.sendURC("RING")
        #expect(c.read { $0.count >= 8 }.bytes == Array("\r\nRING\r\n".utf8))
    }

    @Test func iccidCommandQuirks() throws {
        let sim = try makeSimulator(.quectel, identity: identity) {
            $0.ccidUnsupported = true
            $0.vendorICCIDUnsupported = true
        }
        defer { sim.stop() }
        let c = try quietClient(sim)
        #expect(c.command("AT+CCID") == "\r\nERROR\r\n")
        #expect(c.command("AT+QCCID") == "\r\nERROR\r\n")
        #expect(c.command("AT+CRSM=176,12258,0,0,10") == "\r\n+CRSM: 144,0,\"981062000000000000F9\"\r\n\r\nOK\r\n")

        let ublox = try makeSimulator(.ublox, identity: identity) { $0.vendorICCIDUnsupported = true }
        defer { ublox.stop() }
        let u = try quietClient(ublox)
        #expect(u.command("AT+CCID") == "\r\nERROR\r\n")
    }

    @Test func symlinkIsReplacedAndRemoved() throws {
        let link = NSTemporaryDirectory() + "cellprov-sim-\(getpid())-link"
        unlink(link)
        #expect(symlink("/nonexistent", link) == 0)
        let sim = try makeSimulator(.quectel, identity: identity, link: link)
        #expect(sim.linkPath == link)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == sim.path)
        let c = try quietClient(path: link)
        #expect(c.command("AT+CGSN") == "\r\n\(imei)\r\n\r\nOK\r\n")
        sim.stop()
        var st = stat()
        #expect(lstat(link, &st) != 0)
    }

    @Test func refusesToReplaceARegularFile() throws {
        let file = NSTemporaryDirectory() + "cellprov-sim-\(getpid())-file"
        #expect(FileManager.default.createFile(atPath: file, contents: Data()))
        defer { unlink(file) }
        #expect(throws: SimulatorError.self) { try makeSimulator(.quectel, link: file) }
    }

    @Test func quirksDecodeWithMissingKeys() throws {
        let q = try JSONDecoder().decode(SimulatorQuirks.self, from: Data(#"{"simPIN":true}"#.utf8))
        var expected = SimulatorQuirks()
        expected.simPIN = true
        #expect(q == expected)
        let id = try JSONDecoder().decode(SimulatedIdentity.self, from: Data(#"{"imsi":"1"}"#.utf8))
        #expect(id == SimulatedIdentity(imsi: "1"))
    }
}
