import ArgumentParser
import CellprovCore
import CellprovModem
import CellprovReporter
import CellprovSerial
import CellprovSystemd
import FoundationEssentials
import Logging

/// `cellprov probe PORT...`: reads every port in parallel, once, and reports.
struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Read IMEI, IMSI and ICCID from AT ports, in parallel, once.",
        discussion: """
            Exit status: 0 every port valid (and, with --report, every record stored or already stored); \
            1 a modem answered but an identity is missing or invalid (that port is not reported); \
            2 a port could not be used (absent, busy, silent, not a modem, too slow, unplugged); \
            3 the registry refused a record (401/403 credentials, 400/422 payload, 404 URL: retrying will not help); \
            4 a record could not be delivered (no answer, 5xx, 429, after 3 attempts: run the probe again); \
            64 usage error; 78 bad pseudonym key in the state directory, or a bad --token-file or --ca-file. \
            The first that applies wins, in the order 2, 1, 3, 4.
            Factory station: --device-serial SN --report URL posts one `manufactured` record per valid port to \
            URL/v1/enrollments (https, or http to loopback), with the token of --token-file (mode 0600 or 0640).
            Identifiers are redacted in the table and in logs; --json prints full digits (a data channel).
            """
    )

    @Argument(
        help: """
            AT ports to read (e.g. /dev/ttyUSB2, or a PCIe module's WWAN port /dev/wwan0at0: found out from sysfs, \
            opened without termios; a WWAN port of another type, MBIM or QCDM, is refused).
            """)
    var ports: [String]

    @Flag(help: "One JSON object per port per line on stdout, with full identifiers.")
    var json = false

    @Option(help: "Time limit for each port's whole read, in seconds.")
    var timeout: Double = 10

    @Option(help: "Baud rate.")
    var baud: Int = 115_200

    @Flag(help: "Show full identifiers in the table (they are redacted by default).")
    var reveal = false

    @Option(help: "The daemon's state directory, whose pseudonym key makes references match its logs.")
    var stateDirectory: String = "/var/lib/cellprov"

    @Flag(name: .shortAndLong, help: "More log output on stderr (repeat for debug).")
    var verbose: Int

    @Option(help: "The unit's serial number (as scanned at the factory station); with --report.")
    var deviceSerial: String?

    @Option(
        help: ArgumentHelp(
            "Post a manufactured record per valid port to this registry's /v1/enrollments.", valueName: "url"))
    var report: String?

    @Option(help: "The station's bearer token (cellprov-registry station add), one line, mode 0600 or 0640.")
    var tokenFile: String?

    @Option(help: "Trust only this CA (PEM) for the registry's certificate, instead of the system trust store.")
    var caFile: String?

    enum Status: Int32 {
        case valid = 0
        case invalidIdentity = 1
        case portUnusable = 2
        case reportRejected = 3
        case reportFailed = 4
        case usage = 64
        case keyFile = 78
    }

    func validate() throws {
        guard !ports.isEmpty else { throw ValidationError("give at least one port") }
        guard timeout > 0, timeout <= 600 else { throw ValidationError("--timeout must be between 0 and 600 seconds") }
        guard SerialSettings.supportedBaudRates[baud] != nil else { throw ValidationError("unsupported --baud \(baud)") }
        if let report {
            guard FactoryReport.acceptableURL(report) != nil else {
                throw ValidationError("--report: an https URL is required (plain http only to a loopback host)")
            }
            guard let deviceSerial else { throw ValidationError("--report needs --device-serial") }
            guard FactoryReport.validSerial(deviceSerial) else {
                throw ValidationError("--device-serial: 1 to 128 printable ASCII characters, no spaces")
            }
        } else {
            if deviceSerial != nil { throw ValidationError("--device-serial goes with --report") }
            if tokenFile != nil { throw ValidationError("--token-file goes with --report") }
            if caFile != nil { throw ValidationError("--ca-file goes with --report") }
        }
    }

    func run() async throws {
        let logger = CLILogging.bootstrap(verbosity: verbose)
        do {
            try PseudonymKey.configure(stateDirectory: stateDirectory)
        } catch {
            logger.error("\(error)")
            throw ExitCode(Status.keyFile.rawValue)
        }
        // The poster first: a bad token file or URL stops the station before it opens a port.
        var factory: FactoryReport?
        if let report, let url = FactoryReport.acceptableURL(report), let deviceSerial {
            do {
                let token = try tokenFile.map { path throws(ReporterError) in try TokenFile.read(path: path) }
                let poster = try EnrollmentPoster(
                    .init(url: url, token: token, caFile: caFile, userAgent: "cellprov/\(CellprovVersion.string)"))
                factory = FactoryReport(serial: deviceSerial, poster: poster, logger: logger)
            } catch {
                logger.error("\(error)")
                throw ExitCode(Status.keyFile.rawValue)
            }
        }

        var options = IdentityReadOptions()
        options.timeout = .milliseconds(Int64(timeout * 1000))
        options.commandTimeout = min(options.commandTimeout, options.timeout)
        options.serial.baudRate = baud
        let reader = IdentityReader(options: options, logger: logger)

        let reports = await withTaskGroup(of: (Int, IdentityReport).self) { group in
            for (index, port) in ports.enumerated() {
                group.addTask { (index, await reader.read(port: port)) }
            }
            var results = [IdentityReport?](repeating: nil, count: ports.count)
            for await (index, report) in group { results[index] = report }
            return results.compactMap { $0 }
        }

        for report in reports {
            if report.isValid {
                logger.info("read \(report)")
            } else {
                logger.warning("read \(report)")
            }
        }
        var results: [Int: PostResult]?
        if let factory {
            results = await factory.post(reports, placements: FactoryReport.placements(of: reports.map(\.port)))
            await factory.poster.shutdown()
        }
        if json {
            try printJSON(reports, results: results)
        } else {
            var text = ProbeTable.render(reports, reveal: reveal)
            if let results { text += FactoryReport.summary(reports, results) }
            print(text, terminator: "")
        }
        let posted = results.map { Array($0.values) } ?? []
        let status: Status =
            if reports.contains(where: \.portUnusable) { .portUnusable }
            else if !reports.allSatisfy(\.isValid) { .invalidIdentity }
            else if posted.contains(where: { $0.outcome == .rejected }) { .reportRejected }
            else if posted.contains(where: { $0.outcome == .failed }) { .reportFailed }
            else { .valid }
        if status != .valid { throw ExitCode(status.rawValue) }
    }

    /// One line per port; with --report each line also has `report` (the record's result, null if not posted).
    private func printJSON(_ reports: [IdentityReport], results: [Int: PostResult]?) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var out = ""
        for (index, report) in reports.enumerated() {
            let data =
                if let results {
                    try encoder.encode(ReportedRecord(record: IdentityRecord(report), report: results[index]))
                } else {
                    try encoder.encode(IdentityRecord(report))
                }
            out += String(decoding: data, as: UTF8.self) + "\n"
        }
        StandardStream.output.write(out)
    }
}

