import ArgumentParser
import CellprovCLI
import CellprovDaemonCommand

/// The installed program: one executable that is both `cellprov` and `cellprovd`, chosen by the name it was run
/// by (argv[0]), as busybox and systemd's own tools do. `make install` installs it once, as cellprov, with
/// cellprovd a hard link to it: the two programs share one copy of the Swift runtime, FoundationEssentials,
/// SwiftNIO and BoringSSL instead of carrying one each (issue 8; sizes in docs/performance.md).
/// Any other name runs the CLI.
@main
enum Multicall {
    static func main() async {
        let invokedAs = CommandLine.arguments.first?.split(separator: "/").last.map(String.init) ?? ""
        if invokedAs == "cellprovd" {
            CellprovDaemonCommand.prepareProcess()  // before the first global job
            await CellprovDaemonCommand.main()
        } else {
            await CellprovCommand.main()
        }
    }
}
