import CellprovCore
import Logging

extension CellprovMessageID {
    /// `["MESSAGE_ID": id]`, to pass (or merge) as a log call's metadata; the journal handler writes it as the
    /// entry's `MESSAGE_ID` field.
    public var metadata: Logger.Metadata { [Self.metadataKey: .string(rawValue)] }
}
