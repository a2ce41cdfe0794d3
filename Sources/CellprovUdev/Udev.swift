import CUdev
import CellprovCore
import FoundationEssentials
import Dispatch
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The udev edge: enumeration and monitoring of serial ports through libudev: ttys, and the WWAN framework's ports
// (subsystem "wwan", devtype "wwan_port": PCIe modules' control ports, character devices that are not ttys). The
// only module importing CUdev.
// Values leave this module as plain Swift structs (`UdevDevice`), read eagerly while the libudev
// objects are alive; nothing libudev-owned escapes.
//
// libudev objects are not thread-safe: every use of one `udev` context (and of the monitor) happens under a
// lock, so `Udev` and `UdevMonitor` can be shared between tasks.

/// A port (a tty or a WWAN port) as udev describes it, with the USB interface and USB device above it (if any),
/// or the PCI device above it (a PCIe module's WWAN port).
public struct UdevDevice: Sendable, Equatable {
    public var syspath: String
    public var devnode: String?
    public var subsystem: String?
    /// "wwan_port" for a WWAN port ("wwan_dev" for the modem device itself, which has no node).
    public var devtype: String?
    /// A WWAN port's sysfs `type` ("AT", "MBIM"...); nil for a tty, and on Linux 5.13 (no such attribute).
    public var wwanType: String?
    /// The nearest PCI device above a non-USB port (a PCIe module); nil for USB ports and when there is none.
    public var pciDevice: PciParent?
    /// "add", "remove", "change"... for monitor events; nil when enumerated.
    public var action: String?
    /// The tty's own udev properties (ID_PATH, ID_MM_*, CELLPROV_*...).
    public var properties: [String: String]
    /// The `usb_interface` parent's attributes: bInterfaceNumber, bInterfaceClass, bInterfaceSubClass,
    /// bInterfaceProtocol (and the driver's name under "driver" when known). Nil for non-USB ttys.
    public var usbInterface: [String: String]?
    /// The `usb_device` the tty's USB interface belongs to. Nil for non-USB ttys, for a remove event (the parent
    /// may be gone already), and while the interface or device is not there yet.
    public var usbDevice: UsbParent?

    public init(
        syspath: String, devnode: String? = nil, subsystem: String? = nil, action: String? = nil,
        properties: [String: String] = [:], usbInterface: [String: String]? = nil, usbDevice: UsbParent? = nil,
        devtype: String? = nil, wwanType: String? = nil, pciDevice: PciParent? = nil
    ) {
        self.syspath = syspath
        self.devnode = devnode
        self.subsystem = subsystem
        self.devtype = devtype
        self.wwanType = wwanType
        self.pciDevice = pciDevice
        self.action = action
        self.properties = properties
        self.usbInterface = usbInterface
        self.usbDevice = usbDevice
    }
}

/// The `usb_device` above a tty.
public struct UsbParent: Sendable, Equatable {
    public var syspath: String
    /// Its udev properties (ID_PATH, ID_SERIAL_SHORT, ID_VENDOR_ID...).
    public var properties: [String: String]
    /// Its sysfs attributes: idVendor, idProduct, serial, manufacturer, product, bDeviceClass, busnum, devnum.
    public var attributes: [String: String]

    public init(syspath: String, properties: [String: String] = [:], attributes: [String: String] = [:]) {
        self.syspath = syspath
        self.properties = properties
        self.attributes = attributes
    }
}

/// The PCI device above a PCIe module's WWAN port.
public struct PciParent: Sendable, Equatable {
    public var syspath: String
    /// vendor, device, subsystem_vendor, subsystem_device, class (as sysfs spells them: "0x1eac").
    public var attributes: [String: String]

    public init(syspath: String, attributes: [String: String] = [:]) {
        self.syspath = syspath
        self.attributes = attributes
    }
}

/// An error of the udev edge. Its description names the failing call, never a device identity.
public struct UdevError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Owner of the libudev context pointer; only touched under `Udev.context`'s lock.
/// A libudev context. Enumerates ttys; `UdevMonitor` listens for their uevents.
///
/// `@unchecked Sendable`: the context pointer is only used while `lock` is held (libudev is not thread-safe).
public final class Udev: @unchecked Sendable {
    private let pointer: OpaquePointer
    private let lock = NIOLock()

    public init() throws {
        guard let pointer = udev_new() else {
            throw UdevError("udev_new failed: \(String(cString: strerror(errno)))")
        }
        self.pointer = pointer
    }

    deinit { udev_unref(pointer) }

    /// Runs `body` with the libudev context, under the lock (the monitor shares the context).
    func withContext<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
        try lock.withLock { try body(pointer) }
    }

    /// Every port with a device node: subsystem "tty", and WWAN ports (subsystem "wwan", devtype "wwan_port"),
    /// sorted by syspath.
    public func enumeratePorts() -> [UdevDevice] {
        withContext { pointer -> [UdevDevice] in
            guard let enumerate = udev_enumerate_new(pointer) else { return [] }
            defer { udev_enumerate_unref(enumerate) }
            // Subsystem matches are alternatives: ttys or WWAN devices (the wwanN device has no node: dropped below).
            udev_enumerate_add_match_subsystem(enumerate, "tty")
            udev_enumerate_add_match_subsystem(enumerate, "wwan")
            udev_enumerate_scan_devices(enumerate)
            var devices: [UdevDevice] = []
            var entry = udev_enumerate_get_list_entry(enumerate)
            while let current = entry {
                defer { entry = udev_list_entry_get_next(current) }
                guard let name = udev_list_entry_get_name(current),
                    let device = udev_device_new_from_syspath(pointer, name)
                else { continue }
                defer { udev_device_unref(device) }
                let value = UdevReading.read(device, action: nil)
                if value.devnode != nil && UdevReading.isPort(value) { devices.append(value) }
            }
            return devices.sorted { $0.syspath < $1.syspath }
        }
    }

    /// Re-reads one device by syspath (nil if it is not there).
    public func device(syspath: String) -> UdevDevice? {
        withContext { pointer -> UdevDevice? in
            guard let device = udev_device_new_from_syspath(pointer, syspath) else { return nil }
            defer { udev_device_unref(device) }
            return UdevReading.read(device, action: nil)
        }
    }
}

/// Reading libudev devices into values. Callers hold the context's lock.
enum UdevReading {
    static let interfaceAttributes = ["bInterfaceNumber", "bInterfaceClass", "bInterfaceSubClass", "bInterfaceProtocol"]
    static let usbDeviceAttributes = [
        "idVendor", "idProduct", "serial", "manufacturer", "product", "bDeviceClass", "bDeviceSubClass",
        "bDeviceProtocol", "bcdDevice", "busnum", "devnum",
    ]

    static let pciAttributes = ["vendor", "device", "subsystem_vendor", "subsystem_device", "class"]

    /// A tty, or a WWAN port (not the wwanN device). A remove event may lack the devtype: its name decides then.
    static func isPort(_ value: UdevDevice) -> Bool {
        switch value.subsystem {
        case "tty": return true
        case "wwan":
            if let devtype = value.devtype { return devtype == "wwan_port" }
            return value.devnode != nil
        default: return false
        }
    }

    static func read(_ device: OpaquePointer, action: String?) -> UdevDevice {
        var value = UdevDevice(
            syspath: string(udev_device_get_syspath(device)) ?? "",
            devnode: string(udev_device_get_devnode(device)),
            subsystem: string(udev_device_get_subsystem(device)),
            action: action,
            properties: properties(udev_device_get_properties_list_entry(device)),
            devtype: string(udev_device_get_devtype(device))
        )
        if value.subsystem == "wwan" {
            // Not on remove: the attribute is gone with the device (the classifier falls back to the name).
            if action != "remove", let type = string(udev_device_get_sysattr_value(device, "type")) {
                value.wwanType = trimmed(type)
            }
        }
        // A virtual device (the 63 virtual consoles, ptmx, n_gsm's gsmttys) has no USB or PCI device above it:
        // not walking up saves libudev about half of its system calls per such tty (on a typical gateway most of
        // the ttys that enumeration reads; docs/performance.md). Its properties (udev rules) were read above.
        if value.syspath.contains("/devices/virtual/") { return value }
        // The USB device is the interface's parent. Not "the nearest usb_device above the tty": while a device
        // is being added (its tty announced before its parents exist), that would be the root hub.
        if let interface = udev_device_get_parent_with_subsystem_devtype(device, "usb", "usb_interface") {
            var attributes = sysattrs(interface, names: interfaceAttributes)
            if let driver = string(udev_device_get_driver(interface)) { attributes["driver"] = driver }
            value.usbInterface = attributes
            // libudev's parent is the nearest existing ancestor: while the module's usb_device is not there yet
            // that is the root hub. Only the interface's own directory parent counts.
            let interfacePath = string(udev_device_get_syspath(interface)) ?? ""
            let expectedParent = PathText.deletingLastComponent(interfacePath)
            if let usb = udev_device_get_parent(interface),
                string(udev_device_get_subsystem(usb)) == "usb", string(udev_device_get_devtype(usb)) == "usb_device",
                string(udev_device_get_syspath(usb)) == expectedParent
            {
                value.usbDevice = UsbParent(
                    syspath: string(udev_device_get_syspath(usb)) ?? "",
                    properties: properties(udev_device_get_properties_list_entry(usb)),
                    attributes: sysattrs(usb, names: usbDeviceAttributes)
                )
            }
        } else if value.subsystem == "wwan", action != "remove",
            let pci = udev_device_get_parent_with_subsystem_devtype(device, "pci", nil),
            let pciSyspath = string(udev_device_get_syspath(pci)),
            let address = PCIAddress.nearest(in: value.syspath), pciSyspath.hasSuffix("/\(address)")
        {
            // A PCIe module: the nearest PCI device is the module (its address is the slot). libudev's parent is the
            // nearest one that exists: while the module's own PCI device is not there yet (its ports announced
            // first), that is the bridge above it. Only the device whose address is in the port's path counts.
            value.pciDevice = PciParent(syspath: pciSyspath, attributes: sysattrs(pci, names: pciAttributes))
        }
        return value
    }

    static func string(_ pointer: UnsafePointer<CChar>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    static func properties(_ first: OpaquePointer?) -> [String: String] {
        var result: [String: String] = [:]
        var entry = first
        while let current = entry {
            if let name = udev_list_entry_get_name(current) {
                result[String(cString: name)] = string(udev_list_entry_get_value(current)) ?? ""
            }
            entry = udev_list_entry_get_next(current)
        }
        return result
    }

    /// Named sysfs attributes, trailing whitespace/newline trimmed (sysfs ends values with "\n").
    static func sysattrs(_ device: OpaquePointer, names: [String]) -> [String: String] {
        var result: [String: String] = [:]
        for name in names {
            guard let raw = string(udev_device_get_sysattr_value(device, name)) else { continue }
            result[name] = trimmed(raw)
        }
        return result
    }

    static func trimmed(_ text: String) -> String {
        var scalars = Substring(text)
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        return String(scalars)
    }
}
