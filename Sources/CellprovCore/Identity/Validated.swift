/// The outcome of validating a raw identifier read from a modem.
///
/// `value` is nil when the input is unusable (wrong length, wrong characters, missing). It can be non-nil
/// *and* carry problems: an IMEI with a bad check digit or a placeholder IMEI is still returned (with an
/// error) so the digits actually read can be reported on the data channel; an ICCID with a bad check digit
/// or an IMSI of a test network is returned with a warning.
public struct Validated<Value: Sendable>: Sendable {
    public var value: Value?
    public var problems: [Problem]

    public init(value: Value?, problems: [Problem]) {
        self.value = value
        self.problems = problems
    }

    /// The worst severity among ``problems``, or nil when there are none.
    public var worstSeverity: Severity? { problems.map(\.severity).max() }

    /// True when any problem is an error (the value, if any, must not be trusted as a clean identity).
    public var hasErrors: Bool { problems.contains { $0.severity == .error } }
}
