import CellprovCore
import CellprovUdev
import Logging

/// Module slots from udev. (Classification lands with the port classifier.)
public struct UdevSlotDiscovery: SlotDiscovery {
    let config: DaemonConfig
    let logger: Logger

    public init(config: DaemonConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
    }

    public func enumerate() async throws -> [ModuleSlot] { [] }
    public func events() async throws -> AsyncStream<SlotEvent> { AsyncStream { $0.finish() } }
}
