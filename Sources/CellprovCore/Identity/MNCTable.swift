/// How many digits the Mobile Network Code has, for the home network of an IMSI.
///
/// An IMSI is MCC (3 digits) + MNC (2 or 3 digits) + MSIN, and nothing in the digits says which MNC length
/// applies. The authoritative answer is on the SIM: byte 4 of EF_AD (3GPP TS 31.102 §4.2.18), which
/// ModemManager and oFono read when they can (`IMSI.validate(_:mncLength:)` takes it). Without it, this
/// table decides, as Android does.
///
/// Sources (read to learn, values re-derived; re-check them when networks are added):
/// - ITU-T E.212 "Mobile Network Codes" list (annex to the ITU Operational Bulletin), as tabulated by
///   Wikipedia's "Mobile Network Codes in ITU region 3xx (North America)", "7xx (South America)", "4xx
///   (Asia)" and "5xx (Oceania)" pages.
/// - Android frameworks/opt/telephony `MccTable.java` (`smallestDigitsMnc` column: 3 for 302, 310-316, 338,
///   342, 344, 346, 348, 365) and `SIMRecords.java` `MCCMNC_CODES_HAVING_3DIGITS_MNC` (India 405 025-047,
///   750-756, 799-886, 908-932; Malaysia 502 142-148; Canada 302 370/720).
/// Where Android's old table and the E.212 list disagree (Mexico 334, the Eastern Caribbean 352-360, 366,
/// 376, Argentina 722, Colombia 732, whose networks are all listed with 3-digit MNCs), the E.212 list wins.
public enum MNCTable {
    /// Every network of these MCCs has a 3-digit MNC.
    static let threeDigitMCCs: Set<String> = [
        "302",  // Canada
        "310", "311", "312", "313", "314", "315", "316",  // United States and territories (Guam, N. Marianas)
        "330",  // Puerto Rico
        "334",  // Mexico (334 020 Telcel, 334 050 AT&T, ...)
        "338",  // Jamaica
        "342",  // Barbados
        "344",  // Antigua and Barbuda
        "346",  // Cayman Islands
        "348",  // British Virgin Islands
        "352",  // Grenada
        "354",  // Montserrat
        "356",  // Saint Kitts and Nevis
        "358",  // Saint Lucia
        "360",  // Saint Vincent and the Grenadines
        "365",  // Anguilla
        "366",  // Dominica
        "376",  // Turks and Caicos Islands
        "708",  // Honduras
        "722",  // Argentina
        "732",  // Colombia
        "750",  // Falkland Islands
    ]

    /// In these MCCs some networks have 3-digit MNCs and others 2: the 3-digit ones, as MCC+MNC ranges.
    static let threeDigitRanges: [String: [ClosedRange<Int>]] = [
        // India (405 also has 2-digit networks: 405 01-24, 405 51-56, 405 66-70, ...).
        "405": [25...47, 750...756, 799...886, 908...932],
        // Malaysia (502 12, 13, 16-20 are 2-digit; the 14x/15x MVNO block is 3-digit).
        "502": [140...159],
        // Bermuda (350 00/000 and 007 are 3-digit; 350 01, 02, 05 are 2-digit).
        "350": [0...9],
        // Trinidad and Tobago (374 12 is 2-digit; 374 130, 140 are 3-digit).
        "374": [130...149],
        // Panama (714 020 movistar).
        "714": [20...29],
        // Guyana (738 002 GT&T).
        "738": [2...2],
    ]

    /// The MNC length (2 or 3) for the network of `imsi` (its leading digits, at least the MCC). Unknown MCCs
    /// (including the test MCCs 001 and 999) use 2.
    public static func mncLength(forIMSI imsi: some StringProtocol) -> Int {
        let mcc = String(imsi.prefix(3))
        if threeDigitMCCs.contains(mcc) { return 3 }
        if let ranges = threeDigitRanges[mcc] {
            let candidate = imsi.dropFirst(3).prefix(3)
            if candidate.count == 3, let mnc = Int(candidate), ranges.contains(where: { $0.contains(mnc) }) {
                return 3
            }
        }
        return 2
    }
}
