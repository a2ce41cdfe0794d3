import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The shared scaffolding of the `cellprov-fuzz-*` executables (docs/robustness.md).
///
/// Each fuzz executable defines its entry point as `@_cdecl("LLVMFuzzerTestOneInput")` and hands it to
/// ``FuzzDriver/main(_:)``. Built for fuzzing (`scripts/fuzz.sh`: `-sanitize=fuzzer,address -DCELLPROV_FUZZ`),
/// that runs libFuzzer through `LLVMFuzzerRunDriver`: SwiftPM gives every executable its own `main` (it renames
/// the entry point so executables can be tested), which wins over libFuzzer's, so the driver is called from ours.
/// Built normally (`swift build`), the same executable replays inputs: `cellprov-fuzz-at FILE|DIR...` runs every
/// file through the entry point once, which is how a crash found by a fuzz run is reproduced without the fuzzer.
public enum FuzzDriver {
    public typealias Entry = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

    public static func main(_ entry: Entry) -> Never {
        #if CELLPROV_FUZZ
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, entry))
        #else
        exit(replay(entry, paths: Array(CommandLine.arguments.dropFirst())))
        #endif
    }

    /// Runs every file named (directories: every file inside, not recursive) once; options (`-x`) are ignored so
    /// that a libFuzzer command line can be replayed as is. Returns the exit status.
    static func replay(_ entry: Entry, paths: [String]) -> Int32 {
        var files: [String] = []
        let fm = FileManager.default
        for path in paths where !path.hasPrefix("-") {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("no such file: \(path)\n".utf8))
                return 2
            }
            if isDirectory.boolValue {
                let names = (try? fm.contentsOfDirectory(atPath: path)) ?? []
                files += names.sorted().map { "\(path)/\($0)" }
            } else {
                files.append(path)
            }
        }
        if files.isEmpty {
            let usage = "usage: \(CommandLine.arguments.first ?? "fuzz") FILE|DIR... (replays inputs; built with "
                + "-DCELLPROV_FUZZ and -sanitize=fuzzer it is a libFuzzer target)\n"
            FileHandle.standardError.write(Data(usage.utf8))
            return 64
        }
        for file in files {
            guard let data = fm.contents(atPath: file) else { continue }
            let bytes = [UInt8](data)
            _ = bytes.withUnsafeBufferPointer { entry($0.baseAddress, $0.count) }
        }
        print("replayed \(files.count) inputs, no failure")
        return 0
    }
}

#if CELLPROV_FUZZ
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: FuzzDriver.Entry
) -> CInt
#endif

/// A property of the code under test that must hold for every input. A violation aborts, which libFuzzer
/// reports as a crash and saves the input (replays abort too, so a saved input keeps failing until fixed).
public func fuzzRequire(_ condition: Bool, _ message: @autoclosure () -> String) {
    guard !condition else { return }
    FileHandle.standardError.write(Data("fuzz property violated: \(message())\n".utf8))
    abort()
}

/// Consumes a fuzz input from the front: small numbers that steer the target, then the rest as payload.
public struct FuzzInput {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = UnsafeBufferPointer(start: data, count: data == nil ? 0 : size)
    }

    public var isEmpty: Bool { position >= bytes.count }
    public var remainingCount: Int { bytes.count - position }

    /// The next byte, or 0 past the end.
    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// The next two bytes, big-endian.
    public mutating func uint16() -> Int {
        Int(byte()) << 8 | Int(byte())
    }

    /// The next `count` bytes (fewer at the end).
    public mutating func bytes(_ count: Int) -> [UInt8] {
        let n = max(0, min(count, remainingCount))
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }

    /// Everything not consumed yet.
    public mutating func rest() -> [UInt8] {
        bytes(remainingCount)
    }
}

/// True if `text` holds a run of at least `length` ASCII digits: what an identifier (IMEI, IMSI, ICCID) looks like
/// in text that must be redacted.
public func containsDigitRun(_ text: String, length: Int = 6) -> Bool {
    var run = 0
    for b in text.utf8 {
        if b >= 0x30 && b <= 0x39 {
            run += 1
            if run >= length { return true }
        } else {
            run = 0
        }
    }
    return false
}
