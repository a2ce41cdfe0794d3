import CellprovCore
import CellprovRegistryCore
import Foundation
import Hummingbird

/// The fleet overview (docs/registry-api.yaml `GET /v1/overview`, docs/registry.md "Fleet overview"): the store's
/// counts (``RegistryStore/overviewCounts(_:)``) assembled with zeros (``FleetOverview``), as JSON for viewers and
/// admins and as the signed-in `/overview` page (OverviewPage.swift). No identifier appears in either.
enum Overview {
    /// The overview now, units silent after the configured threshold (`[alerts] unit_silent_days`).
    static func load(_ state: RegistryState, now: Date = Date()) async throws -> FleetOverview {
        let query = OverviewQuery(now: now, silenceThreshold: state.options.unitSilentThreshold)
        return FleetOverview.assemble(try await state.store.overviewCounts(query), query)
    }

    /// `YYYY-MM-DD` of a UTC day.
    static func dayString(_ date: Date) -> String {
        String(RFC3339.string(date)?.prefix(10) ?? "")
    }

    struct Units: Codable, Equatable {
        var total: Int
        var seen24h: Int
        var silent: Int
        var lost: Int

        enum CodingKeys: String, CodingKey {
            case total, silent, lost
            case seen24h = "seen_24h"
        }
    }

    struct Day: Codable, Equatable {
        var day: String
        var events: Int
    }

    struct Week: Codable, Equatable {
        /// ISO week, `2026-W50`.
        var week: String
        /// Its Monday, `YYYY-MM-DD`.
        var start: String
        var simSwaps: Int
        var profileSwitches: Int

        enum CodingKeys: String, CodingKey {
            case week, start
            case simSwaps = "sim_swaps"
            case profileSwitches = "profile_switches"
        }
    }

    struct Firmware: Codable, Equatable {
        var manufacturer: String?
        var model: String?
        var revision: String?
        var units: Int
    }

    struct Body: Codable, Equatable {
        var units: Units
        var openFlags: [String: Int]
        var openFlagsBySeverity: [String: [String: Int]]
        var eventsPerDay: [Day]
        var simSwapsPerWeek: [Week]
        var firmware: [Firmware]
        var firmwareTruncated: Bool

        enum CodingKeys: String, CodingKey {
            case units, firmware
            case openFlags = "open_flags"
            case openFlagsBySeverity = "open_flags_by_severity"
            case eventsPerDay = "events_per_day"
            case simSwapsPerWeek = "sim_swaps_per_week"
            case firmwareTruncated = "firmware_truncated"
        }

        init(_ o: FleetOverview) {
            units = Units(total: o.total, seen24h: o.seen24h, silent: o.silent, lost: o.lost)
            openFlags = Dictionary(uniqueKeysWithValues: o.openFlags.map { ($0.key.rawValue, $0.value) })
            var bySeverity = [String: [String: Int]]()
            for f in o.openFlagsBySeverity {
                bySeverity[f.kind.rawValue, default: [:]][f.severity.rawValue, default: 0] += f.count
            }
            openFlagsBySeverity = bySeverity
            eventsPerDay = o.eventsPerDay.map { Day(day: Overview.dayString($0.start), events: $0.events) }
            simSwapsPerWeek = o.weeks.map {
                Week(
                    week: $0.label, start: Overview.dayString($0.start), simSwaps: $0.simSwaps,
                    profileSwitches: $0.profileSwitches)
            }
            firmware = o.firmware.map {
                Firmware(manufacturer: $0.manufacturer, model: $0.model, revision: $0.revision, units: $0.units)
            }
            firmwareTruncated = o.firmwareTruncated
        }
    }

    /// `GET /v1/overview` and `GET /overview`.
    struct Routes {
        let state: RegistryState
        let page: OverviewPage

        init(state: RegistryState) {
            self.state = state
            page = OverviewPage(state: state)
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
                return json(.ok, Body(try await Overview.load(state)))
            } catch {
                return state.storeFailure(error, "overview")
            }
        }
    }
}
