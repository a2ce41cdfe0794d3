import CellprovDaemon
import CellprovFuzzSupport

// Fuzz target: the daemon's TOML configuration (DaemonConfig.parse: toml++ through CTOMLShim, then cellprovd's schema and
// value checks), on arbitrary text.
//
// Properties: it returns a configuration or a ConfigError, never crashes; an error names a message; an accepted
// configuration keeps the documented rules (absolute state directory and static ports, no port twice, something
// to watch: udev, a static port or ModemManager; a positive re-probe interval).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let text = String(decoding: input.rest(), as: UTF8.self)
    do {
        let config = try DaemonConfig.parse(text, file: "fuzz.toml")
        fuzzRequire(config.stateDirectory.hasPrefix("/"), "relative state directory accepted")
        fuzzRequire(config.staticPorts.allSatisfy { $0.hasPrefix("/") }, "relative static port accepted")
        fuzzRequire(Set(config.staticPorts).count == config.staticPorts.count, "a static port twice")
        fuzzRequire(
            config.udev || !config.staticPorts.isEmpty || config.modemManager != .never, "nothing to watch accepted")
        fuzzRequire(config.reprobeInterval > .zero, "re-probe interval not positive")
    } catch {
        fuzzRequire(!error.message.isEmpty && !error.description.isEmpty, "an error without a message")
    }
    return 0
}

FuzzDriver.main(fuzzOne)
