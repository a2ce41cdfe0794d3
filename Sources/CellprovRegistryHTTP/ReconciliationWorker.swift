import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// Where carrier reconciliation does its CPU work (issue 19 row 7): parsing and matching a 200 000-row export takes
/// a second or more of one core. It runs on one dedicated serial queue, not on the request's task: the Swift
/// concurrency pool has one thread per core (two here), and a reconciliation holding one of them delays every device
/// event that needs it. One at a time: a second upload waits for the first, so two uploads never hold two parsed
/// exports at once.
enum ReconciliationWorker {
    private static let queue = DispatchQueue(label: "cellprov-registry.reconciliation", qos: .utility)

    /// Findings raised per store transaction: small enough that a device event waits at most one batch's write.
    static let flagBatch = 256

    /// Runs `work` on the reconciliation queue and returns its result.
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Gives the freed memory of a reconciliation back to the system, a moment after the request (its body and
    /// answer are freed by then). glibc's malloc keeps freed heap pages of every thread's arena otherwise: the
    /// export's tens of MB would stay resident until the next one reuses them.
    static func returnMemoryLater() {
        // Twice: an answer listing 100 000 flags is still being encoded and sent after 2 s.
        for seconds in [2, 20] { queue.asyncAfter(deadline: .now() + .seconds(seconds)) { _ = mallocTrim?(0) } }
    }

    /// glibc's malloc_trim(3), looked up at run time (<malloc.h> is not part of Swift's Glibc module, as the
    /// daemon's StartupMemory found); nil with another C library.
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        #if canImport(Glibc)
            guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
            return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        #else
            return nil
        #endif
    }()
}
