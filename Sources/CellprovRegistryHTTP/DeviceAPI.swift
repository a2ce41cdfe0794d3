import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOSSL

/// `POST /v1/enrollments` (docs/enrollment-api.yaml): who may post what, in the order of the checks.
struct DeviceAPI {
    let state: RegistryState

    func register(on router: Router<RegistryRequestContext>) {
        router.post("/v1/enrollments") { request, context in
            await enroll(request, context)
        }
    }

    private func refused(_ status: HTTPResponse.Status, _ message: String, type: String?, outcome: String) -> Response {
        state.metrics.eventIngested(type: type, outcome: outcome)
        state.logger.notice(
            "enrollment refused: \(message)",
            metadata: ["MESSAGE_ID": "\(RegistryMessageID.eventRefused.id)", "status": "\(status.code)"])
        return jsonError(status, message)
    }

    func enroll(_ request: Request, _ context: RegistryRequestContext) async -> Response {
        // 1. Credentials: a token we know (valid or revoked), and/or a verified client certificate (mutual TLS,
        //    the device serial in its subject CN). With both, they must name the same device.
        let certificateSerial = state.options.mutualTLS ? await context.clientCertificateSerial() : nil
        let credential = RegistryTokens.credential(request.headers[.authorization])
        if credential == .malformed {
            return refused(.unauthorized, "malformed token", type: nil, outcome: "unauthorized")
        }
        let tokenHash = RegistryTokens.bearer(request.headers[.authorization]).map(Tokens.hash)
        if tokenHash == nil && certificateSerial == nil {
            return refused(.unauthorized, "missing bearer token", type: nil, outcome: "unauthorized")
        }

        // The body, bounded, is read before the token is looked up: a device's event naming its own serial is then
        // stored in one store call that checks the token in the same transaction (one round trip on PostgreSQL;
        // docs/decisions.md). Anything else, and any refusal, goes through the checks below in their order, so
        // what a request without a valid credential learns is unchanged.
        let body = await Self.readBody(request)
        let decoded = body.map {
            IngestValidation.decode(
                $0.readableBytesView, idempotencyKey: request.headers[.init("Idempotency-Key")!], receivedAt: Date())
        }
        if let tokenHash, certificateSerial == nil, let body, case .success(let event)? = decoded,
            event.type != APIEventType.manufactured.rawValue, let serial = event.device.serial
        {
            let options = IngestOptions(payload: Array(body.readableBytesView), deviceTokenHash: tokenHash)
            let stored = await store(event, serial: serial, origin: .device, actor: "device:\(serial)", options)
            if !stored.refusedCredential { return stored.response }
        }

        let record: CredentialRecord?
        if let tokenHash {
            do {
                record = try await state.store.credential(tokenHash: tokenHash)
            } catch {
                return state.storeFailure(error, "credential lookup")
            }
            if let certificateSerial, let record, record.principal != .device(serial: certificateSerial) {
                return refused(.forbidden, "token and client certificate disagree", type: nil, outcome: "forbidden")
            }
        } else {
            record = certificateSerial.map { CredentialRecord(principal: .device(serial: $0)) }
        }
        guard let record else {
            return refused(.unauthorized, "unknown token", type: nil, outcome: "unauthorized")
        }

        // 2. The body: within 64 KiB, and a valid event.
        guard let body, let decoded else {
            return refused(.contentTooLarge, "body larger than 64 KiB", type: nil, outcome: "too_large")
        }
        let event: EnrollmentRequest
        switch decoded {
        case .success(let e): event = e
        case .failure(.notAnEvent(let message)):
            return refused(.badRequest, message, type: nil, outcome: "invalid")
        case .failure(.invalid(let violation)):
            return refused(.unprocessableContent, violation.description, type: nil, outcome: "invalid")
        }

        // 3. Who may post this event.
        let serial: String
        let origin: EventOrigin
        let actor: String
        switch record.principal {
        case .device(let tokenSerial):
            actor = "device:\(tokenSerial)"
            if record.revokedAt != nil {
                await refuse(serial: tokenSerial, actor: actor, reason: "revoked device token", context)
                return refused(.forbidden, "token revoked", type: event.type, outcome: "forbidden")
            }
            if let claimed = event.device.serial, claimed != tokenSerial {
                await refuse(serial: claimed, actor: actor, reason: "device token used for another serial", context)
                return refused(.forbidden, "token is not this device's", type: event.type, outcome: "forbidden")
            }
            if event.type == APIEventType.manufactured.rawValue {
                await refuse(serial: tokenSerial, actor: actor, reason: "device token posted a factory record", context)
                return refused(.forbidden, "devices may not post manufactured", type: event.type, outcome: "forbidden")
            }
            serial = tokenSerial
            origin = .device
        case .station(let name):
            actor = "station:\(name)"
            guard record.revokedAt == nil else {
                return refused(.forbidden, "token revoked", type: event.type, outcome: "forbidden")
            }
            guard event.type == APIEventType.manufactured.rawValue else {
                return refused(.forbidden, "stations may post manufactured only", type: event.type, outcome: "forbidden")
            }
            guard let claimed = event.device.serial, DeviceSerial.isValid(claimed) else {
                return refused(
                    .unprocessableContent, "a factory record needs device.serial", type: event.type, outcome: "invalid")
            }
            serial = claimed
            origin = .factory
        case .operator:
            return refused(.forbidden, "operator tokens may not post events", type: event.type, outcome: "forbidden")
        }

        // 4. Store it, with the flags it raises. A device token is checked again in the write's transaction (it
        //    may have been revoked since the lookup).
        var options = IngestOptions(payload: Array(body.readableBytesView))
        if origin == .device, certificateSerial == nil { options.deviceTokenHash = tokenHash }
        let stored = await store(event, serial: serial, origin: origin, actor: actor, options)
        if stored.refusedCredential {
            return refused(.forbidden, "token revoked", type: event.type, outcome: "forbidden")
        }
        return stored.response
    }

    /// The body, or nil when it is larger than ``RegistryHTTP/maxEnrollmentBody`` (by its `Content-Length` or as
    /// read).
    static func readBody(_ request: Request) async -> ByteBuffer? {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > RegistryHTTP.maxEnrollmentBody {
            return nil
        }
        return try? await request.body.collect(upTo: RegistryHTTP.maxEnrollmentBody)
    }

    /// Stores an authorised event (or one whose device token the store checks: ``IngestOptions``) and makes the
    /// answer: 201, 409 for a duplicate, the store failure's answer; `refusedCredential` when the store refused the
    /// token (nothing stored, no answer made yet).
    private func store(
        _ event: EnrollmentRequest, serial: String, origin: EventOrigin, actor: String, _ options: IngestOptions
    ) async -> (response: Response, refusedCredential: Bool) {
        let outcome: IngestOutcome
        do {
            // The payload's `references` are the store's to check and index (one place: StoreSupport.references).
            outcome = try await state.store.ingest(
                event, serial: serial, origin: origin, references: [], receivedAt: Date(), options: options)
        } catch {
            state.metrics.eventIngested(type: event.type, outcome: "error")
            return (state.storeFailure(error, "ingest"), false)
        }
        switch outcome {
        case .credentialRefused:
            return (jsonError(.forbidden, "token refused"), true)
        case .duplicate:
            state.metrics.eventIngested(type: event.type, outcome: "duplicate")
            return (json(.conflict, ErrorBody(error: "event_id already stored")), false)
        case .stored(let raised):
            state.metrics.eventIngested(type: event.type, outcome: "stored")
            // One line per stored event at debug only (it cost 3.5 % of the CPU per event at info); the count is in
            // /metrics (`cellprov_registry_events_ingested_total`), and refusals and flags are logged at notice and
            // above.
            state.logger.debug(
                "event stored",
                metadata: [
                    "MESSAGE_ID": "\(RegistryMessageID.eventStored.id)", "type": "\(event.type)",
                    "serial": "\(serial)", "actor": "\(actor)", "flags": "\(raised.count)",
                ])
            state.logFlags(raised)
            return (json(.created, StoredBody(eventID: event.eventID, flagsRaised: raised.count)), false)
        }
    }

    private func refuse(serial: String, actor: String, reason: String, _ context: RegistryRequestContext) async {
        do {
            let flags = try await state.store.recordRefusal(
                serial: serial, actor: actor, reason: reason, remote: context.remote, at: Date())
            state.logFlags(flags)
        } catch {
            state.logger.error("store failure: record refusal", metadata: ["error": "\(error)"])
        }
    }

    struct StoredBody: Codable {
        var eventID: String
        var flagsRaised: Int
        enum CodingKeys: String, CodingKey {
            case eventID = "event_id"
            case flagsRaised = "flags_raised"
        }
    }
}

/// An enrollment body as the registry accepts it: the wire module's rules (``EnrollmentValidation``: duplicate keys,
/// the schema's shape, every field's pattern, `occurred_at`'s window, `Idempotency-Key`), the same for devices and
/// factory stations, with the registry's time parser (``IngestTime``, which also reads the rarer RFC 3339 forms
/// the stores read). A `.notAnEvent` is a 400, an `.invalid` a 422 naming the field: the payload is wrong and
/// resending it cannot help.
enum IngestValidation {
    static func decode(
        _ bytes: some Collection<UInt8>, idempotencyKey: String?, receivedAt: Date
    ) -> Result<EnrollmentRequest, EnrollmentValidation.BodyError> {
        Result { () throws(EnrollmentValidation.BodyError) in
            try EnrollmentValidation.decode(
                bytes, receivedAt: receivedAt, idempotencyKey: idempotencyKey, parseTime: IngestTime.parse)
        }
    }
}
