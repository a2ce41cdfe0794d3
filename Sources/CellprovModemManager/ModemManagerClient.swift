import CSystemd
import CellprovCore
import Dispatch
import FoundationEssentials
import NIOConcurrencyHelpers
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// What ModemManager shows on the system bus at one moment.
public enum ModemManagerSnapshot: Sendable, Equatable, CustomStringConvertible {
    /// The system bus itself cannot be reached (no dbus-daemon, no socket, refused); retried.
    case noBus(reason: String)
    /// The bus is there, ModemManager is not on it (or does not answer).
    case absent(reason: String)
    /// ModemManager's modems, sorted by object path.
    case present([ModemManagerModem])

    public var description: String {
        switch self {
        case .noBus(let reason): "system bus unreachable (\(reason))"
        case .absent(let reason): "ModemManager absent (\(reason))"
        case .present(let modems): "ModemManager present, \(modems.count) modem(s)"
        }
    }
}

/// A read-only client of ModemManager's D-Bus API (org.freedesktop.ModemManager1), on sd-bus.
///
/// Why its own thread: sd-bus is single-threaded and its method calls block; on a thread of its own, a slow or
/// hung ModemManager delays nothing but this client (never a slot session, the watchdog or the reporter). The
/// thread sleeps in poll() on the bus fd (with sd_bus_get_events/sd_bus_get_timeout) and a pipe that stop()
/// writes: no polling, no periodic wake-up while nothing happens on the bus.
///
/// What it does: it subscribes to ModemManager's signals (InterfacesAdded/InterfacesRemoved and
/// PropertiesChanged under /org/freedesktop/ModemManager1) and to NameOwnerChanged for the service name, and
/// after each burst of signals (50 ms of quiet) reads the whole state again with GetManagedObjects plus each
/// SIM's properties. Re-reading everything instead of patching a cache keeps it obviously right (a modem has
/// about fifteen properties; a gateway a handful of modems), and a burst costs one round of calls. A snapshot is
/// published only when it differs from the last one. Calls never auto-start ModemManager (a host where it is
/// disabled stays so). `DBUS_SYSTEM_BUS_ADDRESS` is honoured (sd_bus_open_system), so tests use a private bus.
public final class ModemManagerClient: @unchecked Sendable {
    public static let service = "org.freedesktop.ModemManager1"
    static let root = "/org/freedesktop/ModemManager1"
    static let modemInterface = "org.freedesktop.ModemManager1.Modem"
    static let modem3gppInterface = "org.freedesktop.ModemManager1.Modem.Modem3gpp"
    static let simInterface = "org.freedesktop.ModemManager1.Sim"

    /// Snapshots, newest only: each one is the whole state, so a consumer that falls behind loses nothing.
    public let snapshots: AsyncStream<ModemManagerSnapshot>
    private let continuation: AsyncStream<ModemManagerSnapshot>.Continuation
    private let logger: Logger
    private let retryInterval: Duration
    private let callTimeoutMicroseconds: UInt64
    /// The wake pipe: stop() writes to [1], the thread polls [0].
    private let wake: [Int32]
    private let lock = NIOLock()
    private var stopped = false
    private var started = false
    private let finished = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - retryInterval: how often to try the system bus again while it cannot be reached and its socket cannot be
    ///     watched (an address other than `unix:path=`); a socket path is watched (``BusSocketWatch``): no retries.
    ///   - callTimeout: the limit of one D-Bus call (a hung ModemManager).
    public init(logger: Logger, retryInterval: Duration = .seconds(5), callTimeout: Duration = .seconds(5)) {
        self.logger = logger
        self.retryInterval = retryInterval
        let (s, a) = callTimeout.components
        callTimeoutMicroseconds = UInt64(s) * 1_000_000 + UInt64(a / 1_000_000_000_000)
        (snapshots, continuation) = AsyncStream.makeStream(
            of: ModemManagerSnapshot.self, bufferingPolicy: .bufferingNewest(1))
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
        }
        wake = fds
    }

    deinit {
        for fd in wake where fd >= 0 { close(fd) }
    }

    /// Starts the client's thread.
    public func start() {
        let go = lock.withLock { () -> Bool in
            guard !started, !stopped else { return false }
            started = true
            return true
        }
        guard go else { return }
        let body = Unmanaged.passRetained(ThreadBody { [self] in
            run()
            continuation.finish()
            finished.signal()
        })
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { argument in
            let body = Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue()
            body.run()
            return nil
        }, body.toOpaque())
        guard created == 0 else {
            body.release()
            lock.withLock { stopped = true }
            continuation.finish()
            finished.signal()
            return
        }
        pthread_detach(thread)
    }

    /// Stops the thread (within one D-Bus call's time at worst) and ends the snapshot stream.
    public func stop() {
        let wasRunning = lock.withLock { () -> Bool in
            let r = started && !stopped
            stopped = true
            return r
        }
        guard wasRunning else {
            continuation.finish()
            return
        }
        var one: UInt8 = 1
        _ = write(wake[1], &one, 1)
        finished.wait()
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    // MARK: - The thread

    /// Set by the signal callback (on this thread, inside sd_bus_process).
    /// What the client's thread runs (a POSIX thread: Foundation's Thread is not in FoundationEssentials).
    final class ThreadBody {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    final class Pending {
        var dirty = true
        var settleDeadline: UInt64 = 0
    }

    static let settleMicroseconds: UInt64 = 50_000

    private func run() {
        let pending = Pending()
        var bus: OpaquePointer?
        var last: ModemManagerSnapshot?
        let pendingPointer = Unmanaged.passRetained(pending)
        defer {
            pendingPointer.release()
            if let bus { sd_bus_flush_close_unref(bus) }
        }
        func publish(_ snapshot: ModemManagerSnapshot) {
            guard snapshot != last else { return }
            last = snapshot
            logger.debug("ModemManager state", metadata: ["state": "\(snapshot)"])
            continuation.yield(snapshot)
        }

        while !isStopped {
            if bus == nil {
                // Watch before connecting, so that a socket created in between is not missed.
                let watch = BusSocketWatch(address: getenv("DBUS_SYSTEM_BUS_ADDRESS").map { String(cString: $0) })
                switch connect(userdata: pendingPointer.toOpaque()) {
                case .success(let b):
                    bus = b
                    pending.dirty = true
                    pending.settleDeadline = 0
                case .failure(let reason):
                    publish(.noBus(reason: reason))
                    waitForBus(watch)
                    continue
                }
            }
            guard let b = bus else { continue }

            var broken: String?
            while true {
                let r = sd_bus_process(b, nil)
                if r < 0 {
                    broken = Self.errnoText(-r)
                    break
                }
                if r == 0 { break }
            }
            if broken == nil, sd_bus_is_open(b) <= 0 { broken = "connection closed" }
            if let broken {
                sd_bus_flush_close_unref(b)
                bus = nil
                publish(.noBus(reason: broken))
                wait(fd: -1, events: 0, timeoutMilliseconds: Self.milliseconds(retryInterval))
                continue
            }

            let now = Self.monotonicMicroseconds()
            if pending.dirty && now >= pending.settleDeadline {
                pending.dirty = false
                switch fetch(b) {
                case .success(let snapshot):
                    publish(snapshot)
                    if case .absent(let reason) = snapshot, !Self.isNotOnTheBus(reason) {
                        // There but not answering (a timeout, a denied call): no signal may announce its
                        // recovery, so ask again after the retry interval.
                        pending.dirty = true
                        pending.settleDeadline = Self.monotonicMicroseconds() + Self.microseconds(retryInterval)
                    }
                case .failure(let reason):
                    sd_bus_flush_close_unref(b)
                    bus = nil
                    publish(.noBus(reason: reason))
                }
                continue  // replies may have queued signals: process them before sleeping
            }

            var timeout: Int32 = -1
            var deadline: UInt64 = 0
            if sd_bus_get_timeout(b, &deadline) >= 0, deadline != UInt64.max {
                timeout = Self.clampMilliseconds(deadline, now: now)
            }
            if pending.dirty {
                let settle = Self.clampMilliseconds(pending.settleDeadline, now: now)
                timeout = timeout < 0 ? settle : min(timeout, settle)
            }
            let events = sd_bus_get_events(b)
            wait(fd: sd_bus_get_fd(b), events: Int16(truncatingIfNeeded: max(events, 0)), timeoutMilliseconds: timeout)
        }
    }

    /// Sleeps until the bus socket's directory says it may be reachable (``BusSocketWatch``), or stop() is called;
    /// without a watch (an address that is not a socket path, no inotify), for the retry interval.
    private func waitForBus(_ watch: BusSocketWatch?) {
        guard let watch else {
            wait(fd: -1, events: 0, timeoutMilliseconds: Self.milliseconds(retryInterval))
            return
        }
        logger.debug(
            "waiting for the system bus socket",
            metadata: ["directory": "\(watch.directory)", "entry": "\(watch.awaited)"])
        while !isStopped {
            wait(fd: watch.fd, events: Int16(POLLIN), timeoutMilliseconds: -1)
            if watch.consume() { return }
        }
    }

    /// poll() on the bus fd (if any) and the wake pipe.
    private func wait(fd: Int32, events: Int16, timeoutMilliseconds: Int32) {
        var fds = [pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0)]
        if fd >= 0 { fds.append(pollfd(fd: fd, events: events, revents: 0)) }
        _ = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        if fds[0].revents != 0 {
            var buffer = [UInt8](repeating: 0, count: 16)
            _ = read(wake[0], &buffer, buffer.count)
        }
    }

    private enum Connected {
        case success(OpaquePointer)
        case failure(String)
    }

    /// Opens the system bus and subscribes to ModemManager's signals and its name's owner changes.
    private func connect(userdata: UnsafeMutableRawPointer) -> Connected {
        var bus: OpaquePointer?
        let r = sd_bus_open_system(&bus)
        guard r >= 0, let bus else { return .failure(Self.errnoText(-r)) }
        let onSignal: sd_bus_message_handler_t = { _, userdata, _ in
            guard let userdata else { return 0 }
            let pending = Unmanaged<Pending>.fromOpaque(userdata).takeUnretainedValue()
            pending.dirty = true
            pending.settleDeadline = ModemManagerClient.monotonicMicroseconds() + ModemManagerClient.settleMicroseconds
            return 0
        }
        let matches = [
            "type='signal',path_namespace='\(Self.root)'",
            "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                + "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='\(Self.service)'",
        ]
        for match in matches {
            // A floating slot (nil): the match lives as long as the connection.
            let m = sd_bus_add_match(bus, nil, match, onSignal, userdata)
            if m < 0 {
                sd_bus_flush_close_unref(bus)
                return .failure("cannot subscribe to signals: \(Self.errnoText(-m))")
            }
        }
        return .success(bus)
    }

    // MARK: - Reading ModemManager's state

    private enum Fetched {
        case success(ModemManagerSnapshot)
        /// The connection itself failed.
        case failure(String)
    }

    private func fetch(_ bus: OpaquePointer) -> Fetched {
        let objects: [String: [String: [String: Value]]]
        switch call(
            bus, path: Self.root, interface: "org.freedesktop.DBus.ObjectManager", member: "GetManagedObjects",
            argument: nil, parse: Self.readManagedObjects)
        {
        case .success(let o): objects = o
        case .failure(let error):
            if sd_bus_is_open(bus) <= 0 { return .failure(error.text) }
            return .success(.absent(reason: error.text))
        }
        var modems: [ModemManagerModem] = []
        for (path, interfaces) in objects {
            guard let modem = interfaces[Self.modemInterface] else { continue }
            var m = ModemManagerModem(objectPath: path)
            m.device = modem["Device"]?.string
            m.equipmentIdentifier = modem["EquipmentIdentifier"]?.string
            m.manufacturer = modem["Manufacturer"]?.string
            m.model = modem["Model"]?.string
            m.revision = modem["Revision"]?.string
            m.state = modem["State"]?.int.map { Int32(truncatingIfNeeded: $0) }
            m.failedReason = modem["StateFailedReason"]?.int.map { UInt32(truncatingIfNeeded: $0) }
            m.unlockRequired = modem["UnlockRequired"]?.int.map { UInt32(truncatingIfNeeded: $0) }
            m.primaryPort = modem["PrimaryPort"]?.string
            m.ports = modem["Ports"]?.names ?? []
            m.imei = interfaces[Self.modem3gppInterface]?["Imei"]?.string
            m.primarySimSlot = modem["PrimarySimSlot"]?.int.map { UInt32(truncatingIfNeeded: $0) }
            m.simSlots = modem["SimSlots"]?.names ?? []
            if let sim = modem["Sim"]?.string, sim != "/", !sim.isEmpty {
                m.simPath = sim
                switch call(
                    bus, path: sim, interface: "org.freedesktop.DBus.Properties", member: "GetAll",
                    argument: Self.simInterface, parse: Self.readProperties)
                {
                case .success(let properties):
                    m.simIMSI = properties["Imsi"]?.string
                    m.simICCID = properties["SimIdentifier"]?.string
                    m.simEID = properties["Eid"]?.string
                    m.simType = properties["SimType"]?.int.map { UInt32(truncatingIfNeeded: $0) }
                case .failure(let error):
                    // The SIM object went away between the two calls (a re-probe): the next signal brings
                    // the new state. Its identities stay unknown in this snapshot.
                    logger.debug("cannot read the SIM object", metadata: ["path": "\(sim)", "error": "\(error.text)"])
                }
            }
            modems.append(m)
        }
        return .success(.present(modems.sorted { $0.objectPath < $1.objectPath }))
    }

    struct CallError: Error {
        var text: String
    }

    /// One method call on ModemManager (never auto-starting it), the reply parsed by `parse`.
    private func call<T>(
        _ bus: OpaquePointer, path: String, interface: String, member: String, argument: String?,
        parse: (OpaquePointer) -> T?
    ) -> Result<T, CallError> {
        var message: OpaquePointer?
        var r = sd_bus_message_new_method_call(bus, &message, Self.service, path, interface, member)
        guard r >= 0, let message else { return .failure(CallError(text: Self.errnoText(-r))) }
        defer { sd_bus_message_unref(message) }
        _ = sd_bus_message_set_auto_start(message, 0)
        if let argument {
            r = argument.withCString { sd_bus_message_append_basic(message, Self.type("s"), $0) }
            guard r >= 0 else { return .failure(CallError(text: Self.errnoText(-r))) }
        }
        var error = sd_bus_error()
        defer { sd_bus_error_free(&error) }
        var reply: OpaquePointer?
        r = sd_bus_call(bus, message, callTimeoutMicroseconds, &error, &reply)
        guard r >= 0, let reply else {
            let name = error.name.map { String(cString: $0) }
            let text = error.message.map { String(cString: $0) }
            return .failure(CallError(text: name.map { n in text.map { "\(n): \($0)" } ?? n } ?? Self.errnoText(-r)))
        }
        defer { sd_bus_message_unref(reply) }
        guard let value = parse(reply) else { return .failure(CallError(text: "unexpected reply to \(member)")) }
        return .success(value)
    }

    /// A property value, as far as this client needs one.
    enum Value: Equatable {
        case string(String)
        case int(Int64)
        /// An a(su) (Modem.Ports): the names; an ao (Modem.SimSlots): the object paths.
        case names([String])
        case other

        var string: String? { if case .string(let s) = self { s } else { nil } }
        var int: Int64? { if case .int(let i) = self { i } else { nil } }
        var names: [String]? { if case .names(let n) = self { n } else { nil } }
    }

    static func type(_ c: Unicode.Scalar) -> CChar { CChar(truncatingIfNeeded: c.value) }

    /// a{oa{sa{sv}}}
    static func readManagedObjects(_ m: OpaquePointer) -> [String: [String: [String: Value]]]? {
        var result: [String: [String: [String: Value]]] = [:]
        guard sd_bus_message_enter_container(m, type("a"), "{oa{sa{sv}}}") > 0 else { return nil }
        while sd_bus_message_enter_container(m, type("e"), "oa{sa{sv}}") > 0 {
            guard let path = readString(m, "o"),
                sd_bus_message_enter_container(m, type("a"), "{sa{sv}}") > 0
            else { return nil }
            var interfaces: [String: [String: Value]] = [:]
            while sd_bus_message_enter_container(m, type("e"), "sa{sv}") > 0 {
                guard let name = readString(m, "s"), let properties = readProperties(m) else { return nil }
                interfaces[name] = properties
                guard sd_bus_message_exit_container(m) >= 0 else { return nil }
            }
            guard sd_bus_message_exit_container(m) >= 0, sd_bus_message_exit_container(m) >= 0 else { return nil }
            result[path] = interfaces
        }
        guard sd_bus_message_exit_container(m) >= 0 else { return nil }
        return result
    }

    /// a{sv}
    static func readProperties(_ m: OpaquePointer) -> [String: Value]? {
        var properties: [String: Value] = [:]
        guard sd_bus_message_enter_container(m, type("a"), "{sv}") > 0 else { return nil }
        while sd_bus_message_enter_container(m, type("e"), "sv") > 0 {
            guard let name = readString(m, "s") else { return nil }
            var kind: CChar = 0
            var contents: UnsafePointer<CChar>?
            guard sd_bus_message_peek_type(m, &kind, &contents) > 0, kind == type("v"), let contents,
                sd_bus_message_enter_container(m, type("v"), contents) > 0
            else { return nil }
            let signature = String(cString: contents)
            let value: Value
            switch signature {
            case "s", "o":
                guard let s = readString(m, signature == "s" ? "s" : "o") else { return nil }
                value = .string(s)
            case "i":
                var i: Int32 = 0
                guard sd_bus_message_read_basic(m, type("i"), &i) > 0 else { return nil }
                value = .int(Int64(i))
            case "u":
                var u: UInt32 = 0
                guard sd_bus_message_read_basic(m, type("u"), &u) > 0 else { return nil }
                value = .int(Int64(u))
            case "a(su)":
                guard sd_bus_message_enter_container(m, type("a"), "(su)") > 0 else { return nil }
                var names: [String] = []
                while sd_bus_message_enter_container(m, type("r"), "su") > 0 {
                    guard let n = readString(m, "s") else { return nil }
                    var u: UInt32 = 0
                    guard sd_bus_message_read_basic(m, type("u"), &u) > 0,
                        sd_bus_message_exit_container(m) >= 0
                    else { return nil }
                    names.append(n)
                }
                guard sd_bus_message_exit_container(m) >= 0 else { return nil }
                value = .names(names)
            case "ao":
                guard sd_bus_message_enter_container(m, type("a"), "o") > 0 else { return nil }
                var paths: [String] = []
                while let p = readString(m, "o") {
                    if paths.count < Self.maxArrayElements { paths.append(p) }  // past the bound: read, not kept
                }
                guard sd_bus_message_exit_container(m) >= 0 else { return nil }
                value = .names(paths)
            default:
                guard sd_bus_message_skip(m, contents) >= 0 else { return nil }
                value = .other
            }
            guard sd_bus_message_exit_container(m) >= 0, sd_bus_message_exit_container(m) >= 0 else { return nil }
            properties[name] = value
        }
        guard sd_bus_message_exit_container(m) >= 0 else { return nil }
        return properties
    }

    /// Strings from ModemManager are bounded here (a misbehaving modem's answer could be anything).
    static let maxStringBytes = 256
    /// So are arrays of object paths (SimSlots: a module has one to four).
    static let maxArrayElements = 16

    static func readString(_ m: OpaquePointer, _ kind: Unicode.Scalar) -> String? {
        var p: UnsafePointer<CChar>?
        guard sd_bus_message_read_basic(m, type(kind), &p) > 0, let p else { return nil }
        let length = strnlen(p, maxStringBytes + 1)
        let bytes = UnsafeRawBufferPointer(start: p, count: min(length, maxStringBytes))
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: - Time

    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }

    static func clampMilliseconds(_ deadline: UInt64, now: UInt64) -> Int32 {
        guard deadline > now else { return 0 }
        return Int32(min((deadline - now + 999) / 1000, UInt64(Int32.max)))
    }

    static func milliseconds(_ d: Duration) -> Int32 {
        let (s, a) = d.components
        return Int32(clamping: s * 1000 + a / 1_000_000_000_000_000)
    }

    static func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }

    static func microseconds(_ d: Duration) -> UInt64 {
        let (s, a) = d.components
        return UInt64(max(s, 0)) * 1_000_000 + UInt64(max(a, 0) / 1_000_000_000_000)
    }

    /// True when an `.absent` reason says ModemManager's name has no owner (it is simply not running), as opposed
    /// to ModemManager being there and not answering.
    public static func isNotOnTheBus(_ reason: String) -> Bool {
        reason.contains("org.freedesktop.DBus.Error.NameHasNoOwner")
            || reason.contains("org.freedesktop.DBus.Error.ServiceUnknown")
    }
}
