import CellprovCore

// The simulated card behind the logical-channel commands of 3GPP TS 27.007 (AT+CCHO, AT+CGLA, AT+CCHC): an eUICC
// with an ISD-R that answers ES10c GetEUICCData, or a plain UICC that has none. Answer forms and their sources:
// - `+CCHO: <n>`, `+CGLA: <length>,"<hex>"`, `AT+CCHC=<n>` -> OK: a de-branded Quectel 5G "AT Commands Manual"
//   §4.8-4.10 examples and lpac issue #143's transcript (estkme-group/lpac).
// - a bare channel number (`1`) after AT+CCHO: Fibocom FM350-GL, lpac issue #209 and PR #445.
// - a session handle of 16 hexadecimal digits instead of a number: Sierra MC7455/EM7590, lpac issue #138, PR #139.
// - `+CGLA:4,"611A"` (no blank after the colon, 61xx asking for GET RESPONSE): SIMCom A7908E, lpac PR #238.
// - 6Cxx (wrong Le, resend with Le = xx): ISO 7816-4 §5.1.3 / ETSI TS 102 221 §10.2.1.3; no transcript, constructed.
// - a plain UICC answering AT+CCHO with `ERROR` or `+CME ERROR: 13`: commaai/openpilot PR #37847 and #37979.
// - `=?` test forms refused while the commands work: Fibocom FG132-GL, lpac issue #300.
// - the GetEUICCData response `BF3E 12 5A 10 <16 bytes>` + 9000: pySim tests/unittests/test_globalplatform.py.
// - a profile switch: the enabled profile's ICCID/IMSI replace the old ones, `+CPIN: READY` follows the card's
//   REFRESH, and Quectel modules add `+QUSIM: 1` (ModemManager src/plugins/quectel, mm-shared-quectel.c).

/// One profile on a simulated eUICC.
public struct SimulatedProfile: Sendable, Codable, Equatable {
    public var iccid: String
    public var imsi: String

    public init(iccid: String, imsi: String) {
        self.iccid = iccid
        self.imsi = imsi
    }
}

/// A simulated eUICC: its EID (served verbatim, never validated) and its profiles, one of them enabled.
public struct SimulatedEUICC: Sendable, Codable, Equatable {
    public var eid: String
    public var profiles: [SimulatedProfile]
    public var enabledProfile: Int

    public init(eid: String, profiles: [SimulatedProfile], enabledProfile: Int = 0) {
        self.eid = eid
        self.profiles = profiles
        self.enabledProfile = enabledProfile
    }
}

extension SimulatedEUICC {
    /// What must never appear in logs, tables or error messages for this card: the full EID and its individual part
    /// (everything after the 8-digit "89" + country + issuer prefix that redacted descriptions show), and every
    /// profile's IMSI, MSIN and ICCID (``SimulatedIdentity/leakPatterns``). Leak scans search outputs for these.
    public var leakPatterns: [String] {
        var out = [eid, String(eid.dropFirst(8))]
        for p in profiles { out += SimulatedIdentity(imsi: p.imsi, iccid: p.iccid).leakPatterns }
        return out
    }
}

/// What the simulated module does with logical channels, and the card behind them.
public struct LogicalChannelOptions: Sendable, Codable, Equatable {
    /// The eUICC; nil: a plain UICC (AT+CCHO refused with ``plainUICCAnswer``).
    public var euicc: SimulatedEUICC?
    /// What a plain UICC answers to AT+CCHO: "ERROR" or a "+CME ERROR: ..." line.
    public var plainUICCAnswer = "ERROR"
    /// The module has no logical-channel commands at all: AT+CCHO, AT+CGLA and AT+CCHC answer ERROR.
    public var unsupported = false
    /// AT+CCHO answers the bare channel number (Fibocom FM350-GL).
    public var bareChannelNumber = false
    /// AT+CCHO answers a 16-hex-digit session handle (Sierra MC7455).
    public var sessionHandles = false
    /// `+CGLA:` without the blank after the colon (SIMCom A7908E).
    public var noBlankAfterColon = false
    /// GetEUICCData answers `61xx` first; the data comes with GET RESPONSE.
    public var getResponseNeeded = false
    /// GetEUICCData with Le other than the response's length answers `6Cxx` first.
    public var wrongLengthFirst = false
    /// How many channels the card can have open at once (TS 102 221 allows up to 19; many cards 3 or 4).
    public var maxChannels = 3
    /// The first N AT+CGLA commands get no answer: the reader's command times out.
    public var silentCGLA = 0
    /// The first N AT+CCHC commands are swallowed.
    public var silentCCHC = 0

    public init() {}

    private enum CodingKeys: String, CodingKey {
        case euicc, plainUICCAnswer, unsupported, bareChannelNumber, sessionHandles, noBlankAfterColon
        case getResponseNeeded, wrongLengthFirst, maxChannels, silentCGLA, silentCCHC
    }

    /// Missing keys keep their defaults.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        euicc = try c.decodeIfPresent(SimulatedEUICC.self, forKey: .euicc)
        plainUICCAnswer = try c.decodeIfPresent(String.self, forKey: .plainUICCAnswer) ?? "ERROR"
        unsupported = try c.decodeIfPresent(Bool.self, forKey: .unsupported) ?? false
        bareChannelNumber = try c.decodeIfPresent(Bool.self, forKey: .bareChannelNumber) ?? false
        sessionHandles = try c.decodeIfPresent(Bool.self, forKey: .sessionHandles) ?? false
        noBlankAfterColon = try c.decodeIfPresent(Bool.self, forKey: .noBlankAfterColon) ?? false
        getResponseNeeded = try c.decodeIfPresent(Bool.self, forKey: .getResponseNeeded) ?? false
        wrongLengthFirst = try c.decodeIfPresent(Bool.self, forKey: .wrongLengthFirst) ?? false
        maxChannels = try c.decodeIfPresent(Int.self, forKey: .maxChannels) ?? 3
        silentCGLA = try c.decodeIfPresent(Int.self, forKey: .silentCGLA) ?? 0
        silentCCHC = try c.decodeIfPresent(Int.self, forKey: .silentCCHC) ?? 0
    }
}

/// An answer of the card model, turned into the simulator's own outcome by ModemSimulator.
enum CardAnswer: Equatable {
    case ok
    case info([String])
    case error(String)
    /// No echo, no answer at all.
    case swallow
}

/// The card's state behind AT+CCHO/CGLA/CCHC: open channels, pending response data, swallow counters.
struct SimulatedCard {
    var options: LogicalChannelOptions
    /// Open channels, by the token the module named them with; value: the channel number on the card.
    private(set) var open: [String: Int] = [:]
    /// Channels ever opened (for tests: how many opens).
    private(set) var opened = 0
    /// Response bytes waiting for GET RESPONSE, per channel token.
    private var pending: [String: [UInt8]] = [:]
    private var silentCGLALeft: Int
    private var silentCCHCLeft: Int
    private var handleCounter: UInt64 = 0x0385_A7CF

    init(options: LogicalChannelOptions) {
        self.options = options
        silentCGLALeft = max(0, options.silentCGLA)
        silentCCHCLeft = max(0, options.silentCCHC)
    }

    var isEUICC: Bool { options.euicc != nil }

    /// The enabled profile, if the card is an eUICC with one.
    var enabledProfile: SimulatedProfile? {
        guard let e = options.euicc, e.profiles.indices.contains(e.enabledProfile) else { return nil }
        return e.profiles[e.enabledProfile]
    }

    /// A card reset (a REFRESH after a profile switch, a new card): every logical channel closes.
    mutating func reset() {
        open = [:]
        pending = [:]
    }

    /// Another card in the holder: `euicc`, or a plain UICC when nil.
    mutating func insert(_ euicc: SimulatedEUICC?) {
        options.euicc = euicc
        reset()
    }

    /// Enables profile `index`; false if there is no such profile.
    mutating func enable(profile index: Int) -> Bool {
        guard var e = options.euicc, e.profiles.indices.contains(index) else { return false }
        e.enabledProfile = index
        options.euicc = e
        reset()
        return true
    }

    /// Handles `name` (`+CCHO`, ...) with `suffix` (`="..."`, `=?`); nil for a command that is not the card's.
    /// `notSupported` is the module's "operation not supported" line in its current +CMEE mode.
    mutating func handle(name: String, suffix: String, notSupported: String) -> CardAnswer {
        if options.unsupported { return .error("ERROR") }
        // The test forms are refused even where the commands work (lpac #300).
        if suffix == "=?" { return .error("ERROR") }
        guard suffix.hasPrefix("=") else { return .error(notSupported) }
        let args = String(suffix.dropFirst())
        switch name {
        case "+CCHO": return openChannel(aid: args.trimmingWhitespace().unquoted())
        case "+CCHC": return closeChannel(token: args.trimmingWhitespace())
        default: return transmit(args)
        }
    }

    mutating func openChannel(aid: String) -> CardAnswer {
        guard isEUICC else {
            return options.plainUICCAnswer == "ERROR" ? .error("ERROR") : .error(options.plainUICCAnswer)
        }
        guard aid.uppercased() == EUICCAccess.isdRAID else { return .error("+CME ERROR: 3") }
        guard open.count < options.maxChannels else { return .error("+CME ERROR: 3") }
        let number = (1...19).first { n in !open.values.contains(n) }!
        let token: String
        if options.sessionHandles {
            handleCounter &+= 0x1_0001
            token = EUICCAccess.hex(withUnsafeBytes(of: handleCounter.bigEndian) { Array($0) }).lowercased()
        } else {
            token = String(number)
        }
        open[token] = number
        opened += 1
        return .info([options.bareChannelNumber ? token : "+CCHO: \(token)"])
    }

    mutating func closeChannel(token: String) -> CardAnswer {
        if silentCCHCLeft > 0 {
            silentCCHCLeft -= 1
            return .swallow
        }
        guard open.removeValue(forKey: token) != nil else { return .error("+CME ERROR: 3") }
        pending[token] = nil
        return .ok
    }

    mutating func transmit(_ args: String) -> CardAnswer {
        if silentCGLALeft > 0 {
            silentCGLALeft -= 1
            return .swallow
        }
        let parts = args.split(separator: ",", maxSplits: 2).map { String($0).trimmingWhitespace() }
        guard parts.count == 3, let length = Int(parts[1]) else { return .error("+CME ERROR: 4") }
        let token = parts[0]
        let hexText = parts[2].unquoted()
        guard let number = open[token] else { return .error("+CME ERROR: 3") }
        guard hexText.utf8.count == length, let apdu = EUICCAccess.bytes(fromHex: hexText), apdu.count >= 4 else {
            return .error("+CME ERROR: 4")
        }
        return .info([cglaLine(respond(to: apdu, channel: number, token: token))])
    }

    func cglaLine(_ response: [UInt8]) -> String {
        let hex = EUICCAccess.hex(response)
        return (options.noBlankAfterColon ? "+CGLA:" : "+CGLA: ") + "\(hex.utf8.count),\"\(hex)\""
    }

    /// The card's answer to one APDU on channel `number` (the module named it `token`).
    mutating func respond(to apdu: [UInt8], channel number: Int, token: String) -> [UInt8] {
        let cla = apdu[0]
        let ins = apdu[1]
        // A small channel number must be in the class byte; a session handle leaves the bits to the MT.
        let handles = options.sessionHandles
        func expectedCLA(_ base: UInt8) -> UInt8 {
            handles ? base : EUICCAccess.classByte(base: base, channel: number)
        }
        switch ins {
        case 0xE2:
            guard cla == expectedCLA(0x80) else { return [0x68, 0x81] }  // logical channel not supported
            let body = Array(apdu.dropFirst(5).prefix(Int(apdu[4])))
            guard apdu[2] == 0x91, body == [0xBF, 0x3E, 0x03, 0x5C, 0x01, 0x5A] else { return [0x6A, 0x80] }
            let data = getEUICCDataResponse()
            let le = apdu.count > 5 + body.count ? apdu[5 + body.count] : 0
            if options.wrongLengthFirst, le != UInt8(data.count) { return [0x6C, UInt8(data.count)] }
            if options.getResponseNeeded {
                pending[token] = data
                return [0x61, UInt8(data.count)]
            }
            return data + [0x90, 0x00]
        case 0xC0:
            guard cla == expectedCLA(0x00), let data = pending[token] else { return [0x6F, 0x00] }
            pending[token] = nil
            let n = apdu[4] == 0 ? 256 : Int(apdu[4])
            guard n == data.count else { return [0x6C, UInt8(data.count)] }
            return data + [0x90, 0x00]
        default:
            return [0x6D, 0x00]  // instruction not supported
        }
    }

    /// `BF3E 12 5A 10 <EID as 16 bytes, digits in order>`.
    func getEUICCDataResponse() -> [UInt8] {
        let digits = options.euicc?.eid ?? ""
        let padded = digits.utf8.count >= 32 ? String(digits.prefix(32)) : digits
            + String(repeating: "0", count: 32 - digits.utf8.count)
        let eid = EUICCAccess.bytes(fromHex: padded) ?? []
        return [0xBF, 0x3E, UInt8(eid.count + 2), 0x5A, UInt8(eid.count)] + eid
    }
}

extension String {
    /// Without one pair of surrounding double quotes.
    fileprivate func unquoted() -> String {
        utf8.count >= 2 && hasPrefix("\"") && hasSuffix("\"") ? String(dropFirst().dropLast()) : self
    }
}
