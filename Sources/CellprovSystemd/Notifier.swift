import CSystemd

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The service manager's notification protocol (`sd_notify(3)`) and watchdog settings.
///
/// Every call is a no-op when `NOTIFY_SOCKET` is unset, that is when the daemon was not started by systemd
/// as a `Type=notify` service, so callers never need to check first.
public struct SystemdNotifier: Sendable {
    /// True when the service manager gave us a notification socket (`NOTIFY_SOCKET` is set and not empty).
    public static var isUnderSystemd: Bool {
        guard let value = getenv("NOTIFY_SOCKET") else { return false }
        return value.pointee != 0
    }

    /// How often to send `WATCHDOG=1`, or nil when the watchdog is not enabled for this process.
    ///
    /// This is half of `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)` recommends. `WATCHDOG_PID`, when set, must
    /// name this process.
    public static var watchdogInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(clamping: usec / 2))
    }

    /// Sends the fields as one datagram: `KEY=value` lines, sorted by key.
    ///
    /// Values are made single-line (newlines become spaces, NULs are dropped); keys that are empty or contain `=`,
    /// a newline or a NUL are left out.
    /// - Returns: true when a datagram was sent to the service manager.
    @discardableResult
    public static func notify(_ fields: [String: String]) -> Bool {
        guard isUnderSystemd else { return false }
        guard let state = notifyPayload(fields) else { return false }
        return state.withCString { sd_notify(0, $0) } > 0
    }

    /// `READY=1`, with an optional `STATUS=` line in the same datagram.
    @discardableResult
    public static func ready(status: String? = nil) -> Bool {
        var fields = ["READY": "1"]
        if let status { fields["STATUS"] = status }
        return notify(fields)
    }

    /// `STATUS=line`: a one-line, human-readable status shown by `systemctl status`.
    @discardableResult
    public static func status(_ line: String) -> Bool {
        notify(["STATUS": line])
    }

    /// `WATCHDOG=1`: the keep-alive ping; send it every ``watchdogInterval``.
    @discardableResult
    public static func watchdog() -> Bool {
        notify(["WATCHDOG": "1"])
    }

    /// `STOPPING=1`: the daemon has begun its shutdown.
    @discardableResult
    public static func stopping() -> Bool {
        notify(["STOPPING": "1"])
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (required by `Type=notify-reload`, harmless otherwise).
    /// Send ``ready(status:)`` when the reload is done.
    @discardableResult
    public static func reloading() -> Bool {
        notify(["RELOADING": "1", "MONOTONIC_USEC": String(monotonicMicroseconds())])
    }

    // MARK: - Pure helpers (internal for tests)

    /// The datagram for `fields`, or nil when no field is left after sanitising.
    static func notifyPayload(_ fields: [String: String]) -> String? {
        let lines = fields.keys.sorted().compactMap { key -> String? in
            guard isValidNotifyKey(key), let value = fields[key] else { return nil }
            return "\(key)=\(singleLine(value))"
        }
        return lines.isEmpty ? nil : lines.joined(separator: "\n")
    }

    static func isValidNotifyKey(_ key: String) -> Bool {
        !key.isEmpty && !key.unicodeScalars.contains { $0 == "=" || $0 == "\n" || $0 == "\r" || $0 == "\0" }
    }

    /// Newlines (LF, CR, CRLF and the Unicode line separators) become one space each; NULs are dropped.
    static func singleLine(_ value: String) -> String {
        var out = String.UnicodeScalarView()
        var lastWasCR = false
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\r":
                out.append(" ")
                lastWasCR = true
                continue
            case "\n":
                if !lastWasCR { out.append(" ") }
            case "\u{0B}", "\u{0C}", "\u{85}", "\u{2028}", "\u{2029}":
                out.append(" ")
            case "\0":
                break
            default:
                out.append(scalar)
            }
            lastWasCR = false
        }
        return String(out)
    }

    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1_000
    }
}
