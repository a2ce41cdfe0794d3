/// Reading the EID of an eUICC over AT, pure: the command lines to send and the answers to parse. The reader
/// (CellprovModem's IdentityReader) sends them; the tests feed the same functions sourced transcripts.
///
/// The way in is the standard one of 3GPP TS 27.007 logical channels, as the open-source LPA lpac
/// (estkme-group/lpac, driver/apdu/at_etsi.c) and pySim do:
///
/// 1. `AT+CCHO="A0000005591010FFFFFFFF8900000100"` opens a logical channel to the ISD-R (SGP.22 §2.2.3's AID)
///    and answers its channel (`+CCHO: 1`, a bare `1` on Fibocom FM350-GL: lpac #209/#445, or a long hex session
///    handle on Sierra MC7455/EM7590: lpac #138/#139). A plain UICC, or a module without logical channels,
///    answers `ERROR` or `+CME ERROR: ...` (commaai/openpilot #37979: `+CME ERROR: 13` on a non-eUICC SIM;
///    lpac #187: `+CME ERROR: Parameters error` on a Sierra EM9191).
/// 2. `AT+CGLA=<ch>,<length>,"<APDU>"` sends ES10c GetEUICCData asking for the EID only
///    (`80 E2 91 00 06 BF3E 03 5C 01 5A 00`, SGP.22 §5.7.20), the class byte carrying the channel (ETSI TS 102 221
///    §10.1.1). It answers `+CGLA: <length>,"<response hex>"` (a blank after the colon or not: SIMCom A7908E,
///    lpac #238), the response ending with the status word: `9000` with `BF3E 12 5A 10 <16 bytes>`; `61xx`
///    (xx more bytes: GET RESPONSE, INS C0, on the same channel); `6Cxx` (send again with Le = xx).
/// 3. `AT+CCHC=<ch>` closes the channel, whatever happened in between.
public enum EUICCAccess {
    /// The ISD-R's AID (GSMA SGP.22 §2.2.3).
    public static let isdRAID = "A0000005591010FFFFFFFF8900000100"

    /// Opens a logical channel to the ISD-R (3GPP TS 27.007 §8.45).
    public static let openCommand = "AT+CCHO=\"\(isdRAID)\""

    /// Closes the channel (3GPP TS 27.007 §8.46), written back as the modem named it.
    public static func closeCommand(_ channel: LogicalChannelID) -> String { "AT+CCHC=\(channel.token)" }

    /// `AT+CGLA=<channel>,<length in hex characters>,"<APDU in upper-case hex>"` (3GPP TS 27.007 §8.43).
    public static func cglaCommand(_ channel: LogicalChannelID, apdu: [UInt8]) -> String {
        "AT+CGLA=\(channel.token),\(apdu.count * 2),\"\(hex(apdu))\""
    }

    /// ES10c GetEUICCData asking for tag 5A (the EID) only: `CLA E2 91 00 06 BF3E 03 5C 01 5A 00` (GSMA SGP.22
    /// §5.7.20; the bytes of pySim's tests/unittests/test_globalplatform.py vector, channel 0). `le` is the
    /// expected length (0 = up to 256); a `6Cxx` answer asks for the command again with `le` = xx.
    public static func getEUICCDataAPDU(channel: LogicalChannelID, le: UInt8 = 0) -> [UInt8] {
        [classByte(base: 0x80, channel: channel.number), 0xE2, 0x91, 0x00, 0x06, 0xBF, 0x3E, 0x03, 0x5C, 0x01, 0x5A, le]
    }

    /// GET RESPONSE for the `61xx` status: `CLA C0 00 00 xx` (ISO 7816-4 §7.6.1, ETSI TS 102 221 §10.1.2), an
    /// interindustry command, so its class byte is `0X`/`4X` with the channel's bits.
    public static func getResponseAPDU(channel: LogicalChannelID, length: UInt8) -> [UInt8] {
        [classByte(base: 0x00, channel: channel.number), 0xC0, 0x00, 0x00, length]
    }

    /// The class byte with a logical channel's bits, ETSI TS 102 221 §10.1.1 (pySim's `lchan_nr_to_cla` does the
    /// same): channels 0-3 in b2-b1 (`base | n`: `80`-`83`, `00`-`03`); channels 4-19 in the further
    /// interindustry coding, b7 set and b4-b1 = n - 4 (`C0`-`CF`, `40`-`4F`). A channel that is no number from
    /// 1 to 19 (nil: a session handle) keeps the base class: 3GPP TS 27.007 §8.43 leaves the channel bits to the
    /// MT then (lpac #138).
    public static func classByte(base: UInt8, channel: Int?) -> UInt8 {
        guard let n = channel, (1...19).contains(n) else { return base }
        if n <= 3 { return base | UInt8(n) }
        return base | 0x40 | UInt8(n - 4)
    }

    /// The channel in the answer to ``openCommand``: `+CCHO: <n>` (with or without a blank, quoted or not), or a
    /// bare line of hexadecimal digits (Fibocom FM350-GL prints the number alone). nil when there is none, or it is
    /// not a plausible channel (not hexadecimal, longer than 32 characters, or 0: the basic channel is never
    /// opened).
    public static func openedChannel(in lines: [String]) -> LogicalChannelID? {
        var raw: String?
        for line in lines {
            if let rest = ATResponse.afterTag(line, "+CCHO:") {
                raw = String(rest)
                break
            }
        }
        if raw == nil { raw = lines.first { !ATResponse.looksTagged($0) } }
        guard let raw else { return nil }
        return LogicalChannelID(token: ATResponse.clean(raw))
    }

    /// The APDU response in a `+CGLA: <length>,"<hex>"` answer (tag case-insensitive, blank after the colon or
    /// not, quotes or not). `<length>` counts the hexadecimal characters (TS 27.007); a length that disagrees with
    /// the data (neither the characters nor the bytes) means a cut line: nil. nil too without a status word.
    public static func cglaResponse(in lines: [String]) -> APDUResponse? {
        guard let body = lines.lazy.compactMap({ ATResponse.afterTag($0, "+CGLA:") }).first else { return nil }
        let parts = body.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let length = Int(parts[0].trimmingWhitespace()) else { return nil }
        let text = ATResponse.clean(String(parts[1]))
        guard let bytes = bytes(fromHex: text), bytes.count >= 2 else { return nil }
        guard length == text.utf8.count || length == bytes.count else { return nil }
        return APDUResponse(data: Array(bytes.dropLast(2)), sw1: bytes[bytes.count - 2], sw2: bytes[bytes.count - 1])
    }

    /// The EID's digits in a GetEUICCData response: the value of tag 5A inside `BF3E` (BER-TLV, short or long
    /// lengths), as upper-case hexadecimal digits in order (not nibble-swapped). nil when the data holds no
    /// `BF3E` with a `5A` inside, or a length runs past the data. Validation is ``EID/validate(_:)``'s job.
    public static func eidDigits(inGetEUICCData data: [UInt8]) -> String? {
        guard let outer = BERTLV.first(tag: [0xBF, 0x3E], in: data[...]),
            let eid = BERTLV.first(tag: [0x5A], in: outer)
        else { return nil }
        return hex(Array(eid))
    }

    /// The EID a vendor's ICCID answer carries beside the ICCID, as raw digits (nil when it carries none):
    /// Sequans `AT+SQNCCID` answers `+SQNCCID: "<ICCID>","<EID>"`, the EID always 32 digits (QuickSpot/
    /// walter-arduino PR #126), and an empty second field on a plain SIM. Sierra's HL7800 puts the EID in its
    /// `+CCID` answer too (zephyr PR #52076), but no public transcript shows its separator: not read here.
    public static func vendorEIDDigits(answering command: String, in lines: [String]) -> String? {
        guard command.uppercased() == "AT+SQNCCID",
            let body = lines.lazy.compactMap({ ATResponse.afterTag($0, "+SQNCCID:") }).first
        else { return nil }
        let fields = body.split(separator: ",", omittingEmptySubsequences: false)
        guard fields.count >= 2 else { return nil }
        let eid = ATResponse.clean(String(fields[1]))
        return eid.isEmpty ? nil : eid
    }

    /// What to do after an APDU's status word (ISO 7816-4 §5.1.3, ETSI TS 102 221 §10.2.1).
    public static func next(after response: APDUResponse, channel: LogicalChannelID, sent apdu: [UInt8]) -> APDUNext {
        switch response.sw1 {
        case 0x90 where response.sw2 == 0x00:
            return .done
        case 0x61:
            return .send(getResponseAPDU(channel: channel, length: response.sw2))
        case 0x6C:
            guard !apdu.isEmpty else { return .failed }
            var again = apdu
            again[again.count - 1] = response.sw2
            return .send(again)
        default:
            return .failed
        }
    }

    /// Upper-case hexadecimal of `bytes`.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of an even-length hexadecimal string (either case), nil for anything else.
    public static func bytes(fromHex text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count.isMultiple(of: 2) else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// A logical channel as `AT+CCHO` named it: a small number, or a session handle of the modem's own (Sierra's
/// 16 hexadecimal digits). Written back verbatim in `+CGLA` and `+CCHC`.
public struct LogicalChannelID: Sendable, Hashable, CustomStringConvertible {
    public let token: String

    /// nil unless `token` is hexadecimal, 1 to 32 characters, and not zero.
    public init?(token: String) {
        let u = token.utf8
        guard (1...32).contains(u.count), EUICCAccess.bytes(fromHex: u.count.isMultiple(of: 2) ? token : "0" + token)
            != nil
        else { return nil }
        guard u.contains(where: { $0 != UInt8(ascii: "0") }) else { return nil }
        self.token = token
    }

    /// The channel number when the token is a decimal number from 1 to 19 (the channels a UICC can have, ETSI
    /// TS 102 221 §10.1.1); nil for a session handle.
    public var number: Int? {
        guard token.utf8.count <= 2, IdentifierText.isDecimal(token), let n = Int(token), (1...19).contains(n) else {
            return nil
        }
        return n
    }

    /// A session handle is not an identifier, but it looks like one to a log scrubber: print only its size.
    public var description: String {
        number.map { "channel \($0)" } ?? "session handle (\(token.utf8.count) characters)"
    }
}

/// One APDU response: data and status word.
public struct APDUResponse: Sendable, Equatable {
    public var data: [UInt8]
    public var sw1: UInt8
    public var sw2: UInt8

    public init(data: [UInt8], sw1: UInt8, sw2: UInt8) {
        self.data = data
        self.sw1 = sw1
        self.sw2 = sw2
    }

    /// The status word as 4 upper-case hexadecimal digits (`9000`, `6A82`), for messages.
    public var statusText: String { EUICCAccess.hex([sw1, sw2]) }
}

/// The step after an APDU's status word.
public enum APDUNext: Sendable, Equatable {
    /// `9000`: the response is complete.
    case done
    /// Send this APDU next on the same channel (GET RESPONSE after `61xx`, the command again after `6Cxx`).
    case send([UInt8])
    /// Any other status word: the command failed.
    case failed
}

/// The outcome of an EID read, kept on the report beside the EID: a failed read is not "no eUICC".
public enum EIDReadStatus: String, Sendable, Codable, Equatable {
    /// Read and valid: the report's `eid` holds it.
    case read
    /// The card answered an EID that fails validation (`eid_invalid`).
    case invalid
    /// `AT+CCHO` refused: a plain UICC, or a module without logical channels (the two look the same over AT).
    /// Also the answer, without a command, on a re-read of the same card in the same port session.
    case noEUICC = "no_euicc"
    /// Not tried: no SIM, a SIM waiting for its PIN/PUK, or the read stopped before.
    case notAttempted = "not_attempted"
    /// A channel opened but the EID did not come (timeout, a failing status word, an unreadable answer).
    case failed
}

/// Just enough BER-TLV (ISO/IEC 8825-1, as GlobalPlatform and SGP.22 use it) to find a tag.
enum BERTLV {
    /// The value of the first element with `tag` at this level of `data`, nil if absent or malformed.
    static func first(tag: [UInt8], in data: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        var i = data.startIndex
        while i < data.endIndex {
            // Tag: one byte, or more when its low 5 bits are all set (then continuation bytes while b8 is set).
            let tagStart = i
            let first = data[i]
            i += 1
            if first & 0x1F == 0x1F {
                while i < data.endIndex, data[i] & 0x80 != 0 { i += 1 }
                guard i < data.endIndex else { return nil }
                i += 1
            }
            let thisTag = data[tagStart..<i]
            // Length: short form, or 0x81/0x82/0x83 followed by that many bytes.
            guard i < data.endIndex else { return nil }
            var length = Int(data[i])
            i += 1
            if length & 0x80 != 0 {
                let n = length & 0x7F
                guard (1...3).contains(n), i + n <= data.endIndex else { return nil }
                length = 0
                for _ in 0..<n {
                    length = length << 8 | Int(data[i])
                    i += 1
                }
            }
            guard i + length <= data.endIndex else { return nil }
            if thisTag.elementsEqual(tag) { return data[i..<(i + length)] }
            i += length
        }
        return nil
    }
}
