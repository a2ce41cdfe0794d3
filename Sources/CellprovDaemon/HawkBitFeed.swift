import CellprovCore
import CellprovReporter
import CellprovStore
import FoundationEssentials

/// cellprovd's `[hawkbit]` sink: the modems as an Eclipse hawkBit target's attributes, kept current through the DDI
/// `configData` resource by CellprovReporter's ``HawkBitUpdater``. Names and meanings: docs/operations.md
/// ("hawkBit"); why this shape: docs/decisions.md ("hawkBit attributes").
///
/// The attributes are derived from the state database (the store's slot records and live view, as
/// ``StatusView`` reads them) each time the updater pulls, at start and after every committed read: nothing to
/// lose when cellprovd stops, and a newer change replaces a pending one.
public enum HawkBitAttributes {
    public typealias Identifiers = DaemonConfig.HawkBit.Identifiers

    /// The modems described, in slot order; `cellprov_modems` still counts them all. 1 + 9 * 8 = 73 attributes
    /// stay under hawkBit's default quota of 100 per target with room for the update client's own.
    public static let maximumModems = 8

    /// The names of one modem's attributes, after `cellprov_modem<N>_`.
    public static let fields = [
        "slot", "module", "imei", "imsi", "iccid", "eid", "read_status", "sim_state", "last_change",
    ]

    /// The attributes for `view`: `cellprov_modems`, then for each modem (numbered from 1 in slot order: slots are
    /// physical positions and the store never forgets one, so a number keeps its modem) every field of ``fields``.
    /// A value not known is sent as an empty string, not left out: with `mode: merge` a left-out key would keep its
    /// old value on the target (a removed EID, a SIM's IMSI before a read that could not tell). Every key and value
    /// is within hawkBit's limits (``HawkBitDDI``).
    public static func attributes(_ view: StatusView, identifiers: Identifiers) -> [String: String] {
        var out: [String: String] = ["cellprov_modems": "\(view.slots.count)"]
        let f = Date.ISO8601FormatStyle()
        let full = identifiers == .full
        for (index, slot) in view.slots.prefix(maximumModems).enumerated() {
            var values = Dictionary(uniqueKeysWithValues: fields.map { ($0, "") })
            values["slot"] = slot.slot
            if let r = slot.record {
                values["module"] = [r.module.manufacturer, r.module.model, r.module.revision].compactMap { $0 }
                    .joined(separator: " ")
                let id = r.identity
                values["imei"] = id.imei.map { full ? $0 : id.redactedIMEI } ?? ""
                values["imsi"] = id.imsi.map { full ? $0 : id.redactedIMSI } ?? ""
                values["iccid"] = id.iccid.map { full ? $0 : id.redactedICCID } ?? ""
                values["eid"] = id.eid.map { full ? $0 : id.redactedEID } ?? ""
                values["last_change"] = f.format(r.updatedAt)
            }
            values["read_status"] = slot.readStatus.rawValue
            values["sim_state"] = slot.simState.rawValue
            for (field, value) in values {
                out["cellprov_modem\(index + 1)_\(field)"] = HawkBitDDI.value(value)
            }
        }
        return out
    }

    /// The attributes as the store holds them now.
    public static func current(_ store: StateStore, identifiers: Identifiers) throws -> [String: String] {
        attributes(try StatusView(store: store, lastEvents: false), identifiers: identifiers)
    }
}

extension DaemonConfig.HawkBit {
    /// The updater's configuration, with the token read under ``TokenFile``'s rule: at start and on SIGHUP alike.
    func updaterConfiguration(deviceSerial: String?) throws -> HawkBitConfiguration {
        guard let controllerID = controllerID ?? deviceSerial else {
            throw ReporterError(description: "hawkbit: no controller_id and no device serial")
        }
        let token = try tokenFile.map { path throws(ReporterError) in try TokenFile.read(path: path) }
        return HawkBitConfiguration(
            url: url, tenant: tenant, controllerID: controllerID, token: token, caFile: caFile,
            clientCertificate: clientCertificate, clientKey: clientKey)
    }
}
