#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import CellprovCore
import FoundationEssentials
import NIOConcurrencyHelpers

// MARK: - Public configuration

/// What the simulated module and its SIM report. nil manufacturer/model/revision: the profile's default.
/// nil imei/imsi/iccid: absent (the command fails), except that an identity with all three nil is replaced
/// by the profile's `SimulatedIdentity.defaultIdentity(for:)`. Strings are served verbatim, never validated.
public struct SimulatedIdentity: Sendable, Codable, Equatable {
    public var imei: String?
    public var imsi: String?
    public var iccid: String?
    public var manufacturer: String?
    public var model: String?
    public var revision: String?

    public init(
        imei: String? = nil, imsi: String? = nil, iccid: String? = nil,
        manufacturer: String? = nil, model: String? = nil, revision: String? = nil
    ) {
        self.imei = imei
        self.imsi = imsi
        self.iccid = iccid
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision
    }

    /// A fixed, realistic and valid identity, different per vendor: a Luhn-valid IMEI on the vendor's TAC, a
    /// 15-digit IMSI on 262-01, a 19-digit Luhn-valid ICCID (MII 89, country code 49).
    public static func defaultIdentity(for profile: VendorProfile) -> SimulatedIdentity {
        let traits = VendorTraits.traits(for: profile)
        return SimulatedIdentity(
            imei: Luhn.completed(traits.tac + "012345"),
            imsi: "26201" + traits.tac.suffix(7) + "001",
            iccid: Luhn.completed("8949200" + traits.tac.suffix(8) + "012"))
    }
}

public struct SimulatorQuirks: Sendable, Codable, Equatable {
    /// Echo even after ATE0.
    public var echoAlways = false
    /// An unsolicited result code before every answer.
    public var urcNoise = false
    /// Delay before each answer (the echo is immediate).
    public var responseDelayMilliseconds = 0
    /// The first N SIM commands answer "SIM busy" (CME 14).
    public var simBusyTries = 0
    public var simAbsent = false
    /// PIN required: AT+CIMI fails with CME 11, ICCID commands still work, AT+CPIN? -> "+CPIN: SIM PIN".
    public var simPIN = false
    /// PUK required: as simPIN with CME 12 and "+CPIN: SIM PUK".
    public var simPUK = false
    /// The first N command lines get no echo and no answer.
    public var swallowFirst = 0
    /// Nothing is ever answered.
    public var silent = false
    /// Binary junk and one ~70 kB line without a line end before the first answer.
    public var garbageBeforeAnswers = false
    /// On receiving command line N (1-based), close the master without answering.
    public var unplugAfterCommands: Int? = nil
    /// AT+CCID -> ERROR.
    public var ccidUnsupported = false
    /// The vendor ICCID command -> ERROR (for u-blox, whose own command is AT+CCID, that one too).
    public var vendorICCIDUnsupported = false
    /// AT+CIMI fails (+CME ERROR: 4, operation not supported), so the IMSI must come from EF_IMSI.
    public var cimiUnsupported = false
    /// AT+CRSM fails (+CME ERROR: 4), as on modules that restrict SIM access.
    public var crsmUnsupported = false
    /// The card holder's detection is off (Quectel `+QSIMDET: 0,0`): no SIM swap is reported, even with the SIM
    /// reports switched on (SimulatedSIMReports).
    public var simDetectionOff = false

    // Hostile modules (a faulty, counterfeit or tampered module can send anything).

    /// Random bytes without pause, as fast as the client reads; commands are never answered.
    public var randomBytes = false
    /// From the first command on, information lines forever (manufacturer, model, revision), never a final result.
    public var endlessAnswer = false
    /// The echo of another command (e.g. `AT+CFUN=0`) before every answer.
    public var foreignEcho: String? = nil
    /// Every byte written alone, this many milliseconds apart (echo included): an answer takes seconds.
    public var trickleMilliseconds = 0

    public init() {}

    private enum CodingKeys: String, CodingKey {
        case echoAlways, urcNoise, responseDelayMilliseconds, simBusyTries, simAbsent, simPIN, simPUK
        case swallowFirst, silent, garbageBeforeAnswers, unplugAfterCommands, ccidUnsupported
        case vendorICCIDUnsupported, cimiUnsupported, crsmUnsupported, simDetectionOff
        case randomBytes, endlessAnswer, foreignEcho, trickleMilliseconds
    }

    /// Missing keys keep their defaults.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        echoAlways = try c.decodeIfPresent(Bool.self, forKey: .echoAlways) ?? false
        urcNoise = try c.decodeIfPresent(Bool.self, forKey: .urcNoise) ?? false
        responseDelayMilliseconds = try c.decodeIfPresent(Int.self, forKey: .responseDelayMilliseconds) ?? 0
        simBusyTries = try c.decodeIfPresent(Int.self, forKey: .simBusyTries) ?? 0
        simAbsent = try c.decodeIfPresent(Bool.self, forKey: .simAbsent) ?? false
        simPIN = try c.decodeIfPresent(Bool.self, forKey: .simPIN) ?? false
        simPUK = try c.decodeIfPresent(Bool.self, forKey: .simPUK) ?? false
        swallowFirst = try c.decodeIfPresent(Int.self, forKey: .swallowFirst) ?? 0
        silent = try c.decodeIfPresent(Bool.self, forKey: .silent) ?? false
        garbageBeforeAnswers = try c.decodeIfPresent(Bool.self, forKey: .garbageBeforeAnswers) ?? false
        unplugAfterCommands = try c.decodeIfPresent(Int.self, forKey: .unplugAfterCommands)
        ccidUnsupported = try c.decodeIfPresent(Bool.self, forKey: .ccidUnsupported) ?? false
        vendorICCIDUnsupported = try c.decodeIfPresent(Bool.self, forKey: .vendorICCIDUnsupported) ?? false
        cimiUnsupported = try c.decodeIfPresent(Bool.self, forKey: .cimiUnsupported) ?? false
        crsmUnsupported = try c.decodeIfPresent(Bool.self, forKey: .crsmUnsupported) ?? false
        simDetectionOff = try c.decodeIfPresent(Bool.self, forKey: .simDetectionOff) ?? false
        randomBytes = try c.decodeIfPresent(Bool.self, forKey: .randomBytes) ?? false
        endlessAnswer = try c.decodeIfPresent(Bool.self, forKey: .endlessAnswer) ?? false
        foreignEcho = try c.decodeIfPresent(String.self, forKey: .foreignEcho)
        trickleMilliseconds = try c.decodeIfPresent(Int.self, forKey: .trickleMilliseconds) ?? 0
    }
}

public enum VendorProfile: String, Sendable, CaseIterable, Codable {
    case quectel, sierra, telit, ublox, simcom, huawei, cinterion
    case neoway, nordic, sequans, zte, fibocom
}

public struct SimulatorOptions: Sendable {
    public var profile: VendorProfile
    public var identity: SimulatedIdentity
    public var quirks: SimulatorQuirks
    public var linkPath: String?
    /// The card behind AT+CCHO/CGLA/CCHC: a plain UICC by default; an eUICC's enabled profile replaces the
    /// identity's IMSI and ICCID (EUICCSimulation.swift).
    public var logicalChannels = LogicalChannelOptions()

    public init(
        profile: VendorProfile = .quectel, identity: SimulatedIdentity = .init(), quirks: SimulatorQuirks = .init(),
        linkPath: String? = nil
    ) {
        self.profile = profile
        self.identity = identity
        self.quirks = quirks
        self.linkPath = linkPath
    }
}

/// Why the simulator could not start.
public struct SimulatorError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Int32

    public var description: String { "simulator: \(operation) failed: \(String(cString: strerror(errno)))" }
}

// MARK: - The simulator

/// A simulated cellular module's AT port on a PTY. Serves until `stop()` (or deinit).
///
/// All state lives behind one lock (NIOLockedValueBox: a pthread mutex, which ThreadSanitizer sees); the master is read by a DispatchSource on a private serial queue and
/// written without blocking (a write source drains what the PTY did not take).
public final class ModemSimulator: Sendable {
    public let path: String
    public let linkPath: String?

    private let queue: DispatchQueue
    private let state: NIOLockedValueBox<State>

    public init(_ options: SimulatorOptions) throws {
        let master = PTYCalls.posixOpenpt(O_RDWR | O_NOCTTY)
        guard master >= 0 else { throw SimulatorError(operation: "posix_openpt", errno: errno) }
        var slave: Int32 = -1
        var slavePath = ""
        do {
            guard PTYCalls.grantpt(master) == 0 else { throw SimulatorError(operation: "grantpt", errno: errno) }
            guard PTYCalls.unlockpt(master) == 0 else { throw SimulatorError(operation: "unlockpt", errno: errno) }
            var name = [CChar](repeating: 0, count: 128)
            let rc = PTYCalls.ptsnameR(master, &name, name.count)
            guard rc == 0 else { throw SimulatorError(operation: "ptsname", errno: rc) }
            slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // Keep our own slave descriptor open: the master then never sees EIO between clients.
            slave = open(slavePath, O_RDWR | O_NOCTTY)
            guard slave >= 0 else { throw SimulatorError(operation: "open \(slavePath)", errno: errno) }
            var tio = termios()
            guard tcgetattr(slave, &tio) == 0 else { throw SimulatorError(operation: "tcgetattr", errno: errno) }
            cfmakeraw(&tio)
            guard tcsetattr(slave, TCSANOW, &tio) == 0 else {
                throw SimulatorError(operation: "tcsetattr", errno: errno)
            }
            let flags = fcntl(master, F_GETFL)
            guard flags >= 0, fcntl(master, F_SETFL, flags | O_NONBLOCK) == 0 else {
                throw SimulatorError(operation: "fcntl O_NONBLOCK", errno: errno)
            }
            if let link = options.linkPath {
                var st = stat()
                if lstat(link, &st) == 0 {
                    guard (st.st_mode & S_IFMT) == S_IFLNK else {
                        throw SimulatorError(operation: "replace \(link) (not a symlink)", errno: EEXIST)
                    }
                    guard unlink(link) == 0 else { throw SimulatorError(operation: "unlink \(link)", errno: errno) }
                }
                guard symlink(slavePath, link) == 0 else {
                    throw SimulatorError(operation: "symlink \(link)", errno: errno)
                }
            }
        } catch {
            if slave >= 0 { close(slave) }
            close(master)
            throw error
        }

        path = slavePath
        linkPath = options.linkPath
        queue = DispatchQueue(label: "cellprov.simulator.\(slavePath)")
        state = NIOLockedValueBox(State(options: options, master: master, slave: slave))

        let closeGroup = DispatchGroup()
        closeGroup.enter()
        closeGroup.enter()
        // The descriptors are closed once both sources are cancelled (libdispatch's rule for shared fds).
        closeGroup.notify(queue: queue) {
            close(master)
            close(slave)
        }
        let queue = self.queue
        state.withLockedValue { s in
            let read = DispatchSource.makeReadSource(fileDescriptor: master, queue: queue)
            let write = DispatchSource.makeWriteSource(fileDescriptor: master, queue: queue)
            read.setEventHandler { [weak self] in self?.masterReadable() }
            write.setEventHandler { [weak self] in self?.masterWritable() }
            read.setCancelHandler { closeGroup.leave() }
            write.setCancelHandler { closeGroup.leave() }
            s.readSource = read
            s.writeSource = write
            read.activate()
            if options.quirks.trickleMilliseconds > 0 {
                let timer = DispatchSource.makeTimerSource(queue: queue)
                let interval = DispatchTimeInterval.milliseconds(options.quirks.trickleMilliseconds)
                timer.schedule(deadline: .now() + interval, repeating: interval)
                timer.setEventHandler { [weak self] in self?.state.withLockedValue { s in s.trickleOne() } }
                s.trickleTimer = timer
                timer.activate()
            }
            if options.quirks.randomBytes {
                s.stream = .random(0x9E37_79B9_7F4A_7C15 ^ UInt64(UInt32(bitPattern: master)))
                s.flush()
            }
        }
    }

    deinit { stop() }

    public var commandLog: [String] { state.withLockedValue { $0.commandLog } }

    public func swapSIM(_ identity: SimulatedIdentity) {
        state.withLockedValue { s in
            s.identity.imsi = identity.imsi
            s.identity.iccid = identity.iccid
            if let imei = identity.imei { s.identity.imei = imei }
            if let v = identity.manufacturer { s.identity.manufacturer = v }
            if let v = identity.model { s.identity.model = v }
            if let v = identity.revision { s.identity.revision = v }
            var urcs: [String] = []
            if s.simPresent { urcs += s.removedURCs() }
            s.simPresent = true
            urcs += s.insertedURCs()
            s.send(urcs.map(State.frame).joined())
        }
    }

    /// A physical swap to another card: an eUICC (its enabled profile's IMSI and ICCID are served) or, with `euicc`
    /// nil, a plain UICC with `identity`'s IMSI and ICCID. The logical-channel quirks stay (they are the module's);
    /// the old card's channels are gone. URCs as ``swapSIM(_:)``.
    public func swapCard(_ identity: SimulatedIdentity, euicc: SimulatedEUICC?) {
        var identity = identity
        if let e = euicc, e.profiles.indices.contains(e.enabledProfile) {
            identity.iccid = e.profiles[e.enabledProfile].iccid
            identity.imsi = e.profiles[e.enabledProfile].imsi
        }
        state.withLockedValue { s in s.card.insert(euicc) }
        swapSIM(identity)
    }

    /// A firmware update of the same module: AT+CGMR (and ATI) answer `revision` from now on; the IMEI and the SIM
    /// stay, and no URC is sent (the host notices at its next read, as after a module's update and restart).
    public func updateFirmware(revision: String) {
        state.withLockedValue { s in s.identity.revision = revision }
    }

    public func setSIMPresent(_ present: Bool) {
        state.withLockedValue { s in
            guard s.simPresent != present else { return }
            s.simPresent = present
            let urcs = present ? s.insertedURCs() : s.removedURCs()
            s.send(urcs.map(State.frame).joined())
        }
    }

    /// The eUICC in the simulated module now (nil: a plain UICC), with its enabled profile.
    public var euicc: SimulatedEUICC? { state.withLockedValue { $0.card.options.euicc } }

    /// Logical channels open on the simulated card now: 0 after reads that close what they open.
    public var openLogicalChannels: Int { state.withLockedValue { $0.card.open.count } }

    /// How many logical channels AT+CCHO has opened since the start.
    public var logicalChannelOpens: Int { state.withLockedValue { $0.card.opened } }

    /// Enables profile `index` of the simulated eUICC, as an eSIM provider's remote switch does: the card resets
    /// (its logical channels close), the new profile's IMSI and ICCID are served, and the module reports the SIM
    /// ready again (`+CPIN: READY`; Quectel also `+QUSIM: 1`). False (and nothing sent) without such a profile.
    @discardableResult
    public func enableProfile(_ index: Int) -> Bool {
        state.withLockedValue { s in
            guard s.card.enable(profile: index), let profile = s.card.enabledProfile else { return false }
            s.identity.iccid = profile.iccid
            s.identity.imsi = profile.imsi
            var urcs = ["+CPIN: READY"]
            if s.options.profile == .quectel { urcs.append("+QUSIM: 1") }
            s.send(urcs.map(State.frame).joined())
            return true
        }
    }

    public func sendURC(_ line: String) {
        state.withLockedValue { s in s.send(State.frame(line)) }
    }

    /// Closes the master: the client's reads see end of file / POLLHUP, its writes EIO.
    public func unplug() {
        state.withLockedValue { s in s.unplug() }
    }

    /// Unplugs and removes the symlink. Idempotent.
    public func stop() {
        let removeLink = state.withLockedValue { s -> Bool in
            s.unplug()
            defer { s.stopped = true }
            return !s.stopped
        }
        if removeLink, let link = linkPath {
            // Only remove the link if it still points at our PTY.
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link), target == path {
                unlink(link)
            }
        }
    }

    // MARK: Event handlers (on `queue`)

    private func masterReadable() {
        let delayed = state.withLockedValue { s in s.readAndProcess() }
        for item in delayed {
            queue.asyncAfter(deadline: item.deadline) { [weak self] in
                self?.state.withLockedValue { s in s.send(item.bytes) }
            }
        }
    }

    private func masterWritable() {
        state.withLockedValue { s in s.flush() }
    }
}

// MARK: - PTY calls

/// Glibc declares posix_openpt, grantpt, unlockpt and ptsname_r only under _XOPEN_SOURCE/_GNU_SOURCE, which the
/// Swift Glibc module does not define, and this target has no C shim: look them up in libc once.
private enum PTYCalls {
    typealias FDToInt = @convention(c) (Int32) -> Int32
    typealias PtsnameR = @convention(c) (Int32, UnsafeMutablePointer<CChar>?, Int) -> Int32

    private static func symbol<T>(_ name: String, as type: T.Type) -> T {
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, name) else {
            fatalError("libc has no \(name)")
        }
        return unsafeBitCast(sym, to: type)
    }

    static let posixOpenpt = symbol("posix_openpt", as: FDToInt.self)
    static let grantpt = symbol("grantpt", as: FDToInt.self)
    static let unlockpt = symbol("unlockpt", as: FDToInt.self)
    static let ptsnameR = symbol("ptsname_r", as: PtsnameR.self)
}

// MARK: - State and the AT interpreter

struct DelayedOutput: Sendable {
    var deadline: DispatchTime
    var bytes: [UInt8]
}

private enum WriteSourceState { case inactive, running, suspended }

/// Output the hostile quirks produce without end: refilled whenever the client has read the previous chunk.
private enum EndlessStream {
    /// xorshift64 state.
    case random(UInt64)
    /// One framed block of information lines, repeated.
    case lines([UInt8])
}

enum Outcome {
    case ok
    case info([String])
    case error(String)
}

/// `@unchecked Sendable`: it holds dispatch sources, and is only touched under `ModemSimulator.state`'s lock.
private struct State: @unchecked Sendable {
    let options: SimulatorOptions
    let traits: VendorTraits
    var identity: SimulatedIdentity
    var master: Int32
    var slave: Int32
    var readSource: (any DispatchSourceRead)?
    var writeSource: (any DispatchSourceWrite)?
    var writeState = WriteSourceState.inactive
    var out: [UInt8] = []
    var outStart = 0
    var partial: [UInt8] = []
    var commandLog: [String] = []
    var commandCount = 0
    var answersSent = 0
    var noiseIndex = 0
    var echo = true
    var cmee: Int
    var simPresent: Bool
    /// The vendor's SIM hot-swap reports (nil: the vendor has none to switch on) and whether the host switched
    /// them on.
    var simReports: SimulatedSIMReports? { SimulatedSIMReports.forProfile(options.profile) }
    var simReportsOn = false
    var simBusyLeft: Int
    var stopped = false
    var unplugged = false
    var lastDeadline = DispatchTime(uptimeNanoseconds: 0)
    var stream: EndlessStream?
    var trickleQueue: [UInt8] = []
    var trickleStart = 0
    var trickleTimer: (any DispatchSourceTimer)?
    var card: SimulatedCard
    /// Set by a command the card swallows: its answer is not sent.
    var swallowAnswer = false

    init(options: SimulatorOptions, master: Int32, slave: Int32) {
        self.options = options
        self.traits = VendorTraits.traits(for: options.profile)
        var identity = options.identity
        if identity.imei == nil, identity.imsi == nil, identity.iccid == nil {
            let d = SimulatedIdentity.defaultIdentity(for: options.profile)
            identity.imei = d.imei
            identity.imsi = d.imsi
            identity.iccid = d.iccid
        }
        card = SimulatedCard(options: options.logicalChannels)
        if let profile = card.enabledProfile {
            identity.iccid = profile.iccid
            identity.imsi = profile.imsi
        }
        self.identity = identity
        self.master = master
        self.slave = slave
        self.cmee = traits.defaultCMEE
        self.simPresent = !options.quirks.simAbsent
        self.simBusyLeft = max(0, options.quirks.simBusyTries)
    }

    var quirks: SimulatorQuirks { options.quirks }
    var manufacturer: String { identity.manufacturer ?? traits.manufacturer }
    var model: String { identity.model ?? traits.model }
    var revision: String { identity.revision ?? traits.revision }

    static func frame(_ line: String) -> String { "\r\n" + line + "\r\n" }

    var cpinState: String { quirks.simPUK ? "SIM PUK" : (quirks.simPIN ? "SIM PIN" : "READY") }

    func insertedURCs() -> [String] {
        swapURCs(traits.insertedURCs.map { $0.replacing("%P", with: cpinState) }, inserted: true)
    }

    func removedURCs() -> [String] { swapURCs(traits.removedURCs, inserted: false) }

    /// A vendor whose SIM reports must be switched on sends its report URC (`+QSIMSTAT:`, `#QSS:`, `^SCKS:`,
    /// `+CSMINS:`) only once they are, first; its other SIM URCs (Quectel's `+CPIN`/`+QUSIM: 1` on the card's
    /// initialisation, which ModemManager's quectel plugin listens to) come either way. With the card holder's
    /// detection off no swap is noticed at all. Telit's and Cinterion's only swap URCs are their reports.
    func swapURCs(_ urcs: [String], inserted: Bool) -> [String] {
        guard let reports = simReports else { return urcs }
        if quirks.simDetectionOff { return [] }
        let report = reports.urc.replacing("%S", with: inserted ? "1" : "0")
        let others = urcs.filter { $0 != report }
        return simReportsOn ? [report] + others : others
    }

    // MARK: Output

    mutating func send(_ text: String) { send(Array(text.utf8)) }

    mutating func send(_ bytes: [UInt8]) {
        guard !unplugged, !bytes.isEmpty else { return }
        if quirks.trickleMilliseconds > 0 {
            trickleQueue.append(contentsOf: bytes)
            return
        }
        out.append(contentsOf: bytes)
        flush()
    }

    /// The trickle quirk's timer: one byte of the queued output.
    mutating func trickleOne() {
        guard !unplugged, trickleStart < trickleQueue.count else { return }
        out.append(trickleQueue[trickleStart])
        trickleStart += 1
        if trickleStart == trickleQueue.count {
            trickleQueue.removeAll(keepingCapacity: true)
            trickleStart = 0
        }
        flush()
    }

    /// The next 4 KiB of an endless stream.
    mutating func refillStream() {
        switch stream {
        case .random(var x):
            out.reserveCapacity(out.count + 4096)
            for _ in 0..<512 {
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            }
            stream = .random(x)
        case .lines(let block):
            while out.count - outStart < 4096 { out.append(contentsOf: block) }
        case nil:
            break
        }
    }

    mutating func flush() {
        guard !unplugged else { return }
        if stream != nil && outStart >= out.count {
            out.removeAll(keepingCapacity: true)
            outStart = 0
            refillStream()
        }
        while outStart < out.count {
            let n = out.withUnsafeBytes { raw in
                write(master, raw.baseAddress! + outStart, out.count - outStart)
            }
            if n > 0 {
                outStart += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EAGAIN {
                break
            } else {
                // The PTY refused the data for good: drop it.
                outStart = out.count
            }
        }
        if outStart >= out.count && stream == nil {
            out.removeAll(keepingCapacity: true)
            outStart = 0
            if writeState == .running {
                writeSource?.suspend()
                writeState = .suspended
            }
        } else {
            if outStart > 65536 {
                out.removeFirst(outStart)
                outStart = 0
            }
            startWriting()
        }
    }

    /// Lets the write source run (activated the first time, resumed after a suspension).
    mutating func startWriting() {
        switch writeState {
        case .inactive: writeSource?.activate()
        case .suspended: writeSource?.resume()
        case .running: break
        }
        writeState = .running
    }

    mutating func unplug() {
        guard !unplugged else { return }
        unplugged = true
        out = []
        outStart = 0
        startWriting()
        trickleTimer?.cancel()
        trickleTimer = nil
        stream = nil
        writeSource?.cancel()
        readSource?.cancel()
        writeSource = nil
        readSource = nil
    }

    // MARK: Input

    mutating func readAndProcess() -> [DelayedOutput] {
        guard !unplugged else { return [] }
        var delayed: [DelayedOutput] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !unplugged {
            let n = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            for byte in buffer[0..<n] {
                if byte == 0x0D || byte == 0x0A {
                    if !partial.isEmpty {
                        let line = partial
                        partial.removeAll(keepingCapacity: true)
                        if let d = handleLine(line, terminator: byte) { delayed.append(d) }
                        if unplugged { break }
                    }
                } else if partial.count < 4096 {
                    partial.append(byte)
                }
            }
        }
        return delayed
    }

    /// Returns output to send later (the response delay quirk); sends everything else now.
    mutating func handleLine(_ raw: [UInt8], terminator: UInt8) -> DelayedOutput? {
        let line = String(decoding: raw, as: UTF8.self)
        commandLog.append(line)
        commandCount += 1
        if let n = quirks.unplugAfterCommands, commandCount >= n {
            unplug()
            return nil
        }
        if quirks.silent || quirks.randomBytes || commandCount <= quirks.swallowFirst { return nil }
        if echo || quirks.echoAlways { send(raw + [terminator]) }
        if quirks.endlessAnswer {
            if stream == nil {
                stream = .lines(Array([manufacturer, model, revision].map(Self.frame).joined().utf8))
                flush()
            }
            return nil
        }

        let trimmed = line.trimmingWhitespace()
        guard trimmed.count >= 2, trimmed.prefix(2).uppercased() == "AT" else {
            return nil  // V.250: a line without the AT prefix is ignored.
        }
        var response: [UInt8] = []
        if let other = quirks.foreignEcho { response += Array((other + "\r").utf8) }
        if quirks.garbageBeforeAnswers && answersSent == 0 {
            response += Self.garbage()
        }
        answersSent += 1
        if quirks.urcNoise, !traits.noiseURCs.isEmpty {
            response += Array(Self.frame(traits.noiseURCs[noiseIndex % traits.noiseURCs.count]).utf8)
            noiseIndex += 1
        }
        response += Array(execute(String(trimmed.dropFirst(2))).utf8)
        if swallowAnswer {
            swallowAnswer = false
            return nil
        }

        if quirks.responseDelayMilliseconds > 0 {
            var deadline = DispatchTime.now() + .milliseconds(quirks.responseDelayMilliseconds)
            if deadline < lastDeadline { deadline = lastDeadline }
            lastDeadline = deadline
            return DelayedOutput(deadline: deadline, bytes: response)
        }
        send(response)
        return nil
    }

    /// 256 bytes of binary junk (no CR/LF), a line end, then 70,000 printable bytes with no line end.
    static func garbage() -> [UInt8] {
        var bytes: [UInt8] = []
        var x: UInt32 = 0x1234_5678
        while bytes.count < 256 {
            x = x &* 1_103_515_245 &+ 12345
            let b = UInt8(truncatingIfNeeded: x >> 16)
            if b != 0x0D && b != 0x0A { bytes.append(b) }
        }
        bytes += [0x0D, 0x0A]
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+:,".utf8)
        for i in 0..<70_000 { bytes.append(alphabet[i % alphabet.count]) }
        return bytes
    }

    // MARK: V.250 command line

    /// Runs the command line after "AT" and returns the whole framed answer.
    mutating func execute(_ body: String) -> String {
        var rest = Substring(body)
        var text = ""
        while let c = rest.first {
            if c == ";" || c == " " {
                rest.removeFirst()
                continue
            }
            let outcome: Outcome
            if "+^#!$%*".contains(c) {
                let end = rest.firstIndex(of: ";") ?? rest.endIndex
                outcome = extended(String(rest[..<end]))
                rest = rest[end...]
            } else if c.isLetter || c == "&" {
                var name = String(rest.removeFirst()).uppercased()
                if name == "&", let next = rest.first {
                    name += String(next).uppercased()
                    rest.removeFirst()
                }
                var digits = ""
                while let d = rest.first, d.isASCII, d.isNumber {
                    digits.append(d)
                    rest.removeFirst()
                }
                outcome = basic(name, Int(digits) ?? 0)
            } else {
                outcome = .error("ERROR")
            }
            switch outcome {
            case .ok: break
            case .info(let lines): text += Self.frame(lines.joined(separator: "\r\n"))
            case .error(let e): return text + Self.frame(e)
            }
        }
        return text + Self.frame("OK")
    }

    mutating func basic(_ name: String, _ value: Int) -> Outcome {
        switch name {
        case "E":
            guard value <= 1 else { return .error("ERROR") }
            echo = value == 1
            return .ok
        case "V":
            return value == 1 ? .ok : .error("ERROR")  // numeric result codes are not simulated
        case "Q":
            return value == 0 ? .ok : .error("ERROR")
        case "I":
            return value == 0 ? .info(atiLines()) : .error("ERROR")
        case "Z", "&F":
            echo = true
            cmee = traits.defaultCMEE
            return .ok
        case "X", "&C", "&D", "&W", "S":
            return .ok
        default:
            return .error("ERROR")
        }
    }

    func atiLines() -> [String] {
        traits.atiLines.map {
            $0.replacing("%M", with: manufacturer)
                .replacing("%m", with: model)
                .replacing("%R", with: revision)
                .replacing("%I", with: identity.imei ?? "")
        }
    }

    func cmeError(_ code: Int) -> Outcome {
        switch cmee {
        case 1: return .error("+CME ERROR: \(code)")
        case 2: return .error("+CME ERROR: \(Self.cmeText[code] ?? "unknown")")
        default: return .error("ERROR")
        }
    }

    /// 3GPP TS 27.007 9.2 verbose texts.
    static let cmeText: [Int: String] = [
        3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
        11: "SIM PIN required", 12: "SIM PUK required", 13: "SIM failure", 14: "SIM busy", 15: "SIM wrong",
    ]

    enum SIMAccess { case iccid, imsi, cpin }

    /// nil: go ahead. ICCID reads work on a locked SIM (EF_ICCID needs no PIN).
    mutating func simGate(_ access: SIMAccess) -> Outcome? {
        if !simPresent { return cmeError(10) }
        if simBusyLeft > 0 {
            simBusyLeft -= 1
            return cmeError(14)
        }
        guard access == .imsi else { return nil }
        if quirks.simPUK { return cmeError(12) }
        if quirks.simPIN { return cmeError(11) }
        return nil
    }

    func iccidAnswer(_ format: ICCIDFormat) -> Outcome {
        guard let iccid = identity.iccid else { return cmeError(13) }
        // "%E": the eUICC's EID where the vendor's answer carries it (Sequans +SQNCCID), empty on a plain UICC.
        return .info([format.answer(iccid).replacing("%E", with: card.options.euicc?.eid ?? "")])
    }

    mutating func extended(_ command: String) -> Outcome {
        // Name: the prefix character and following letters/digits/'_'; the rest is "", "?", "=?" or "=args".
        var nameEnd = command.index(after: command.startIndex)
        while nameEnd < command.endIndex, command[nameEnd].isLetter || command[nameEnd].isNumber
            || command[nameEnd] == "_"
        {
            nameEnd = command.index(after: nameEnd)
        }
        let name = command[..<nameEnd].uppercased()
        let suffix = String(command[nameEnd...]).trimmingWhitespace()

        // The vendor ICCID command (its name may include "?", like "^ICCID?" and "!ICCID?").
        if let vendor = traits.vendorICCIDCommand, let format = traits.vendorICCIDFormat,
            (name + suffix).uppercased() == vendor || (name == vendor && suffix.isEmpty)
        {
            if quirks.vendorICCIDUnsupported { return .error("ERROR") }
            if let gate = simGate(.iccid) { return gate }
            return iccidAnswer(format)
        }

        if ["+CCHO", "+CCHC", "+CGLA"].contains(name) {
            if let gate = simGate(.iccid) { return gate }
            let notSupported: String
            if case .error(let line) = cmeError(4) { notSupported = line } else { notSupported = "ERROR" }
            switch card.handle(name: name, suffix: suffix, notSupported: notSupported) {
            case .ok: return .ok
            case .info(let lines): return .info(lines)
            case .error(let line): return .error(line)
            case .swallow:
                swallowAnswer = true
                return .ok
            }
        }

        if let reports = simReports,
            let outcome = reports.handle(
                name: name, suffix: suffix, on: &simReportsOn, simPresent: simPresent,
                detectionOff: quirks.simDetectionOff)
        {
            return outcome
        }

        switch (name, suffix) {
        case ("+CMEE", "?"): return .info(["+CMEE: \(cmee)"])
        case ("+CMEE", "=?"): return .info(["+CMEE: (0-2)"])
        case ("+CMEE", _) where suffix.hasPrefix("="):
            guard let v = Int(suffix.dropFirst()), (0...2).contains(v) else { return cmeError(4) }
            cmee = v
            return .ok
        case ("+CGMI", ""), ("+GMI", ""): return .info([manufacturer])
        case ("+CGMM", ""), ("+GMM", ""): return .info([model])
        case ("+CGMR", ""), ("+GMR", ""): return .info([traits.revisionPrefix + revision])
        case ("+CGMI", "=?"), ("+CGMM", "=?"), ("+CGMR", "=?"), ("+GMI", "=?"), ("+GMM", "=?"), ("+GMR", "=?"),
            ("+CGSN", "=?"), ("+GSN", "=?"), ("+CIMI", "=?"), ("+CCID", "=?"):
            return .ok
        case ("+CGSN", ""), ("+CGSN", "=0"), ("+GSN", ""):
            guard let imei = identity.imei else { return cmeError(3) }
            return .info([traits.imeiAnswer.replacing("%I", with: imei)])
        case ("+CGSN", "=1"):
            guard let imei = identity.imei else { return cmeError(3) }
            return .info(["+CGSN: \"\(imei)\""])
        case ("+CIMI", ""):
            if quirks.cimiUnsupported { return cmeError(4) }
            if let gate = simGate(.imsi) { return gate }
            guard let imsi = identity.imsi else { return cmeError(13) }
            return .info([traits.imsiAnswer.replacing("%S", with: imsi)])
        case ("+ICCID", ""):
            guard let format = traits.plusICCIDFormat else { return .error("ERROR") }
            if let gate = simGate(.iccid) { return gate }
            return iccidAnswer(format)
        case ("+CCID", ""), ("+CCID", "?"):
            guard let format = traits.ccidFormat, !quirks.ccidUnsupported,
                !(traits.ccidIsVendorCommand && quirks.vendorICCIDUnsupported)
            else { return .error("ERROR") }
            if let gate = simGate(.iccid) { return gate }
            return iccidAnswer(format)
        case ("+CPIN", "?"):
            if let gate = simGate(.cpin) { return gate }
            return .info(["+CPIN: \(cpinState)"])
        case ("+CRSM", _) where suffix.hasPrefix("="):
            let args = suffix.dropFirst().split(separator: ",").map { $0.trimmingWhitespace() }
            guard args.count >= 2, let cmd = Int(args[0]), let file = Int(args[1]), !quirks.crsmUnsupported else {
                return cmeError(4)
            }
            // EF_IMSI needs the PIN (TS 31.102 §4.2.2 access condition), EF_ICCID does not.
            if let gate = simGate(file == 0x6F07 ? .imsi : .iccid) { return gate }
            switch (cmd, file) {
            case (176, 0x2FE2):
                guard let iccid = identity.iccid else { return cmeError(13) }
                return .info(["+CRSM: 144,0,\"\(BCD.nibbleSwapped(iccid))\""])
            case (176, 0x6F07):
                guard let imsi = identity.imsi else { return cmeError(13) }
                return .info(["+CRSM: 144,0,\"\(BCD.efIMSI(imsi))\""])
            default:
                return .info(["+CRSM: 148,4,\"\""])  // 94 04: file not found
            }
        case ("+GCAP", ""): return .info(["+GCAP: +CGSM"])
        case ("+CFUN", "?"): return .info(["+CFUN: 1"])
        default: return .error("ERROR")
        }
    }
}
