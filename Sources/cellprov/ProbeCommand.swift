import ArgumentParser
import CellprovCore
import CellprovModem
import CellprovSerial
import Foundation
import Logging

/// `cellprov probe PORT...`: reads every port in parallel, once, and reports.
struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Read IMEI, IMSI and ICCID from AT ports, in parallel, once.",
        discussion: """
            Exit status: 0 every port valid; 1 a modem answered but an identity is missing or invalid; \
            2 a port could not be used (absent, busy, silent, not a modem, too slow, unplugged); 64 usage error; \
            78 bad pseudonym key in the state directory.
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

    enum Status: Int32 {
        case valid = 0
        case invalidIdentity = 1
        case portUnusable = 2
        case usage = 64
        case keyFile = 78
    }

    func validate() throws {
        guard !ports.isEmpty else { throw ValidationError("give at least one port") }
        guard timeout > 0, timeout <= 600 else { throw ValidationError("--timeout must be between 0 and 600 seconds") }
        guard SerialSettings.supportedBaudRates[baud] != nil else { throw ValidationError("unsupported --baud \(baud)") }
    }

    func run() async throws {
        let logger = CLILogging.bootstrap(verbosity: verbose)
        do {
            try PseudonymKey.configure(stateDirectory: stateDirectory)
        } catch {
            logger.error("\(error)")
            throw ExitCode(Status.keyFile.rawValue)
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
        if json {
            try printJSON(reports)
        } else {
            print(ProbeTable.render(reports, reveal: reveal), terminator: "")
        }
        let status: Status =
            if reports.contains(where: \.portUnusable) { .portUnusable }
            else if reports.allSatisfy(\.isValid) { .valid }
            else { .invalidIdentity }
        if status != .valid { throw ExitCode(status.rawValue) }
    }

    private func printJSON(_ reports: [IdentityReport]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var out = ""
        for report in reports {
            let data = try encoder.encode(IdentityRecord(report))
            out += String(decoding: data, as: UTF8.self) + "\n"
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}

