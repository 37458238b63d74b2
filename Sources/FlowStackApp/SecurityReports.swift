import FlowStackCore
import FlowStackCrypto
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import Foundation

/// An organization's security report: hard-coded credentials in workflows, keys due for
/// rotation, and connections never tested or failing.
public struct SecurityReport: Encodable, Sendable {
    public struct Warning: Encodable, Sendable {
        var workflowId: String
        var workflowName: String
        var projectId: String
        var warning: CredentialFinding
    }
    public struct Key: Encodable, Sendable {
        var purpose: String
        var keyId: String
        var createdAt: Date
        var ageDays: Int
    }
    public struct ConnectionRef: Encodable, Sendable {
        var id: String
        var name: String
        var projectId: String
        var type: String
        var message: String?
    }
    public struct APIKeyRef: Encodable, Sendable {
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

/// The security report use case.
public struct SecurityReports: Sendable {
    let app: UseCases

    /// The report of `orgID` (owners and admins).
    public func report(orgID: String, by caller: Caller) async throws -> SecurityReport {
        try await app.access.org(orgID, .orgUpdate, caller.identity)
        let store = app.store
        let settings = app.settings
        let now = store.now
        let warnings = try await store.workflows(orgID: orgID).flatMap { workflow in
            CredentialScanner.scan(workflow.definition).map {
                SecurityReport.Warning(
                    workflowId: workflow.id, workflowName: workflow.definition.name, projectId: workflow.projectID, warning: $0)
            }
        }
        // Key-encryption keys are instance-wide; an active one older than the rotation period is due.
        let dates = try await store.keyCheckDates()
        let keyring = store.sealer.keyring
        let keys = KeyPurpose.allCases.compactMap { purpose -> SecurityReport.Key? in
            let active = keyring.active(purpose)
            guard let created = dates[active.id] else { return nil }
            let age = Int(now.timeIntervalSince(created) / 86_400)
            return age >= settings.keyRotationDays
                ? SecurityReport.Key(purpose: purpose.rawValue, keyId: active.id, createdAt: created, ageDays: age) : nil
        }
        let connections = try await store.connections(orgID: orgID)
        func reference(_ connection: Connection) -> SecurityReport.ConnectionRef {
            SecurityReport.ConnectionRef(
                id: connection.id, name: connection.name, projectId: connection.projectID, type: connection.kind.rawValue,
                message: connection.status == "error" ? connection.statusMessage : nil)
        }
        let apiKeys = try await store.apiKeys(orgID: orgID, createdBy: nil).filter {
            $0.revokedAt == nil && now.timeIntervalSince($0.createdAt) >= Double(settings.apiKeyRotationDays) * 86_400
        }
        let report = SecurityReport(
            credentialWarnings: warnings, keysDueForRotation: keys,
            connectionsNeverTested: connections.filter { $0.lastTestedAt == nil && $0.kind != .secrets }.map(reference),
            connectionsFailing: connections.filter { $0.status == "error" }.map(reference),
            apiKeysDueForRotation: apiKeys.map { SecurityReport.APIKeyRef(id: $0.id, name: $0.name, createdAt: $0.createdAt) })
        return report
    }
}
