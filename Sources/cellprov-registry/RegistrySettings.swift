import CellprovRegistryCore
import CellprovRegistryHTTP
import Foundation
import TOMLKit

/// `serve --config FILE` (TOML, optional; every key has a default):
///
///     [alerts]
///     webhook_url = "https://alerts.example/cellprov"   # critical flags are POSTed here
///     unit_silent_days = 7                               # a unit silent this long raises unit_silent
///     [reconciliation]
///     iccid_column = "ICCID"                             # carrier export column names; detected when absent
///     imsi_column = "IMSI"
///     status_column = "Status"
///     eid_column = "EID"                                 # eUICC EID column, when the export has one
///     [server]
///     session_hours = 8
///     max_connections = 1000                             # lowered to fit the open-file limit
///
/// Unknown tables and keys are errors (a typo must not silently leave a default in place).
struct RegistrySettings: Sendable {
    var webhookURL: String?
    var unitSilentDays: Int = 7
    var iccidColumn: String?
    var imsiColumn: String?
    var statusColumn: String?
    var eidColumn: String?
    var sessionHours: Int = 8
    var maxConnections: Int = ConnectionLimits().maxConnections

    struct Error: Swift.Error, CustomStringConvertible {
        var description: String
    }

    static let schema: [String: Set<String>] = [
        "alerts": ["webhook_url", "unit_silent_days"],
        "reconciliation": ["iccid_column", "imsi_column", "status_column", "eid_column"],
        "server": ["session_hours", "max_connections"],
    ]

    static func load(path: String) throws -> RegistrySettings {
        guard let data = FileManager.default.contents(atPath: path), data.count <= 1 << 20 else {
            throw Error(description: "\(path): cannot read the file (or it is larger than 1 MiB)")
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: String(decoding: data, as: UTF8.self))
        } catch {
            throw Error(description: "\(path): syntax error: \(error)")
        }
        var s = RegistrySettings()
        for section in root.keys {
            guard let table = root[section]?.table, let keys = schema[section] else {
                throw Error(description: "\(path): unknown table [\(section)]; known: alerts, reconciliation, server")
            }
            for key in table.keys {
                guard keys.contains(key) else {
                    throw Error(description: "\(path): unknown key \(section).\(key)")
                }
                let value = table[key]!
                func string() throws -> String {
                    guard let v = value.string, !v.isEmpty else {
                        throw Error(description: "\(path): \(section).\(key) must be a non-empty string")
                    }
                    return v
                }
                func int(_ range: ClosedRange<Int>) throws -> Int {
                    guard let v = value.int, range.contains(v) else {
                        throw Error(description: "\(path): \(section).\(key) must be an integer in \(range)")
                    }
                    return v
                }
                switch (section, key) {
                case ("alerts", "webhook_url"):
                    let url = try string()
                    guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
                        throw Error(description: "\(path): alerts.webhook_url must be an http(s) URL")
                    }
                    s.webhookURL = url
                case ("alerts", "unit_silent_days"): s.unitSilentDays = try int(1...3650)
                case ("reconciliation", "iccid_column"): s.iccidColumn = try string()
                case ("reconciliation", "imsi_column"): s.imsiColumn = try string()
                case ("reconciliation", "status_column"): s.statusColumn = try string()
                case ("reconciliation", "eid_column"): s.eidColumn = try string()
                case ("server", "session_hours"): s.sessionHours = try int(1...168)
                case ("server", "max_connections"): s.maxConnections = try int(16...1_000_000)
                default: break
                }
            }
        }
        return s
    }

    /// Carrier reconciliation (CellprovRegistryCore's `Reconciliation`), with the configured column names (the
    /// others detected).
    var reconcileHook: ReconcileHook {
        let mapping = ColumnMapping.configured(
            iccid: iccidColumn, imsi: imsiColumn, status: statusColumn, eid: eidColumn)
        return { csv, assignments in
            let report = try Reconciliation.reconcile(csv: csv, mapping: mapping, assignments: assignments)
            return ReconcileResult(flags: report.flags, summary: report.summaryLines)
        }
    }
}
