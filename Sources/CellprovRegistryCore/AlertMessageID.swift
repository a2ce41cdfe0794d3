/// Stable journal `MESSAGE_ID`s of the registry's outbound alerts and periodic checks (CellprovRegistryAlerts).
///
/// Kept in their own file beside the registry's other ids (`RegistryMessageID`, regstore's) so that the two
/// branches do not edit one enum at the same time; the integrator may fold them into one. Each id is 32 lowercase
/// hex digits and never changes once released. An alert given up logs `RegistryMessageID.alertFailed`; flags the
/// silence check raises log `RegistryMessageID.flagRaised(.unitSilent)`.
public enum AlertMessageID: String, CaseIterable, Sendable {
    /// A critical flag was POSTed to the webhook and accepted (2xx).
    case alertDelivered = "740ea553f47e456694144a1d638d44fb"
    /// A webhook delivery failed and will be retried after a backoff.
    case alertRetrying = "d7f688c3be864da6b994676637ed7c9c"
    /// The alert queue was full (webhook down for long): the oldest alerts were dropped; the count is attached.
    case alertQueueOverflow = "414071ee45a946a88c558b951567e63f"
    /// The periodic silence check could not query or write the store (it retries at its next period).
    case silenceCheckFailed = "487653ebd2484d86a33ac5b8d61920fa"

    /// The metadata key the journal handler passes through unchanged as the `MESSAGE_ID` field.
    public static let metadataKey = "MESSAGE_ID"

    public var id: String { rawValue }
}
