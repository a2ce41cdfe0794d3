/// Pure extraction of values from the information lines of an answer. They return the raw value as the modem wrote
/// it (tag, label, quotes and trailing fields removed); validation is the identity types' job.
///
/// Every answer form accepted here is in Tests/CellprovCoreTests/Fixtures/at-transcripts.jsonl with its public
/// source (vendor AT manuals, ModemManager, Zephyr, oFono-era drivers, forum transcripts).
public enum ATResponse {
    /// The value of the first line carrying `tag` (e.g. `+CGSN:`), or of the first untagged line if none does and
    /// `allowBare` is set. Quotes and whitespace are removed.
    public static func value(in lines: [String], tags: [String], allowBare: Bool = true) -> String? {
        for line in lines {
            for tag in tags {
                if let rest = afterTag(line, tag) { return clean(String(rest)) }
            }
        }
        guard allowBare else { return nil }
        for line in lines where !looksTagged(line) {
            return clean(line)
        }
        return nil
    }

    /// Tags of IMEI answers: `+CGSN:` (TS 27.007 with `<snt>`; Fibocom, u-blox, Nordic quote the value), `+GSN:`
    /// (Motorola G24, Fibocom G510), `#CGSN:` (Telit `AT#CGSN`), `+SIMEI:` (SIMCom `AT+SIMEI?`), `+EGMR:` (Quectel
    /// and MediaTek `AT+EGMR=0,7`), `+KGSN:` (Sierra HL `AT+KGSN=0`), `+IMEI:` (LuatOS AT firmware `AT+IMEI`),
    /// `IMEI:` (the ATI layout of Sierra and SIMCom).
    public static let imeiTags = ["+CGSN:", "+GSN:", "#CGSN:", "+SIMEI:", "+EGMR:", "+KGSN:", "+IMEI:", "IMEI:"]
    /// Tags of IMSI answers: `+CIMI:` (Neoway N58, AM20E and ML307B firmware tag the value; Fibocom's `AT+CIMI?`
    /// quotes it), `#CIMI:` (Telit `AT#CIMI`), `IMSI:`.
    public static let imsiTags = ["+CIMI:", "#CIMI:", "IMSI:"]
    /// Tags of ICCID answers: `+CCID:` (TS 27.007 era, u-blox, Quectel), `+ICCID:` (SIMCom `AT+CICCID`, Fibocom
    /// `AT+ICCID`), `^ICCID:` (Huawei), `+QCCID:` (Quectel), `#CCID:` (Telit), `^SCID:` (Cinterion), `+CICCID:`,
    /// `!ICCID:` (Sierra), `+ZGETICCID:` (ZTE ME3630/MG2639), `%XICCID:` (Nordic nRF91), `%ICCID:` (Nordic nRF93,
    /// Zephyr's driver), `+SQNCCID:` (Sequans Monarch), `+MCCID:` (China Mobile OneMO ML307/M5311 `AT+MCCID`),
    /// and the bare labels `ICCID:` / `CCID:`.
    public static let iccidTags = [
        "+CCID:", "+ICCID:", "^ICCID:", "+QCCID:", "#CCID:", "^SCID:", "+CICCID:", "!ICCID:", "+ZGETICCID:",
        "%XICCID:", "%ICCID:", "+SQNCCID:", "+MCCID:", "ICCID:", "CCID:",
    ]

    /// IMEI from `AT+CGSN`, `AT+CGSN=1`, `AT+GSN` or a vendor command: bare digits, a tagged or quoted value, an
    /// `IMEI:`/`IMEI ` label, or the IMEI followed by further comma-separated fields (the first is kept).
    public static func imei(in lines: [String]) -> String? {
        identifier(in: lines, tags: imeiTags, labels: ["IMEISV", "IMEI SV", "IMEI"])
    }

    /// IMSI from `AT+CIMI`: bare digits, `+CIMI: <digits>`, quoted, or labelled.
    public static func imsi(in lines: [String]) -> String? {
        identifier(in: lines, tags: imsiTags, labels: ["IMSI"])
    }

    /// ICCID from AT+CCID and the vendor commands (``iccidTags``) or bare; of `+SQNCCID: "<iccid>",""` the first
    /// field.
    public static func iccid(in lines: [String]) -> String? {
        identifier(in: lines, tags: iccidTags, labels: ["ICCID", "CCID"])
    }

    /// The first tagged value, else the first bare line holding a digit, else the first bare line; reduced to its
    /// first field without label (``IdentifierText/field(_:labels:)``).
    static func identifier(in lines: [String], tags: [String], labels: [String]) -> String? {
        // The tagged remainder as written: `value(in:)` would trim the quotes of `"<iccid>",""` as if they were one.
        var raw: String? = lines.lazy.compactMap { line in tags.lazy.compactMap { afterTag(line, $0) }.first }
            .first.map(String.init)
        if raw == nil {
            let bare = lines.filter { !looksTagged($0) }
            raw = bare.first { $0.contains { $0.isASCIIDigit } } ?? bare.first
        }
        guard let raw else { return nil }
        return String(IdentifierText.field(raw, labels: labels))
    }

    /// The data of a successful `+CRSM: <sw1>,<sw2>[,"<hex>"]` answer (``CRSMAnswer/isSuccess``), or nil.
    public static func crsmData(in lines: [String]) -> String? {
        guard let answer = crsm(in: lines), answer.isSuccess else { return nil }
        return answer.data
    }

    /// The `+CRSM:` answer (3GPP TS 27.007 §8.18): status words and data, whatever the status. Accepts spaces
    /// after the commas and quoted or unquoted data (ModemManager's test-modem-helpers.c CRSM cases), lower-case
    /// hexadecimal, and a status word printed as the hexadecimal digits of the byte (`+CRSM: 90,0,"..."` in
    /// Huawei's balong AT table, where decimal 90 would be no ISO 7816 status byte).
    public static func crsm(in lines: [String]) -> CRSMAnswer? {
        guard let body = value(in: lines, tags: ["+CRSM:"], allowBare: false) else { return nil }
        let parts = body.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, let sw1 = statusByte(parts[0], isSW1: true),
            let sw2 = statusByte(parts[1], isSW1: false)
        else { return nil }
        var data: String?
        if parts.count == 3 {
            let hex = String(IdentifierText.field(parts[2], labels: []).filter { !$0.isWhitespace })
            data = hex.isEmpty ? nil : hex
        }
        return CRSMAnswer(sw1: sw1, sw2: sw2, data: data)
    }

    /// A status byte as decimal (TS 27.007), or as hexadecimal digits when the decimal reading is no ISO 7816-4
    /// SW1 (0x61-0x6F, 0x90-0x9F) and the hexadecimal one is.
    static func statusByte(_ raw: Substring, isSW1: Bool) -> Int? {
        let s = raw.trimmingWhitespace().trimmingQuotes()
        let decimal = Int(s)
        guard isSW1 else { return decimal.flatMap { (0...255).contains($0) ? $0 : nil } ?? Int(s, radix: 16) }
        func isSW1Value(_ v: Int) -> Bool { (0x61...0x6F).contains(v) || (0x90...0x9F).contains(v) }
        if let decimal, isSW1Value(decimal) { return decimal }
        if let hex = Int(s, radix: 16), s.count == 2, isSW1Value(hex) { return hex }
        return decimal.flatMap { (0...255).contains($0) ? $0 : nil }
    }

    /// The elementary file an `AT+CRSM=<command>,<fileid>,...` command line reads (decimal or `0x` hexadecimal
    /// file id), or nil for another command.
    public static func crsmFileID(ofCommand command: String) -> Int? {
        let c = command.trimmingWhitespace().uppercased()
        guard c.hasPrefix("AT+CRSM=") else { return nil }
        let args = c.dropFirst("AT+CRSM=".count).split(separator: ",", omittingEmptySubsequences: false)
        guard args.count >= 2 else { return nil }
        let id = args[1].trimmingWhitespace()
        if id.hasPrefix("0X") { return Int(id.dropFirst(2), radix: 16) }
        return Int(id)
    }

    /// Manufacturer, model or revision from `AT+CGMI`/`+CGMM`/`+CGMR` (and +GMI/+GMM/+GMR): tagged or bare,
    /// several bare lines joined by a space.
    public static func text(in lines: [String], tags: [String]) -> String? {
        if let tagged = value(in: lines, tags: tags, allowBare: false) { return tagged.isEmpty ? nil : tagged }
        let bare = lines.filter { !looksTagged($0) }.map(clean).filter { !$0.isEmpty }
        return bare.isEmpty ? nil : bare.joined(separator: " ")
    }

    /// The state in `+CPIN: <code>` (READY, SIM PIN, SIM PUK, ...).
    public static func pinState(in lines: [String]) -> String? {
        value(in: lines, tags: ["+CPIN:"], allowBare: false)
    }

    /// `line` after `tag` (which ends in a colon), matched without regard to case and with blanks allowed before
    /// the colon (`+CCID : ...`); nil if the line does not carry the tag.
    static func afterTag(_ line: String, _ tag: String) -> Substring? {
        let name = tag.hasSuffix(":") ? String(tag.dropLast()) : tag
        guard line.count >= tag.count, line.prefix(name.count).uppercased() == name.uppercased() else { return nil }
        let rest = line.dropFirst(name.count).drop { $0 == " " || $0 == "\t" }
        guard tag.hasSuffix(":") else { return rest }
        guard rest.first == ":" else { return nil }
        return rest.dropFirst()
    }

    static func looksTagged(_ line: String) -> Bool {
        guard let first = line.first else { return false }
        guard "+^#$!*%".contains(first) else { return false }
        return line.contains(":")
    }

    static func clean(_ raw: String) -> String {
        raw.trimmingWhitespace().trimmingQuotes().trimmingWhitespace()
    }
}

/// A `+CRSM: <sw1>,<sw2>[,<response>]` answer: the SIM's status words and the data read.
public struct CRSMAnswer: Sendable, Equatable {
    public var sw1: Int
    public var sw2: Int
    /// The response data as the modem printed it (hexadecimal, quotes and blanks removed), nil when absent.
    public var data: String?

    public init(sw1: Int, sw2: Int, data: String?) {
        self.sw1 = sw1
        self.sw2 = sw2
        self.data = data
    }

    /// Normal ending: 0x90 (with any SW2), 0x91 (proactive command pending), 0x92 (memory management) and 0x9F
    /// (GSM SIM "response data available"), the set ModemManager accepts from +CRSM; 0x94 0x04, 0x6A 0x82 (file
    /// not found), 0x69 0x82 (security) and the rest are failures.
    public var isSuccess: Bool { [0x90, 0x91, 0x92, 0x9F].contains(sw1) }

    /// The status words as the 4 hexadecimal digits of ISO 7816-4 (`6A82`), for messages.
    public var statusText: String {
        String(sw1, radix: 16, uppercase: true).leftPadded(2) + String(sw2, radix: 16, uppercase: true).leftPadded(2)
    }
}

/// An answer's information lines to a validated identity: the one place that knows which parser and which
/// validator a command's answer needs. The reader uses it for each command it sends; tests feed it transcripts.
public enum IdentityAnswer {
    /// The IMEI in an answer to an IMEI command, nil when the answer holds no value at all.
    public static func imei(in lines: [String]) -> Validated<IMEI>? {
        ATResponse.imei(in: lines).map { IMEI.validate($0) }
    }

    /// The IMSI in the answer to `command`: `AT+CIMI` (or any command answering like it), or a read of EF_IMSI
    /// (`AT+CRSM=176,28423,...`), decoded by ``IMSI/validate(efIMSI:)``.
    public static func imsi(answering command: String, in lines: [String]) -> Validated<IMSI>? {
        if ATResponse.crsmFileID(ofCommand: command) == efIMSIFileID {
            guard let answer = ATResponse.crsm(in: lines) else { return nil }
            guard answer.isSuccess else {
                return Validated(value: nil, problems: [Problem(
                    .imsiMissing, field: .imsi,
                    message: "the SIM refused to read EF_IMSI (status \(answer.statusText))")])
            }
            return IMSI.validate(efIMSI: answer.data ?? "")
        }
        return ATResponse.imsi(in: lines).map { IMSI.validate($0) }
    }

    /// The ICCID in the answer to `command`: `AT+CCID`, a vendor command, `AT+ICCID`, or a read of EF_ICCID
    /// (`AT+CRSM=176,12258,...`, swapped BCD undone by ``ICCID/validate(_:)``).
    public static func iccid(answering command: String, in lines: [String]) -> Validated<ICCID>? {
        if ATResponse.crsmFileID(ofCommand: command) == efICCIDFileID {
            guard let answer = ATResponse.crsm(in: lines) else { return nil }
            guard answer.isSuccess else {
                return Validated(value: nil, problems: [Problem(
                    .iccidMissing, field: .iccid,
                    message: "the SIM refused to read EF_ICCID (status \(answer.statusText))")])
            }
            return ICCID.validate(answer.data ?? "")
        }
        return ATResponse.iccid(in: lines).map { ICCID.validate($0) }
    }

    /// EF_IMSI, 3GPP TS 31.102 §4.2.2 (6F07).
    public static let efIMSIFileID = 0x6F07
    /// EF_ICCID, 3GPP TS 31.102 §4.1.1 (2FE2).
    public static let efICCIDFileID = 0x2FE2
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

import FoundationEssentials
