import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation

/// Operator actions of the CLI, audited as the system actor.
public struct Admin: Sendable {
    public let store: Store

    public init(store: Store) {
        self.store = store
    }

    public func createOwner(email rawEmail: String, name rawName: String, organization: String, password: String) async throws -> (
        user: User, org: Organization
    ) {
        let email = try Validate.email(rawEmail)
        let name = try Validate.name(rawName)
        let orgName = try Validate.name(organization, field: "organization")
        try PasswordPolicy.standard.validate(password)
        let hash = try await PasswordHasher().hash(password)
        return try await store.write { db in
            let user = try await store.insertUser(email: email, name: name, passwordHash: hash, on: db)
            let org = try await store.insertOrganization(name: orgName, owner: user.id, on: db)
            try await store.setSetting(SetupService.settingName, nil, on: db)
            try await store.appendAudit(
                AuditRecord(orgID: org.id, action: "user.owner_created", resourceType: "user", resourceID: user.id),
                actor: .system(), on: db)
            return (user, org)
        }
    }

    public func setDisabled(email rawEmail: String, disabled: Bool) async throws {
        let email = try Validate.email(rawEmail)
        guard let user = try await store.user(email: email) else {
            throw FlowStackError(status: 404, code: "not_found", message: "No user with the e-mail \(email).")
        }
        try await store.write(announcing: [.identities]) { db in
            try await store.setDisabled(userID: user.id, disabled, on: db)
            try await store.appendAudit(
                AuditRecord(orgID: nil, action: disabled ? "user.disabled" : "user.enabled", resourceType: "user", resourceID: user.id),
                actor: .system(), on: db)
        }
    }

    public func setPlan(orgID: String, plan: Plan) async throws {
        guard try await store.organization(id: orgID) != nil else {
            throw FlowStackError(status: 404, code: "not_found", message: "No organization \(orgID).")
        }
        try await store.write(announcing: [.identities]) { db in
            try await store.setPlan(orgID: orgID, plan: plan, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: orgID, action: "org.plan_changed", resourceType: "organization", resourceID: orgID,
                    details: ["plan": plan.rawValue]), actor: .system(), on: db)
        }
    }
}
