import FlowStackApp
import FlowStackCore
import FlowStackStore
import Foundation
import Hummingbird

/// Organizations, members and invitations.
struct OrganizationController {
    let api: API

    struct RoleRequest: Decodable { var role: OrgRole }

    struct InvitationRequest: Decodable {
        var email: String
        var role: OrgRole
    }

    struct InvitationResponse: Encodable {
        var id: String
        var email: String
        var role: String
        var token: String
        var expiresAt: Date
    }

    struct AcceptRequest: Decodable {
        var name: String?
        var password: String?
    }

    struct AcceptResponse: Encodable {
        var organization: OrganizationDTO
        var user: UserDTO
    }

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.get("orgs", use: list)
        group.get("orgs/:orgId", use: get)
        group.get("orgs/:orgId/members", use: members)
        group.patch("orgs/:orgId/members/:userId", use: changeRole)
        group.delete("orgs/:orgId/members/:userId", use: removeMember)
        group.post("orgs/:orgId/members/:userId/unlock", use: unlock)
        group.post("orgs/:orgId/invitations", use: invite)
    }

    /// Accepting an invitation needs no identity (a new account is made with it).
    func addPublicRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.post("invitations/:token/accept", use: accept)
    }

    var organizations: Organizations { api.app.organizations }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let orgs = try await organizations.list(by: context.caller)
        return try JSON.response(.ok, ListDTO(items: orgs.map { OrganizationDTO($0.0, role: $0.1) }, nextCursor: nil))
    }

    @Sendable func get(_ request: Request, context: APIContext) async throws -> Response {
        let (org, role) = try await organizations.get(try context.parameters.id("orgId", prefix: "org"), by: context.caller)
        return try JSON.response(.ok, OrganizationDTO(org, role: role))
    }

    @Sendable func members(_ request: Request, context: APIContext) async throws -> Response {
        let members = try await organizations.members(try context.parameters.id("orgId", prefix: "org"), by: context.caller)
        let now = api.now
        return try JSON.response(.ok, ListDTO(items: members.map { MemberDTO($0, now: now) }, nextCursor: nil))
    }

    @Sendable func changeRole(_ request: Request, context: APIContext) async throws -> Response {
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await organizations.authorizeMemberList(orgID, by: context.caller)
        let body = try await api.decode(RoleRequest.self, request, context)
        let member = try await organizations.changeRole(
            orgID, userID: try context.parameters.id("userId", prefix: "usr"), to: body.role, by: context.caller)
        return try JSON.response(.ok, MemberDTO(member, now: api.now))
    }

    @Sendable func removeMember(_ request: Request, context: APIContext) async throws -> Response {
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await organizations.authorizeMemberList(orgID, by: context.caller)
        try await organizations.removeMember(orgID, userID: try context.parameters.id("userId", prefix: "usr"), by: context.caller)
        return JSON.empty()
    }

    @Sendable func unlock(_ request: Request, context: APIContext) async throws -> Response {
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await organizations.authorizeMemberList(orgID, by: context.caller)
        try await organizations.unlock(orgID, userID: try context.parameters.id("userId", prefix: "usr"), by: context.caller)
        return JSON.empty()
    }

    @Sendable func invite(_ request: Request, context: APIContext) async throws -> Response {
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await organizations.authorizeMemberList(orgID, by: context.caller)
        let body = try await api.decode(InvitationRequest.self, request, context)
        let (invitation, token) = try await organizations.invite(orgID, email: body.email, role: body.role, by: context.caller)
        return try JSON.response(
            .created,
            InvitationResponse(
                id: invitation.id, email: invitation.email, role: invitation.role.rawValue, token: token,
                expiresAt: invitation.expiresAt))
    }

    @Sendable func accept(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        guard let token = context.parameters.get("token"), token.hasPrefix("fsi_"), token.count < 100 else { throw FlowStackError.notFound }
        let body = try await api.decodeOptional(AcceptRequest.self, request, context, empty: AcceptRequest())
        if context.identity == nil, let failure = context.authFailure { throw failure }
        let (org, user, role) = try await organizations.accept(
            token: token, identity: context.identity, name: body.name, password: body.password,
            from: context.client)
        return try JSON.response(.ok, AcceptResponse(organization: OrganizationDTO(org, role: role), user: UserDTO(user)))
    }
}
