import FoundationEssentials

/// Turns one observation of a slot into identity events and the slot's next record. Pure: no I/O, no clock
/// (the time is `now`), no random ids (`makeID`).
///
/// The rules, in the order they apply. Throughout, a read never raises an alarm on what it could *not* read:
/// an event needs a value that was read and differs, or a positive statement by the modem (no SIM).
///
/// 1. **Port failure.** A read with a problem on the port field (`port_busy`, `port_unavailable`,
///    `port_closed`, `no_response`, the read's `timeout`) tells nothing about identity, even if some values
///    were read before the port went away: no event, nothing stored (`record` nil).
///
/// 2. **What was read.** A value refused by a validator with an error other than `*_missing` is *invalid*
///    (IMEI: `imei_format`, `imei_length`, `imei_is_imeisv`, `imei_checksum`, `imei_placeholder`; ICCID:
///    `iccid_format`, `iccid_length`, `iccid_prefix`; IMSI: `imsi_format`, `imsi_length`; any future error of
///    those fields too). A *missing* value (`imei_missing`, a command that timed out, a SIM that is locked,
///    busy or failed) is only unknown: it never causes an event by itself. The IMEI is usable when read and not
///    invalid; a SIM value is usable when read (invalid SIM values are not in the report).
///
/// 3. **No usable IMEI.** Without it the read cannot be tied to the slot's identity: no event except
///    `identity_invalid` (rule 9). A slot whose module never answers an IMEI stays unenrolled; its problems are
///    in the daemon's logs and status, not events. Such a read creates no record for a new slot (unless it
///    reports an invalid identity).
///
/// 4. **Enrollment.** On a slot not yet enrolled, the first read with a full valid identity
///    (``IdentityReport/isValid``: IMEI, IMSI and ICCID, no error problem; warnings such as `iccid_checksum` or
///    `imsi_test_network` are carried in the event) gives `enrolled` (info). Until then reads are tracked in the
///    record silently (IMEI, readable SIM values), with no SIM or IMEI change events: the backend knows nothing
///    of the slot to compare with. A slot whose SIM stays PIN-locked is therefore not enrolled until unlocked.
///
/// 5. **IMEI change** (enrolled slot, usable IMEI differing from the record's): `imei_changed` with `previous`.
///    `usbSerialChanged` compares the recorded and the observed USB serial: equal → false, severity critical
///    (the same module reports a new IMEI: tampering or a rewritten NV); different, including present on one
///    side only → true, warning (a service swap); absent on both (static UART port, or modules without serial)
///    → nil and critical: the change cannot be attributed to a swap, so it is treated as the worse case. The
///    event's identity is the new IMEI with the SIM values of the same read; a SIM difference in the same read
///    is not reported again as `sim_changed`. Module info is then taken as read (nothing kept from the old
///    module).
///
/// 6. **SIM, same IMEI** (enrolled slot):
///    - `sim_not_inserted` after a SIM was present → `sim_removed` (warning), `previous` = the record's
///      identity. The record keeps the removed SIM's values, with `simPresent` false.
///    - A SIM read whose values differ from the record's, comparing only the fields read on both sides (the
///      ICCID of a PIN/PUK-locked SIM; a missing IMSI is never a difference) → `sim_changed` (warning:
///      re-enrollment), whether or not the SIM had been removed first. A SIM read where the record has none
///      (enrolled, then an IMEI change seen without SIM) is also `sim_changed`. The new identity holds only
///      what was read: an IMSI unreadable because of a PIN is null in the event; once the IMSI can be read
///      (PIN entered), a second `sim_changed` carries the completed identity (previous: the one with the null
///      IMSI), so the backend's re-enrollment gets the subscription.
///    - The same SIM read after a removal → `sim_inserted` (info); its identity is the record's, completed.
///    - The same SIM still in → nothing; an IMSI newly readable (PIN entered) where the record has none →
///      `sim_changed` with the completed identity (see above).
///    - A SIM state the modem cannot tell (`sim_failure`, `sim_wrong`, `sim_busy`, locked with no ICCID, a
///      timed-out command) → nothing, record's SIM part unchanged.
///    - Only IMSI known on one side and only ICCID on the other: nothing comparable → nothing.
///    - **Which kind of SIM change** (a differing SIM read, the card and slot compared only where read on both
///      sides; an EID or slot read on one side only is unknown, never a difference):
///      - the active SIM slot differs → `sim_slot_switched` (notice): failover to, or a choice of, the other
///        slot's card; whatever its EID and ICCID;
///      - the same EID → `profile_switched` (info): a remote profile change on the same eUICC;
///      - anything else → `sim_changed` (warning): another EID, no EID on one side or both (a plain SIM, or an
///        EID that could not be read: a failed read is never taken for a profile switch);
///      - the *same* ICCID with another EID in the same slot → `profile_clone_suspected` (critical): genuine cards
///        cannot do that (a misread or a cloned profile). The record keeps the new card.
///    - An EID or slot read for the first time on an unchanged SIM is recorded without an event.
///
/// 7. **Duplicate IMEI.** When the slot's usable IMEI is new *for this slot* (first IMEI recorded, or an IMEI
///    change, whether enrolled or not) and equals the recorded IMEI of other slots in `others` (slot keys
///    differing from this one): `duplicate_imei` (critical: the fleet cannot tell these modules apart, the
///    network may refuse them, and a human must act) with `otherSlots`, after the `enrolled` or `imei_changed`
///    event of the same read. Emitted once when it starts, by the slot whose IMEI became the duplicate: a slot
///    whose IMEI is unchanged never emits it, so restarts and re-reads do not repeat it. The caller passes the
///    records of slots currently present.
///
/// 8. **Module info.** Manufacturer and model update the record without an event; a value missing from a read
///    (nil, or only blanks) keeps the recorded one when the module is the same (same USB serial and IMEI not
///    changed). **Firmware:** on an enrolled slot whose IMEI is unchanged (rule 6's case), a revision read that
///    differs from the recorded one, both non-blank, gives `firmware_changed` (info) with `previousRevision` =
///    the recorded revision, after any event of rule 6; its identity is the slot's identity after that rule (the
///    IMEI alone when no SIM is in), `previous` is nil. A
///    revision not read, or read for the first time (none recorded), is recorded without an event; so is any
///    revision before enrollment or in a read whose IMEI changed (`imei_changed` carries the new module). The
///    same identity read again gives no event.
///
/// 9. **Invalid identity.** A read with invalid values (rule 2) gives `identity_invalid`, after any event of
///    rules 5 to 7 (a usable IMEI is still compared: a module swap with a bad SIM still reports the swap),
///    carrying all the read's problems and, as `identity`, the values as read (an IMEI with a bad check digit
///    or a placeholder is there; values refused outright are null). `previous` is the record's identity when
///    the slot is enrolled. It is never enrolled. It is not sent again while the same values are read
///    (``SlotRecord/lastInvalid``, compared as a whole snapshot); a read with a usable IMEI and no invalid value
///    clears it, so an invalid identity that comes back after a clean read is reported again. Severity:
///    critical when the IMEI is invalid on an enrolled slot whose module is the same (same USB serial, or none
///    on both): a module that had a good IMEI reports a bad one; warning otherwise (a new board with a
///    placeholder IMEI, a bad ICCID).
///
/// 10. **Numbering and time.** The events of one observation get the record's sequence + 1, + 2, ... in order;
///    the record keeps the last. Every event's `occurredAt` and the record's `updatedAt` are `now` (pass the
///    observation's time to date events by the read). The record is returned (with `updatedAt` = `now`) only
///    when it differs from `previous` other than by `updatedAt`; otherwise `record` is nil.
public enum ChangeDetector {
    /// "Not read" codes: an unknown value, not a wrong one.
    static let missingCodes: Set<Problem.Code> = [.imeiMissing, .imsiMissing, .iccidMissing]
    static let identityFields: Set<ProblemField> = [.imei, .imsi, .iccid]

    /// True when the read failed at the port: it says nothing about identity (rule 1).
    public static func isPortFailure(_ report: IdentityReport) -> Bool {
        report.problems.contains { $0.field == .port }
    }

    /// The problems that make the read identity invalid (rule 2).
    public static func invalidProblems(in report: IdentityReport) -> [Problem] {
        report.problems.filter {
            $0.severity == .error && identityFields.contains($0.field) && !missingCodes.contains($0.code)
        }
    }

    /// What a read says about the SIM.
    enum SIMReading: Equatable {
        /// The modem says no SIM is inserted.
        case absent
        /// At least one SIM value was read (with the card's EID and the active slot when known).
        case present(imsi: String?, iccid: String?, eid: String?, slot: Int?)
        /// Cannot tell (locked with nothing readable, failed, busy, timed out).
        case unknown

        init(_ report: IdentityReport) {
            if report.problems.contains(where: { $0.code == .simNotInserted }) {
                self = .absent
            } else if report.imsi != nil || report.iccid != nil {
                self = .present(
                    imsi: report.imsi?.unredacted, iccid: report.iccid?.unredacted, eid: report.eid?.unredacted,
                    slot: report.simSlot)
            } else {
                self = .unknown
            }
        }
    }

    /// An event before numbering.
    struct Draft {
        var type: IdentityEventType
        var severity: EventSeverity
        var identity: IdentitySnapshot
        var previous: IdentitySnapshot? = nil
        var usbSerialChanged: Bool? = nil
        var otherSlots: [String]? = nil
        var previousRevision: String? = nil
    }

    /// A revision as read, or nil when it is missing or only blanks (rule 8).
    static func usableRevision(_ revision: String?) -> String? {
        guard let revision, revision.unicodeScalars.contains(where: { !$0.properties.isWhitespace }) else {
            return nil
        }
        return revision
    }

    /// `others`: the current records of the device's other slots (for duplicate_imei). `makeID` gives each new
    /// event its UUID, in event order.
    public static func evaluate(
        previous: SlotRecord?, observation: Observation, others: [SlotRecord], now: Date, makeID: () -> UUID
    ) -> ChangeResult {
        let report = observation.report
        // Rule 1.
        if isPortFailure(report) { return ChangeResult() }

        let key = observation.slot.key
        let invalid = invalidProblems(in: report)
        let imeiInvalid = invalid.contains { $0.field == .imei }
        let imei = imeiInvalid ? nil : report.imei?.unredacted

        // Rule 3: nothing learned and nothing to remember.
        if previous == nil && imei == nil && invalid.isEmpty { return ChangeResult() }

        var observedModule = ModuleInfo(slot: observation.slot, report: report)
        observedModule.revision = usableRevision(observedModule.revision)
        var record = previous ?? SlotRecord(slot: key, module: observedModule, updatedAt: now)
        record.slot = key
        let recordedIMEI = previous?.identity.imei
        let imeiIsNew = imei != nil && imei != recordedIMEI
        let sameModule = previous.map { $0.module.usbSerial == observation.slot.usbSerial } ?? false

        // Rule 8 (module info): fill gaps from the record only for the same module.
        if let previous, sameModule, !(imeiIsNew && recordedIMEI != nil) {
            record.module = ModuleInfo(
                usbSerial: observedModule.usbSerial,
                manufacturer: observedModule.manufacturer ?? previous.module.manufacturer,
                model: observedModule.model ?? previous.module.model,
                revision: observedModule.revision ?? previous.module.revision, source: observedModule.source)
        } else {
            record.module = observedModule
        }

        var drafts: [Draft] = []
        if let imei {
            let sim = SIMReading(report)
            var readSIM: (imsi: String?, iccid: String?, eid: String?, slot: Int?) = (nil, nil, nil, nil)
            if case .present(let imsi, let iccid, let eid, let slot) = sim { readSIM = (imsi, iccid, eid, slot) }
            let current = IdentitySnapshot(
                imei: imei, imsi: readSIM.imsi, iccid: readSIM.iccid, eid: readSIM.eid, simSlot: readSIM.slot)

            if let previous, previous.enrolled, let known = previous.identity.imei {
                if known != imei {
                    // Rule 5.
                    let before = previous.module.usbSerial
                    let after = observation.slot.usbSerial
                    let serialChanged: Bool? = (before == nil && after == nil) ? nil : before != after
                    drafts.append(Draft(
                        type: .imeiChanged, severity: serialChanged == true ? .warning : .critical,
                        identity: current, previous: previous.identity, usbSerialChanged: serialChanged))
                    record.identity = current
                    record.simPresent = sim != .absent && sim != .unknown
                } else {
                    // Rule 6.
                    compareSIM(sim, imei: imei, previous: previous, record: &record, drafts: &drafts)
                    // Rule 8 (firmware).
                    if let before = usableRevision(previous.module.revision),
                        let after = observedModule.revision, after != before
                    {
                        // The slot as it stands after rule 6: without the SIM values of a SIM taken out.
                        let identity = record.simPresent ? record.identity : IdentitySnapshot(imei: imei)
                        drafts.append(Draft(
                            type: .firmwareChanged, severity: .info, identity: identity, previousRevision: before))
                    }
                }
            } else if report.isValid {
                // Rule 4.
                drafts.append(Draft(type: .enrolled, severity: .info, identity: current))
                record.identity = current
                record.simPresent = true
                record.enrolled = true
            } else {
                // Rule 4: tracked silently before enrollment.
                record.identity = current
                record.simPresent = sim != .absent && sim != .unknown
            }

            // Rule 7.
            if imeiIsNew {
                let duplicates = Set(others.filter { $0.slot != key && $0.identity.imei == imei }.map(\.slot))
                if !duplicates.isEmpty {
                    drafts.append(Draft(
                        type: .duplicateIMEI, severity: .critical, identity: current,
                        otherSlots: duplicates.sorted()))
                }
            }
        }

        // Rule 9.
        if !invalid.isEmpty {
            let read = IdentitySnapshot(report)
            if read != previous?.lastInvalid {
                let enrolled = previous?.enrolled ?? false
                drafts.append(Draft(
                    type: .identityInvalid,
                    severity: imeiInvalid && enrolled && sameModule ? .critical : .warning,
                    identity: read, previous: enrolled ? previous?.identity : nil))
            }
            record.lastInvalid = read
        } else if imei != nil {
            record.lastInvalid = nil
        }

        // Rule 10.
        let base = previous?.sequence ?? 0
        let events = drafts.enumerated().map { index, d in
            IdentityEvent(
                id: makeID(), type: d.type, slot: key, sequence: base + index + 1, occurredAt: now,
                severity: d.severity, module: record.module, identity: d.identity, previous: d.previous,
                usbSerialChanged: d.usbSerialChanged, otherSlots: d.otherSlots, previousRevision: d.previousRevision,
                problems: report.problems)
        }
        record.sequence = base + events.count
        if let previous {
            record.updatedAt = previous.updatedAt
            if record == previous { return ChangeResult(events: events, record: nil) }
        }
        record.updatedAt = now
        return ChangeResult(events: events, record: record)
    }

    /// Rule 6: the SIM of an enrolled slot whose IMEI is unchanged.
    static func compareSIM(
        _ sim: SIMReading, imei: String, previous: SlotRecord, record: inout SlotRecord, drafts: inout [Draft]
    ) {
        let known = previous.identity
        switch sim {
        case .unknown:
            return
        case .absent:
            if previous.simPresent {
                drafts.append(Draft(
                    type: .simRemoved, severity: .warning, identity: IdentitySnapshot(imei: imei), previous: known))
                record.simPresent = false
            }
        case .present(let imsi, let iccid, let eid, let slot):
            let iccidComparable = iccid != nil && known.iccid != nil
            let imsiComparable = imsi != nil && known.imsi != nil
            let differs = (iccidComparable && iccid != known.iccid) || (imsiComparable && imsi != known.imsi)
            let slotSwitched = slot != nil && known.simSlot != nil && slot != known.simSlot
            let sameCard = eid != nil && eid == known.eid
            let otherCard = eid != nil && known.eid != nil && eid != known.eid
            if differs || !known.hasSIM || slotSwitched {
                let identity = IdentitySnapshot(imei: imei, imsi: imsi, iccid: iccid, eid: eid, simSlot: slot)
                let (type, severity): (IdentityEventType, EventSeverity) =
                    slotSwitched && known.hasSIM
                    ? (.simSlotSwitched, .notice)
                    : sameCard && known.hasSIM ? (.profileSwitched, .info) : (.simChanged, .warning)
                drafts.append(Draft(type: type, severity: severity, identity: identity, previous: known))
                record.identity = identity
                record.simPresent = true
            } else if otherCard && iccidComparable {
                // The same ICCID on another card: no genuine eUICC does that.
                let identity = IdentitySnapshot(
                    imei: imei, imsi: imsi ?? known.imsi, iccid: iccid, eid: eid, simSlot: slot ?? known.simSlot)
                drafts.append(Draft(
                    type: .profileCloneSuspected, severity: .critical, identity: identity, previous: known))
                record.identity = identity
                record.simPresent = true
            } else if iccidComparable || imsiComparable {
                let identity = IdentitySnapshot(
                    imei: imei, imsi: imsi ?? known.imsi, iccid: iccid ?? known.iccid, eid: eid ?? known.eid,
                    simSlot: slot ?? known.simSlot)
                if !previous.simPresent {
                    drafts.append(Draft(type: .simInserted, severity: .info, identity: identity, previous: known))
                } else if known.imsi == nil, imsi != nil {
                    // The SIM the backend got with a null IMSI (swapped while PIN-locked) is now unlocked: the
                    // re-enrollment it asked for needs the subscription, so the completed identity is sent.
                    drafts.append(Draft(type: .simChanged, severity: .warning, identity: identity, previous: known))
                }
                record.identity = identity
                record.simPresent = true
            }
        }
    }
}
