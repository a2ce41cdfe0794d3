import CellprovCore

/// The enrollment API's version as the wire types here implement it (docs/enrollment-api.yaml `info.version`).
public enum EnrollmentAPI {
    public static let version = "0.1.0"
}
