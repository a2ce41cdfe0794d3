import Foundation
import Testing

@testable import CellprovDaemon

/// StartupMemory pages out the test process's own executable: the test binary keeps running afterwards (its
/// pages come back on use), and its resident set shrinks.
@Suite struct StartupMemoryTests {
    @Test func findsOnlyReadOnlyMappingsOfTheExecutable() throws {
        let ranges = StartupMemory.executableReadOnlyRanges()
        #expect(!ranges.isEmpty, "an ELF executable has at least its text mapped read-only")
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let maps = try String(contentsOfFile: "/proc/self/maps", encoding: .utf8)
        for range in ranges {
            #expect(range.lowerBound % page == 0 && range.upperBound % page == 0)
            let start = String(range.lowerBound, radix: 16)
            let line = try #require(maps.split(separator: "\n").first { $0.hasPrefix(start + "-") })
            #expect(!line.split(separator: " ")[1].contains("w"), "writable mapping listed: \(line)")
        }
    }

    @Test func cleanRangesOfWritableMappingsAreInsideThem() {
        let writable = StartupMemory.executableReadOnlyRanges(writable: true)
        let readOnly = StartupMemory.executableReadOnlyRanges()
        for range in StartupMemory.executableCleanRanges() where !readOnly.contains(range) {
            #expect(writable.contains { $0.lowerBound <= range.lowerBound && range.upperBound <= $0.upperBound })
        }
    }

    @Test func releaseShrinksTheResidentSetAndTheProcessGoesOn() {
        // Touch a good part of the executable first (the test runner's own code ran already).
        let before = StartupMemory.residentKiB()
        #expect(before > 0)
        let outcome = StartupMemory.release()
        #expect(outcome.pagedOutRanges >= StartupMemory.executableReadOnlyRanges().count)
        #expect(outcome.rssAfterKiB < outcome.rssBeforeKiB, "\(outcome)")
        // Code and constant data paged out come back on use.
        #expect(String(describing: outcome).contains("KiB"))
        #expect(StartupMemory.residentKiB() > 0)
    }
}
