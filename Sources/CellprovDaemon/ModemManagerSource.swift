import CellprovCore
import CellprovModemManager
import CellprovUdev
import Dispatch
import FoundationEssentials
import Logging

/// Modems that ModemManager owns, read over its D-Bus API instead of an AT port (`[discovery] modemmanager`).
///
/// On many gateways ModemManager drives the data connection and holds the module's only AT port (UART modules,
/// one-port modules dialling PPP), or the module has no AT port at all (MBIM/QMI-only). Opening such a port would
/// break connectivity; cellprov never does. It reads what ModemManager publishes instead, and feeds it through
/// the same path as an AT read: ``IdentityReport/init(modemManager:)`` (same validators and problem codes), the
/// Supervisor, the store's change detector, the outbox. The event's module carries `source: "modemmanager"`.
///
/// Which modems (both `auto` and `always`): every modem ModemManager has finished initialising whose slot has no
/// cellprov AT session, and none of whose ports is a port a cellprov session has open. The slot is the modem's
/// `Device` (the physical device's sysfs path) resolved through udev to its ID_PATH, the key udev discovery gives
/// the same module, so a module keeps its slot and record whichever way it is read. `auto` and `always` differ
/// only when ModemManager (or the bus) is missing: `auto` logs it at debug level, `always` at error level.
public final class ModemManagerSource: Sendable {
    let mode: DaemonConfig.ModemManagerMode
    let supervisor: Supervisor
    let logger: Logger
    private let udev: Udev?

    public init(mode: DaemonConfig.ModemManagerMode, supervisor: Supervisor, logger: Logger) {
        self.mode = mode
        self.supervisor = supervisor
        self.logger = logger
        udev = try? Udev()
    }

    /// What of a modem is worth a new observation: the identities, the module information and the SIM state.
    /// Registration or connection state changes (which ModemManager publishes often) are not.
    struct Fingerprint: Equatable {
        var port: String
        var imei: String?
        var manufacturer: String?
        var model: String?
        var revision: String?
        var simPath: String?
        var imsi: String?
        var iccid: String?
        var unlockRequired: UInt32?
        var failedReason: UInt32?
        /// The card and the active slot: a change of either alone (same ICCID on another EID, a failover whose
        /// SIM object keeps its path) is a read too.
        var eid: String?
        var simType: UInt32?
        var primarySimSlot: UInt32?
        var simSlots: [String]

        init(_ m: ModemManagerModem) {
            port = m.portDescription
            imei = m.imeiText
            manufacturer = m.manufacturer
            model = m.model
            revision = m.revision
            simPath = m.simPath
            imsi = m.simIMSI
            iccid = m.simICCID
            unlockRequired = m.unlockRequired
            failedReason = m.state == ModemManagerModem.State.failed ? m.failedReason : nil
            eid = m.simEID
            simType = m.simType
            primarySimSlot = m.primarySimSlot
            simSlots = m.simSlots
        }
    }

    /// Runs until the task is cancelled.
    public func run() async {
        let client = ModemManagerClient(
            logger: logger, retryInterval: mode == .always ? .seconds(5) : .seconds(30))
        client.start()
        var watched: [String: Fingerprint] = [:]
        var leftToAT: Set<String> = []
        var wasPresent: Bool?
        var lastReason: String?
        for await snapshot in client.snapshots {
            switch snapshot {
            case .noBus(let reason), .absent(let reason):
                if wasPresent != false || lastReason != reason {
                    lastReason = reason
                    // Not there at all is normal under auto; there but refusing (a bus policy denying the calls,
                    // a hung ModemManager) is worth a warning whatever the mode.
                    let notThere = snapshot.isNoBus || ModemManagerClient.isNotOnTheBus(reason)
                    let text = snapshot.isNoBus
                        ? "the system bus cannot be reached (\(reason)); retrying"
                        : notThere
                            ? "ModemManager is not on the system bus (\(reason)); waiting for it"
                            : "ModemManager does not answer (\(reason)); asking again later"
                    if mode == .always {
                        logger.error("\(text)", metadata: ["modemmanager": "always"])
                    } else if !notThere {
                        logger.warning("\(text)", metadata: ["modemmanager": "auto"])
                    } else if wasPresent == true {
                        logger.notice("\(text)", metadata: ["modemmanager": "auto"])
                    } else {
                        logger.debug("\(text)", metadata: ["modemmanager": "auto"])
                    }
                }
                wasPresent = false
                for key in watched.keys.sorted() {
                    await supervisor.removeExternal(key: key, reason: "ModemManager went away")
                }
                watched = [:]
            case .present(let modems):
                lastReason = nil
                if wasPresent != true {
                    logger.notice("ModemManager is on the system bus", metadata: ["modems": "\(modems.count)"])
                }
                wasPresent = true
                var seen: Set<String> = []
                for modem in modems where modem.isReadyToReport {
                    guard let (key, usbSerial) = slotKey(for: modem) else { continue }
                    let ports = Set(modem.ports.map { "/dev/\($0)" })
                    if await supervisor.hasATSession(key: key, ports: ports) {
                        if leftToAT.insert(key).inserted {
                            logger.info(
                                "ModemManager's modem is read over cellprov's own AT session; not through D-Bus",
                                metadata: ["slot": "\(key)", "object": "\(modem.objectPath)"])
                        }
                        watched[key] = nil
                        continue
                    }
                    leftToAT.remove(key)
                    guard !seen.contains(key) else { continue }  // two modem objects for one device: the first
                    seen.insert(key)
                    let slot = ModuleSlot(
                        key: key, port: modem.portDescription, usbSerial: usbSerial, origin: .modemmanager)
                    guard await supervisor.addExternal(slot) else { continue }
                    let fingerprint = Fingerprint(modem)
                    guard watched[key] != fingerprint else { continue }
                    let first = watched[key] == nil
                    watched[key] = fingerprint
                    await supervisor.observeExternal(Observation(
                        slot: slot, report: IdentityReport(modemManager: modem),
                        reason: first ? "ModemManager" : "ModemManager change"))
                }
                for key in watched.keys.sorted() where !seen.contains(key) {
                    watched[key] = nil
                    await supervisor.removeExternal(key: key, reason: "ModemManager removed the modem")
                }
            }
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            // client.stop() blocks (up to one D-Bus call): on a queue of its own, not the daemon's executor.
            DispatchQueue(label: "cellprovd.modemmanager-stop").async {
                client.stop()
                done.resume()
            }
        }
    }

    /// The slot of a ModemManager modem: its device's udev ID_PATH (what udev discovery keys the module by),
    /// else the device's sysfs path (udev discovery's own fallback). nil without a device path.
    func slotKey(for modem: ModemManagerModem) -> (key: String, usbSerial: String?)? {
        guard let device = modem.device, device.hasPrefix("/") else {
            logger.warning(
                "a ModemManager modem has no device path; not watched", metadata: ["object": "\(modem.objectPath)"])
            return nil
        }
        guard let udevice = udev?.device(syspath: device) else { return (device, nil) }
        let properties = udevice.properties
        let key = properties["ID_PATH"].flatMap { $0.isEmpty ? nil : $0 } ?? device
        let serial = properties["ID_SERIAL_SHORT"].flatMap { $0.isEmpty ? nil : $0 }
        return (key, serial)
    }
}

extension ModemManagerSnapshot {
    var isNoBus: Bool { if case .noBus = self { true } else { false } }
}
