/// Stable journal `MESSAGE_ID`s of cellprov-registry's notable events (the registry's counterpart of
/// CellprovSystemd's `CellprovMessageID`; kept here, in the pure core, so that every registry module names them
/// from one place without importing the systemd edge). 32 lowercase hex digits; never changed once released.
///
///     logger.notice("event stored", metadata: ["MESSAGE_ID": "\(RegistryMessageID.eventStored.id)"])
///     journalctl MESSAGE_ID=87d89091db25418db52d663eb7e8fbdf
public enum RegistryMessageID: String, CaseIterable, Sendable {
    /// The server listens (`listening on HOST:PORT`).
    case listening = "46b5cbc9a15b4b12acc1852b6ed727db"
    /// An enrollment event was stored.
    case eventStored = "87d89091db25418db52d663eb7e8fbdf"
    /// An enrollment attempt was refused (credentials, serial mismatch, lost unit, bad body).
    case eventRefused = "b4b54fc81d504f6cbfaf4af313b135f4"
    /// A red flag was raised (the `kind` field names which).
    case flagRaised = "79ccf33328a04189b1aa102b9b40e913"
    /// A unit was marked lost.
    case unitLost = "c04bda6be7734cd9ad1cda525b0bb44f"
    /// A unit marked lost was found again (new device token).
    case unitFound = "fb83a89ce48f42f9ab44a785857d130b"
    /// An operator revealed full identifiers (also in the audit log).
    case reveal = "53a2a6ce568f41848d4782d098e83a4c"
    /// A flag was resolved by an operator.
    case flagResolved = "171cde58d96746f89a1dceb0ad043a0c"

    /// The 32 lowercase hex digits.
    public var id: String { rawValue }
}
