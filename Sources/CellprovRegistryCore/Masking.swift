import CellprovCore
import Foundation

/// How the registry shows identifiers to operators who did not ask to reveal them: exactly as the CellprovCore
/// types print (`IMEI(TAC 35209900, ref 1a2b3c4d5e)`, `IMSI(262-01, ref …)`, `ICCID(894922, ref …)`), with
/// `Redaction.pseudonymizer` configured at start with the registry's key (`cellprov-registry serve` calls
/// `Redaction.configure` with `RegistryStore.pseudonymKey()`), so that a reference shown for a unit is the same
/// on every instance and can be searched. A value that does not validate shows as `IMEI(ref …)`; an absent one
/// as nil.
public enum Masking {
    public static func imei(_ value: String?) -> String? {
        value.map { IdentitySnapshot(imei: $0).redactedIMEI }
    }

    public static func imsi(_ value: String?) -> String? {
        value.map { IdentitySnapshot(imsi: $0).redactedIMSI }
    }

    public static func iccid(_ value: String?) -> String? {
        value.map { IdentitySnapshot(iccid: $0).redactedICCID }
    }

    /// `EID(89049032, ref …)`: the first 8 digits (telecom, country, card maker: shared by millions of cards) and
    /// the keyed reference.
    public static func eid(_ value: String?) -> String? {
        value.map { IdentitySnapshot(eid: $0).redactedEID }
    }

    /// A snapshot with each present value replaced by its masked form (for answers that keep the snapshot shape);
    /// the active SIM slot is no identifier and stays.
    public static func identity(_ snapshot: IdentitySnapshot) -> IdentitySnapshot {
        IdentitySnapshot(
            imei: imei(snapshot.imei), imsi: imsi(snapshot.imsi), iccid: iccid(snapshot.iccid), eid: eid(snapshot.eid),
            simSlot: snapshot.simSlot)
    }

    /// A flag's evidence with its identifiers masked (serials and event ids are not secret).
    public static func evidence(_ evidence: FlagEvidence) -> FlagEvidence {
        var masked = evidence
        masked.imei = imei(evidence.imei)
        masked.imsi = imsi(evidence.imsi)
        masked.iccid = iccid(evidence.iccid)
        masked.eid = eid(evidence.eid)
        masked.expectedIMEI = imei(evidence.expectedIMEI)
        masked.expectedEID = eid(evidence.expectedEID)
        return masked
    }
}
