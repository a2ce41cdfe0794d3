#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Whether this process runs under a sanitizer (`make sanitize` builds everything, the programs a test starts
/// included, with one). Its runtime's shadow memory and slower code change what a memory or time bound can assert.
public enum Sanitizers {
    /// ThreadSanitizer or AddressSanitizer is linked in (their runtimes define these entry points).
    public static let active: Bool = ["__tsan_init", "__asan_init"].contains { (symbol: String) in
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), symbol) != nil
    }
}
