extension SimulatedIdentity {
    /// What must never appear in logs, tables or error messages for this identity: the full IMEI, the IMEI's
    /// serial digits, the full IMSI, the MSIN (after a 2-digit MNC, which covers 3-digit MNCs too) and the full
    /// ICCID. The leak-scan tests search every output for these.
    public var leakPatterns: [String] {
        var out: [String] = []
        if let imei {
            out.append(imei)
            out.append(String(imei.dropFirst(8).prefix(6)))
        }
        if let imsi {
            out.append(imsi)
            out.append(String(imsi.dropFirst(5)))
        }
        if let iccid { out.append(iccid) }
        return out
    }
}
