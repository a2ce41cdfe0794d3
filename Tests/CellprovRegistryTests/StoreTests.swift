import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import CellprovRegistryStore
import Foundation
import Testing

/// The storage suite: every behaviour of `RegistryStore`, run against SQLite and (when configured) PostgreSQL.
@Suite struct StoreTests {
    @Test(arguments: StoreBackend.available)
    func migrationsAreIdempotent(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, url in
            let key = try await store.pseudonymKey()
            let session = try await store.sessionKey()
            #expect(key.count == 32 && session.count == 32 && key != session)
            try await store.migrate()
            try await store.migrate()
            try await store.checkReady()
            // A second instance on the same database migrates (nothing to do) and shares the keys.
            let other = try await RegistryDatabase.open(url: url, logger: TestStore.logger)
            #expect(try await other.pseudonymKey() == key)
            #expect(try await other.sessionKey() == session)
            await other.close()
        }
    }

    @Test(arguments: StoreBackend.available)
    func concurrentMigrationsOnOneDatabase(_ backend: StoreBackend) async throws {
        // Four instances start at once on a database nobody migrated yet: each version is applied once, all of
        // them come up, and they share one pseudonym key.
        let (url, cleanup) = try await TestStore.emptyDatabase(backend)
        do {
            let keys = try await withThrowingTaskGroup(of: [UInt8].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let s = try await RegistryDatabase.open(url: url, logger: TestStore.logger)
                        try await s.checkReady()
                        let k = try await s.pseudonymKey()
                        await s.close()
                        return k
                    }
                }
                var all = [[UInt8]]()
                for try await k in group { all.append(k) }
                return all
            }
            #expect(keys.count == 4 && Set(keys.map { Data($0) }).count == 1)
        } catch {
            await cleanup()
            throw error
        }
        await cleanup()
    }

    @Test(arguments: StoreBackend.available)
    func eventIDIsStoredOnce(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let r = event(imei: TestID.imei(1), imsi: TestID.imsi(1), iccid: TestID.iccid(1))
            try await store.field(r, "GW-1")
            let again = try await store.ingest(r, serial: "GW-1", origin: .device, references: [], receivedAt: t0)
            #expect(again == .duplicate)
            #expect(try await store.unit(serial: "GW-1")?.timeline.count == 1)
        }
    }

    @Test(arguments: StoreBackend.available)
    func concurrentIngestOfOneEventStoresItOnce(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, url in
            // Two store instances (as two registry processes) and many tasks deliver the same events at once.
            let second = try await RegistryDatabase.open(url: url, logger: TestStore.logger)
            let events = (0..<5).map { event(slot: "s\($0)", imei: TestID.imei(10 + $0), iccid: TestID.iccid(10 + $0)) }
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for task in 0..<16 {
                    let s: any RegistryStore = task % 2 == 0 ? store : second
                    for e in events {
                        group.addTask {
                            try await s.ingest(e, serial: "GW-C", origin: .device, references: [], receivedAt: t0)
                                != .duplicate
                        }
                    }
                }
                var stored = 0
                for try await ok in group where ok { stored += 1 }
                return stored
            }
            await second.close()
            #expect(outcomes == events.count)
            let unit = try #require(try await store.unit(serial: "GW-C"))
            #expect(unit.timeline.count == events.count)
            #expect(Set(unit.timeline.map(\.eventID)) == Set(events.map(\.eventID)))
        }
    }

    @Test(arguments: StoreBackend.available)
    func reportedFlagsAreRaisedAndDeduplicated(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let old = TestID.imei(20)
            let new = TestID.imei(21)
            try await store.field(event(imei: old, iccid: TestID.iccid(20)), "GW-R")
            let changed = event(
                "imei_changed", imei: new, iccid: TestID.iccid(20), previous: .init(imei: old), severity: "critical")
            #expect(try await store.field(changed, "GW-R") == [.imeiChanged])
            let flag = try #require(try await store.flags(openOnly: true, limit: 10).first)
            #expect(flag.flag.severity == .critical && flag.flag.serial == "GW-R" && flag.flag.evidence.imei == new)
            #expect(!flag.flag.summary.contains(new))
            // The same finding again while open: not raised again.
            let repeatEvent = event("imei_changed", imei: new, previous: .init(imei: old), severity: "critical")
            #expect(try await store.field(repeatEvent, "GW-R") == [])
            #expect(try await store.field(event("duplicate_imei", slot: "usb-2", imei: new, severity: "warning"), "GW-R")
                == [.duplicateIMEI])
            // Resolved: the same finding raises a new flag.
            #expect(try await store.resolveFlag(id: flag.id, by: "alice", note: "module replaced by us", at: t0))
            #expect(try await store.resolveFlag(id: flag.id, by: "alice", note: "again", at: t0) == false)
            let resolved = try #require(try await store.flag(id: flag.id))
            #expect(resolved.resolvedBy == "alice" && resolved.resolutionNote == "module replaced by us")
            #expect(!resolved.isOpen)
            let third = event("imei_changed", imei: new, previous: .init(imei: old), severity: "critical")
            #expect(try await store.field(third, "GW-R") == [.imeiChanged])
            #expect(try await store.openFlagCounts() == [.imeiChanged: 1, .duplicateIMEI: 1])
        }
    }

    @Test(arguments: StoreBackend.available)
    func imeiOnTwoUnits(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let imei = TestID.imei(30)
            #expect(try await store.field(event(imei: imei, iccid: TestID.iccid(30)), "GW-A") == [])
            #expect(try await store.field(event(imei: imei, iccid: TestID.iccid(31)), "GW-B") == [.imeiOnTwoUnits])
            let flag = try #require(try await store.flags(openOnly: true, limit: 10).first)
            #expect(flag.flag.evidence.otherSerials == ["GW-A"] && flag.flag.dedupeKey == "imei_on_two_units:\(imei)")
            #expect(flag.flag.severity == .critical)
            // A third unit: the finding is open, no second flag.
            #expect(try await store.field(event(imei: imei, iccid: TestID.iccid(32)), "GW-C") == [])
            // An invalid (placeholder) IMEI shared by many units is not this finding.
            try await store.field(event(slot: "u2", imei: "000000000000000"), "GW-A")
            #expect(try await store.field(event(slot: "u2", imei: "000000000000000"), "GW-B") == [])
        }
    }

    @Test(arguments: StoreBackend.available)
    func concurrentIMEIOnTwoUnitsIsSeen(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, url in
            // Many units enrol one IMEI at the same moment through two instances: the finding is raised (once).
            let second = try await RegistryDatabase.open(url: url, logger: TestStore.logger)
            let imei = TestID.imei(35)
            let raised = try await withThrowingTaskGroup(of: [FlagKind].self) { group in
                for n in 0..<8 {
                    let s: any RegistryStore = n % 2 == 0 ? store : second
                    group.addTask { try await s.field(event(imei: imei, iccid: TestID.iccid(350 + n)), "GW-X\(n)") }
                }
                var all = [FlagKind]()
                for try await k in group { all += k }
                return all
            }
            await second.close()
            #expect(raised == [.imeiOnTwoUnits])
        }
    }

    @Test(arguments: StoreBackend.available)
    func iccidMoved(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let iccid = TestID.iccid(40)
            let imsi = TestID.imsi(40)
            try await store.field(event(imei: TestID.imei(40), imsi: imsi, iccid: iccid), "GW-A")
            #expect(
                try await store.field(event("sim_changed", imei: TestID.imei(41), imsi: imsi, iccid: iccid), "GW-B")
                    == [.iccidMoved])
            let flag = try #require(try await store.flags(openOnly: true, limit: 10).first)
            #expect(flag.flag.dedupeKey == "iccid_moved:\(iccid):GW-B" && flag.flag.severity == .warning)
            #expect(flag.flag.evidence.otherSerials == ["GW-A"])
            // GW-A's slot no longer holds the SIM.
            let a = try #require(try await store.unit(serial: "GW-A"))
            #expect(a.summary.slots.first?.identity.iccid == nil)
            #expect(try await store.simAssignments().map(\.serial) == ["GW-B"])
            // The SIM taken out of B (sim_removed) and put in C: C's event names B.
            try await store.field(
                event("sim_removed", imei: TestID.imei(41), previous: .init(imsi: imsi, iccid: iccid)), "GW-B")
            #expect(try await store.field(event(imei: TestID.imei(42), imsi: imsi, iccid: iccid), "GW-C")
                == [.iccidMoved])
            let c = try #require(try await store.flags(openOnly: true, limit: 10).first)
            #expect(c.flag.evidence.otherSerials == ["GW-B"])
            // A late backlog event of A (older than A's current slot state) naming the SIM moves nothing.
            try await store.field(event(imei: TestID.imei(40), at: t0.addingTimeInterval(3600)), "GW-A")
            #expect(try await store.field(event(imei: TestID.imei(40), imsi: imsi, iccid: iccid, at: t0), "GW-A") == [])
            #expect(try await store.simAssignments().map(\.serial) == ["GW-C"])
            // The same unit reporting its own SIM again raises nothing.
            #expect(try await store.field(event(imei: TestID.imei(42), imsi: imsi, iccid: iccid), "GW-C") == [])
        }
    }

    @Test(arguments: StoreBackend.available)
    func moduleSwappedSinceManufacturing(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let made = TestID.imei(50)
            let other = TestID.imei(51)
            #expect(try await store.factory(event("manufactured", serial: "GW-M", slot: "probe", imei: made), "GW-M")
                == [])
            #expect(try await store.field(event(imei: made, iccid: TestID.iccid(50)), "GW-M") == [])
            #expect(try await store.field(event("imei_changed", imei: other, previous: .init(imei: made),
                severity: "critical"), "GW-M") == [.imeiChanged, .moduleSwappedSinceManufacturing])
            let swapped = try #require(try await store.flags(openOnly: true, limit: 10).first {
                $0.flag.kind == .moduleSwappedSinceManufacturing })
            #expect(swapped.flag.evidence.imei == other && swapped.flag.evidence.expectedIMEI == made)
            #expect(swapped.flag.dedupeKey == "module_swapped:GW-M:\(other)")
            // A manufacturing record arriving after field events.
            try await store.field(event(imei: TestID.imei(52), iccid: TestID.iccid(52)), "GW-N")
            #expect(try await store.factory(event("manufactured", slot: "probe", imei: TestID.imei(53)), "GW-N")
                == [.moduleSwappedSinceManufacturing])
            // Several manufacturing records: any of their IMEIs counts.
            try await store.factory(event("manufactured", slot: "p1", imei: TestID.imei(54)), "GW-P")
            try await store.factory(event("manufactured", slot: "p2", imei: TestID.imei(55)), "GW-P")
            #expect(try await store.field(event(slot: "usb-2", imei: TestID.imei(55)), "GW-P") == [])
            // No manufacturing record: nothing to compare with.
            #expect(try await store.field(event(imei: TestID.imei(56)), "GW-Q") == [])
            let detail = try #require(try await store.unit(serial: "GW-P"))
            #expect(detail.manufacturing.count == 2 && detail.timeline.count == 3)
        }
    }

    @Test(arguments: StoreBackend.available)
    func lostAndFound(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let old = Tokens.hash(Tokens.generate(.device))
            try await store.putDeviceToken(serial: "GW-L", tokenHash: old, at: t0)
            #expect(try await store.credential(tokenHash: old) == CredentialRecord(principal: .device(serial: "GW-L")))
            #expect(try await store.markLost(serial: "NOPE", by: "bob", note: nil, at: t0) == false)
            #expect(try await store.recordRefusal(serial: "GW-L", actor: "device:GW-X", reason: "wrong serial",
                remote: "192.0.2.1", at: t0) == [])
            #expect(try await store.markLost(serial: "GW-L", by: "bob", note: "stolen from site 4", at: t0))
            #expect(try await store.credential(tokenHash: old)?.revokedAt != nil)
            let detail = try #require(try await store.unit(serial: "GW-L"))
            #expect(detail.lost?.markedBy == "bob" && detail.summary.lost)
            // The revoked token tries again: lost_unit_seen, once while open.
            let refused = try await store.recordRefusal(
                serial: "GW-L", actor: "device:GW-L", reason: "token revoked", remote: "192.0.2.9", at: t0)
            #expect(refused.map(\.flag.kind) == [.lostUnitSeen])
            #expect(try await store.recordRefusal(serial: "GW-L", actor: "device:GW-L", reason: "token revoked",
                remote: nil, at: t0) == [])
            _ = try await store.resolveFlag(id: refused[0].id, by: "bob", note: "seen", at: t0)
            // An event through a still-valid credential (mTLS) from the lost unit is stored and flagged.
            #expect(try await store.field(event(imei: TestID.imei(60)), "GW-L") == [.lostUnitSeen])
            // Audited once per reason and hour: the second "token revoked" is counted, not stored.
            #expect(try await store.audit(limit: 10).filter { $0.action == "device_refused" }.count == 2)
            // Found: a new token, the old one stays revoked.
            let new = Tokens.hash(Tokens.generate(.device))
            #expect(try await store.markFound(serial: "GW-L", by: "bob", newTokenHash: new, at: t0))
            #expect(try await store.markFound(serial: "GW-L", by: "bob", newTokenHash: new, at: t0) == false)
            #expect(try await store.credential(tokenHash: new)?.revokedAt == nil)
            #expect(try await store.credential(tokenHash: old)?.revokedAt != nil)
            #expect(try await store.unit(serial: "GW-L")?.lost == nil)
            #expect(try await store.field(event(imei: TestID.imei(60), sequence: 2), "GW-L") == [])
        }
    }

    @Test(arguments: StoreBackend.available)
    func credentialsOfEveryKind(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let s = Tokens.hash(Tokens.generate(.station))
            let o1 = Tokens.hash(Tokens.generate(.operator))
            let o2 = Tokens.hash(Tokens.generate(.operator))
            try await store.putStationToken(name: "line-3", tokenHash: s, at: t0)
            try await store.putOperatorToken(name: "alice", role: .viewer, tokenHash: o1, at: t0)
            #expect(try await store.credential(tokenHash: s)?.principal == .station(name: "line-3"))
            #expect(try await store.credential(tokenHash: o1)?.principal == .operator(name: "alice", role: .viewer))
            // A new token for the same operator replaces the old one (and may change the role).
            try await store.putOperatorToken(name: "alice", role: .admin, tokenHash: o2, at: t0)
            #expect(try await store.credential(tokenHash: o1)?.revokedAt != nil)
            #expect(try await store.credential(tokenHash: o2) == CredentialRecord(principal: .operator(name: "alice", role: .admin)))
            #expect(try await store.credential(tokenHash: Tokens.hash("cpo_unknown")) == nil)
            // A device token for a unit that never reported: the unit exists (searchable by serial).
            try await store.putDeviceToken(serial: "GW-NEW", tokenHash: Tokens.hash(Tokens.generate(.device)), at: t0)
            #expect(try await store.searchUnits(SearchTerms(parsing: "GW-NEW"), limit: 10).map(\.serial) == ["GW-NEW"])
        }
    }

    /// What the docs promise: a 201 is answered after a commit that is on disk. GRDB's WAL set-up lowers the
    /// writer to NORMAL; the store sets FULL back.
    @Test func sqliteCommitsWithSynchronousFull() async throws {
        try await withStore(.sqlite) { store, _ in
            let sqlite = try #require(store as? SQLiteRegistryStore)
            #expect(try await sqlite.commitSynchronous() == 2)
        }
    }

    @Test(arguments: StoreBackend.available)
    func revokingAnOperatorRevokesItsTokensAndIsAudited(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let token = Tokens.hash(Tokens.generate(.operator))
            let other = Tokens.hash(Tokens.generate(.operator))
            try await store.putOperatorToken(name: "carol", role: .admin, tokenHash: token, at: t0)
            try await store.putOperatorToken(name: "dave", role: .viewer, tokenHash: other, at: t0)
            #expect(try await store.operatorRole(name: "carol") == .admin)
            #expect(try await store.operatorRole(name: "nobody") == nil)
            #expect(try await store.revokeOperator(name: "carol", by: "cli:uid 0", at: t0))
            #expect(try await store.credential(tokenHash: token)?.revokedAt != nil)
            #expect(try await store.operatorRole(name: "carol") == nil)
            #expect(try await store.revokeOperator(name: "carol", by: "cli:uid 0", at: t0) == false, "nothing left")
            #expect(try await store.revokeOperator(name: "nobody", by: "cli:uid 0", at: t0) == false)
            // Others keep theirs; a device with the same name is not an operator.
            #expect(try await store.operatorRole(name: "dave") == .viewer)
            try await store.putDeviceToken(serial: "erin", tokenHash: Tokens.hash(Tokens.generate(.device)), at: t0)
            #expect(try await store.revokeOperator(name: "erin", by: "cli:uid 0", at: t0) == false)
            let audit = try await store.audit(limit: 10).filter { $0.action == "revoke_operator" }
            #expect(audit.count == 1 && audit.first?.actor == "cli:uid 0" && audit.first?.detail == "operator carol")
            // Added again later: a new token, valid.
            try await store.putOperatorToken(name: "carol", role: .viewer, tokenHash: Tokens.hash("cpo_new"), at: t0)
            #expect(try await store.operatorRole(name: "carol") == .viewer)
        }
    }

    /// Issue 19 row 8: a lost unit retrying all day adds one audit row per hour, which counts the others.
    @Test(arguments: StoreBackend.available)
    func refusedAttemptsAreAuditedOncePerHour(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            try await store.field(event(imei: TestID.imei(80)), "GW-R")
            #expect(try await store.markLost(serial: "GW-R", by: "bob", note: nil, at: t0))
            func refuse(_ minutes: Double) async throws {
                _ = try await store.recordRefusal(
                    serial: "GW-R", actor: "device:GW-R", reason: "token revoked", remote: "192.0.2.9",
                    at: t0.addingTimeInterval(minutes * 60))
            }
            for i in 0..<60 { try await refuse(Double(i) / 2) }  // 60 attempts in 30 minutes
            var rows = try await store.audit(limit: 100).filter { $0.action == "device_refused" }
            #expect(rows.count == 1 && rows.first?.detail == "token revoked")
            try await refuse(61)
            rows = try await store.audit(limit: 100).filter { $0.action == "device_refused" }
            #expect(rows.count == 2)
            #expect(rows.first?.detail == "token revoked (and 59 more refused in the hour before, not audited each)")
            // Another reason has a window of its own.
            _ = try await store.recordRefusal(
                serial: "GW-R", actor: "device:GW-Z", reason: "device token used for another serial", remote: nil,
                at: t0.addingTimeInterval(62 * 60))
            #expect(try await store.audit(limit: 100).filter { $0.action == "device_refused" }.count == 3)
        }
    }

    /// Issue 19 row 3: a page session is bound to the token that signed in; sign-out, revocation and a re-issued
    /// token end it, and a re-issued token never revives it.
    @Test(arguments: StoreBackend.available)
    func sessionsAreBoundToTheirToken(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let token = Tokens.hash(Tokens.generate(.operator))
            try await store.putOperatorToken(name: "bob", role: .admin, tokenHash: token, at: t0)
            let (a, b, c) = (Tokens.hash(Tokens.randomID()), Tokens.hash(Tokens.randomID()), Tokens.hash(Tokens.randomID()))
            let later = t0.addingTimeInterval(3600)
            for id in [a, b, c] { try await store.startSession(idHash: id, tokenHash: token, expires: later, at: t0) }
            let found = try await store.session(idHash: a, at: t0)
            #expect(found?.name == "bob" && found?.role == .admin)
            #expect(try await store.session(idHash: Tokens.hash(Tokens.randomID()), at: t0) == nil, "unknown id")
            #expect(try await store.session(idHash: a, at: later) == nil, "expired")
            // Sign-out ends that session only.
            try await store.endSession(idHash: a)
            #expect(try await store.session(idHash: a, at: t0) == nil)
            #expect(try await store.session(idHash: b, at: t0)?.name == "bob")
            // A new token for bob (a demotion here) ends the sessions of the old one.
            let viewer = Tokens.hash(Tokens.generate(.operator))
            try await store.putOperatorToken(name: "bob", role: .viewer, tokenHash: viewer, at: t0)
            #expect(try await store.session(idHash: b, at: t0) == nil)
            try await store.startSession(idHash: a, tokenHash: viewer, expires: later, at: t0)
            #expect(try await store.session(idHash: a, at: t0)?.role == .viewer)
            // Revoked, then added again: the new token revives none of the old sessions.
            #expect(try await store.revokeOperator(name: "bob", by: "cli:uid 0", at: t0))
            #expect(try await store.session(idHash: a, at: t0) == nil)
            try await store.putOperatorToken(name: "bob", role: .admin, tokenHash: Tokens.hash("cpo_again"), at: t0)
            for id in [a, b, c] { #expect(try await store.session(idHash: id, at: t0) == nil) }
            // Starting a session drops the expired ones.
            try await store.startSession(idHash: Tokens.hash("x"), tokenHash: Tokens.hash("cpo_again"), expires: later.addingTimeInterval(60), at: later)
            #expect(try await store.session(idHash: Tokens.hash("x"), at: later)?.name == "bob")
        }
    }

    @Test(arguments: StoreBackend.available)
    func searchByEveryTermKind(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let imei = TestID.imei(70)
            let imsi = TestID.imsi(70)
            let iccid = TestID.iccid(70)
            try await store.field(event(imei: imei, imsi: imsi, iccid: iccid), "GW-S1", refs: ["1a2b3c4d5e", "NOT-A-REF"])
            try await store.field(event(imei: TestID.imei(71), imsi: TestID.imsi(71), iccid: TestID.iccid(71)), "GW-S2")
            try await store.field(event(imei: TestID.imei(72, tac: "86012345")), "GW-S3")
            func find(_ q: String) async throws -> [String] {
                try await store.searchUnits(SearchTerms(parsing: q), limit: 50).map(\.serial).sorted()
            }
            #expect(try await find(imei) == ["GW-S1"])
            #expect(try await find(imsi) == ["GW-S1"])
            #expect(try await find(iccid) == ["GW-S1"])
            #expect(try await find(iccid + "F") == ["GW-S1"])
            #expect(try await find("35209900") == ["GW-S1", "GW-S2"])
            #expect(try await find("86012345") == ["GW-S3"])
            #expect(try await find("1a2b3c4d5e") == ["GW-S1"])
            #expect(try await find("GW-S2") == ["GW-S2"])
            #expect(try await find("gw-s2") == [])
            #expect(try await find(TestID.imei(99)) == [])
            // References carried in the payload itself (cellprovd >= API 0.2.0) are indexed even when the caller
            // passes none.
            var withRefs = event(imei: TestID.imei(73))
            withRefs.references = .init(imei: "abcdef0123", iccid: "0123abcdef")
            try await store.field(withRefs, "GW-S4")
            #expect(try await find("abcdef0123") == ["GW-S4"])
            #expect(try await find("0123ABCDEF") == ["GW-S4"])
            // The registry's own reference (what masked answers show) finds the unit too.
            let key = try await store.pseudonymKey()
            let ref = Pseudonymizer(key: key).reference(kind: "imei", value: imei)
            #expect(try await find(ref) == ["GW-S1"])
            // Limits apply.
            #expect(try await store.searchUnits(SearchTerms(parsing: "35209900"), limit: 1).count == 1)
            let summary = try #require(try await store.searchUnits(SearchTerms(parsing: imei), limit: 5).first)
            #expect(summary.slots.first?.identity == IdentitySnapshot(imei: imei, imsi: imsi, iccid: iccid))
            #expect(summary.slots.first?.model == "EG25" && summary.firstSeen == t0 && summary.lastSeen == t0)
        }
    }

    @Test(arguments: StoreBackend.available)
    func auditIsAppendOnly(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, url in
            for n in 0..<3 {
                try await store.appendAudit(
                    AuditEntry(at: t0.addingTimeInterval(Double(n)), actor: "alice", action: "reveal",
                        serial: "GW-\(n)", remote: "192.0.2.\(n)", detail: "unit page"))
            }
            let entries = try await store.audit(limit: 10)
            #expect(entries.map(\.serial) == ["GW-2", "GW-1", "GW-0"])
            #expect(entries.first?.remote == "192.0.2.2" && entries.first?.at == t0.addingTimeInterval(2))
            #expect(try await store.audit(limit: 1).count == 1)
            // The database itself refuses to change or delete an entry.
            await #expect(throws: (any Error).self) {
                try await StoreTestSQL.execute(url, "UPDATE audit SET actor = 'mallory'")
            }
            await #expect(throws: (any Error).self) { try await StoreTestSQL.execute(url, "DELETE FROM audit") }
            #expect(try await store.audit(limit: 10).count == 3)
        }
    }

    @Test(arguments: StoreBackend.available)
    func exportsAndSilentUnits(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let day: TimeInterval = 86400
            try await store.field(event(imei: TestID.imei(80), imsi: TestID.imsi(80), iccid: TestID.iccid(80)), "GW-E1",
                at: t0)
            try await store.field(event(slot: "usb-2", imei: TestID.imei(81)), "GW-E1", at: t0.addingTimeInterval(day))
            try await store.field(event(imei: TestID.imei(82)), "GW-E2", at: t0.addingTimeInterval(10 * day))
            try await store.field(event(imei: TestID.imei(83)), "GW-E3", at: t0)
            try await store.factory(event("manufactured", slot: "probe", imei: TestID.imei(84)), "GW-E4", at: t0)
            _ = try await store.markLost(serial: "GW-E3", by: "bob", note: nil, at: t0)
            let rows = try await store.exportUnits()
            #expect(rows.map { "\($0.serial)/\($0.slot)" } == ["GW-E1/usb-1", "GW-E1/usb-2", "GW-E2/usb-1",
                "GW-E3/usb-1", "GW-E4/probe"])
            #expect(rows[0].identity.iccid == TestID.iccid(80) && rows[0].module == "Quectel EG25")
            #expect(rows[0].firstSeen == t0 && rows[0].lastSeen == t0.addingTimeInterval(day))
            #expect(rows[4].origin == .factory)
            // Silent: E1 last seen day 1; E2 day 10; E3 lost; E4 never reported from the field.
            #expect(try await store.silentUnits(lastSeenBefore: t0.addingTimeInterval(5 * day)) == ["GW-E1"])
            #expect(try await store.silentUnits(lastSeenBefore: t0.addingTimeInterval(11 * day)) == ["GW-E1", "GW-E2"])
            let flags = try await store.raise(
                [FlagRules.unitSilent(serial: "GW-E1", days: 4), FlagRules.unitSilent(serial: "GW-E1", days: 4)],
                at: t0)
            #expect(flags.count == 1)
            #expect(try await store.raise([FlagRules.unitSilent(serial: "GW-E1", days: 4)], at: t0).isEmpty)
            #expect(try await store.simAssignments() == [
                SIMAssignment(serial: "GW-E1", slot: "usb-1", iccid: TestID.iccid(80), imsi: TestID.imsi(80))
            ])
        }
    }

    @Test(arguments: StoreBackend.available)
    func timelineKeepsPayloadFieldsAndOrder(_ backend: StoreBackend) async throws {
        try await withStore(backend) { store, _ in
            let a = event(imei: TestID.imei(90), iccid: TestID.iccid(90), at: t0)
            let b = event("sim_changed", imei: TestID.imei(90), iccid: TestID.iccid(91),
                previous: .init(iccid: TestID.iccid(90)), severity: "warning", sequence: 2, at: t0.addingTimeInterval(60))
            // Delivered out of order (a backlog): the timeline is in occurrence order.
            try await store.field(b, "GW-T", at: t0.addingTimeInterval(120))
            try await store.field(a, "GW-T", at: t0.addingTimeInterval(121))
            let detail = try #require(try await store.unit(serial: "GW-T"))
            #expect(detail.timeline.map(\.eventID) == [a.eventID, b.eventID])
            #expect(detail.timeline[1].previous?.iccid == TestID.iccid(90) && detail.timeline[1].severity == "warning")
            #expect(detail.timeline[1].occurredAt == t0.addingTimeInterval(60))
            #expect(detail.timeline[0].previous == nil && detail.timeline[0].origin == .device)
            #expect(try await store.unit(serial: "GW-NONE") == nil)
        }
    }
}
