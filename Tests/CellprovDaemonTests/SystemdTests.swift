import CellprovCore
import Foundation
import Logging
import Testing

@testable import CellprovSystemd

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - Helpers

/// Sets (or, for nil, unsets) environment variables for the duration of `body`, then restores them.
/// Only call from a `.serialized` suite: the environment is process-wide.
private func withEnvironment<T>(_ values: [String: String?], _ body: () throws -> T) rethrows -> T {
    var saved: [String: String?] = [:]
    for (name, value) in values {
        saved[name] = getenv(name).map { String(cString: $0) }
        if let value { setenv(name, value, 1) } else { unsetenv(name) }
    }
    defer {
        for (name, value) in saved {
            if let value { setenv(name, value, 1) } else { unsetenv(name) }
        }
    }
    return try body()
}

/// An `AF_UNIX` datagram socket bound to a fresh path, standing in for systemd's notification socket.
private final class NotifySocket {
    let path: String
    let fd: Int32

    init() throws {
        path = "/tmp/cellprov-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        try #require(pathBytes.count < MemoryLayout.size(ofValue: address.sun_path))
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(result == 0)
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// The next datagram, or nil when none is queued (sd_notify sends synchronously, so one is there by now).
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }
}

// MARK: - sd_notify and the watchdog (these change the environment, so they run one at a time)

@Suite("SystemdTests: notifier", .serialized)
struct SystemdNotifierTests {
    @Test func noOpWithoutNotifySocket() {
        withEnvironment(["NOTIFY_SOCKET": nil]) {
            #expect(!SystemdNotifier.isUnderSystemd)
            #expect(!SystemdNotifier.ready())
            #expect(!SystemdNotifier.status("idle"))
            #expect(!SystemdNotifier.watchdog())
        }
    }

    @Test func readySendsReadyInOneDatagram() throws {
        let socket = try NotifySocket()
        try withEnvironment(["NOTIFY_SOCKET": socket.path]) {
            #expect(SystemdNotifier.isUnderSystemd)
            #expect(SystemdNotifier.ready())
            #expect(socket.receive() == "READY=1")

            #expect(SystemdNotifier.ready(status: "watching 2 modems"))
            let datagram = try #require(socket.receive())
            #expect(datagram.split(separator: "\n").sorted() == ["READY=1", "STATUS=watching 2 modems"])
            #expect(socket.receive() == nil)
        }
    }

    @Test func statusIsSanitisedToOneLine() throws {
        let socket = try NotifySocket()
        withEnvironment(["NOTIFY_SOCKET": socket.path]) {
            #expect(SystemdNotifier.status("probing\nREADY=1\r\nslot 3\0"))
            #expect(socket.receive() == "STATUS=probing READY=1 slot 3")
        }
    }

    @Test func watchdogStoppingReloading() throws {
        let socket = try NotifySocket()
        try withEnvironment(["NOTIFY_SOCKET": socket.path]) {
            SystemdNotifier.watchdog()
            #expect(socket.receive() == "WATCHDOG=1")
            SystemdNotifier.stopping()
            #expect(socket.receive() == "STOPPING=1")
            SystemdNotifier.reloading()
            let lines = try #require(socket.receive()).split(separator: "\n")
            #expect(lines.count == 2)
            #expect(lines.contains("RELOADING=1"))
            #expect(lines.contains { $0.hasPrefix("MONOTONIC_USEC=") && UInt64($0.dropFirst(15)) != nil })
        }
    }

    @Test func notifyDropsInvalidKeys() throws {
        let socket = try NotifySocket()
        withEnvironment(["NOTIFY_SOCKET": socket.path]) {
            #expect(SystemdNotifier.notify(["STATUS": "ok", "BAD=KEY": "x", "": "y", "NEW\nLINE": "z"]))
            #expect(socket.receive() == "STATUS=ok")
            #expect(!SystemdNotifier.notify(["A=B": "1"]))
        }
    }

    @Test func watchdogIntervalIsHalfOfWatchdogUsec() {
        withEnvironment(["WATCHDOG_USEC": "3000000", "WATCHDOG_PID": String(getpid())]) {
            #expect(SystemdNotifier.watchdogInterval == .milliseconds(1500))
        }
        withEnvironment(["WATCHDOG_USEC": "3000000", "WATCHDOG_PID": String(getpid() + 1)]) {
            #expect(SystemdNotifier.watchdogInterval == nil)
        }
        withEnvironment(["WATCHDOG_USEC": nil, "WATCHDOG_PID": nil]) {
            #expect(SystemdNotifier.watchdogInterval == nil)
        }
    }

    @Test func stderrChosenWhenJournalStreamUnset() {
        withEnvironment(["JOURNAL_STREAM": nil]) {
            #expect(CellprovLogging.preferredBackend == .stderr)
        }
        withEnvironment(["JOURNAL_STREAM": "1:2"]) {
            // Set, but not our stderr (a stream inherited through a redirect): still stderr.
            if let identity = CellprovLogging.stderrIdentity(), identity != (1, 2) {
                #expect(CellprovLogging.preferredBackend == .stderr)
            }
        }
    }

    @Test func journalChosenWhenJournalStreamIsOurStderr() throws {
        let identity = try #require(CellprovLogging.stderrIdentity())
        withEnvironment(["JOURNAL_STREAM": "\(identity.device):\(identity.inode)"]) {
            #expect(CellprovLogging.preferredBackend == .journal)
        }
    }
}

// MARK: - Journal records (pure)

@Suite("SystemdTests: journal fields")
struct JournalFieldTests {
    private func fields(
        _ level: Logger.Level = .info,
        _ message: String = "hello",
        metadata: Logger.Metadata = [:],
        error: (any Error)? = nil
    ) -> [JournalLogHandler.Field] {
        JournalLogHandler.journalFields(
            level: level,
            message: message,
            metadata: metadata,
            error: error,
            identifier: "cellprovd",
            label: "cellprov.test",
            file: "CellprovDaemon/Slot.swift",
            function: "probe()",
            line: 42
        )
    }

    private func value(_ name: String, in fields: [JournalLogHandler.Field]) -> String? {
        fields.first { $0.name == name }?.value
    }

    @Test(arguments: [
        (Logger.Level.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
    ])
    func priorities(level: Logger.Level, priority: Int) {
        #expect(JournalLogHandler.priority(level) == priority)
        #expect(value("PRIORITY", in: fields(level)) == String(priority))
    }

    @Test func fixedFields() {
        let record = fields()
        #expect(
            record.map(\.description) == [
                "MESSAGE=hello", "PRIORITY=6", "SYSLOG_IDENTIFIER=cellprovd", "CODE_FILE=CellprovDaemon/Slot.swift",
                "CODE_LINE=42", "CODE_FUNC=probe()", "CELLPROV_LOGGER=cellprov.test",
            ]
        )
    }

    @Test func multiLineMessageKeptIntact() {
        let message = "AT+CCID failed:\nERROR\r\n+CME ERROR: 10"
        let record = fields(.error, message)
        #expect(value("MESSAGE", in: record) == message)
        let encoded = JournalLogHandler.encode(record)
        #expect(encoded[0] == Array("MESSAGE=\(message)".utf8))
    }

    @Test(arguments: [
        ("MESSAGE_ID", "MESSAGE_ID"),
        ("ERRNO", "ERRNO"),
        ("CELLPROV_SLOT", "CELLPROV_SLOT"),
        ("slot", "CELLPROV_SLOT"),
        ("modemPath", "CELLPROV_MODEM_PATH"),
        ("IMEIValue", "CELLPROV_IMEI_VALUE"),
        ("sim.iccid", "CELLPROV_SIM_ICCID"),
        ("usb-vid:pid", "CELLPROV_USB_VID_PID"),
        ("port2", "CELLPROV_PORT2"),
        ("2nd", "CELLPROV_2ND"),
        ("_PID", "CELLPROV_PID"),
        ("__x__", "CELLPROV_X"),
        ("cellprov_slot", "CELLPROV_SLOT"),
        ("PRIORITY", "CELLPROV_PRIORITY"),
        ("MESSAGE", "CELLPROV_MESSAGE"),
        ("SYSLOG_IDENTIFIER", "CELLPROV_SYSLOG_IDENTIFIER"),
        ("CELLPROV_LOGGER", "CELLPROV_CELLPROV_LOGGER"),
        ("ünïcode", "CELLPROV_N_CODE"),
        ("", "CELLPROV_METADATA"),
        ("...", "CELLPROV_METADATA"),
    ])
    func sanitisedNames(key: String, expected: String) {
        let name = JournalLogHandler.journalFieldName(forMetadataKey: key)
        #expect(name == expected)
        #expect(JournalLogHandler.isValidJournalFieldName(name))
    }

    @Test func longNamesAreCutTo64() {
        let name = JournalLogHandler.journalFieldName(forMetadataKey: String(repeating: "a", count: 100))
        #expect(name.count == 64)
        #expect(name.hasPrefix("CELLPROV_AAAA"))
        #expect(JournalLogHandler.isValidJournalFieldName(name))
        #expect(!JournalLogHandler.isValidJournalFieldName(String(repeating: "A", count: 65)))
        #expect(!JournalLogHandler.isValidJournalFieldName("1ABC"))
        #expect(!JournalLogHandler.isValidJournalFieldName("_ABC"))
        #expect(!JournalLogHandler.isValidJournalFieldName("Abc"))
        #expect(!JournalLogHandler.isValidJournalFieldName(""))
    }

    @Test func metadataMappedSortedAndAsGiven() {
        struct Redacted: CustomStringConvertible, Sendable { var description: String { "35******1234" } }
        let record = fields(
            metadata: [
                "slot": "3",
                "imei": .stringConvertible(Redacted()),
                "MESSAGE_ID": .string(CellprovMessageID.identityRead.id),
                "ports": .array(["ttyUSB2", "ttyUSB3"]),
                "PRIORITY": "0",
            ]
        )
        // Sorted by the caller's key (MESSAGE_ID, PRIORITY, imei, ports, slot), after the seven fixed fields.
        let extra = Array(record.dropFirst(7))
        #expect(
            extra.map(\.name) == ["MESSAGE_ID", "CELLPROV_PRIORITY", "CELLPROV_IMEI", "CELLPROV_PORTS", "CELLPROV_SLOT"]
        )
        #expect(value("CELLPROV_IMEI", in: record) == "35******1234")
        #expect(value("CELLPROV_SLOT", in: record) == "3")
        #expect(value("MESSAGE_ID", in: record) == "d4234c5153974689b7afcdb0bae6699e")
        #expect(value("CELLPROV_PORTS", in: record) == Logger.MetadataValue.array(["ttyUSB2", "ttyUSB3"]).description)
        // The caller's PRIORITY did not replace the real one.
        #expect(record.filter { $0.name == "PRIORITY" }.map(\.value) == ["6"])
    }

    @Test func errorBecomesAField() {
        struct Failure: Error, CustomStringConvertible { var description: String { "port busy" } }
        #expect(fields(error: Failure()).last == .init(name: "CELLPROV_ERROR", value: "port busy"))
    }

    @Test func handlerMergesMetadataLayers() {
        var handler = JournalLogHandler(label: "t", identifier: "cellprovd", metadataProvider: nil)
        handler[metadataKey: "slot"] = "1"
        handler[metadataKey: "port"] = "ttyUSB0"
        let merged = handler.mergedMetadata(["slot": "2"])
        #expect(merged == ["slot": "2", "port": "ttyUSB0"])
        #expect(handler.logLevel == .info)
        #expect(handler.identifier == "cellprovd")
    }

    @Test func messageIDsAreStable128BitHex() throws {
        let ids = CellprovMessageID.allCases.map(\.id)
        #expect(ids.count >= 12)  // ids are only ever added
        #expect(Set(ids).count == ids.count)
        for id in ids {
            #expect(id.count == 32)
            #expect(id.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) })
        }
        #expect(CellprovMessageID.daemonStarted.metadata == ["MESSAGE_ID": "4b01827722414b9c99877cfaede9cb5a"])
    }

    @Test func catalogHasAnEntryPerMessageID() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let catalog = try String(
            contentsOf: root.appendingPathComponent("systemd/cellprov.catalog"),
            encoding: .utf8
        )
        let headers = catalog.split(separator: "\n").filter { $0.hasPrefix("-- ") }.map { String($0.dropFirst(3)) }
        #expect(Set(headers) == Set(CellprovMessageID.allCases.map(\.id)))
        #expect(headers.count == CellprovMessageID.allCases.count)
        let entries = catalog.components(separatedBy: "\n-- ").dropFirst()
        #expect(entries.count == CellprovMessageID.allCases.count)
        for entry in entries {
            #expect(entry.contains("\nSubject: "))
            #expect(entry.contains("\nDefined-By: cellprov\n"))
        }
    }
}

// MARK: - Backend choice and the stderr fallback (pure)

@Suite("SystemdTests: logging backend")
struct LoggingBackendTests {
    @Test func stderrWhenJournalStreamUnsetOrMismatched() {
        let mine: (device: UInt64, inode: UInt64) = (64769, 1234)
        #expect(CellprovLogging.backend(journalStream: nil, stderrIdentity: mine) == .stderr)
        #expect(CellprovLogging.backend(journalStream: "64769:1235", stderrIdentity: mine) == .stderr)
        #expect(CellprovLogging.backend(journalStream: "garbage", stderrIdentity: mine) == .stderr)
        #expect(CellprovLogging.backend(journalStream: "64769:1234:1", stderrIdentity: mine) == .stderr)
        #expect(CellprovLogging.backend(journalStream: "64769:1234", stderrIdentity: nil) == .stderr)
        #expect(CellprovLogging.backend(journalStream: "64769:1234", stderrIdentity: mine) == .journal)
    }

    @Test func makeHandlerPicksTheBackend() {
        let stderr = CellprovLogging.makeHandler(label: "t", identifier: "cellprovd", level: .debug, backend: .stderr)
        #expect(stderr is StderrLogHandler)
        #expect(stderr.logLevel == .debug)
        let journal = CellprovLogging.makeHandler(
            label: "t",
            identifier: "cellprovd",
            level: .notice,
            backend: .journal
        )
        #expect((journal as? JournalLogHandler)?.identifier == "cellprovd")
        #expect(journal.logLevel == .notice)
    }

    @Test func stderrLineFormat() {
        let plain = StderrLogHandler.format(level: .info, message: "modem appeared", metadata: [:])
        #expect(plain == "INFO modem appeared")
        let line = StderrLogHandler.format(
            level: .warning,
            message: "identity problem",
            metadata: [
                "slot": "2", "reason": "SIM not ready", "MESSAGE_ID": .string(CellprovMessageID.identityProblem.id),
            ]
        )
        #expect(line == #"WARNING identity problem reason="SIM not ready" slot=2"#)
        #expect(
            StderrLogHandler.format(level: .critical, message: "a\nb", metadata: ["k": "x\ny"])
                == "CRITICAL a\n    b k=\"x\\ny\""
        )
    }
}
