import Dispatch
import Foundation
import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

@testable import CellprovRegistryHTTP

/// Issue 19 rows 1 and 2: what a connection and a database call may cost. The black box (Tests/registry/
/// test_faults.py) runs the real server under `prlimit` and a stopped PostgreSQL; these hold the parts.
@Suite struct ConnectionLimitsTests {
    @Test func theCapFitsTheDescriptorLimit() {
        #expect(ConnectionLimits.effectiveCap(configured: 1000, fileLimit: 1024) == 960)
        #expect(ConnectionLimits.effectiveCap(configured: 1000, fileLimit: 2048) == 1000)
        #expect(ConnectionLimits.effectiveCap(configured: 1000, fileLimit: 10) == 1)
        #expect(ConnectionLimits.effectiveCap(configured: 500, fileLimit: Int.max) == 500)
    }

    static func head() -> HTTPRequestPart {
        .head(HTTPRequest(method: .post, scheme: nil, authority: "registry", path: "/v1/enrollments"))
    }

    @Test func aBodyNotCompleteByItsDeadlineClosesTheConnection() throws {
        let channel = EmbeddedChannel(handler: RequestBodyDeadlineHandler(deadline: .seconds(60)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(Self.head())
        // A byte every 5 s resets no deadline.
        for _ in 0..<11 {
            channel.embeddedEventLoop.advanceTime(by: .seconds(5))
            if channel.isActive { try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "x"))) }
        }
        #expect(channel.isActive, "55 s after the head: still open")
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        #expect(!channel.isActive, "61 s after the head: closed")
    }

    @Test func aCompleteBodyCancelsTheDeadline() throws {
        let channel = EmbeddedChannel(handler: RequestBodyDeadlineHandler(deadline: .seconds(60)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(Self.head())
        try channel.writeInbound(HTTPRequestPart.end(nil))
        channel.embeddedEventLoop.advanceTime(by: .seconds(120))
        #expect(channel.isActive)
        // The next request on the connection gets a deadline of its own.
        try channel.writeInbound(Self.head())
        channel.embeddedEventLoop.advanceTime(by: .seconds(61))
        #expect(!channel.isActive)
    }

    @Test func aCallWithinItsDeadlineAnswers() async throws {
        let value = try await withDeadline(.seconds(5), operation: "test") { 42 }
        #expect(value == 42)
        await #expect(throws: TestError.self) {
            try await withDeadline(.seconds(5), operation: "test") { () async throws -> Int in throw TestError() }
        }
    }

    @Test func aCallPastItsDeadlineThrowsWithoutWaitingForIt() async throws {
        // A body that ignores cancellation (a backend call blocked in the kernel): the caller is answered at the
        // deadline all the same.
        let start = ContinuousClock.now
        await #expect(throws: StoreDeadlineExceeded.self) {
            try await withDeadline(.milliseconds(200), operation: "test") { () async -> Int in
                await withCheckedContinuation { c in
                    DispatchQueue.global().asyncAfter(deadline: .now() + 3) { c.resume(returning: 1) }
                }
            }
        }
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func cancellingTheCallerCancelsTheCall() async throws {
        let task = Task {
            try await withDeadline(.seconds(30), operation: "test") { () async throws -> Int in
                try await Task.sleep(for: .seconds(30))
                return 1
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }

    struct TestError: Error {}
}

/// Issue 19 row 5: the CSV export neutralises formulas by the first Unicode scalar, tab and CR included.
@Suite struct CSVInjectionTests {
    @Test(arguments: [
        ("=1+2", "'=1+2"), ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"), ("\r=1", "\"'\r=1\""), ("=\u{0301}1+2", "'=\u{0301}1+2"),
        ("GW-1", "GW-1"), ("a,b", "\"a,b\""), ("say \"hi\"", "\"say \"\"hi\"\"\""), ("", ""),
    ])
    func field(_ input: String, _ expected: String) {
        #expect(Array(CSV.field(input).unicodeScalars) == Array(expected.unicodeScalars))
    }
}
