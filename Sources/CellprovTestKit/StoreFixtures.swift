import CellprovCore
import Foundation

/// Test kit: the identities, observations and temporary directories the store and reporter suites share.
public enum FixtureValues {
    public static func luhn(_ payload: String) -> String { payload + String(Luhn.checkDigit(for: payload)!) }

    public static let imeiA = luhn("35693803564380")
    public static let imeiB = luhn("86144205219734")
    public static let imsi1 = "310260123456789"
    public static let imsi2 = "262019876543210"
    public static let iccid1 = luhn("894420005367105249")
    public static let iccid2 = luhn("891004234814455936")
    public static let slotA = "pci-0000:00:14.0-usb-0:1:1.0"
    public static let slotB = "pci-0000:00:14.0-usb-0:2:1.0"
}

/// One read of a slot, built through the validators (as the identity reader does).
public func fixtureObservation(
    slot: String = FixtureValues.slotA, usbSerial: String? = "SER-1", imei: String? = FixtureValues.imeiA,
    imsi: String? = FixtureValues.imsi1, iccid: String? = FixtureValues.iccid1, at date: Date = Date()
) -> Observation {
    var report = IdentityReport(port: "/dev/ttyUSB2", manufacturer: "Quectel", model: "EG25", revision: "EG25GR07")
    var problems: [Problem] = []
    if let imei {
        let v = IMEI.validate(imei)
        report.imei = v.value
        problems += v.problems
    }
    if let imsi {
        let v = IMSI.validate(imsi)
        report.imsi = v.value
        problems += v.problems
    }
    if let iccid {
        let v = ICCID.validate(iccid)
        report.iccid = v.value
        problems += v.problems
    }
    report.problems = problems
    return Observation(
        slot: ModuleSlot(key: slot, port: "/dev/ttyUSB2", usbSerial: usbSerial, origin: .udev), report: report,
        observedAt: date, reason: "test")
}

/// A temporary directory, removed with everything in it when the value goes away.
public final class TemporaryDirectory {
    public let path: String
    public init(prefix: String = "cellprov-test") throws {
        path = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    public func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Polls `condition` every 20 ms until it holds or `limit` passes; returns whether it held.
public func pollUntil(
    within limit: Duration = .seconds(5), _ condition: () throws -> Bool
) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while clock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try condition()
}
