import CellprovCore

/// Switches on a module's SIM hot-swap reports for one port session (``SIMReportSetup``: what each vendor offers,
/// with its sources). Sent once per port session beside the identity read, not inside it (a read's command count
/// is unchanged); the daemon then re-reads on the URCs these produce (``VendorCatalog/isSIMEvent(_:)``).
///
/// The reporting setting is read first and set only when it is off: Quectel stores `AT+QSIMSTAT` in NVM, so a
/// setting already on is never written again. Where the module has a card-holder detection setting
/// (`AT+QSIMDET?`, `AT+CSDT?`) it is read, never changed: it depends on the board.
public enum SIMReportingSetup {
    /// Runs the setup for the module whose `AT+CGMI` answer is `manufacturer`. Nil when it was interrupted (the
    /// task cancelled at shutdown, the port closed or unwritable): the module said nothing, so nothing is concluded
    /// (the next port session runs it again). A timeout or an error answer is the module's answer: refused.
    public static func run(
        on channel: ATChannel, manufacturer: String?, timeout: Duration = .seconds(2)
    ) async -> SIMReportingState? {
        guard let dialect = VendorCatalog.dialect(forManufacturer: manufacturer),
            let setup = SIMReportSetup.byVendor[dialect.name]
        else { return .notApplicable }
        guard case .answered(let mode) = await field(channel, setup.query, tag: setup.tag, timeout: timeout) else {
            return nil
        }
        if mode == nil || mode == 0 {
            switch await send(channel, setup.enable, expecting: nil, timeout: timeout) {
            case .interrupted: return nil
            case .failed: return .refused
            case .answered: break
            }
        }
        if let query = setup.detectionQuery, let tag = setup.detectionTag {
            switch await field(channel, query, tag: tag, timeout: timeout) {
            case .interrupted: return nil
            case .answered(let detection) where detection == 0: return .detectionOff
            default: break
            }
        }
        return .on
    }

    enum Outcome<Value> {
        case answered(Value)
        /// A timeout, an error result or an unreadable answer: the module's own answer.
        case failed
        /// Cancelled, or the port went away: no answer at all.
        case interrupted
    }

    static func send(_ channel: ATChannel, _ command: String, expecting tag: String?, timeout: Duration) async
        -> Outcome<ATAnswer>
    {
        do {
            let answer = try await channel.send(command, expecting: tag, timeout: timeout)
            if Task.isCancelled { return .interrupted }
            return answer.result.isSuccess ? .answered(answer) : .failed
        } catch let error as ATChannelError {
            switch error.code {
            case .cancelled, .closed, .writeFailed: return .interrupted
            case .timeout, .answerTooLong, .unreadable: return Task.isCancelled ? .interrupted : .failed
            }
        } catch {
            return .interrupted
        }
    }

    /// The first numeric field of the answer to `command` (nil inside `.answered` when it has none); `.failed` counts
    /// as an answer without a field (the setting is then switched on or taken as unknown), `.interrupted` does not.
    static func field(_ channel: ATChannel, _ command: String, tag: String, timeout: Duration) async -> Outcome<Int?> {
        switch await send(channel, command, expecting: tag, timeout: timeout) {
        case .interrupted: return .interrupted
        case .failed: return .answered(nil)
        case .answered(let answer):
            return .answered(answer.lines.lazy.compactMap { SIMReportSetup.firstField(of: $0, tag: tag) }.first)
        }
    }
}
