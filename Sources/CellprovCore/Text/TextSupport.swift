/// The few string and path operations the product used from Foundation's NSString, written on the standard
/// library so that the installed program links FoundationEssentials only (no Foundation, no ICU: issue 8,
/// docs/performance.md). Pure: no file system access.

extension Unicode.Scalar {
    /// Foundation's `CharacterSet.newlines`: U+000A–U+000D, U+0085, U+2028, U+2029.
    @usableFromInline var isLineBreak: Bool {
        (0x0A...0x0D).contains(value) || value == 0x85 || value == 0x2028 || value == 0x2029
    }
}

extension StringProtocol {
    /// The string without the leading and trailing Unicode scalars `drop` matches (Foundation's
    /// `trimmingCharacters(in:)`, which also works on scalars, not on characters).
    public func trimmingScalars(where drop: (Unicode.Scalar) -> Bool) -> String {
        let scalars = String(self).unicodeScalars
        guard let first = scalars.firstIndex(where: { !drop($0) }),
            let last = scalars.lastIndex(where: { !drop($0) })
        else { return "" }
        return String(scalars[first...last])
    }

    /// Without leading and trailing white space: `.whitespaces` (spaces and tabs, Unicode White_Space less the
    /// line breaks) or, with `newlines`, `.whitespacesAndNewlines`.
    public func trimmingWhitespace(newlines: Bool = false) -> String {
        trimmingScalars { $0.properties.isWhitespace && (newlines || !$0.isLineBreak) }
    }
}

/// Path strings, lexically (NSString's path methods): no symlink is resolved, nothing is read.
public enum PathText {
    /// The last component: `/a/b/` → `b`, `/` → `/`.
    public static func lastComponent(_ path: String) -> String {
        let parts = path.split(separator: "/")
        guard let last = parts.last else { return path.isEmpty ? "" : "/" }
        return String(last)
    }

    /// The path without its last component: `/a/b` → `/a`, `/a` → `/`, `a` → ``.
    public static func deletingLastComponent(_ path: String) -> String {
        var parts = path.split(separator: "/")
        let absolute = path.hasPrefix("/")
        guard !parts.isEmpty else { return absolute ? "/" : "" }
        parts.removeLast()
        let joined = parts.joined(separator: "/")
        return absolute ? "/" + joined : joined
    }

    /// `directory` + `/` + `component`, with one slash between them.
    public static func appending(_ component: String, to directory: String) -> String {
        if directory.isEmpty { return component }
        return directory.hasSuffix("/") ? directory + component : directory + "/" + component
    }

    /// `.` and empty components removed, `..` applied to the component before it (never above `/`; a relative
    /// path keeps the leading `..` it cannot resolve).
    public static func normalized(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var out: [Substring] = []
        for part in path.split(separator: "/") {
            switch part {
            case ".": continue
            case "..":
                if let last = out.last, last != ".." { out.removeLast() } else if !absolute { out.append(part) }
            default: out.append(part)
            }
        }
        let joined = out.joined(separator: "/")
        return absolute ? "/" + joined : (joined.isEmpty ? "." : joined)
    }
}

extension StringProtocol {
    /// `%XX` escapes decoded (Foundation's `removingPercentEncoding`); nil when an escape is incomplete or the
    /// bytes are not UTF-8.
    public func removingPercentEscapes() -> String? {
        var bytes: [UInt8] = []
        var utf8 = self.utf8.makeIterator()
        func hex(_ c: UInt8?) -> UInt8? {
            switch c {
            case .some(let c) where (0x30...0x39).contains(c): c - 0x30
            case .some(let c) where (0x41...0x46).contains(c): c - 0x41 + 10
            case .some(let c) where (0x61...0x66).contains(c): c - 0x61 + 10
            default: nil
            }
        }
        while let c = utf8.next() {
            if c == UInt8(ascii: "%") {
                guard let high = hex(utf8.next()), let low = hex(utf8.next()) else { return nil }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(c)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
