import FlowStackApp
import FlowStackCore
import FlowStackStore
import Foundation
import Hummingbird

/// The organization's audit trail (owners and admins, on plans that include audit logs).
struct AuditController {
    let api: API

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.get("orgs/:orgId/audit-events", use: list)
    }

    private func date(_ request: Request, _ name: String) throws -> Date? {
        guard let raw = request.query(name) else { return nil }
        guard let date = RFC3339.parse(raw) else {
            throw FlowStackError.badRequest("invalid_parameter", "'\(name)' must be an ISO 8601 date-time.", field: name)
        }
        return date
    }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let orgID = try context.parameters.id("orgId", prefix: "org")
        var limit = 50
        if let raw = request.query("limit") {
            guard let value = Int(raw), (1...200).contains(value) else {
                throw FlowStackError.badRequest("invalid_parameter", "'limit' must be between 1 and 200.", field: "limit")
            }
            limit = value
        }
        var cursor: Int64?
        if let raw = request.query("cursor") {
            guard let value = Int64(raw), value > 0 else {
                throw FlowStackError.badRequest("invalid_parameter", "'cursor' is not valid.", field: "cursor")
            }
            cursor = value
        }
        func text(_ name: String) -> String? { request.query(name).flatMap { $0.isEmpty ? nil : $0 } }
        let filter = Store.AuditFilter(
            action: text("action"), actorID: text("actorId"), resourceID: text("resourceId"),
            since: try date(request, "since"), until: try date(request, "until"))
        let page = try await api.app.auditTrail.events(orgID: orgID, filter: filter, cursor: cursor, limit: limit, by: context.caller)
        return try JSON.response(.ok, ListDTO(items: page.items.map(AuditEventDTO.init), nextCursor: page.nextCursor))
    }
}
