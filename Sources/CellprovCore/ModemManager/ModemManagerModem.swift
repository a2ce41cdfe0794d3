import FoundationEssentials

/// Which channel an observation came through: cellprov's own AT session on the module's port, or
/// ModemManager's D-Bus API for a module whose AT port ModemManager owns (or that has none: MBIM/QMI-only).
public enum ObservationSource: String, Sendable, Codable, CaseIterable {
    case at
    case modemmanager
}

/// One modem as ModemManager publishes it on D-Bus (org.freedesktop.ModemManager1.Modem, .Modem3gpp, .Sim),
/// as plain values: the sd-bus client in CellprovSystemd fills it, ``IdentityReport/init(modemManager:)`` turns
/// it into a report through the same validation as an AT read.
///
/// It holds raw identifiers (the D-Bus strings as published), so it prints them only as keyed pseudonyms, like
/// ``IdentitySnapshot``; the digits reach the data channels only through the validated identity types.
public struct ModemManagerModem: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// MMModemState values this code looks at (ModemManager's MMModemState enum).
    public enum State {
        public static let failed: Int32 = -1
        public static let unknown: Int32 = 0
        public static let initializing: Int32 = 1
        public static let locked: Int32 = 2
    }

    /// MMModemLock values (Modem.UnlockRequired).
    public enum Lock {
        public static let none: UInt32 = 1
        public static let simPIN: UInt32 = 2
        public static let simPUK: UInt32 = 4
    }

    /// MMModemStateFailedReason values (Modem.StateFailedReason).
    public enum FailedReason {
        public static let simMissing: UInt32 = 2
        public static let simError: UInt32 = 3
    }

    /// The modem object's path (/org/freedesktop/ModemManager1/Modem/N); changes when ModemManager re-probes.
    public var objectPath: String
    /// Modem.Device: the physical device's sysfs path (a USB device for USB modules): stays the same across
    /// re-probes and ModemManager restarts, so it (through udev's ID_PATH) is the slot.
    public var device: String?
    /// Modem.EquipmentIdentifier: the IMEI on 3GPP modems (the MEID/ESN on others).
    public var equipmentIdentifier: String?
    /// Modem.Modem3gpp.Imei.
    public var imei: String?
    public var manufacturer: String?
    public var model: String?
    public var revision: String?
    /// Modem.State (MMModemState).
    public var state: Int32?
    /// Modem.StateFailedReason.
    public var failedReason: UInt32?
    /// Modem.UnlockRequired (MMModemLock).
    public var unlockRequired: UInt32?
    /// Modem.PrimaryPort, e.g. "ttyUSB2" or "cdc-wdm0".
    public var primaryPort: String?
    /// Modem.Ports' names (ttys, cdc-wdm, net interfaces).
    public var ports: [String]
    /// Modem.Sim, nil when ModemManager publishes "/" (no SIM object).
    public var simPath: String?
    /// Sim.Imsi and Sim.SimIdentifier (the ICCID) of the object at ``simPath``.
    public var simIMSI: String?
    public var simICCID: String?
    /// Sim.Eid (ModemManager 1.16+): the eUICC's EID, empty for a plain SIM or when ModemManager cannot read it
    /// (it reads it over MBIM and QMI, not over AT).
    public var simEID: String?
    /// Sim.SimType (1.20+, MMSimType): 0 unknown, 1 physical, 2 eSIM.
    public var simType: UInt32?
    /// Modem.PrimarySimSlot (1.16+): the active slot, 1-based; 0 when the modem does not support several.
    public var primarySimSlot: UInt32?
    /// Modem.SimSlots (1.16+): one SIM object path per slot ("/" for an empty slot); empty when not supported.
    public var simSlots: [String] = []

    /// MMSimType values.
    public enum SimType {
        public static let physical: UInt32 = 1
        public static let esim: UInt32 = 2
    }

    public init(
        objectPath: String, device: String? = nil, equipmentIdentifier: String? = nil, imei: String? = nil,
        manufacturer: String? = nil, model: String? = nil, revision: String? = nil, state: Int32? = nil,
        failedReason: UInt32? = nil, unlockRequired: UInt32? = nil, primaryPort: String? = nil,
        ports: [String] = [], simPath: String? = nil, simIMSI: String? = nil, simICCID: String? = nil
    ) {
        self.objectPath = objectPath
        self.device = device
        self.equipmentIdentifier = equipmentIdentifier
        self.imei = imei
        self.manufacturer = manufacturer
        self.model = model
        self.revision = revision
        self.state = state
        self.failedReason = failedReason
        self.unlockRequired = unlockRequired
        self.primaryPort = primaryPort
        self.ports = ports
        self.simPath = simPath
        self.simIMSI = simIMSI
        self.simICCID = simICCID
    }

    /// ModemManager has finished its first look at the modem, so what it publishes is what it read, not the
    /// placeholders of an object still being set up: the modem failed (a missing or broken SIM is a failure
    /// with a reason), or it is locked or further and has a SIM object. A modem past initialisation without a
    /// SIM object and without failing is in between (no SIM state known yet): reporting it would raise a
    /// `sim_removed` that is not one.
    public var isReadyToReport: Bool {
        guard let state else { return false }
        if state == State.failed { return true }
        return state >= State.locked && simPath != nil
    }

    /// The port named in the report: the primary port's device node (a tty or cdc-wdm), else the object path.
    public var portDescription: String {
        if let primaryPort, !primaryPort.isEmpty { return "/dev/\(primaryPort)" }
        return objectPath
    }

    /// The IMEI as ModemManager gives it: Modem3gpp.Imei, else the equipment identifier.
    public var imeiText: String? {
        if let imei, !IdentifierText.trimmed(imei).isEmpty { return imei }
        return equipmentIdentifier
    }

    public var description: String {
        let identity = IdentitySnapshot(imei: imeiText, imsi: simIMSI, iccid: simICCID, eid: simEID)
        return "ModemManager modem \(objectPath) (state \(state.map(String.init) ?? "-")): \(identity)"
    }

    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description], displayStyle: .struct) }
}

extension IdentityReport {
    /// A report from what ModemManager publishes, validated exactly as an AT read's answers are: the same
    /// validators, the same problem codes, the same "keep invalid but read" rules. No AT command was sent by
    /// cellprov (``commandCount`` is 0).
    public init(modemManager m: ModemManagerModem) {
        self.init(
            port: m.portDescription, manufacturer: Self.nonEmpty(m.manufacturer), model: Self.nonEmpty(m.model),
            revision: Self.nonEmpty(m.revision))
        var problems: [Problem] = []
        let failed = m.state == ModemManagerModem.State.failed

        if let raw = m.imeiText, !IdentifierText.trimmed(raw).isEmpty {
            let v = IMEI.validate(raw)
            imei = v.value
            problems += v.problems
        } else {
            problems.append(Problem(.imeiMissing, field: .imei, message: "ModemManager published no IMEI"))
        }

        if m.unlockRequired == ModemManagerModem.Lock.simPIN {
            problems.append(
                Problem(.simPINRequired, field: .sim, message: "the SIM waits for its PIN; the IMSI cannot be read"))
        } else if m.unlockRequired == ModemManagerModem.Lock.simPUK {
            problems.append(Problem(.simPUKRequired, field: .sim, message: "the SIM is blocked and waits for its PUK"))
        } else if failed && m.failedReason == ModemManagerModem.FailedReason.simError {
            problems.append(Problem(.simFailure, field: .sim, message: "the SIM card failed"))
        } else if m.simPath == nil
            || (failed && m.failedReason == ModemManagerModem.FailedReason.simMissing)
        {
            problems.append(Problem(.simNotInserted, field: .sim, message: "no SIM card is inserted"))
        } else {
            if let raw = Self.nonEmpty(m.simIMSI) {
                let v = IMSI.validate(raw)
                imsi = v.value
                problems += v.problems
            } else {
                problems.append(Problem(.imsiMissing, field: .imsi, message: "ModemManager published no IMSI"))
            }
            if let raw = Self.nonEmpty(m.simICCID) {
                let v = ICCID.validate(raw)
                iccid = v.value
                problems += v.problems
            } else {
                problems.append(Problem(.iccidMissing, field: .iccid, message: "ModemManager published no ICCID"))
            }
            // The card: Sim.Eid when published; a physical SIM (SimType 1) without one is a plain UICC. An empty
            // Eid otherwise says nothing (ModemManager reads it over MBIM/QMI only).
            if let raw = Self.nonEmpty(m.simEID) {
                let v = EID.validate(raw)
                eid = v.value
                eidStatus = v.value == nil ? .invalid : .read
                problems += v.problems
            } else if m.simType == ModemManagerModem.SimType.physical {
                eidStatus = .noEUICC
            }
        }
        // The active slot, when the modem has several (PrimarySimSlot is 0 otherwise).
        if let slot = m.primarySimSlot, slot > 0, m.simSlots.count > 1 {
            simSlot = Int(slot)
        }
        self.problems = problems
    }

    static func nonEmpty(_ s: String?) -> String? {
        guard let s else { return nil }
        let t = s.trimmingWhitespace(newlines: true)
        return t.isEmpty ? nil : t
    }
}
