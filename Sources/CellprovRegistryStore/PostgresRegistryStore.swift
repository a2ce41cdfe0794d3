import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// The registry at fleet scale: PostgreSQL through postgres-nio, shared by several registry instances.
public final class PostgresRegistryStore: Sendable {
    /// postgres-nio's client configuration for a location: unix socket or TCP; TLS as the URL says (off for unix
    /// sockets and loopback hosts by default).
    public static func clientConfiguration(_ location: PostgresLocation) -> PostgresClient.Configuration {
        var config: PostgresClient.Configuration
        switch location.endpoint {
        case .unixSocket(let path):
            config = .init(
                unixSocketPath: path, username: location.user, password: location.password,
                database: location.database)
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS
            switch location.tls {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(.makeClientConfiguration())
            case .require: tls = .require(.makeClientConfiguration())
            }
            config = .init(
                host: host, port: port, username: location.user, password: location.password,
                database: location.database, tls: tls)
        }
        config.options.maximumConnections = 40
        return config
    }
}
