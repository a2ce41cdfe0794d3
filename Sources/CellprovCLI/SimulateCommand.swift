import ArgumentParser
import CellprovSimulator
import CellprovSystemd
import Dispatch
import FoundationEssentials
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `cellprov simulate`: serve a simulated module on a PTY. Prints the slave path as its first stdout line, serves
/// until SIGINT/SIGTERM, re-reads `--identity-file` (and `--euicc-file`) on SIGHUP and swaps the SIM to it (or
/// switches the eUICC's enabled profile); on SIGUSR1 takes only the file's `revision` (a firmware update).
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Serve a simulated modem on a PTY.",
        discussion: """
            Prints the PTY's slave path on the first line of stdout, then serves until SIGINT or SIGTERM.
            On SIGHUP, re-reads --identity-file and swaps the SIM to it (the profile's SIM URCs are sent).
            On SIGUSR1, re-reads --identity-file and takes only its "revision": a firmware update of the same
            module (AT+CGMR answers it; IMEI and SIM unchanged, no URC: the host sees it at its next read).
            With --euicc-file (JSON: {"eid": "...", "profiles": [{"iccid": "...", "imsi": "..."}, ...],
            "enabledProfile": 0}) the card is an eUICC whose EID AT+CCHO/AT+CGLA read; on SIGHUP the file is read
            again: the same EID with another enabledProfile is a remote profile switch (+CPIN: READY, and +QUSIM: 1
            on Quectel), another EID a swap to that card, a removed file a swap to a plain SIM (--identity-file's).
            Quectel, Telit and Cinterion report SIM swaps only once the host has switched their reports on
            (AT+QSIMSTAT=1, AT#QSS=1, AT^SCKS=1), as the real modules do.
            Profiles: \(VendorProfile.allCases.map(\.rawValue).joined(separator: ", ")).
            """
    )

    @Option(help: "Vendor profile (answer formats, vendor commands, URCs).")
    var profile: String = VendorProfile.quectel.rawValue

    @Option(name: .customLong("link"), help: "Also make a symlink at this path (replaces a symlink; removed on exit).")
    var linkPath: String?

    @Option(help: "Serve this many modems (one PTY each, same identity); with --link, links are PATH0, PATH1, ...")
    var count = 1

    @Option(help: "JSON file with a SimulatedIdentity; re-read on SIGHUP.")
    var identityFile: String?

    @Option(help: "JSON file with an eUICC (eid, profiles, enabledProfile); re-read on SIGHUP.")
    var euiccFile: String?

    @Flag(name: .customLong("sim-detection-off"), help: "The card holder's detection is off: swaps are never reported.")
    var simDetectionOff = false

    @Option(help: "IMEI served (verbatim, not validated).") var imei: String?
    @Option(help: "IMSI served (verbatim).") var imsi: String?
    @Option(help: "ICCID served (verbatim).") var iccid: String?
    @Option(help: "Manufacturer (default: the profile's).") var manufacturer: String?
    @Option(help: "Model (default: the profile's).") var model: String?
    @Option(help: "Revision (default: the profile's).") var revision: String?

    @Flag(help: "Echo even after ATE0.") var echoAlways = false
    @Flag(help: "Send a URC before every answer.") var urcNoise = false
    @Option(name: .customLong("delay-ms"), help: "Delay each answer by this many milliseconds.") var delayMs = 0
    @Option(name: .customLong("sim-busy"), help: "The first N SIM commands answer SIM busy.") var simBusy = 0
    @Flag(help: "No SIM inserted.") var simAbsent = false
    @Flag(name: .customLong("sim-pin"), help: "The SIM asks for its PIN.") var simPIN = false
    @Flag(name: .customLong("sim-puk"), help: "The SIM asks for its PUK.") var simPUK = false
    @Option(help: "The first N command lines get no answer.") var swallowFirst = 0
    @Flag(help: "Never answer.") var silent = false
    @Flag(help: "Binary junk and a ~70 kB line before the first answer.") var garbage = false
    @Option(name: .customLong("unplug-after"), help: "Close the PTY on receiving command N.") var unplugAfter: Int?
    @Flag(name: .customLong("no-ccid"), help: "AT+CCID answers ERROR.") var noCCID = false
    @Flag(name: .customLong("no-vendor-iccid"), help: "The vendor ICCID command answers ERROR.")
    var noVendorICCID = false
    @Flag(name: .customLong("no-cimi"), help: "AT+CIMI fails: the IMSI must be read from EF_IMSI.") var noCIMI = false
    @Flag(name: .customLong("no-crsm"), help: "AT+CRSM (restricted SIM access) fails.") var noCRSM = false
    @Flag(name: .customLong("random-bytes"), help: "Hostile: random bytes without pause, never an answer.")
    var randomBytes = false
    @Flag(name: .customLong("endless-answer"), help: "Hostile: information lines forever after the first command.")
    var endlessAnswer = false
    @Option(name: .customLong("foreign-echo"), help: "Hostile: echo this command (e.g. AT+CFUN=0) before answers.")
    var foreignEcho: String?
    @Option(name: .customLong("trickle-ms"), help: "Hostile: send one byte every N milliseconds.")
    var trickleMs = 0

    func validate() throws {
        guard VendorProfile(rawValue: profile.lowercased()) != nil else {
            throw ValidationError(
                "Unknown profile '\(profile)'; one of: \(VendorProfile.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        for (name, value) in [
            ("--delay-ms", delayMs), ("--sim-busy", simBusy), ("--swallow-first", swallowFirst),
            ("--trickle-ms", trickleMs),
        ]
        where value < 0 {
            throw ValidationError("\(name) must not be negative")
        }
        if let n = unplugAfter, n < 1 { throw ValidationError("--unplug-after must be at least 1") }
        if let other = foreignEcho, other.isEmpty || other.contains(where: \.isNewline) {
            throw ValidationError("--foreign-echo must be one non-empty command line")
        }
        guard (1...256).contains(count) else { throw ValidationError("--count must be between 1 and 256") }
    }

    func run() async throws {
        var identity = SimulatedIdentity()
        if let file = identityFile { identity = try Self.loadIdentity(file) }
        if let v = imei { identity.imei = v }
        if let v = imsi { identity.imsi = v }
        if let v = iccid { identity.iccid = v }
        if let v = manufacturer { identity.manufacturer = v }
        if let v = model { identity.model = v }
        if let v = revision { identity.revision = v }

        var quirks = SimulatorQuirks()
        quirks.echoAlways = echoAlways
        quirks.urcNoise = urcNoise
        quirks.responseDelayMilliseconds = delayMs
        quirks.simBusyTries = simBusy
        quirks.simAbsent = simAbsent
        quirks.simPIN = simPIN
        quirks.simPUK = simPUK
        quirks.swallowFirst = swallowFirst
        quirks.silent = silent
        quirks.garbageBeforeAnswers = garbage
        quirks.unplugAfterCommands = unplugAfter
        quirks.ccidUnsupported = noCCID
        quirks.vendorICCIDUnsupported = noVendorICCID
        quirks.cimiUnsupported = noCIMI
        quirks.crsmUnsupported = noCRSM
        quirks.randomBytes = randomBytes
        quirks.endlessAnswer = endlessAnswer
        quirks.foreignEcho = foreignEcho
        quirks.trickleMilliseconds = trickleMs
        quirks.simDetectionOff = simDetectionOff
        var channels = LogicalChannelOptions()
        if let file = euiccFile { channels.euicc = try Self.loadEUICC(file) }

        for sig in [SIGINT, SIGTERM, SIGHUP, SIGUSR1] { signal(sig, SIG_IGN) }

        let simulators = try (0..<count).map { index in
            try ModemSimulator(
                {
                    var options = SimulatorOptions(
                        profile: VendorProfile(rawValue: profile.lowercased()) ?? .quectel, identity: identity,
                        quirks: quirks, linkPath: linkPath.map { count == 1 ? $0 : "\($0)\(index)" })
                    options.logicalChannels = channels
                    return options
                }())
        }
        // Unbuffered write: scripts read these lines (one PTY path per modem) while we keep running.
        StandardStream.output.write(simulators.map { $0.path + "\n" }.joined())

        let identityFile = self.identityFile
        let euiccFile = self.euiccFile
        let signalQueue = DispatchQueue(label: "cellprov.simulate.signals")
        let finished = NIOLockedValueBox(false)
        var sources: [any DispatchSourceSignal] = []
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            for sig in [SIGINT, SIGTERM] {
                let source = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
                source.setEventHandler {
                    let first = finished.withLockedValue { done in
                        defer { done = true }
                        return !done
                    }
                    if first { continuation.resume() }
                }
                source.activate()
                sources.append(source)
            }
            let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: signalQueue)
            hup.setEventHandler {
                do {
                    let identity = try identityFile.map(Self.loadIdentity) ?? SimulatedIdentity()
                    if let euiccFile {
                        // The eUICC file decides: a profile switch, another eUICC, or (file gone) a plain SIM.
                        let card = FileManager.default.fileExists(atPath: euiccFile) ? try Self.loadEUICC(euiccFile) : nil
                        for simulator in simulators { Self.reload(simulator, card: card, identity: identity) }
                    } else if identityFile != nil {
                        for simulator in simulators { simulator.swapSIM(identity) }
                    }
                } catch {
                    StandardStream.error.write("simulate: cannot reload: \(error)\n")
                }
            }
            hup.activate()
            sources.append(hup)
            let usr1 = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: signalQueue)
            usr1.setEventHandler {
                do {
                    guard let revision = try identityFile.map(Self.loadIdentity)?.revision else {
                        StandardStream.error.write("simulate: SIGUSR1: no revision in --identity-file\n")
                        return
                    }
                    for simulator in simulators { simulator.updateFirmware(revision: revision) }
                } catch {
                    StandardStream.error.write("simulate: cannot reload: \(error)\n")
                }
            }
            usr1.activate()
            sources.append(usr1)
        }
        for source in sources { source.cancel() }
        for simulator in simulators { simulator.stop() }
    }

    /// SIGHUP with `--euicc-file`: the same card with another enabled profile switches the profile; another card
    /// (or none: a plain SIM with `identity`'s IMSI and ICCID) is a physical swap.
    static func reload(_ simulator: ModemSimulator, card: SimulatedEUICC?, identity: SimulatedIdentity) {
        let current = simulator.euicc
        if let card, let current, card.eid == current.eid, card.profiles == current.profiles {
            if card.enabledProfile != current.enabledProfile { _ = simulator.enableProfile(card.enabledProfile) }
        } else if card != nil || current != nil {
            simulator.swapCard(identity, euicc: card)
        } else {
            simulator.swapSIM(identity)
        }
    }

    static func loadEUICC(_ file: String) throws -> SimulatedEUICC {
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        return try JSONDecoder().decode(SimulatedEUICC.self, from: data)
    }

    static func loadIdentity(_ file: String) throws -> SimulatedIdentity {
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        return try JSONDecoder().decode(SimulatedIdentity.self, from: data)
    }
}
