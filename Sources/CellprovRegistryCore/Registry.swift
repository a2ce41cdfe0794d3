import CellprovCore
import CellprovEnrollmentAPI
import Foundation

/// cellprov-registry's pure domain (docs/registry.md): the vocabulary shared by its storage backends, its HTTP
/// layer and its alerts. No I/O here.
public enum Registry {
    public static let defaultDatabaseURL = "sqlite:///var/lib/cellprov-registry/registry.db"
}

/// An operator's role. `viewer` finds units and reads flags with identifiers masked; `admin` also reveals
/// identifiers, marks units lost or found, resolves flags, reconciles carrier exports, exports units and reads the
/// audit log.
public enum OperatorRole: String, Sendable, Codable, CaseIterable {
    case viewer
    case admin
}

/// Who a request comes from, once its credentials are checked.
public enum Principal: Sendable, Equatable {
    /// A device's bearer token (or client certificate): it may post events for this serial only.
    case device(serial: String)
    /// A factory station's token: it may post `manufactured` records, for any serial.
    case station(name: String)
    /// A person using the operator API or the pages.
    case `operator`(name: String, role: OperatorRole)
}

/// What a stored credential resolves to. A device token stays on record after the unit is marked lost (it is
/// revoked, not deleted), so that a later attempt with it is recognised as the lost unit's and raises
/// `lost_unit_seen`.
public struct CredentialRecord: Sendable, Equatable {
    public var principal: Principal
    /// When the credential was revoked (lost unit, replaced token); nil while it is valid.
    public var revokedAt: Date?

    public init(principal: Principal, revokedAt: Date? = nil) {
        self.principal = principal
        self.revokedAt = revokedAt
    }
}

/// Where an event came from.
public enum EventOrigin: String, Sendable, Codable {
    /// cellprovd on the unit.
    case device
    /// A factory station's `cellprov probe --report` (`manufactured` records).
    case factory
}
