import ArgumentParser

/// The CLI's root command; run by the multi-call executable (Sources/cellprov-main) under any name but cellprovd.
public struct CellprovCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "cellprov",
        abstract: "Read and check the identities (IMEI, IMSI, ICCID) of cellular modules.",
        version: CellprovVersion.string,
        subcommands: [
            ProbeCommand.self, StatusCommand.self, EventsCommand.self, InventoryCommand.self, SimulateCommand.self,
            PortsCommand.self,
        ]
    )

    public init() {}
}

enum CellprovVersion {
    static let string = "0.1.0"
}
