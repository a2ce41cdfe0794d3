import CellprovCore
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// The per-installation pseudonym key: 32 random bytes in `<state_directory>/pseudonym.key`, mode 0600, created on
/// first start (written to a temporary file, fsynced, renamed) and never replaced. Support correlates log lines
/// through references computed with it; the digits stay out of the logs.
public enum PseudonymKeyFile {
    public static let fileName = "pseudonym.key"

    public struct Error: Swift.Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Loads the key in `directory`, creating it (and the directory, 0700) if missing.
    public static func loadOrCreate(in directory: String) throws(Error) -> Pseudonymizer {
        let path = directory + "/" + fileName
        if let key = try load(path: path) { return Pseudonymizer(key: key) }
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw Error(description: "\(directory): cannot create the state directory (\(String(cString: strerror(errno))))")
        }
        var bytes = [UInt8](repeating: 0, count: Pseudonymizer.keyLength)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = rng.next() }
        let temp = path + ".tmp"
        unlink(temp)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw Error(description: "\(temp): cannot create the pseudonym key (\(String(cString: strerror(errno))))")
        }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temp, path) == 0 else {
            unlink(temp)
            throw Error(description: "\(path): cannot write the pseudonym key")
        }
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
        return Pseudonymizer(key: bytes)
    }

    /// The key at `path`; nil if there is no file. A file of the wrong size is an error, never replaced.
    public static func load(path: String) throws(Error) -> [UInt8]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Error(description: "\(path): cannot read the pseudonym key")
        }
        guard data.count == Pseudonymizer.keyLength else {
            throw Error(description: "\(path): a pseudonym key must be \(Pseudonymizer.keyLength) bytes; kept as it is")
        }
        return [UInt8](data)
    }
}
