import CellprovCore

/// Switches on a module's SIM hot-swap reports for one port session (``SIMReportSetup``: what each vendor offers,
/// with its sources). Sent once per port session beside the identity read, not inside it (a read's command count
/// is unchanged); the daemon then re-reads on the URCs these produce (``VendorCatalog/isSIMEvent(_:)``).
///
/// The reporting setting is read first and set only when it is off: Quectel stores `AT+QSIMSTAT` in NVM, so a
/// setting already on is never written again. Where the module has a card-holder detection setting
/// (`AT+QSIMDET?`, `AT+CSDT?`) it is read, never changed: it depends on the board.
public enum SIMReportingSetup {
    /// Runs the setup for the module whose `AT+CGMI` answer is `manufacturer`.
    public static func run(
        on channel: ATChannel, manufacturer: String?, timeout: Duration = .seconds(2)
    ) async -> SIMReportingState {
        guard let dialect = VendorCatalog.dialect(forManufacturer: manufacturer),
            let setup = SIMReportSetup.byVendor[dialect.name]
        else { return .notApplicable }
        let mode = await field(channel, setup.query, tag: setup.tag, timeout: timeout)
        if mode == nil || mode == 0 {
            guard let answer = try? await channel.send(setup.enable, timeout: timeout), answer.result.isSuccess else {
                return .refused
            }
        }
        if let query = setup.detectionQuery, let tag = setup.detectionTag,
            await field(channel, query, tag: tag, timeout: timeout) == 0
        {
            return .detectionOff
        }
        return .on
    }

    /// The first numeric field of the answer to `command`, nil when it failed or could not be read.
    static func field(_ channel: ATChannel, _ command: String, tag: String, timeout: Duration) async -> Int? {
        guard let answer = try? await channel.send(command, expecting: tag, timeout: timeout),
            answer.result.isSuccess
        else { return nil }
        return answer.lines.lazy.compactMap { SIMReportSetup.firstField(of: $0, tag: tag) }.first
    }
}
