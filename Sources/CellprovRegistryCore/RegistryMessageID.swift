import Foundation

/// Stable journal `MESSAGE_ID`s of cellprov-registry's notable events, like cellprovd's `CellprovMessageID`
/// (CellprovCore): 32 lowercase hex digits each, never changed once released. Defined here, in the pure core,
/// so that the HTTP layer, the alerts and the executable log with the same ids without depending on each other.
///
///     logger.notice("flag raised", metadata: [RegistryMessageID.metadataKey: "\(RegistryMessageID.flagRaised(.iccidMoved))"])
///     journalctl MESSAGE_ID=<id>
public enum RegistryMessageID: String, CaseIterable, Sendable {
    /// The server listens (`listening on HOST:PORT`).
    case listening = "8c5f0f4a1b9e4d7c9a62d3e1f0b7a415"
    /// The server stops (SIGTERM).
    case stopping = "2f6e1a9c7d3b4e08b5a4c6d2e9f1a370"
    /// An event was stored (at debug level: one line per event cost 3.5 % of the registry's CPU per event; the
    /// count is `cellprov_registry_events_ingested_total{outcome="stored"}` in /metrics).
    case eventStored = "5d2b8e7a0c1f4a93b6e4d9c2a1f07e58"
    /// A posted event was refused (401/403/409/4xx).
    case eventRefused = "c3a9e1f75b2d4c6e8f0a1b3d5e7c9a02"
    /// A unit was marked lost.
    case unitLost = "9e4c2a7f1d3b4e5a8c6f0b2d4a6e8c13"
    /// A lost unit was marked found (new token).
    case unitFound = "41b7d9e3a5c24f6e8a0c2e4b6d8f0a25"
    /// An operator revealed identifiers.
    case reveal = "e7a1c3b5d9f24e6a8c0b2d4f6a8e0c37"
    /// The database could not be opened or migrated.
    case databaseError = "6a8c0e2b4d6f4a1c9e3b5d7f9a1c3e49"
    /// A critical flag could not be delivered to the webhook.
    case alertFailed = "b2d4f6a8c0e24b4d8f1a3c5e7b9d1f5b"
    // One id per flag kind, so that a journal query finds one kind of red flag.
    case flagIMEIChanged = "0d6f8b1c3e5a4c7e9b2d4f6a8c1e3a61"
    case flagDuplicateIMEI = "1e7a9c2d4f6b4d8f0c3e5a7b9d2f4b73"
    case flagIMEIOnTwoUnits = "2f8b0d3e5a7c4e9a1d4f6b8c0e3a5c85"
    case flagICCIDMoved = "3a9c1e4f6b8d4fab2e5a7c9d1f4b6d97"
    case flagModuleSwapped = "4bad2f5a7c9e4abc3f6b8d0e2a5c7ea9"
    case flagLostUnitSeen = "5cbe3a6b8d0f4bcd4a7c9e1f3b6d8fbb"
    case flagUnitSilent = "6dcf4b7c9e1a4cde5b8d0f2a4c7e9acd"
    case flagSIMActiveUnassigned = "7ed05c8d0f2b4def6c9e1a3b5d8f0bdf"
    case flagSIMUnknownToCarrier = "8fe16d9e1a3c4ef07d0f2b4c6e9a1cf1"
    case flagIMSIICCIDMismatch = "90f27e0f2b4d4f018e1a3c5d7f0b2e03"
    case flagEUICCMoved = "438085fc11114129a21afa929cef6f3b"
    case flagProfileCloneSuspected = "3ec127c4c4a34e4a878488619583af70"
    case flagEIDUnknownToFleet = "7177c0c3042643808e3da9a40c5e8ddf"
    case flagStateRolledBack = "2d6821f6f4574b0cbc1b13c33777a0f4"

    /// The metadata key the journal handler passes through as the `MESSAGE_ID` field.
    public static let metadataKey = "MESSAGE_ID"

    /// The 32 lowercase hex digits.
    public var id: String { rawValue }

    /// The id of a raised flag of `kind`.
    public static func flagRaised(_ kind: FlagKind) -> RegistryMessageID {
        switch kind {
        case .imeiChanged: .flagIMEIChanged
        case .duplicateIMEI: .flagDuplicateIMEI
        case .imeiOnTwoUnits: .flagIMEIOnTwoUnits
        case .iccidMoved: .flagICCIDMoved
        case .moduleSwappedSinceManufacturing: .flagModuleSwapped
        case .lostUnitSeen: .flagLostUnitSeen
        case .unitSilent: .flagUnitSilent
        case .simActiveUnassigned: .flagSIMActiveUnassigned
        case .simUnknownToCarrier: .flagSIMUnknownToCarrier
        case .imsiICCIDMismatch: .flagIMSIICCIDMismatch
        case .euiccMoved: .flagEUICCMoved
        case .profileCloneSuspected: .flagProfileCloneSuspected
        case .eidUnknownToFleet: .flagEIDUnknownToFleet
        case .stateRolledBack: .flagStateRolledBack
        }
    }
}
