import ArgumentParser
import CellprovRegistryAlerts
import CellprovRegistryCore
import CellprovRegistryHTTP
import CellprovRegistryStore
import Hummingbird

/// `cellprov-registry`: the fleet's enrollment registry (issue 9; not yet implemented).
struct RegistryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cellprov-registry")
    func run() throws {
        throw ValidationError("not implemented yet")
    }
}
RegistryCommand.main()
