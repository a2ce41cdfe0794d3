import CUdev
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Owner of the libudev monitor pointer.
final class MonitorHandle: @unchecked Sendable {
    // Only used on the monitor's serial queue, or under `Udev.context`'s lock, or in deinit.
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { udev_monitor_unref(pointer) }
}

/// A dispatch source; its `cancel()` is thread-safe, which is all that is used across threads.
struct SourceBox: @unchecked Sendable {
    let source: any DispatchSourceRead
}

/// uevents of ports from udevd ("udev" netlink group: after the rules ran, with their properties): ttys and WWAN
/// ports (subsystem "wwan", devtype "wwan_port"; the wwanN device's own events are dropped).
///
/// Driven by a DispatchSource on the monitor's socket: no polling. `events` has one consumer; it finishes
/// after `stop()`. An "add" event of a USB tty whose USB device is not readable yet, or not yet with its IDs
/// (umockdev, and a kernel racing udevd, can announce a child first) is re-read for up to `parentSettle` before
/// it is delivered, on the monitor's own queue so the order of events is kept. A tty counts as USB when its
/// syspath runs through a USB bus ("/usb"), which is how it can be recognised before its parents exist; a WWAN
/// port under a PCI bus ("/pci") waits likewise for its PCI device and its IDs.
public final class UdevMonitor: Sendable {
    public let events: AsyncStream<UdevDevice>

    private let udev: Udev
    private let handle: MonitorHandle
    private let queue = DispatchQueue(label: "cellprov.udev.monitor")
    private let source: SourceBox
    private let continuation: AsyncStream<UdevDevice>.Continuation
    private let stopped = Atomic<Bool>(false)

    /// How long an "add" without its USB parents is re-read before it is delivered as is.
    public static let parentSettle: Duration = .seconds(1)

    public init(udev: Udev) throws {
        let pointer = try udev.withContext { context -> OpaquePointer in
            guard let monitor = udev_monitor_new_from_netlink(context, "udev") else {
                throw UdevError("udev_monitor_new_from_netlink failed: \(String(cString: strerror(errno)))")
            }
            var rc = udev_monitor_filter_add_match_subsystem_devtype(monitor, "tty", nil)
            if rc >= 0 { rc = udev_monitor_filter_add_match_subsystem_devtype(monitor, "wwan", nil) }
            if rc >= 0 { rc = udev_monitor_enable_receiving(monitor) }
            if rc < 0 {
                udev_monitor_unref(monitor)
                throw UdevError("enabling the udev monitor failed: \(String(cString: strerror(-rc)))")
            }
            return monitor
        }
        let handle = MonitorHandle(pointer)
        let fd = udev_monitor_get_fd(pointer)
        // The receive must not block the queue if a wake-up was spurious.
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }

        let (stream, continuation) = AsyncStream.makeStream(of: UdevDevice.self, bufferingPolicy: .unbounded)
        self.events = stream
        self.continuation = continuation
        self.udev = udev
        self.handle = handle
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        self.source = SourceBox(source: source)
        let box = self.source

        source.setEventHandler { [udev, handle, continuation] in
            Self.drain(udev: udev, handle: handle, continuation: continuation)
        }
        // The handle (and with it the socket) lives until the source is cancelled.
        source.setCancelHandler { [handle] in _ = handle }
        continuation.onTermination = { _ in box.source.cancel() }
        source.resume()
    }

    /// Stops listening and finishes `events`. Idempotent.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        source.source.cancel()
        continuation.finish()
    }

    deinit { stop() }

    private static func drain(udev: Udev, handle: MonitorHandle, continuation: AsyncStream<UdevDevice>.Continuation) {
        while true {
            let received = udev.withContext { _ -> (UdevDevice, Bool)? in
                guard let device = udev_monitor_receive_device(handle.pointer) else { return nil }
                defer { udev_device_unref(device) }
                let action = UdevReading.string(udev_device_get_action(device))
                let value = UdevReading.read(device, action: action)
                return (value, value.subsystem == nil || UdevReading.isPort(value))
            }
            guard let (device, isPort) = received else { return }
            guard isPort else { continue }
            continuation.yield(settled(device, udev: udev))
        }
    }

    /// For an "add" of a tty under a USB device (or of a WWAN port under a PCI device) whose parents were not
    /// readable, re-read until they are.
    private static func settled(_ device: UdevDevice, udev: Udev) -> UdevDevice {
        guard device.action == "add" else { return device }
        let usbPending = !hasUSBParent(device) && device.syspath.contains("/usb")
        let pciPending = device.subsystem == "wwan" && !usbPending && !hasPCIParent(device)
            && device.syspath.contains("/pci")
        guard usbPending || pciPending else { return device }
        let step: Duration = .milliseconds(50)
        var waited: Duration = .zero
        while waited < parentSettle {
            usleep(50_000)
            waited += step
            if var fresh = udev.device(syspath: device.syspath),
                usbPending ? hasUSBParent(fresh) : hasPCIParent(fresh)
            {
                fresh.action = device.action
                // Keep the event's own properties where the fresh read has none (a device not in the db yet).
                if fresh.properties.isEmpty { fresh.properties = device.properties }
                return fresh
            }
        }
        return device
    }

    /// The USB device is there with the IDs the ports table keys on. A parent directory appears (with its subsystem
    /// link) before its attributes are written, so a parent without them is still being added.
    static func hasUSBParent(_ device: UdevDevice) -> Bool {
        guard let usb = device.usbDevice else { return false }
        return usb.attributes["idVendor"] != nil && usb.attributes["idProduct"] != nil
    }

    /// The PCI device is there with its four IDs (every PCI function has them; the table keys on the subsystem
    /// pair), for the same reason.
    static func hasPCIParent(_ device: UdevDevice) -> Bool {
        guard let pci = device.pciDevice else { return false }
        return ["vendor", "device", "subsystem_vendor", "subsystem_device"].allSatisfy { pci.attributes[$0] != nil }
    }
}
