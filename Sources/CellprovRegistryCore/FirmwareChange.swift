/// A `firmware_changed` event's two revisions, as the event carried them: `previous_revision` and
/// `module.revision` (either may be absent from an event).
public struct FirmwareChange: Sendable, Equatable {
    public var previous: String?
    public var current: String?

    public init(previous: String?, current: String?) {
        self.previous = previous
        self.current = current
    }
}
