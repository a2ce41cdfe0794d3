/// Mutual TLS for devices: the device serial is the subject common name of the client certificate the TLS layer
/// verified against `--tls-client-ca`. NIOSSL hands the certificate over as DER and has no subject accessor; this
/// reads just enough DER (X.690) to find it: Certificate → TBSCertificate → subject → the last `commonName`
/// (OID 2.5.4.3) as UTF8String, PrintableString or IA5String. Bounded: lengths are checked against the buffer, at
/// most 4 length octets, no recursion beyond the fixed path. Anything unexpected gives nil (then the request needs
/// a token like any other).
enum ClientCertificate {
    static func commonName(der: [UInt8]) -> String? {
        guard let cert = element(der, at: 0), cert.tag == 0x30,
            let tbs = element(der, at: cert.contentStart), tbs.tag == 0x30
        else { return nil }
        // TBSCertificate: [0] version (optional), serialNumber, signature, issuer, validity, subject, ...
        var fields: [Element] = []
        var offset = tbs.contentStart
        while offset < tbs.end, fields.count < 7, let e = element(der, at: offset, limit: tbs.end) {
            fields.append(e)
            offset = e.end
        }
        let skip = fields.first?.tag == 0xA0 ? 1 : 0
        guard fields.count >= skip + 5 else { return nil }
        let subject = fields[skip + 4]
        guard subject.tag == 0x30 else { return nil }
        var name: String?
        // subject: SEQUENCE OF SET OF SEQUENCE { OID, value }
        var setOffset = subject.contentStart
        while setOffset < subject.end, let set = element(der, at: setOffset, limit: subject.end) {
            var atvOffset = set.contentStart
            while set.tag == 0x31, atvOffset < set.end, let atv = element(der, at: atvOffset, limit: set.end) {
                if atv.tag == 0x30, let oid = element(der, at: atv.contentStart, limit: atv.end), oid.tag == 0x06,
                    Array(der[oid.contentStart..<oid.end]) == [0x55, 0x04, 0x03],
                    let value = element(der, at: oid.end, limit: atv.end), [0x0C, 0x13, 0x16].contains(value.tag)
                {
                    name = String(decoding: der[value.contentStart..<value.end], as: UTF8.self)
                }
                atvOffset = atv.end
            }
            setOffset = set.end
        }
        return name
    }

    struct Element {
        var tag: UInt8
        var contentStart: Int
        var end: Int
    }

    /// The DER element at `offset` (single-byte tags; definite lengths only), within `limit`.
    static func element(_ der: [UInt8], at offset: Int, limit: Int? = nil) -> Element? {
        let limit = min(limit ?? der.count, der.count)
        guard offset + 2 <= limit else { return nil }
        let tag = der[offset]
        var length = Int(der[offset + 1])
        var start = offset + 2
        if length & 0x80 != 0 {
            let count = length & 0x7F
            guard count >= 1, count <= 4, start + count <= limit else { return nil }
            length = 0
            for i in 0..<count { length = length << 8 | Int(der[start + i]) }
            start += count
        }
        guard length >= 0, start + length <= limit else { return nil }
        return Element(tag: tag, contentStart: start, end: start + length)
    }
}
