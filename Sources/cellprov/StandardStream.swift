#if canImport(Glibc)
import Glibc
#endif

/// Standard output or error, written at once with write(2) (what FileHandle.standardOutput.write did, which is
/// not in FoundationEssentials): no stdio buffer, so a line reaches a pipe before the process goes on, and a
/// partial write or EINTR does not cut the text.
struct StandardStream {
    static let output = StandardStream(fd: 1)
    static let error = StandardStream(fd: 2)

    let fd: Int32

    func write(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }  // a closed stream: nothing else to do
            bytes = bytes.dropFirst(n)
        }
    }
}
