import FlowStackApp
import FlowStackCore
import FlowStackStore
import Foundation
import Hummingbird

/// API keys: created (shown once), listed by prefix and last 4, revoked.
struct APIKeyController {
    let api: API
    var keys: APIKeys { api.app.apiKeys }

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

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.get("orgs/:orgId/api-keys", use: list)
        group.post("orgs/:orgId/api-keys", use: create)
        group.delete("orgs/:orgId/api-keys/:keyId", use: revoke)
    }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let keys = try await keys.list(orgID: try context.parameters.id("orgId", prefix: "org"), by: context.caller)
        let now = api.now
        let days = api.settings.app.apiKeyRotationDays
        return try JSON.response(.ok, ListDTO(items: keys.map { APIKeyDTO($0, now: now, rotationDays: days) }, nextCursor: nil))
    }

    @Sendable func create(_ request: Request, context: APIContext) async throws -> Response {
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await keys.authorizeCreate(orgID: orgID, by: context.caller)
        let body = try await api.decode(CreateRequest.self, request, context)
        let (key, secret) = try await keys.create(
            orgID: orgID, name: body.name, scope: body.scope, projectID: body.projectId,
            expiresInDays: body.expiresInDays, by: context.caller)
        return try JSON.response(
            .created, CreatedKey(key: secret, apiKey: APIKeyDTO(key, now: api.now, rotationDays: api.settings.app.apiKeyRotationDays)))
    }

    @Sendable func revoke(_ request: Request, context: APIContext) async throws -> Response {
        try await keys.revoke(
            orgID: try context.parameters.id("orgId", prefix: "org"), keyID: try context.parameters.id("keyId", prefix: "key"),
            by: context.caller)
        return JSON.empty()
    }
}
