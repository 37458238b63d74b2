import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation

/// API keys: created (the secret shown once), listed by prefix and last 4, revoked.
public struct APIKeys: Sendable {
    let app: UseCases
    var store: Store { app.store }

    /// The organization's keys the caller may see (admins: all; others: their own).
    public func list(orgID: String, by caller: Caller) async throws -> [APIKey] {
        let access = try await app.access.org(orgID, .apiKeyList, caller.identity)
        return try await store.apiKeys(orgID: orgID, createdBy: access.role >= .admin ? nil : caller.user.id)
    }

    /// Checks the caller may create keys in `orgID` (before the request body is read).
    public func authorizeCreate(orgID: String, by caller: Caller) async throws {
        try await app.access.org(orgID, .apiKeyCreate, caller.identity)
    }

    /// A new key and its secret. A project key may only make keys for its own project.
    public func create(
        orgID: String, name rawName: String, scope: APIKeyScope, projectID: String?, expiresInDays: Int?,
        by caller: Caller
    ) async throws -> (APIKey, secret: String) {
        try await authorizeCreate(orgID: orgID, by: caller)
        let name = try Validate.name(rawName)
        if let days = expiresInDays, !(1...3650).contains(days) {
            throw FlowStackError.validation("expiresInDays must be between 1 and 3650.", field: "expiresInDays")
        }
        if let projectID {
            let unknown = FlowStackError(
                status: 404, code: "not_found", message: "No such project in this organization.", field: "projectId")
            guard Identifier.isValid(projectID, prefix: "prj"), let project = try await store.project(id: projectID), project.orgID == orgID
            else {
                throw unknown
            }
            do {
                try await app.access.project(projectID, .projectRead, caller.identity)
            } catch let error as FlowStackError where error.status == 404 {
                throw unknown
            }
        }
        if let parentProject = caller.identity.keyProjectID, projectID != parentProject {
            throw FlowStackError(status: 403, code: "forbidden", message: "A project API key can only create keys for its own project.")
        }
        let secret = Token.make(prefix: AuthService.apiKeyPrefix)
        let now = store.now
        let key = APIKey(
            id: Identifier.make("key"), orgID: orgID, projectID: projectID, createdBy: caller.user.id, name: name,
            prefix: String(secret.prefix(8)), last4: String(secret.suffix(4)), scope: scope, createdAt: now,
            lastUsedAt: nil, expiresAt: expiresInDays.map { now.addingTimeInterval(Double($0) * 86_400) }, revokedAt: nil)
        let actor = caller.auditActor
        try await store.write(announcing: [.identities]) { [store] db in
            try await store.insertAPIKey(key, keyHash: Token.hash(secret), on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: orgID, action: "api_key.created", resourceType: "api_key", resourceID: key.id,
                    details: ["name": name, "scope": key.scope.rawValue, "prefix": key.prefix]), actor: actor, on: db)
        }
        return (key, secret)
    }

    /// Revokes a key: refused by every replica from the moment this returns.
    public func revoke(orgID: String, keyID: String, by caller: Caller) async throws {
        try await app.access.org(orgID, .apiKeyList, caller.identity)
        guard let key = try await store.apiKey(id: keyID, orgID: orgID), key.revokedAt == nil else { throw FlowStackError.notFound }
        try await app.access.org(orgID, .apiKeyRevoke, caller.identity, targetIsSelf: key.createdBy == caller.user.id)
        let actor = caller.auditActor
        try await store.write(announcing: [.identities]) { [store] db in
            try await store.revokeAPIKey(id: keyID, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: orgID, action: "api_key.revoked", resourceType: "api_key", resourceID: keyID,
                    details: ["prefix": key.prefix]), actor: actor, on: db)
        }
    }
}

/// The organization's audit trail (owners and admins, on plans that include audit logs).
public struct AuditTrail: Sendable {
    let app: UseCases

    /// A page of events, never older than the plan's audit retention.
    public func events(orgID: String, filter: Store.AuditFilter, cursor: Int64?, limit: Int, by caller: Caller) async throws
        -> (items: [AuditEvent], nextCursor: String?)
    {
        let access = try await app.access.org(orgID, .auditRead, caller.identity)
        var filter = filter
        if let days = Entitlements.of(access.plan).auditRetentionDays {
            let horizon = app.store.now.addingTimeInterval(-Double(days) * 86_400)
            filter.since = max(filter.since ?? horizon, horizon)
        }
        let page = try await app.store.auditEvents(orgID: orgID, filter: filter, cursor: cursor, limit: limit)
        return (page.items, page.nextCursor)
    }

}
