import CellprovSerial
import Foundation
import NIOConcurrencyHelpers
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// A WWAN port is a byte pipe, not a tty: SerialPort's WWAN mode must leave the line settings alone (no termios, no
// TIOCEXCL) and still move bytes both ways. A PTY stands in for the character device: whatever termios call the port
// made would show on the PTY (termios ioctls on the master act on the slave's settings), so the test can fail.
// Under umockdev, Tests/umockdev/test_wwan.py checks the same on a /dev/wwan0at0 node with its ioctls recorded.

/// A PTY whose slave has sentinel settings: raw, 9600 baud, VMIN 5 (values cellprov's tty mode never sets).
struct SentinelPTY: ~Copyable {
    let master: Int32
    let slavePath: String

    init() throws {
        var master: Int32 = -1
        var slave: Int32 = -1
        guard openpty(&master, &slave, nil, nil, nil) == 0 else { throw POSIXError(.EIO) }
        // ttyname_r: ttyname's static buffer is shared by the tests running in parallel (a torn "/dev/pts/" was seen).
        var name = [CChar](repeating: 0, count: 128)
        let found = ttyname_r(slave, &name, name.count) == 0
        self.master = master
        slavePath = found ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        var tio = termios()
        tcgetattr(slave, &tio)
        cfmakeraw(&tio)
        cfsetispeed(&tio, speed_t(B9600))
        cfsetospeed(&tio, speed_t(B9600))
        withUnsafeMutableBytes(of: &tio.c_cc) { $0[Int(VMIN)] = 5 }
        tcsetattr(slave, TCSANOW, &tio)
        close(slave)
    }

    /// The slave's settings as seen through the master: (speed, VMIN).
    func settings() -> (speed: speed_t, vmin: UInt8) {
        var tio = termios()
        tcgetattr(master, &tio)
        let vmin = withUnsafeBytes(of: &tio.c_cc) { $0[Int(VMIN)] }
        return (cfgetospeed(&tio), vmin)
    }

    func readAvailable(timeoutMilliseconds: Int32 = 2000) -> [UInt8] {
        var p = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMilliseconds) > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
        return n > 0 ? Array(buffer[0..<n]) : []
    }

    deinit { close(master) }
}

@Suite("SerialPortWWANTests")
struct SerialPortWWANTests {
    @Test func wwanModeLeavesLineSettingsAloneAndMovesBytes() throws {
        let pty = try SentinelPTY()
        let port = try SerialPort.open(pty.slavePath, settings: SerialSettings(kind: .wwan))
        #expect(port.kind == .wwan)
        let received = NIOLockedValueBox<[UInt8]>([])
        port.start { event in
            if case .data(let bytes) = event { received.withLockedValue { $0 += bytes } }
        }
        try port.write(Array("AT\r".utf8))
        #expect(pty.readAvailable() == Array("AT\r".utf8))
        _ = Array("\r\nOK\r\n".utf8).withUnsafeBytes { write(pty.master, $0.baseAddress, $0.count) }
        let deadline = ContinuousClock.now + .seconds(2)
        while received.withLockedValue({ $0.count }) < 6 && ContinuousClock.now < deadline { usleep(5_000) }
        #expect(received.withLockedValue { $0 } == Array("\r\nOK\r\n".utf8))
        let (speed, vmin) = pty.settings()
        #expect(speed == speed_t(B9600) && vmin == 5, "WWAN mode must not apply termios")
        port.close()
    }

    @Test func ttyModeDoesApplyTermiosSoTheSentinelCanFail() throws {
        let pty = try SentinelPTY()
        let port = try SerialPort.open(pty.slavePath)  // detected: a PTY is a tty
        #expect(port.kind == .tty)
        let (speed, vmin) = pty.settings()
        #expect(speed == speed_t(B115200) && vmin == 0)
        port.close()
    }

    @Test func wwanModeKeepsTheFlockBetweenCellprovOpeners() throws {
        let pty = try SentinelPTY()
        let first = try SerialPort.open(pty.slavePath, settings: SerialSettings(kind: .wwan))
        #expect(throws: SerialError.self) { try SerialPort.open(pty.slavePath, settings: SerialSettings(kind: .wwan)) }
        do {
            _ = try SerialPort.open(pty.slavePath, settings: SerialSettings(kind: .wwan))
        } catch {
            #expect(error.code == .busy)
        }
        first.close()
        let again = try SerialPort.open(pty.slavePath, settings: SerialSettings(kind: .wwan))
        again.close()
    }

    /// kind(of:) reads the class of /sys/dev/char/MAJOR:MINOR; a fake sysfs tree stands in for the kernel's.
    @Test func kindComesFromTheCharacterDevicesSysfsClass() throws {
        let pty = try SentinelPTY()
        var st = stat()
        #expect(stat(pty.slavePath, &st) == 0)
        let rdev = UInt64(st.st_rdev)
        let major = (rdev >> 8) & 0xfff | (rdev >> 32) & ~UInt64(0xfff)
        let node = "\(major):\(rdev & 0xff | (rdev >> 12) & ~UInt64(0xff))"
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cellprov-sysfs-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = "\(root)/dev/char/\(node)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let links = FileManager.default
        try links.createSymbolicLink(atPath: "\(dir)/subsystem", withDestinationPath: "../../../class/wwan")
        try "MBIM\n".write(toFile: "\(dir)/type", atomically: true, encoding: .utf8)
        #expect(SerialPort.kind(of: pty.slavePath, sysfs: root) == .wwan(type: "MBIM"))
        try "AT\n".write(toFile: "\(dir)/type", atomically: true, encoding: .utf8)
        #expect(SerialPort.kind(of: pty.slavePath, sysfs: root) == .wwan(type: "AT"))
        try FileManager.default.removeItem(atPath: "\(dir)/subsystem")
        try links.createSymbolicLink(atPath: "\(dir)/subsystem", withDestinationPath: "../../../class/tty")
        #expect(SerialPort.kind(of: pty.slavePath, sysfs: root) == .tty)
        // The real sysfs: a PTY is a tty; a regular file or a missing path is left to open() to judge.
        #expect(SerialPort.kind(of: pty.slavePath) == .tty)
        #expect(SerialPort.kind(of: "/etc/hostname") == .tty)
        #expect(SerialPort.kind(of: "/nonexistent/wwan0at0") == .tty)
    }
}
