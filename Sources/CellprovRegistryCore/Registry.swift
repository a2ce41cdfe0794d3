import CellprovCore
import CellprovEnrollmentAPI

/// cellprov-registry's pure domain (docs/registry.md).
public enum Registry {
    public static let defaultDatabaseURL = "sqlite:///var/lib/cellprov-registry/registry.db"
}
