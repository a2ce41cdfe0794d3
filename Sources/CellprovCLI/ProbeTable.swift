import CellprovCore

/// The human table of `cellprov probe`: identifiers redacted unless `reveal`.
enum ProbeTable {
    static func render(_ reports: [IdentityReport], reveal: Bool) -> String {
        let header = ["PORT", "MODULE", "IMEI", "IMSI", "ICCID", "STATUS"]
        var rows: [[String]] = []
        var notes: [String] = []
        for r in reports {
            let module = [r.manufacturer, r.model].compactMap { $0 }.joined(separator: " ")
            rows.append([
                r.port,
                module.isEmpty ? "-" : module,
                r.imei.map { reveal ? $0.unredacted : $0.description } ?? "-",
                r.imsi.map { reveal ? $0.unredacted : $0.description } ?? "-",
                r.iccid.map { reveal ? $0.unredacted : $0.description } ?? "-",
                r.isValid ? (r.problems.isEmpty ? "ok" : "ok (warnings)") : (r.portUnusable ? "unusable" : "invalid"),
            ])
            for p in r.problems {
                notes.append("  \(r.port): \(p.severity.rawValue) \(p.code.rawValue): \(p.message)")
            }
        }
        let table = [header] + rows
        let widths = (0..<header.count).map { c in table.map { $0[c].count }.max() ?? 0 }
        var out = ""
        for row in table {
            let cells = row.enumerated().map { c, cell in
                c == row.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[c] - cell.count))
            }
            out += cells.joined(separator: "  ") + "\n"
        }
        if !notes.isEmpty { out += "\n" + notes.joined(separator: "\n") + "\n" }
        return out
    }
}
