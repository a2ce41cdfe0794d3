import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// What the test kit's HTTP servers (``EnrollmentReceiver``, ``HawkBitStandIn``) share: listening on 127.0.0.1,
/// reading each request whole, and answering it as their `serve` function says.
enum LoopbackHTTPServer {
    /// One request as received: the method, the target, the headers (names in lower case) and the body.
    struct Received {
        var method: String
        var path: String
        var headers: [String: String]
        var body: Data
    }

    /// What to do with a request.
    enum Answer {
        /// Answer `status` with `body` (sent as `application/json` when it is not empty).
        case respond(status: Int, body: String)
        /// Never answer (the connection stays open).
        case hang
        /// Close the connection without answering.
        case close
    }

    /// Listens on 127.0.0.1 (port 0: any free port). With `tls`, each connection starts with a TLS handshake and
    /// `tlsFailed` is called for each one that fails.
    static func listen(
        port: Int, tls: NIOSSLContext? = nil, tlsFailed: @escaping @Sendable () -> Void = {},
        serve: @escaping @Sendable (Received) -> Answer
    ) throws -> any Channel {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                        try channel.pipeline.syncOperations.addHandler(TLSErrorCounter(failed: tlsFailed))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(WholeRequestHandler(serve: serve))
                }
            }
        return try bootstrap.bind(host: "127.0.0.1", port: port).wait()
    }

    private final class TLSErrorCounter: ChannelInboundHandler, Sendable {
        typealias InboundIn = NIOAny
        let failed: @Sendable () -> Void
        init(failed: @escaping @Sendable () -> Void) { self.failed = failed }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if error is NIOSSLError || error is BoringSSLError { failed() }
            context.close(promise: nil)
        }
    }

    private final class WholeRequestHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let serve: @Sendable (Received) -> Answer
        var head: HTTPRequestHead?
        var body = Data()

        init(serve: @escaping @Sendable (Received) -> Answer) { self.serve = serve }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                body = Data()
            case .body(var buffer):
                if let bytes = buffer.readBytes(length: buffer.readableBytes) { body.append(contentsOf: bytes) }
            case .end:
                guard let head else { return }
                var headers: [String: String] = [:]
                for (name, value) in head.headers { headers[name.lowercased()] = value }
                switch serve(Received(method: "\(head.method)", path: head.uri, headers: headers, body: body)) {
                case .hang:
                    return
                case .close:
                    context.close(promise: nil)
                case .respond(let status, let text):
                    var responseHeaders = HTTPHeaders()
                    if !text.isEmpty { responseHeaders.add(name: "Content-Type", value: "application/json") }
                    responseHeaders.add(name: "Content-Length", value: "\(text.utf8.count)")
                    let responseHead = HTTPResponseHead(
                        version: head.version, status: HTTPResponseStatus(statusCode: status), headers: responseHeaders)
                    context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
                    if !text.isEmpty {
                        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
                    }
                    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                }
            }
        }
    }
}
