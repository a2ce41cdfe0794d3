import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import Testing

/// The registry's pure rules (CellprovRegistryCore), table-driven: flag rules, tokens, message ids, masking, and
/// the `--database` URL parser.
@Suite struct StoreCoreTests {
    struct RuleCase: Sendable, CustomTestStringConvertible {
        var name: String
        var context: IngestContext
        /// (kind, severity, dedupe key) expected, in order.
        var expected: [(FlagKind, EventSeverity, String)]
        var testDescription: String { name }
    }

    static let a = TestID.imei(1)
    static let b = TestID.imei(2)
    static let sim = TestID.iccid(1)

    static let ruleCases: [RuleCase] = [
        RuleCase(
            name: "plain enrolment", context: IngestContext(request: event(imei: a, iccid: sim), serial: "S", origin: .device),
            expected: []),
        RuleCase(
            name: "imei_changed keeps the reported severity",
            context: IngestContext(
                request: event("imei_changed", imei: b, previous: .init(imei: a), severity: "warning"), serial: "S",
                origin: .device),
            expected: [(.imeiChanged, .warning, "imei_changed:S:usb-1:\(b)")]),
        RuleCase(
            name: "duplicate_imei as reported",
            context: IngestContext(request: event("duplicate_imei", imei: a, severity: "critical"), serial: "S", origin: .device),
            expected: [(.duplicateIMEI, .critical, "duplicate_imei:S:\(a)")]),
        RuleCase(
            name: "IMEI held by another unit",
            context: IngestContext(request: event(imei: a), serial: "S", origin: .device, imeiHolders: ["T", "U", "T"]),
            expected: [(.imeiOnTwoUnits, .critical, "imei_on_two_units:\(a)")]),
        RuleCase(
            name: "only itself holds the IMEI",
            context: IngestContext(request: event(imei: a), serial: "S", origin: .device, imeiHolders: ["S"]),
            expected: []),
        RuleCase(
            name: "placeholder IMEI on two units is not a clone finding",
            context: IngestContext(request: event(imei: "000000000000000"), serial: "S", origin: .device, imeiHolders: ["T"]),
            expected: []),
        RuleCase(
            name: "bad check digit is not trusted",
            context: IngestContext(
                request: event(imei: String(a.dropLast()) + String((Int(String(a.last!))! + 1) % 10)), serial: "S",
                origin: .device, imeiHolders: ["T"]),
            expected: []),
        RuleCase(
            name: "SIM moved from another unit",
            context: IngestContext(request: event(imei: a, iccid: sim), serial: "S", origin: .device, iccidHolders: ["T"]),
            expected: [(.iccidMoved, .warning, "iccid_moved:\(sim):S")]),
        RuleCase(
            name: "no SIM, nothing moved",
            context: IngestContext(request: event(imei: a), serial: "S", origin: .device, iccidHolders: ["T"]),
            expected: []),
        RuleCase(
            name: "field IMEI differs from manufacturing",
            context: IngestContext(request: event(imei: b), serial: "S", origin: .device, manufacturingIMEIs: [a]),
            expected: [(.moduleSwappedSinceManufacturing, .critical, "module_swapped:S:\(b)")]),
        RuleCase(
            name: "field IMEI among several manufacturing IMEIs",
            context: IngestContext(request: event(imei: b), serial: "S", origin: .device, manufacturingIMEIs: [a, b]),
            expected: []),
        RuleCase(
            name: "identity_invalid is not compared",
            context: IngestContext(
                request: event("identity_invalid", imei: b), serial: "S", origin: .device, manufacturingIMEIs: [a]),
            expected: []),
        RuleCase(
            name: "manufacturing record after field events",
            context: IngestContext(
                request: event("manufactured", imei: a), serial: "S", origin: .factory, fieldIMEIs: [a, b]),
            expected: [(.moduleSwappedSinceManufacturing, .critical, "module_swapped:S:\(b)")]),
        RuleCase(
            name: "manufacturing records raise no field rules",
            context: IngestContext(
                request: event("manufactured", imei: a, iccid: sim), serial: "S", origin: .factory, unitLost: true,
                imeiHolders: ["T"], iccidHolders: ["T"]),
            expected: []),
        RuleCase(
            name: "event from a lost unit",
            context: IngestContext(request: event(imei: a), serial: "S", origin: .device, unitLost: true),
            expected: [(.lostUnitSeen, .critical, "lost_unit_seen:S")]),
        RuleCase(
            name: "everything at once, in rule order",
            context: IngestContext(
                request: event("imei_changed", imei: b, iccid: sim, previous: .init(imei: a), severity: "critical"),
                serial: "S", origin: .device, unitLost: true, imeiHolders: ["T"], iccidHolders: ["U"],
                manufacturingIMEIs: [a]),
            expected: [
                (.imeiChanged, .critical, "imei_changed:S:usb-1:\(b)"), (.imeiOnTwoUnits, .critical, "imei_on_two_units:\(b)"),
                (.iccidMoved, .warning, "iccid_moved:\(sim):S"),
                (.moduleSwappedSinceManufacturing, .critical, "module_swapped:S:\(b)"),
                (.lostUnitSeen, .critical, "lost_unit_seen:S"),
            ]),
    ]

    @Test(arguments: ruleCases)
    func flagRules(_ c: RuleCase) {
        let flags = FlagRules.evaluate(c.context)
        #expect(flags.map(\.kind) == c.expected.map(\.0))
        #expect(flags.map(\.severity) == c.expected.map(\.1))
        #expect(flags.map(\.dedupeKey) == c.expected.map(\.2))
        for flag in flags {
            // Summaries are for logs and pages: no identifier digits.
            for id in [Self.a, Self.b, Self.sim] { #expect(!flag.summary.contains(id)) }
            #expect(flag.evidence.eventIDs == [c.context.request.eventID])
            #expect(flag.serial == "S")
        }
    }

    @Test func evidenceNamesTheOthers() {
        let flags = FlagRules.evaluate(
            IngestContext(request: event(imei: Self.a, iccid: Self.sim), serial: "S", origin: .device,
                imeiHolders: ["U", "T", "U"], iccidHolders: ["T"]))
        #expect(flags[0].evidence.otherSerials == ["T", "U"] && flags[0].evidence.imei == Self.a)
        #expect(flags[1].evidence.otherSerials == ["T"] && flags[1].evidence.iccid == Self.sim)
    }

    @Test(arguments: TokenKind.allCases)
    func tokens(_ kind: TokenKind) {
        let t1 = Tokens.generate(kind)
        let t2 = Tokens.generate(kind)
        #expect(t1 != t2 && t1.hasPrefix(kind.prefix) && t1.count == kind.prefix.count + 43)
        #expect(Tokens.kind(of: t1) == kind)
        let h = Tokens.hash(t1)
        #expect(h.count == 64 && h == Tokens.hash(t1) && h != Tokens.hash(t2))
        #expect(h.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(Tokens.kind(of: String(t1.dropLast())) == nil)
        #expect(Tokens.kind(of: String(t1.dropLast()) + "!") == nil)
    }

    @Test func tokenHashIsSHA256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        #expect(Tokens.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Tokens.kind(of: "cpx_" + String(repeating: "a", count: 43)) == nil)
    }

    @Test func messageIDsAreDistinctHex() {
        let ids = RegistryMessageID.allCases.map(\.id)
        #expect(Set(ids).count == ids.count)
        for id in ids { #expect(id.count == 32 && id.allSatisfy { "0123456789abcdef".contains($0) }) }
        #expect(Set(FlagKind.allCases.map { RegistryMessageID.flagRaised($0) }).count == FlagKind.allCases.count)
    }

    @Test func maskingShowsNoDigits() {
        let imei = TestID.imei(123_456)
        let masked = Masking.evidence(FlagEvidence(imei: imei, imsi: TestID.imsi(9), iccid: TestID.iccid(9),
            expectedIMEI: TestID.imei(5), otherSerials: ["GW-1"]))
        #expect(masked.imei?.hasPrefix("IMEI(TAC 35209900, ref ") == true)
        #expect(masked.imsi?.hasPrefix("IMSI(262-01, ref ") == true)
        #expect(masked.iccid?.hasPrefix("ICCID(") == true)
        for v in [masked.imei, masked.imsi, masked.iccid, masked.expectedIMEI] {
            #expect(!(v ?? "").contains("123456"))
        }
        #expect(masked.otherSerials == ["GW-1"])
        #expect(Masking.imei("12345")?.hasPrefix("IMEI(ref ") == true && Masking.imei(nil) == nil)
    }

    struct URLCase: Sendable, CustomTestStringConvertible {
        var url: String
        var expected: RegistryDatabaseLocation?
        var testDescription: String { url }
    }

    static let urlCases: [URLCase] = [
        URLCase(url: "sqlite:///var/lib/cellprov-registry/registry.db",
            expected: .sqlite(path: "/var/lib/cellprov-registry/registry.db")),
        URLCase(url: "sqlite:///srv/reg/a%20b.db", expected: .sqlite(path: "/srv/reg/a b.db")),
        URLCase(url: "sqlite://relative/x.db", expected: nil),
        URLCase(url: "sqlite:x.db", expected: nil),
        URLCase(url: "sqlite:///", expected: nil),
        // PostgreSQL URLs, the environment and the password file: PostgresConnectionSettingsTests.
        URLCase(url: "postgres://reg@db/fleet?bogus=1", expected: nil),
        URLCase(url: "mysql://reg@db/fleet", expected: nil),
        URLCase(url: "/var/lib/registry.db", expected: nil),
    ]

    @Test(arguments: urlCases)
    func databaseURLs(_ c: URLCase) throws {
        if let expected = c.expected {
            #expect(try RegistryDatabase.parse(c.url) == expected)
        } else {
            #expect(throws: RegistryDatabaseURLError.self) { try RegistryDatabase.parse(c.url) }
        }
    }

    @Test func urlErrorsAndDescriptionsCarryNoPassword() throws {
        for url in ["postgres://reg:hunter2@db/fleet?bogus=1", "postgres://reg:hunter2@a,b/fleet",
            "postgres://reg:hunter2@db:0/fleet"]
        {
            do {
                _ = try RegistryDatabase.parse(url)
                Issue.record("accepted \(url)")
            } catch {
                #expect(!"\(error)".contains("hunter2"))
            }
        }
        guard case .postgres(let location) = try RegistryDatabase.parse("postgres://reg:hunter2@db/fleet") else {
            Issue.record("not postgres")
            return
        }
        #expect(!location.description.contains("hunter2") && location.description.contains("db:5432/fleet"))
    }

    @Test func openReportsAnUnreachableServerClearly() async throws {
        // Nothing listens on this socket directory: open fails within its timeout, with a message and no password.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("regstore-nosock-\(UUID())").path
        let started = ContinuousClock.now
        do {
            _ = try await RegistryDatabase.open(
                url: "postgres://reg:hunter2@/fleet?host=\(dir)", logger: TestStore.logger, connectTimeout: .seconds(2))
            Issue.record("opened a database on a socket nobody listens on")
        } catch {
            #expect(error is RegistryStoreError)
            #expect(!"\(error)".contains("hunter2") && "\(error)".contains("PostgreSQL"))
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}
