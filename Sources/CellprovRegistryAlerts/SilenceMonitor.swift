import CellprovCore
import CellprovRegistryCore
import Foundation
import Logging

/// The periodic `unit_silent` check: every ``interval``, units (not marked lost) whose last event is older than
/// ``threshold`` get a `unit_silent` flag (warning), raised through ``RegistryStore/raise(_:at:)``.
///
/// The dedupe key is `unit_silent:<serial>`: while a unit's flag is open, later checks raise nothing new for it
/// (the store skips open keys), so the check is idempotent and several registry instances may run it at once on
/// one PostgreSQL. Once an operator resolves the flag, a unit still silent is flagged again at the next check:
/// resolving means "looked at", and the unit is still silent. A unit that reports again keeps its (open) flag
/// until resolved: its timeline shows it is back.
public struct SilenceMonitor: Sendable {
    public var store: any RegistryStore
    /// How long without an event makes a unit silent (the issue: a configurable number of days).
    public var threshold: Duration
    /// How often to check.
    public var interval: Duration
    public var logger: Logger
    /// Called with the flags each check raised (the webhook alerter's `enqueue`; `unit_silent` is a warning, sent
    /// only when the webhook's minimum severity is lowered).
    public var onRaised: @Sendable ([RegistryFlag]) -> Void

    public init(
        store: any RegistryStore, threshold: Duration, interval: Duration = .seconds(3600), logger: Logger,
        onRaised: @escaping @Sendable ([RegistryFlag]) -> Void = { _ in }
    ) {
        self.store = store
        self.threshold = threshold
        self.interval = interval
        self.logger = logger
        self.onRaised = onRaised
    }

    /// The flags a check at `now` would raise for these silent serials. Pure.
    public static func flags(silentSerials: [String], threshold: Duration) -> [NewFlag] {
        let days = Double(threshold.components.seconds) / 86_400
        let span: String
        if days >= 1, days == days.rounded() {
            span = days == 1 ? "1 day" : "\(Int(days)) days"
        } else {
            span = "\(max(1, threshold.components.seconds / 3600)) hours"
        }
        return silentSerials.sorted().map { serial in
            NewFlag(
                kind: .unitSilent, severity: .warning, serial: serial,
                summary: "no event from \(serial) for more than \(span)",
                evidence: FlagEvidence(note: "silent for more than \(span)"),
                dedupeKey: "unit_silent:\(serial)")
        }
    }

    /// One check: queries the store, raises the flags, logs how many were raised. Returns the raised flags.
    @discardableResult
    public func check(now: Date = Date()) async throws -> [RegistryFlag] {
        let before = now.addingTimeInterval(-Double(threshold.components.seconds))
        let serials = try await store.silentUnits(lastSeenBefore: before)
        guard !serials.isEmpty else { return [] }
        let raised = try await store.raise(Self.flags(silentSerials: serials, threshold: threshold), at: now)
        if !raised.isEmpty {
            logger.notice(
                "unit_silent flags raised",
                metadata: [
                    RegistryMessageID.metadataKey: .string(RegistryMessageID.flagRaised(.unitSilent).id),
                    "kind": "unit_silent",
                    "count": "\(raised.count)", "silent_units": "\(serials.count)",
                ])
            onRaised(raised)
        }
        return raised
    }

    /// Checks at once, then every ``interval``, until the task is cancelled. A failed check is logged and tried
    /// again at the next period (a database restart must not stop the monitor).
    public func run() async {
        while !Task.isCancelled {
            do {
                try await check()
            } catch {
                logger.error(
                    "silence check failed",
                    metadata: [
                        AlertMessageID.metadataKey: .string(AlertMessageID.silenceCheckFailed.id),
                        "error": .string(Redaction.scrub(String(describing: error))),
                    ])
            }
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
        }
    }
}
