#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Standard output or error, written at once with write(2) (what FileHandle.standardOutput.write did, which is
/// not in FoundationEssentials): no stdio buffer, so a line reaches a pipe before the process goes on, and a
/// partial write or EINTR does not cut the text. The CLI's output, cellprovd's messages before logging starts, and
/// the stderr log handler's lines.
public struct StandardStream: Sendable {
    public static let output = StandardStream(fd: 1)
    public static let error = StandardStream(fd: 2)

    public let fd: Int32

    public func write(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            #if canImport(Glibc)
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            #else
            let n = bytes.withUnsafeBytes { Musl.write(fd, $0.baseAddress, $0.count) }
            #endif
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }  // a closed stream: nothing else to do
            bytes = bytes.dropFirst(n)
        }
    }
}
