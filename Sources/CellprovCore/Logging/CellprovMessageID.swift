/// Stable journal `MESSAGE_ID`s of cellprov's notable events. Data, in the core, so that every edge that logs one
/// (the reporter, the daemon, the journal handler) names it without importing another edge; the logging edge
/// (CellprovSystemd) adds ``metadata``.
///
/// Each id is a 128-bit value written as 32 lowercase hex digits; it never changes once released. The
/// operator-facing explanation of each lives in `systemd/cellprov.catalog`
/// (`journalctl -x` shows it once the catalog is installed and `journalctl --update-catalog` has run).
///
///     logger.info("modem appeared", metadata: CellprovMessageID.modemAppeared.metadata)
///     journalctl MESSAGE_ID=027b880fbe184f08a797027be6a25026
public enum CellprovMessageID: String, CaseIterable, Sendable {
    case daemonStarted = "4b01827722414b9c99877cfaede9cb5a"
    case daemonStopping = "74433dde767a4051a024d21ae4918061"
    case modemAppeared = "027b880fbe184f08a797027be6a25026"
    case modemRemoved = "ec3d5c81f87f47f394afc0ec9d0982bc"
    case identityRead = "d4234c5153974689b7afcdb0bae6699e"
    case identityProblem = "ee5e8609da5241b39d2328a41239d2a4"
    case simChanged = "f0317a4f348345ab90b28bbb07a95296"
    case imeiChanged = "a060d067be514928bf0d075191aeddda"
    case enrolled = "57e05795027641e697de121a12270a6d"
    case duplicateIMEI = "34b7f72dc12a4898a11eb1ea2d92df6c"
    /// A remote eSIM profile switch on the same eUICC (`profile_switched`).
    case profileSwitched = "965c02c833c04318b52f97abf63b7c97"
    /// The module's active SIM slot changed (`sim_slot_switched`).
    case simSlotSwitched = "86bf2385497a4fa5ba8c91a8cf3fbaae"
    /// The same ICCID on another eUICC (`profile_clone_suspected`).
    case profileCloneSuspected = "b4acb15962c54af8a5068cd33ab3cc7d"
    /// The same module reports another firmware revision (`firmware_changed`).
    case firmwareChanged = "fdd70da01537457d972f1e3135102c20"
    case deliveryFailed = "d10e8b0d52f9441d9d8575fc64aec9cf"
    case configError = "d7dffe1d58f7451e9b005e4c3c74591a"
    /// The backend answers 401/403: events wait until the credentials are fixed.
    case credentialsRefused = "64f0fdd5be7349caa5536ae583d2bb68"
    /// state.db was damaged: salvaged, moved aside, a new one started.
    case stateDamaged = "5113e6cfe2e9433ba3170ff657f07f46"
    /// state.db was missing or empty while the marker said it existed.
    case stateLost = "3beca7ac149045028a372e972bb6dbdc"

    /// The metadata key the journal handler passes through unchanged as the `MESSAGE_ID` field.
    public static let metadataKey = "MESSAGE_ID"

    /// The 32 lowercase hex digits.
    public var id: String { rawValue }
}
