import CellprovCore
import CellprovEnrollmentAPI
import CellprovRegistryCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOSSL

/// `/healthz` (the process answers), `/readyz` (the database answers and is migrated), `/metrics`.
struct OperationsRoutes {
    let state: RegistryState

    func register(on router: Router<RegistryRequestContext>) {
        router.get("/healthz") { _, _ in text(.ok, "ok\n") }
        router.get("/readyz") { _, _ in
            do {
                try await state.store.checkReady()
                return text(.ok, "ready\n")
            } catch {
                state.logger.warning("not ready", metadata: ["error": "\(error)"])
                var response = text(.serviceUnavailable, "not ready\n")
                response.headers[.retryAfter] = RegistryHTTP.retryAfterSeconds
                return response
            }
        }
        router.get("/metrics") { _, _ in
            if let counts = try? await state.store.openFlagCounts() {
                state.metrics.setOpenFlags(counts)
            }
            return text(.ok, state.metrics.text(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
    }
}
