import Foundation
import Testing

@testable import CellprovRegistryHTTP

/// The subject-CN reader of mutual TLS: the subject's CN, not the issuer's; bounded on hostile DER. (The v3 path, with
/// the `[0]` version field, is exercised end to end by Tests/registry/test_mtls.py with openssl-made certificates.)
@Suite struct HTTPClientCertificateTests {
    /// A v1 certificate (no version field) issued by "CN=Fleet CA" to "O=cellprov test, CN=GW-000100".
    static let v1 = Array(
        Data(
            base64Encoded:
                "MIIBOTCB4AIUXjMqd/HMIWQ8n3kNffG21Ee96wAwCgYIKoZIzj0EAwIwEzERMA8GA1UEAwwIRmxlZXQgQ0EwHhcNMjYxMTMwMDUwOTUxWhcNMzYxMTI3MDUwOTUxWjAsMRYwFAYDVQQKDA1jZWxscHJvdiB0ZXN0MRIwEAYDVQQDDAlHVy0wMDAxMDAwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQXiXR2Pb8hLBQOkLfkO7bWxGcV2LaBeO6yjiupbeXT7Y0hC1Gn0XhpPmLW9hl8HyQQZIaK2YqxWQv6fZASK3OjMAoGCCqGSM49BAMCA0gAMEUCIQC6ONFts9HEO/eF5dPUu9ZAO97Bvc0fGCNcQvsScJG2hgIgT3n6tWM6c4qEmM1Ctle8ZhsxPkJULa+/VC7wsCc+AQo="
        )!)

    @Test func readsTheSubjectCommonNameNotTheIssuers() {
        #expect(ClientCertificate.commonName(der: Self.v1) == "GW-000100")
    }

    @Test func truncatedOrRandomDERGivesNilWithoutCrashing() {
        for length in 0..<Self.v1.count {
            let name = ClientCertificate.commonName(der: Array(Self.v1.prefix(length)))
            #expect(name == nil, "prefix of \(length) bytes")
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var bytes = Self.v1
            for _ in 0..<4 {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            _ = ClientCertificate.commonName(der: bytes)
            _ = ClientCertificate.commonName(der: (0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
    }
}
