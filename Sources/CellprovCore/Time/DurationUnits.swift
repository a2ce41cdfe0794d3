// Duration in the integer units the timer APIs take (Dispatch's `.nanoseconds(Int)`, NIO's `TimeAmount`):
// the one conversion, truncating, saturating instead of trapping for durations beyond Int64's range.

extension Duration {
    /// Whole nanoseconds (the sub-nanosecond rest dropped), clamped to Int64's range.
    public var nanoseconds: Int64 { wholeUnits(perSecond: 1_000_000_000) }

    /// Whole milliseconds (the rest dropped), clamped to Int64's range.
    public var milliseconds: Int64 { wholeUnits(perSecond: 1_000) }

    private func wholeUnits(perSecond: Int64) -> Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: perSecond)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflowSum) = scaled.addingReportingOverflow(attoseconds / (1_000_000_000_000_000_000 / perSecond))
        if overflowSum { return seconds < 0 ? .min : .max }
        return sum
    }
}
