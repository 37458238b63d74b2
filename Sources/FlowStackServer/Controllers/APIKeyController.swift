import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Hummingbird

/// API keys: created (shown once), listed by prefix and last 4, revoked.
struct APIKeyController {
    let api: API

    struct CreateRequest: Decodable {
        var name: String
        var scope: APIKeyScope
        var projectId: String?
        var expiresInDays: Int?
    }

    struct CreatedKey: Encodable {
        var key: String
        var apiKey: APIKeyDTO
        enum CodingKeys: String, CodingKey { case key }
        func encode(to encoder: any Encoder) throws {
            try apiKey.encode(to: encoder)
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(key, forKey: .key)
        }
    }

    func addRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.get("orgs/:orgId/api-keys", use: list)
        group.post("orgs/:orgId/api-keys", use: create)
        group.delete("orgs/:orgId/api-keys/:keyId", use: revoke)
    }

    @Sendable func list(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        let access = try await api.access.org(orgID, .apiKeyList, identity)
        let keys = try await api.store.apiKeys(orgID: orgID, createdBy: access.role >= .admin ? nil : identity.user.id)
        let now = api.now, days = api.settings.apiKeyRotationDays
        return try JSON.response(.ok, ListDTO(items: keys.map { APIKeyDTO($0, now: now, rotationDays: days) }, nextCursor: nil))
    }

    @Sendable func create(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await api.access.org(orgID, .apiKeyCreate, identity)
        let body = try await api.decode(CreateRequest.self, request, context)
        let name = try Validate.name(body.name)
        if let days = body.expiresInDays, !(1...3650).contains(days) {
            throw FlowStackError.validation("expiresInDays must be between 1 and 3650.", field: "expiresInDays")
        }
        if let projectID = body.projectId {
            let unknown = FlowStackError(status: 404, code: "not_found", message: "No such project in this organization.", field: "projectId")
            guard Identifier.isValid(projectID, prefix: "prj"), let project = try await api.store.project(id: projectID), project.orgID == orgID else {
                throw unknown
            }
            do {
                try await api.access.project(projectID, .projectRead, identity)
            } catch let error as FlowStackError where error.status == 404 {
                throw unknown
            }
        }
        if case .apiKey(let parent, _) = identity.method, let parentProject = parent.projectID, body.projectId != parentProject {
            throw FlowStackError(status: 403, code: "forbidden", message: "A project API key can only create keys for its own project.")
        }
        let secret = Token.make(prefix: AuthService.apiKeyPrefix)
        let now = api.now
        let key = APIKey(id: Identifier.make("key"), orgID: orgID, projectID: body.projectId, createdBy: identity.user.id, name: name,
                         prefix: String(secret.prefix(8)), last4: String(secret.suffix(4)), scope: body.scope, createdAt: now,
                         lastUsedAt: nil, expiresAt: body.expiresInDays.map { now.addingTimeInterval(Double($0) * 86_400) }, revokedAt: nil)
        let actor = context.auditActor
        try await api.store.write { db in
            try await api.store.insertAPIKey(key, keyHash: Token.hash(secret), on: db)
            try await api.store.appendAudit(AuditRecord(orgID: orgID, action: "api_key.created", resourceType: "api_key", resourceID: key.id,
                                                        details: ["name": name, "scope": key.scope.rawValue, "prefix": key.prefix]), actor: actor, on: db)
        }
        return try JSON.response(.created, CreatedKey(key: secret, apiKey: APIKeyDTO(key, now: now, rotationDays: api.settings.apiKeyRotationDays)))
    }

    @Sendable func revoke(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await api.access.org(orgID, .apiKeyList, identity)
        let keyID = try context.parameters.id("keyId", prefix: "key")
        guard let key = try await api.store.apiKey(id: keyID, orgID: orgID), key.revokedAt == nil else { throw FlowStackError.notFound }
        try await api.access.org(orgID, .apiKeyRevoke, identity, targetIsSelf: key.createdBy == identity.user.id)
        let actor = context.auditActor
        try await api.store.write { db in
            try await api.store.revokeAPIKey(id: keyID, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: orgID, action: "api_key.revoked", resourceType: "api_key", resourceID: keyID,
                                                        details: ["prefix": key.prefix]), actor: actor, on: db)
        }
        return JSON.empty()
    }
}
