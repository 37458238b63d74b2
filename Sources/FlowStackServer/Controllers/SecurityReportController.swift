import FlowStackApp
import FlowStackCore
import Hummingbird

/// An organization's security report: hard-coded credentials in workflows, keys due for
/// rotation, and connections never tested or failing. For owners and admins.
struct SecurityReportController {
    let api: API

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.get("orgs/:orgId/security-report", use: report)
    }

    @Sendable func report(_ request: Request, context: APIContext) async throws -> Response {
        try JSON.response(
            .ok, try await api.app.securityReports.report(orgID: try context.parameters.id("orgId", prefix: "org"), by: context.caller))
    }
}
