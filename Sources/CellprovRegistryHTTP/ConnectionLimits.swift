import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

/// What one TCP connection may cost the registry (docs/security.md, "Connections"). Nobody needs credentials to
/// open a connection, so these hold before any request is read:
///
/// - **Idle deadline** (`idleTimeout`, 10 s): a connection must deliver a complete request head within this long of
///   opening, of its previous answer, or of its last body chunk. A connection that never sends a byte, or
///   trickles a header a byte at a time (slowloris), is closed when it passes. Hummingbird's connection-state
///   handler keeps it: it counts whole HTTP parts, not bytes, so a trickled head does not reset it.
/// - **Body deadline** (`bodyDeadline`, 60 s): a request's body must be complete this long after its head. A body
///   trickled a byte at a time would otherwise reset the idle deadline forever. 60 s carries the largest body the
///   registry takes (a 32 MiB carrier export) at 4.5 Mbit/s.
/// - **Connection cap** (`maxConnections`): past it, the server stops accepting; new connections wait in the
///   kernel's listen backlog, costing no file descriptor, until a slot frees (at most an idle deadline later).
///   The executable sizes the cap below the process's file-descriptor limit (``effectiveCap(configured:fileLimit:)``).
public struct ConnectionLimits: Sendable, Equatable {
    public var idleTimeout: TimeAmount = .seconds(10)
    public var bodyDeadline: TimeAmount = .seconds(60)
    public var maxConnections: Int = 1000

    /// File descriptors kept back from the cap for the database (its pool or its files), the journal, TLS files and
    /// the listener.
    public static let reservedDescriptors = 64

    public init(idleTimeout: TimeAmount = .seconds(10), bodyDeadline: TimeAmount = .seconds(60), maxConnections: Int = 1000)
    {
        self.idleTimeout = idleTimeout
        self.bodyDeadline = bodyDeadline
        self.maxConnections = maxConnections
    }

    /// The cap in force: the configured one, lowered so that every accepted connection has a descriptor and the
    /// database still gets its own (`fileLimit`: RLIMIT_NOFILE's soft limit).
    public static func effectiveCap(configured: Int, fileLimit: Int) -> Int {
        max(1, min(configured, fileLimit - reservedDescriptors))
    }

    /// The HTTP/1.1 child channel's configuration: the idle deadline and the body-deadline handler.
    public var http1: HTTP1Channel.Configuration {
        let deadline = bodyDeadline
        return HTTP1Channel.Configuration(
            additionalChannelHandlers: [RequestBodyDeadlineHandler(deadline: deadline)], idleTimeout: idleTimeout)
    }

    /// The server's connection cap, as Hummingbird applies it (it pauses accepting while at the cap).
    public func availableConnections(logger: Logger) -> any AvailableConnectionsDelegate {
        MaximumAvailableConnections(maxConnections, logger: logger)
    }
}

/// Closes a connection whose request body is not complete `deadline` after its head. Sits after the HTTP codec,
/// so it sees whole parts.
/// An answer sent before the body was read (a refusal) does not end it: a client that goes on trickling the body
/// is still closed at the deadline.
final class RequestBodyDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let deadline: TimeAmount
    private var scheduled: Scheduled<Void>?

    init(deadline: TimeAmount) {
        self.deadline = deadline
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            cancel()
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            scheduled = context.eventLoop.scheduleTask(in: deadline) { loopBound.value.close(promise: nil) }
        case .body:
            break
        case .end:
            cancel()
        }
        context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancel()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancel()
        context.fireChannelInactive()
    }

    private func cancel() {
        scheduled?.cancel()
        scheduled = nil
    }
}
