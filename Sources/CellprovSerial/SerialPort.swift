#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Line settings for a serial port. Defaults: 115200 8N1, raw, no flow control, modem-control lines ignored.
public struct SerialSettings: Sendable, Equatable {
    public var baudRate: Int
    public var hardwareFlowControl: Bool

    public init(baudRate: Int = 115_200, hardwareFlowControl: Bool = false) {
        self.baudRate = baudRate
        self.hardwareFlowControl = hardwareFlowControl
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
        private enum Base: String { case notFound, permissionDenied, busy, notATTY, openFailed, configure, io, closed }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        public var description: String { base.rawValue }
        /// The path does not exist.
        public static let notFound = Code(.notFound)
        public static let permissionDenied = Code(.permissionDenied)
        /// Another process holds the port (TIOCEXCL or an flock).
        public static let busy = Code(.busy)
        public static let notATTY = Code(.notATTY)
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
public final class SerialPort: Sendable {
    public let path: String

    private let fd: Int32
    private let state: Mutex<State>
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

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
        self.queue = DispatchQueue(label: "cellprov.serial")
        self.state = Mutex(State())
        self.source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
    }

    /// Opens `path`: O_RDWR|O_NOCTTY|O_NONBLOCK, exclusive, raw termios per `settings`, buffers flushed.
    public static func open(_ path: String, settings: SerialSettings = .init()) throws(SerialError) -> SerialPort {
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
            try configure(fd: fd, path: path, settings: settings)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return SerialPort(path: path, fd: fd)
    }

    private static func configure(fd: Int32, path: String, settings: SerialSettings) throws(SerialError) {
        guard isatty(fd) == 1 else { throw SerialError(.notATTY, path: path, detail: "not a terminal device") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            if e == EWOULDBLOCK {
                throw SerialError(.busy, path: path, errno: e, detail: "port is held by another process")
            }
            throw SerialError(.openFailed, path: path, errno: e, detail: "cannot lock port")
        }
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
        let first = state.withLock { s -> Bool in
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
        state.withLock { $0.handler }?(event)
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
                // A tty with VMIN=0 returns 0 when nothing is there; after a hang-up it keeps returning 0.
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
        if state.withLock({ $0.closed }) { throw SerialError(.closed, path: path, detail: "port is closed") }
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
        let (first, started, handler) = state.withLock { s in
            defer {
                s.closed = true
                s.handler = nil
            }
            return (!s.closed, s.started, s.handler)
        }
        guard first else { return }
        let fd = self.fd
        let released = self.released
        source.setCancelHandler {
            _ = ioctl(fd, UInt(TIOCNXCL))
            Glibc.close(fd)
            released.signal()
        }
        source.cancel()
        // A dispatch source must not be released suspended: one never started is resumed once, cancelled.
        if !started { source.resume() }
        handler?(.closed(error))
    }

    deinit {
        let (wasOpen, started) = state.withLock { s -> (Bool, Bool) in
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
