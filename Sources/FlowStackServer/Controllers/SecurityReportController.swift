import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Hummingbird

/// An organization's security report: hard-coded credentials in workflows, keys due for
/// rotation, and connections never tested or failing. For owners and admins.
struct SecurityReportController {
    let api: API

    func addRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.get("orgs/:orgId/security-report", use: report)
    }

    struct Report: Encodable {
        struct Warning: Encodable {
            var workflowId: String
            var workflowName: String
            var projectId: String
            var warning: CredentialFinding
        }
        struct Key: Encodable {
            var purpose: String
            var keyId: String
            var createdAt: Date
            var ageDays: Int
        }
        struct ConnectionRef: Encodable {
            var id: String
            var name: String
            var projectId: String
            var type: String
            var message: String?
        }
        struct APIKeyRef: Encodable {
            var id: String
            var name: String
            var createdAt: Date
        }
        var credentialWarnings: [Warning]
        var keysDueForRotation: [Key]
        var connectionsNeverTested: [ConnectionRef]
        var connectionsFailing: [ConnectionRef]
        var apiKeysDueForRotation: [APIKeyRef]
    }

    @Sendable func report(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await api.access.org(orgID, .orgUpdate, identity)
        let now = api.now
        let warnings = try await api.store.workflows(orgID: orgID).flatMap { workflow in
            CredentialScanner.scan(workflow.definition).map {
                Report.Warning(workflowId: workflow.id, workflowName: workflow.definition.name, projectId: workflow.projectID, warning: $0)
            }
        }
        // Key-encryption keys are instance-wide; an active one older than the rotation period is due.
        let dates = try await api.store.keyCheckDates()
        let keyring = api.store.sealer.keyring
        let keys = KeyPurpose.allCases.compactMap { purpose -> Report.Key? in
            let active = keyring.active(purpose)
            guard let created = dates[active.id] else { return nil }
            let age = Int(now.timeIntervalSince(created) / 86_400)
            return age >= api.settings.keyRotationDays ? Report.Key(purpose: purpose.rawValue, keyId: active.id, createdAt: created, ageDays: age) : nil
        }
        let connections = try await api.store.connections(orgID: orgID)
        func reference(_ connection: Connection) -> Report.ConnectionRef {
            Report.ConnectionRef(id: connection.id, name: connection.name, projectId: connection.projectID, type: connection.kind.rawValue,
                                 message: connection.status == "error" ? connection.statusMessage : nil)
        }
        let apiKeys = try await api.store.apiKeys(orgID: orgID, createdBy: nil).filter {
            $0.revokedAt == nil && now.timeIntervalSince($0.createdAt) >= Double(api.settings.apiKeyRotationDays) * 86_400
        }
        let report = Report(
            credentialWarnings: warnings, keysDueForRotation: keys,
            connectionsNeverTested: connections.filter { $0.lastTestedAt == nil && $0.kind != .secrets }.map(reference),
            connectionsFailing: connections.filter { $0.status == "error" }.map(reference),
            apiKeysDueForRotation: apiKeys.map { Report.APIKeyRef(id: $0.id, name: $0.name, createdAt: $0.createdAt) })
        return try JSON.response(.ok, report)
    }
}
