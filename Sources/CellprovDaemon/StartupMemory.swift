import Dispatch
import FoundationEssentials
import NIOConcurrencyHelpers
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Gives back, once start-up (and later each burst of activity) is over, the memory an idle daemon does not
/// use (issue 8; figures in docs/performance.md):
/// - the heap pages start-up freed but malloc kept (`malloc_trim(0)`: configuration parsing, udev enumeration,
///   the first AT exchanges, the state store's open and migrations leave free chunks in the arenas);
/// - the executable's own read-only file pages that start-up touched (Swift metadata, FoundationEssentials,
///   toml++, swift-log, ...): `madvise(MADV_PAGEOUT)` asks the kernel to drop them from the process and, when no
///   one else maps them, from the page cache. They are clean pages of the binary, so nothing is written; the
///   kernel would reclaim them anyway under memory pressure, this only does it before the pressure comes. The
///   cost is a page-in of what the next event needs (measured: SIGHUP -> identities read, docs/performance.md).
/// In the executable's writable mappings (a static Swift binary's .rodata sits in one, beside .data), only the
/// pages still clean and file-backed are paged out (/proc/self/pagemap says which: bit 61); a page written to (a
/// private copy: .data, relocated pointers) is never, nor the heap or stacks: on a gateway without swap they could
/// not be reclaimed, and with swap they would be written to flash.
public enum StartupMemory {
    /// What ``release()`` did, for the log.
    public struct Outcome: Sendable, CustomStringConvertible {
        public var rssBeforeKiB: Int
        public var rssAfterKiB: Int
        public var pagedOutRanges: Int
        public var description: String {
            "resident memory \(rssBeforeKiB) KiB -> \(rssAfterKiB) KiB "
                + "(\(pagedOutRanges) clean ranges of the executable paged out)"
        }
    }

    /// Trims the heap and pages out the executable's clean pages. Safe to call at any time (a page that
    /// is needed again is read back on its next use); meant for after start-up, when the daemon goes idle.
    @discardableResult
    public static func release() -> Outcome {
        let before = residentKiB()
        #if canImport(Glibc)
        _ = mallocTrim?(0)
        var ranges = 0
        for range in executableCleanRanges() {
            // MADV_PAGEOUT (Linux 5.4): 21. An older kernel answers EINVAL: nothing is released, nothing breaks.
            if madvise(UnsafeMutableRawPointer(bitPattern: range.lowerBound), range.count, 21) == 0 {
                ranges += 1
            }
        }
        #else
        let ranges = 0
        #endif
        return Outcome(rssBeforeKiB: before, rssAfterKiB: residentKiB(), pagedOutRanges: ranges)
    }

    /// Releases once things are quiet again: ``poke()`` at each burst of activity (start-up, a slot added or read,
    /// a SIGHUP), and ``release()`` runs when `quiet` has passed without another poke. One dispatch timer, moved
    /// by each poke (nothing allocated per poke) and armed only until it fires: no periodic wake-up.
    public final class AfterQuiet: Sendable {
        private let timer: OneShotTimer
        private let quiet: Duration

        public init(quiet: Duration = .seconds(5), logger: Logger) {
            self.quiet = quiet
            timer = OneShotTimer(queue: DaemonExecutor.queue) {
                logger.info("memory released: \(StartupMemory.release())")
            }
        }

        public func poke() {
            timer.schedule(after: quiet)
        }

        public func cancel() {
            timer.cancel()
        }
    }

    #if canImport(Glibc)
    /// glibc's malloc_trim(3), looked up at run time: <malloc.h> is not part of Swift's Glibc module. nil with
    /// another C library (then only the page-out is done).
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()
    #endif

    /// The executable's pages that can be given back without writing anything: its read-only mappings whole,
    /// and in its writable mappings the runs of pages that are resident and still the file's (not copied).
    static func executableCleanRanges() -> [Range<UInt>] {
        var ranges = executableReadOnlyRanges()
        let writable = executableReadOnlyRanges(writable: true)
        guard !writable.isEmpty else { return ranges }
        let fd = open("/proc/self/pagemap", O_RDONLY)
        guard fd >= 0 else { return ranges }
        defer { close(fd) }
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        for range in writable {
            let count = Int((range.upperBound - range.lowerBound) / page)
            var entries = [UInt64](repeating: 0, count: count)
            let want = count * 8
            let offset = off_t(range.lowerBound / page * 8)
            let got = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, offset) }
            guard got == want else { continue }
            var runStart: UInt?
            for (i, entry) in entries.enumerated() {
                let address = range.lowerBound + UInt(i) * page
                // bit 63: present; bit 61: a file page (or shared anonymous), i.e. not this process's private copy.
                let clean = entry & (1 << 63) != 0 && entry & (1 << 61) != 0
                if clean, runStart == nil { runStart = address }
                if !clean, let start = runStart {
                    ranges.append(start..<address)
                    runStart = nil
                }
            }
            if let start = runStart { ranges.append(start..<range.upperBound) }
        }
        return ranges
    }

    /// The read-only (or, with `writable`, the writable) file mappings of our own executable, from /proc/self/maps.
    static func executableReadOnlyRanges(writable: Bool = false) -> [Range<UInt>] {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"),
            let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8)
        else { return [] }
        var ranges: [Range<UInt>] = []
        for line in maps.split(separator: "\n") {
            // "start-end perms offset dev inode path"
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[5].trimmingWhitespace() == exe,
                fields[1].count == 4, fields[1].contains(Character("w")) == writable
            else { continue }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let low = UInt(bounds[0], radix: 16), let high = UInt(bounds[1], radix: 16),
                low < high
            else { continue }
            ranges.append(low..<high)
        }
        return ranges
    }

    /// VmRSS of this process in KiB (0 if unreadable).
    static func residentKiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
        return 0
    }
}
