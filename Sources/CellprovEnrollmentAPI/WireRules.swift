import CellprovCore
import FoundationEssentials

// The enrollment API's value rules that more than one program applies: written once here, so that what a sender
// accepts is what the registry accepts (docs/enrollment-api.yaml; the choices are in docs/decisions.md, "Wire
// rules").

/// A device serial (`device.serial`, `--device-serial`, a station's or a client certificate's claimed serial).
public enum DeviceSerial {
    /// 1 to 128 printable ASCII characters, no blanks: what the registry stores and searches exactly, and what a
    /// factory station may scan.
    public static func isValid(_ serial: String) -> Bool {
        !serial.isEmpty && serial.utf8.count <= 128 && serial.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}

/// A keyed pseudonym reference (`IMEI(TAC …, ref 1a2b3c4d5e)`, the payload's `references`, a registry search).
public enum PseudonymReference {
    /// Exactly 10 lowercase hex digits (the schema's `Reference` pattern `^[0-9a-f]{10}$`).
    public static func isWellFormed(_ text: some StringProtocol) -> Bool {
        text.utf8.count == 10 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

/// Where events and alerts may be sent: https, or plain http to a loopback host (tests, a local registry).
public enum BackendURL {
    public enum Verdict: Sendable, Equatable {
        case allowed
        /// Not a URL with a host.
        case invalid
        /// http to a host that is not loopback.
        case plainHTTPNotLoopback
        /// Neither https nor http.
        case unsupportedScheme
    }

    public static func check(_ url: URL) -> Verdict {
        guard let host = url.host, !host.isEmpty else { return .invalid }
        switch url.scheme?.lowercased() {
        case "https": return .allowed
        case "http": return isLoopback(host) ? .allowed : .plainHTTPNotLoopback
        default: return .unsupportedScheme
        }
    }

    /// localhost, ::1, or a dotted quad in 127.0.0.0/8: where plain http is allowed.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.trimmingScalars { $0 == "[" || $0 == "]" }.lowercased()
        if h == "localhost" || h == "::1" { return true }
        // 127.0.0.0/8, as a dotted quad only ("127.example.com" is a name anyone can register).
        let octets = h.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.first == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
