import CellprovCore
import CellprovRegistryCore
import Foundation
import Hummingbird

/// The fleet overview (docs/registry-api.yaml `GET /v1/overview`, docs/registry.md "Fleet overview"): the store's
/// counts (``RegistryStore/overviewCounts(_:)``) assembled with zeros (``FleetOverview``, which is the JSON body),
/// read through one ``OverviewSnapshot`` per instance, as JSON for viewers and admins and as the signed-in
/// `/overview` page (OverviewPage.swift). No identifier appears in either.
enum Overview {
    /// The overview now, units silent after the configured threshold (`[alerts] unit_silent_days`).
    static func load(_ state: RegistryState, now: Date = Date()) async throws -> FleetOverview {
        let query = OverviewQuery(now: now, silenceThreshold: state.options.unitSilentThreshold)
        return FleetOverview.assemble(try await state.store.overviewCounts(query), query)
    }

    /// `GET /v1/overview` and `GET /overview`.
    struct Routes {
        let state: RegistryState
        let snapshot: OverviewSnapshot
        let page: OverviewPage

        init(state: RegistryState) {
            self.state = state
            snapshot = OverviewSnapshot(
                freshFor: state.options.overviewFreshFor,
                load: { now in try await Overview.load(state, now: now) })
            page = OverviewPage(state: state, snapshot: snapshot)
        }

        func register(on router: Router<RegistryRequestContext>) {
            router.get("/v1/overview") { request, _ in await api(request) }
            router.get("/overview") { request, _ in await page.render(request) }
        }

        /// Viewers and admins; nothing to reveal.
        func api(_ request: Request) async -> Response {
            if case .failure(let r) = await OperatorAPI(state: state).authenticate(request, admin: false) {
                return r.response
            }
            do {
                return json(.ok, try await snapshot.overview())
            } catch {
                return state.storeFailure(error, "overview")
            }
        }
    }
}
