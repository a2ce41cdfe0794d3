import CellprovCore
import Logging
import NIOConcurrencyHelpers

// The EID step of an identity read (issue 15): after ICCID and IMSI, when the SIM is ready, open a logical channel
// to the ISD-R, send ES10c GetEUICCData, follow 61xx/6Cxx, and close the channel whatever happened. The commands
// and the parsing are CellprovCore's (EUICCAccess); this file only sends them and keeps the port session's memory.

/// What the reader remembers between reads of one port session (one ``ATChannel``): the card that refused
/// `AT+CCHO` (a plain UICC, or a module without logical channels), so that it costs one command per insertion,
/// not one per re-read; and channels a read opened but could not close (the modem stopped answering), which the
/// next read closes first.
struct EIDSessionMemory: Sendable {
    /// The card (its ICCID and IMSI as read) on which `AT+CCHO` was refused.
    var noEUICCCard: CardKey?
    /// Channels left open by a read whose `AT+CCHC` got no answer.
    var unclosed: [LogicalChannelID] = []
}

/// Which card a read saw. A profile switch changes both ICCID and IMSI, a physical swap too: either is a new card
/// for the memory. Held only in memory, never printed.
struct CardKey: Sendable, Hashable {
    var iccid: String?
    var imsi: String?
}

/// The memories of the ports' sessions, keyed by their channel (weakly held: a channel that is gone leaves no
/// memory for a new one at the same address). Kept here rather than on ``ATChannel`` so the channel stays
/// a pure command queue.
enum EIDSessionMemories {
    private struct Entry {
        weak var channel: ATChannel?
        var memory: EIDSessionMemory
    }

    private static let table = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])

    /// Runs `body` on the memory of `channel`'s session (a fresh one for a channel not seen before).
    static func with<R>(_ channel: ATChannel, _ body: (inout EIDSessionMemory) -> R) -> R {
        table.withLockedValue { t in
            let key = ObjectIdentifier(channel)
            if t[key]?.channel !== channel {
                t = t.filter { $0.value.channel != nil }
                t[key] = Entry(channel: channel, memory: EIDSessionMemory())
            }
            return body(&t[key]!.memory)
        }
    }
}

extension Session {
    /// The most APDUs one GetEUICCData may take: the command, a GET RESPONSE or a resend, and one more.
    static let maxAPDUsPerRead = 4

    /// Reads the EID when the SIM is ready: never with no SIM, a SIM waiting for its PIN or PUK, or a stopped read.
    /// A healthy plain SIM costs one command at its first read in a port session (the refused `AT+CCHO`) and none
    /// after; an eUICC three (`AT+CCHO`, `AT+CGLA`, `AT+CCHC`), one more per GET RESPONSE or resend.
    mutating func readEID(iccid: ICCID?, imsi: IMSI?) async -> (EID?, EIDReadStatus) {
        if simCondition == .notInserted {
            // The card left: whatever comes next is a new insertion.
            EIDSessionMemories.with(channel) { $0.noEUICCCard = nil }
        }
        guard !stopped, simCondition == nil, iccid != nil || imsi != nil else { return (nil, .notAttempted) }

        if let digits = vendorEIDDigits {
            logger.debug("EID from the vendor's ICCID answer")
            return validated(digits)
        }

        await closeLeftoverChannels()
        let card = CardKey(iccid: iccid?.unredacted, imsi: imsi?.unredacted)
        if EIDSessionMemories.with(channel, { $0.noEUICCCard == card }) {
            return (nil, .noEUICC)
        }

        guard case .answer(let opened) = await send(EUICCAccess.openCommand, expecting: "+CCHO:") else {
            // No answer in time. A modem that opened a channel and answered late leaves it open; its number is
            // unknown, and closing a guessed one could close another program's (ModemManager's) channel.
            logger.debug("no answer to the logical channel open")
            return (nil, .failed)
        }
        guard opened.result.isSuccess else {
            if case .cmeError(let e) = opened.result, e.simCondition == .busy { return (nil, .failed) }
            // ERROR, +CME ERROR: 13 (openpilot #37979), +CME ERROR: Parameters error (lpac #187), operation not
            // supported: a plain UICC or no logical channels. Not asked again until another card is seen.
            logger.debug("no eUICC: the logical channel open was refused", metadata: ["result": "\(opened.result)"])
            EIDSessionMemories.with(channel) { $0.noEUICCCard = card }
            return (nil, .noEUICC)
        }
        guard let logical = EUICCAccess.openedChannel(in: opened.lines) else {
            // OK without a channel we can name: nothing to close, nothing to read.
            logger.debug("logical channel open answered without a channel")
            return (nil, .failed)
        }
        let result = await getEUICCData(on: logical)
        await closeChannel(logical)
        return result
    }

    /// GetEUICCData on an open channel, following `61xx` (GET RESPONSE) and `6Cxx` (resend with Le = xx).
    mutating func getEUICCData(on logical: LogicalChannelID) async -> (EID?, EIDReadStatus) {
        var apdu = EUICCAccess.getEUICCDataAPDU(channel: logical)
        var data: [UInt8] = []
        for _ in 0..<Self.maxAPDUsPerRead {
            guard !stopped,
                case .answer(let a) = await send(EUICCAccess.cglaCommand(logical, apdu: apdu), expecting: "+CGLA:")
            else { return (nil, .failed) }
            guard a.result.isSuccess, let response = EUICCAccess.cglaResponse(in: a.lines) else {
                logger.debug("GetEUICCData got no readable answer", metadata: ["result": "\(a.result)"])
                return (nil, .failed)
            }
            switch EUICCAccess.next(after: response, channel: logical, sent: apdu) {
            case .done:
                data += response.data
                guard let digits = EUICCAccess.eidDigits(inGetEUICCData: data) else {
                    logger.debug("GetEUICCData answered without an EID")
                    return (nil, .failed)
                }
                return validated(digits)
            case .send(let next):
                // 61xx: what came so far is the start of the response; 6Cxx: the answer is discarded.
                if response.sw1 == 0x61 { data += response.data }
                apdu = next
            case .failed:
                logger.debug("GetEUICCData failed", metadata: ["status": "\(response.statusText)"])
                return (nil, .failed)
            }
        }
        return (nil, .failed)
    }

    mutating func validated(_ digits: String) -> (EID?, EIDReadStatus) {
        let v = EID.validate(digits)
        problems += v.problems
        return v.value.map { ($0, .read) } ?? (nil, .invalid)
    }

    /// `AT+CCHC`, sent even when the read has stopped at its deadline or after a timeout (a card has only a few
    /// channels, and a leaked one is lost to every other user until the card resets); only a port that is gone
    /// cannot be told. A close that gets no answer is remembered and sent again at the next read.
    mutating func closeChannel(_ logical: LogicalChannelID) async {
        guard !channel.isClosed else { return }
        do {
            let answer = try await channel.send(EUICCAccess.closeCommand(logical), timeout: options.commandTimeout)
            if !answer.result.isSuccess {
                // The channel is not open (any more): nothing to keep.
                logger.debug("logical channel close refused", metadata: ["result": "\(answer.result)"])
            }
        } catch let error as ATChannelError where error.code == .timeout {
            logger.debug("no answer to the logical channel close; retried at the next read")
            EIDSessionMemories.with(channel) { $0.unclosed.append(logical) }
            await channel.waitForQuiet(options.resyncQuiet, limit: options.resyncLimit)
        } catch {
            logger.debug("logical channel close not sent", metadata: ["reason": "\(error)"])
        }
    }

    /// Closes the channels an earlier read of this session could not close.
    mutating func closeLeftoverChannels() async {
        let leftovers = EIDSessionMemories.with(channel) { m -> [LogicalChannelID] in
            defer { m.unclosed = [] }
            return m.unclosed
        }
        for logical in leftovers where !stopped { await closeChannel(logical) }
    }
}
