import ArgumentParser
import CellprovDaemonCommand

/// The daemon alone, for development builds and the tests (`.build/debug/cellprovd`); the installed cellprovd is
/// the multi-call `cellprov` executable run by that name (Sources/cellprov-main).
@main
enum Daemon {
    static func main() async {
        CellprovDaemonCommand.prepareProcess()  // before the first global job
        await CellprovDaemonCommand.main()
    }
}
