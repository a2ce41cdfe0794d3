#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import NIOConcurrencyHelpers

/// What kind of character device an AT port is.
public enum SerialPortKind: String, Sendable, Equatable {
    /// A tty (ttyUSB, ttyACM, ttyS...): termios raw 8N1, TIOCEXCL + flock.
    case tty
    /// A Linux WWAN framework port (wwan0at0: PCIe modules). Not a tty: no termios, no TIOCEXCL (the kernel
    /// answers ENOTTY or a stub); flock only. A byte pipe: the line settings do not apply.
    case wwan
}

/// Line settings for a serial port. Defaults: 115200 8N1, raw, no flow control, modem-control lines ignored.
public struct SerialSettings: Sendable, Equatable {
    public var baudRate: Int
    public var hardwareFlowControl: Bool
    /// nil (the default): found out from the device itself (``SerialPort/kind(of:)``); set only to force a kind.
    public var kind: SerialPortKind?

    public init(baudRate: Int = 115_200, hardwareFlowControl: Bool = false, kind: SerialPortKind? = nil) {
        self.baudRate = baudRate
        self.hardwareFlowControl = hardwareFlowControl
        self.kind = kind
    }

    public static let supportedBaudRates: [Int: speed_t] = [
        9600: speed_t(B9600), 19200: speed_t(B19200), 38400: speed_t(B38400), 57600: speed_t(B57600),
        115_200: speed_t(B115200), 230_400: speed_t(B230400), 460_800: speed_t(B460800),
        921_600: speed_t(B921600), 3_000_000: speed_t(B3000000), 4_000_000: speed_t(B4000000),
    ]
}

/// Why a serial port could not be used. Descriptions carry the path and the system's reason, nothing else.
public struct SerialError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String {
            case notFound, permissionDenied, busy, notATTY, notATPort, openFailed, configure, io, closed
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        public var description: String { base.rawValue }
        /// The path does not exist.
        public static let notFound = Code(.notFound)
        public static let permissionDenied = Code(.permissionDenied)
        /// Another process holds the port (TIOCEXCL or an flock).
        public static let busy = Code(.busy)
        public static let notATTY = Code(.notATTY)
        /// A WWAN port of another type than AT (MBIM, QMI, QCDM, FIREHOSE...): refused before it is opened.
        public static let notATPort = Code(.notATPort)
        public static let openFailed = Code(.openFailed)
        /// termios could not be applied.
        public static let configure = Code(.configure)
        /// A read or write failed (EIO after an unplug, for example).
        public static let io = Code(.io)
        /// The port was closed, by us or by a hang-up.
        public static let closed = Code(.closed)
    }

    public var code: Code
    public var path: String
    public var errno: Int32?
    public var detail: String

    public init(_ code: Code, path: String, errno: Int32? = nil, detail: String) {
        self.code = code
        self.path = path
        self.errno = errno
        self.detail = detail
    }

    public var description: String {
        if let errno { return "\(path): \(detail) (\(String(cString: strerror(errno))))" }
        return "\(path): \(detail)"
    }
}

/// What the port delivers to its reader.
public enum SerialEvent: Sendable, Equatable {
    case data([UInt8])
    /// The port is gone (hang-up, EIO) or was closed; no more events follow.
    case closed(SerialError?)
}

/// A tty opened non-blocking and exclusively, in raw mode, read through a dispatch read source: bytes go to the
/// handler given to ``start(_:)``, in order, on the port's own serial queue (no thread hop in between, so an
/// answer reaches the AT layer as soon as the kernel has it).
///
/// Exclusivity is both TIOCEXCL (other opens fail with EBUSY, except for CAP_SYS_ADMIN) and an flock(LOCK_EX)
/// (which binds root too, and is what minicom, picocom and ModemManager's peers honour): a port another process
/// holds is reported as ``SerialError/Code/busy``, never shared.
///
/// A Linux WWAN framework port (``SerialPortKind/wwan``, found out by ``kind(of:)``) is opened the way
/// ModemManager opens one: no termios and no TIOCEXCL (not a tty: the kernel answers ENOTTY, or a termios stub
/// since 5.14), flock only for mutual exclusion between cellprov processes. The kernel lets several processes open
/// one WWAN port (wwan_core counts openers; wwan_core does not look at O_EXCL), so ModemManager is kept
/// off cellprov's port by ID_MM_PORT_IGNORE (udev/77-cellprov.rules), not here; an EBUSY at open (a driver that
/// refuses a second opener) is ``SerialError/Code/busy`` as for a tty. A WWAN port of any type but AT is refused
/// before it is opened.
public final class SerialPort: Sendable {
    public let path: String
    public let kind: SerialPortKind

    private let fd: Int32
    private let state: NIOLockedValueBox<State>
    private let queue: DispatchQueue
    /// Signalled by the read source's cancel handler once the fd is closed.
    private let released = DispatchSemaphore(value: 0)

    // Created in init, resumed once, cancelled once (under `state`): safe to share.
    private nonisolated(unsafe) let source: DispatchSourceRead

    private struct State {
        var closed = false
        var started = false
        var handler: (@Sendable (SerialEvent) -> Void)?
    }

    private init(path: String, fd: Int32, kind: SerialPortKind) {
        self.path = path
        self.kind = kind
        self.fd = fd
        self.queue = DispatchQueue(label: "cellprov.serial")
        self.state = NIOLockedValueBox(State())
        self.source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
    }

    /// Opens `path`: O_RDWR|O_NOCTTY|O_NONBLOCK, exclusive; a tty in raw termios per `settings`, buffers
    /// flushed; a WWAN port as it is (see the type's documentation).
    public static func open(_ path: String, settings: SerialSettings = .init()) throws(SerialError) -> SerialPort {
        // Decided before open(): a WWAN port of another type is never opened at all.
        let kind: SerialPortKind
        if let forced = settings.kind {
            kind = forced
        } else {
            switch Self.kind(of: path) {
            case .tty: kind = .tty
            case .wwan(type: let type):
                guard type == "AT" else {
                    let detail = "WWAN port of type \(type ?? "?") is not an AT port; not opened"
                    throw SerialError(.notATPort, path: path, detail: detail)
                }
                kind = .wwan
            }
        }
        let fd = Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            switch e {
            case ENOENT, ENODEV, ENXIO: throw SerialError(.notFound, path: path, errno: e, detail: "cannot open port")
            case EACCES, EPERM:
                throw SerialError(.permissionDenied, path: path, errno: e, detail: "cannot open port")
            case EBUSY: throw SerialError(.busy, path: path, errno: e, detail: "port is held by another process")
            default: throw SerialError(.openFailed, path: path, errno: e, detail: "cannot open port")
            }
        }
        do {
            switch kind {
            case .tty: try configure(fd: fd, path: path, settings: settings)
            case .wwan: try lock(fd: fd, path: path)
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return SerialPort(path: path, fd: fd, kind: kind)
    }

    /// What a path names, as ``kind(of:sysfs:)`` finds out.
    public enum DeviceKind: Sendable, Equatable {
        /// Anything that is not a WWAN port (a tty, or something open() and isatty() will judge).
        case tty
        /// A WWAN port; `type` upper case ("AT", "MBIM"...), nil when neither sysfs nor the name tell.
        case wwan(type: String?)
    }

    /// What a device's path names, from the kernel's own account of its character device: the class of
    /// /sys/dev/char/MAJOR:MINOR (the same sysfs udev reads), and a WWAN port's `type` attribute (Linux 5.14+) or its
    /// name's suffix (Linux 5.13: "wwan0p1AT"). Without sysfs, a node named like a WWAN port ("wwan0at0") counts as
    /// one. stat(2) of the path, not fstat(2) of an open fd: the decision comes before the open (and umockdev, which
    /// the tests use, emulates the device number for stat only). Not tcgetattr() failing with ENOTTY: WWAN AT ports
    /// answer TCGETS with a stub since 5.14, and every other non-tty fails it too.
    public static func kind(of path: String, sysfs: String = "/sys") -> DeviceKind {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFCHR else { return .tty }
        // glibc's major()/minor() encoding of dev_t.
        let rdev = UInt64(st.st_rdev)
        let major = (rdev >> 8) & 0xfff | (rdev >> 32) & ~UInt64(0xfff)
        let minor = rdev & 0xff | (rdev >> 12) & ~UInt64(0xff)
        let node = "\(sysfs)/dev/char/\(major):\(minor)"
        if let subsystem = readLink("\(node)/subsystem") {
            guard subsystem.split(separator: "/").last == "wwan" else { return .tty }
            if let type = readSmallFile("\(node)/type") { return .wwan(type: type.uppercased()) }
            return .wwan(type: wwanType(fromName: readLink(node) ?? path))
        }
        // No sysfs (a container without /sys): the kernel's naming is the remaining evidence.
        let resolved = realpath(path, nil).map { p in defer { free(p) }; return String(cString: p) } ?? path
        if let type = wwanType(fromName: resolved) { return .wwan(type: type) }
        return .tty
    }

    /// "wwan0at1" -> "AT", "wwan0mbim0" -> "MBIM", "wwan0p1AT" -> "AT" (last path component); nil otherwise.
    static func wwanType(fromName path: String) -> String? {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        guard name.hasPrefix("wwan") else { return nil }
        var rest = name.dropFirst(4).drop { $0.isASCII && $0.isNumber }
        guard rest.count < name.count - 4 else { return nil }  // wwan must be followed by its device number
        if rest.first == "p", rest.dropFirst().first?.isNumber == true {
            rest = rest.dropFirst().drop { $0.isASCII && $0.isNumber }
            return !rest.isEmpty && rest.allSatisfy({ $0.isASCII && $0.isLetter }) ? rest.uppercased() : nil
        }
        let letters = rest.prefix { $0.isASCII && $0.isLowercase }
        let digits = rest.dropFirst(letters.count)
        guard !letters.isEmpty, !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return letters.uppercased()
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A sysfs attribute's value, trimmed; at most 64 bytes are read (a port type is a short word).
    private static func readSmallFile(_ path: String) -> String? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[0..<n], as: UTF8.self).trimmingWhitespace()
        return text.isEmpty ? nil : text
    }

    /// flock(LOCK_EX|LOCK_NB): mutual exclusion with other cellprov processes (and anything else that honours it).
    private static func lock(fd: Int32, path: String) throws(SerialError) {
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            if e == EWOULDBLOCK {
                throw SerialError(.busy, path: path, errno: e, detail: "port is held by another process")
            }
            throw SerialError(.openFailed, path: path, errno: e, detail: "cannot lock port")
        }
    }

    private static func configure(fd: Int32, path: String, settings: SerialSettings) throws(SerialError) {
        guard isatty(fd) == 1 else { throw SerialError(.notATTY, path: path, detail: "not a terminal device") }
        try lock(fd: fd, path: path)
        if ioctl(fd, UInt(TIOCEXCL)) != 0 {
            let e = errno
            throw SerialError(.configure, path: path, errno: e, detail: "cannot make port exclusive")
        }
        var tio = termios()
        guard tcgetattr(fd, &tio) == 0 else {
            throw SerialError(.configure, path: path, errno: errno, detail: "cannot read line settings")
        }
        cfmakeraw(&tio)
        guard let speed = SerialSettings.supportedBaudRates[settings.baudRate] else {
            throw SerialError(.configure, path: path, detail: "unsupported baud rate \(settings.baudRate)")
        }
        cfsetispeed(&tio, speed)
        cfsetospeed(&tio, speed)
        tio.c_cflag |= tcflag_t(CLOCAL | CREAD)  // ignore modem-control lines: no hang-up signals
        tio.c_cflag &= ~tcflag_t(HUPCL)  // do not drop DTR on close
        tio.c_cflag &= ~tcflag_t(CSTOPB | PARENB)
        tio.c_cflag = (tio.c_cflag & ~tcflag_t(CSIZE)) | tcflag_t(CS8)
        if settings.hardwareFlowControl {
            tio.c_cflag |= tcflag_t(CRTSCTS)
        } else {
            tio.c_cflag &= ~tcflag_t(CRTSCTS)
        }
        withUnsafeMutableBytes(of: &tio.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        guard tcsetattr(fd, TCSANOW, &tio) == 0 else {
            throw SerialError(.configure, path: path, errno: errno, detail: "cannot apply line settings")
        }
        tcflush(fd, TCIOFLUSH)
    }

    /// Starts delivering: bytes as they arrive, then one `.closed`. Call once.
    public func start(_ handler: @escaping @Sendable (SerialEvent) -> Void) {
        let first = state.withLockedValue { s -> Bool in
            guard !s.started, !s.closed else { return false }
            s.started = true
            s.handler = handler
            return true
        }
        guard first else { return }
        source.setEventHandler { [weak self] in self?.readAvailable() }
        source.resume()
    }

    private func deliver(_ event: SerialEvent) {
        state.withLockedValue { $0.handler }?(event)
    }

    private func readAvailable() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                deliver(.data(Array(buffer[0..<n])))
                if n < buffer.count { return }
                continue
            }
            if n == 0 {
                // A tty with VMIN=0 returns 0 when nothing is there; after a hang-up it keeps returning 0. (A WWAN
                // port answers EAGAIN when empty and ENODEV once its module is gone: the error path below.)
                if isHungUp() { shutdown(SerialError(.closed, path: path, detail: "port hung up")) }
                return
            }
            let e = errno
            if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return }
            shutdown(SerialError(.io, path: path, errno: e, detail: "read failed"))
            return
        }
    }

    private func isHungUp() -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 0) >= 0 else { return true }
        return p.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0
    }

    /// Writes all of `bytes`, waiting (poll) while the driver's buffer is full, at most `timeoutMilliseconds`.
    public func write(_ bytes: [UInt8], timeoutMilliseconds: Int32 = 2000) throws(SerialError) {
        if state.withLockedValue({ $0.closed }) { throw SerialError(.closed, path: path, detail: "port is closed") }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n > 0 {
                offset += n
                continue
            }
            let e = errno
            if n < 0 && (e == EAGAIN || e == EWOULDBLOCK) {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&p, 1, timeoutMilliseconds) <= 0 {
                    throw SerialError(.io, path: path, detail: "write timed out")
                }
                if p.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 {
                    throw SerialError(.io, path: path, errno: EIO, detail: "write failed")
                }
                continue
            }
            if n < 0 && e == EINTR { continue }
            throw SerialError(.io, path: path, errno: e, detail: "write failed")
        }
    }

    /// Closes the port and returns once it is released (fd closed, flock and TIOCEXCL gone), so whoever opens it
    /// next does not find it busy. Idempotent; the handler gets `.closed(nil)` last. Do not call from the handler.
    public func close() {
        queue.sync { shutdown(nil) }
        released.wait()
        released.signal()  // later callers (idempotent close) pass straight through
    }

    private func shutdown(_ error: SerialError?) {
        let (first, started, handler) = state.withLockedValue { s in
            defer {
                s.closed = true
                s.handler = nil
            }
            return (!s.closed, s.started, s.handler)
        }
        guard first else { return }
        let fd = self.fd
        let released = self.released
        let isTTY = kind == .tty
        source.setCancelHandler {
            if isTTY { _ = ioctl(fd, UInt(TIOCNXCL)) }
            Glibc.close(fd)
            released.signal()
        }
        source.cancel()
        // A dispatch source must not be released suspended: one never started is resumed once, cancelled.
        if !started { source.resume() }
        handler?(.closed(error))
    }

    deinit {
        let (wasOpen, started) = state.withLockedValue { s -> (Bool, Bool) in
            defer { s.closed = true }
            return (!s.closed, s.started)
        }
        if wasOpen {
            let fd = self.fd
            source.setCancelHandler { Glibc.close(fd) }
            source.cancel()
            if !started { source.resume() }
        }
    }
}

extension StringProtocol {
    fileprivate func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
