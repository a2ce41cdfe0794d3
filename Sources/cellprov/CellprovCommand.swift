import ArgumentParser

@main
struct CellprovCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cellprov",
        abstract: "Read and check the identities (IMEI, IMSI, ICCID) of cellular modules.",
        version: CellprovVersion.string,
        subcommands: [ProbeCommand.self, StatusCommand.self, EventsCommand.self, SimulateCommand.self, PortsCommand.self]
    )
}

enum CellprovVersion {
    static let string = "0.1.0"
}
