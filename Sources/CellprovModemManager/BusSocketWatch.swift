import CellprovCore
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// Waits, without polling, for the system bus's socket to (re)appear: an inotify watch on the socket's directory,
/// or, while that directory does not exist yet, on its nearest existing ancestor.
///
/// Why: with no system bus (a gateway without dbus-daemon, a container, the benchmark), the ModemManager client
/// used to try again every 30 s: the idle daemon's only periodic wake-up once libdispatch's pool monitor was gone
/// (issue 8, docs/decisions.md "Idle without wake-ups"). dbus-daemon creates its socket (bind) when it starts,
/// and again when it restarts, so a directory event says exactly when a new connection attempt can succeed.
///
/// Only a `unix:path=` address can be watched; for any other (abstract socket, tcp) ``init(address:)`` is nil and
/// the client falls back to its retry interval.
final class BusSocketWatch {
    /// The inotify descriptor (non-blocking): poll it for POLLIN.
    let fd: Int32
    /// The entry of the watched directory whose appearance matters: the socket itself, or the next directory on
    /// the way to it.
    let awaited: String
    /// The directory watched.
    let directory: String

    /// sd-bus's default system bus address, used when DBUS_SYSTEM_BUS_ADDRESS is not set.
    static let defaultAddress = "unix:path=/run/dbus/system_bus_socket"

    /// - Parameter address: a D-Bus address (DBUS_SYSTEM_BUS_ADDRESS's syntax); nil: sd-bus's default.
    init?(address: String?) {
        guard let path = Self.socketPath(address: address ?? Self.defaultAddress), path.hasPrefix("/") else {
            return nil
        }
        var child = PathText.lastComponent(path)
        var directory = PathText.deletingLastComponent(path)
        func isDirectory(_ path: String) -> Bool {
            var st = stat()
            return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
        }
        while !isDirectory(directory) {
            guard directory != "/", !directory.isEmpty else { return nil }
            child = PathText.lastComponent(directory)
            directory = PathText.deletingLastComponent(directory)
        }
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return nil }
        let mask = UInt32(IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)
        guard inotify_add_watch(fd, directory, mask) >= 0 else {
            close(fd)
            return nil
        }
        self.fd = fd
        self.awaited = child
        self.directory = directory
    }

    deinit { close(fd) }

    /// Reads the pending events; true if one of them says the bus may be reachable now (the awaited entry was
    /// created, moved in or changed; the watched directory went away; the event queue overflowed).
    func consume() -> Bool {
        var relevant = false
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return relevant }
            var offset = 0
            let header = MemoryLayout<inotify_event>.size
            while offset + header <= count {
                let (mask, length) = buffer.withUnsafeBytes { raw -> (UInt32, Int) in
                    let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    return (event.mask, Int(event.len))
                }
                let nameStart = offset + header
                let nameEnd = min(nameStart + length, count)
                let name = String(decoding: buffer[nameStart..<nameEnd].prefix { $0 != 0 }, as: UTF8.self)
                if mask & UInt32(IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 || name == awaited {
                    relevant = true
                }
                offset = nameStart + length
            }
        }
    }

    /// The socket path of the first `unix:path=` entry of a D-Bus address (entries separated by `;`, key=value
    /// pairs by `,`, values %-escaped); nil if there is none.
    static func socketPath(address: String) -> String? {
        for entry in address.split(separator: ";") {
            guard entry.hasPrefix("unix:") else { continue }
            for pair in entry.dropFirst("unix:".count).split(separator: ",") where pair.hasPrefix("path=") {
                let value = String(pair.dropFirst("path=".count))
                return value.removingPercentEscapes() ?? value
            }
        }
        return nil
    }
}
