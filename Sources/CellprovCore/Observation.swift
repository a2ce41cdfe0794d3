import FoundationEssentials

/// Where a module sits: its slot (the physical position: the USB device's ID_PATH, a PCIe module's PCI device as
/// "pci-0000:55:00.0", or a static port's path as written in the configuration), the AT port used, and the
/// module's USB serial number when it has one.
public struct ModuleSlot: Sendable, Hashable, CustomStringConvertible {
    /// `modemmanager`: a module ModemManager manages and cellprov has no AT session on (read over D-Bus).
    public enum Origin: String, Sendable, Codable { case udev, `static`, modemmanager }

    public var key: String
    public var port: String
    public var usbSerial: String?
    public var origin: Origin

    public init(key: String, port: String, usbSerial: String? = nil, origin: Origin) {
        self.key = key
        self.port = port
        self.usbSerial = usbSerial
        self.origin = origin
    }

    public var description: String { "slot \(key) (\(port))" }

    /// The channel reads of this slot come through.
    public var source: ObservationSource { origin == .modemmanager ? .modemmanager : .at }
}

/// One read of one slot: what the change detector compares with the slot's last record.
public struct Observation: Sendable, CustomStringConvertible {
    public var slot: ModuleSlot
    public var report: IdentityReport
    public var observedAt: Date
    /// What caused the read (start, udev add, SIM URC, SIGHUP, timer).
    public var reason: String

    public init(slot: ModuleSlot, report: IdentityReport, observedAt: Date = Date(), reason: String) {
        self.slot = slot
        self.report = report
        self.observedAt = observedAt
        self.reason = reason
    }

    public var description: String { "\(slot): \(report) [\(reason)]" }
}
