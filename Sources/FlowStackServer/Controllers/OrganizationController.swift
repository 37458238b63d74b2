import FlowStackCore
import FlowStackCrypto
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

    func addRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.get("orgs", use: list)
        group.get("orgs/:orgId", use: get)
        group.get("orgs/:orgId/members", use: members)
        group.patch("orgs/:orgId/members/:userId", use: changeRole)
        group.delete("orgs/:orgId/members/:userId", use: removeMember)
        group.post("orgs/:orgId/members/:userId/unlock", use: unlock)
        group.post("orgs/:orgId/invitations", use: invite)
        group.post("invitations/:token/accept", use: accept)
    }

    @Sendable func list(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgs: [(Organization, OrgRole)]
        if case .apiKey(_, let membership) = identity.method {
            orgs = membership.map { [($0.organization, $0.role)] } ?? []
        } else {
            orgs = try await api.store.organizations(forUser: identity.user.id)
        }
        return try JSON.response(.ok, ListDTO(items: orgs.map { OrganizationDTO($0.0, role: $0.1) }, nextCursor: nil))
    }

    @Sendable func get(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        let access = try await api.access.org(orgID, .orgRead, identity)
        guard let org = try await api.store.organization(id: orgID) else { throw FlowStackError.notFound }
        return try JSON.response(.ok, OrganizationDTO(org, role: access.role))
    }

    @Sendable func members(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await api.access.org(orgID, .memberList, identity)
        let now = api.now
        return try JSON.response(.ok, ListDTO(items: try await api.store.members(orgID: orgID).map { MemberDTO($0, now: now) }, nextCursor: nil))
    }

    private func target(_ orgID: String, _ context: FlowStackRequestContext) async throws -> (String, OrgRole) {
        let userID = try context.parameters.id("userId", prefix: "usr")
        guard let role = try await api.store.access(orgID: orgID, userID: userID)?.role else { throw FlowStackError.notFound }
        return (userID, role)
    }

    @Sendable func changeRole(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await api.access.org(orgID, .memberList, identity)
        let body = try await api.decode(RoleRequest.self, request, context)
        let (userID, current) = try await target(orgID, context)
        try await api.access.org(orgID, .memberManage, identity, targetRole: current, grantedRole: body.role, targetIsSelf: userID == identity.user.id)
        let actor = context.auditActor
        try await api.store.write { db in
            try await api.store.setMemberRole(orgID: orgID, userID: userID, role: body.role, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: orgID, action: "member.role_changed", resourceType: "user", resourceID: userID,
                                                        details: ["from": current.rawValue, "to": body.role.rawValue]), actor: actor, on: db)
        }
        let member = try await api.store.members(orgID: orgID).first { $0.userID == userID }
        guard let member else { throw FlowStackError.notFound }
        return try JSON.response(.ok, MemberDTO(member, now: api.now))
    }

    @Sendable func removeMember(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await api.access.org(orgID, .memberList, identity)
        let (userID, current) = try await target(orgID, context)
        try await api.access.org(orgID, .memberManage, identity, targetRole: current, targetIsSelf: userID == identity.user.id)
        let actor = context.auditActor
        try await api.store.write { db in
            try await api.store.removeMember(orgID: orgID, userID: userID, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: orgID, action: "member.removed", resourceType: "user", resourceID: userID,
                                                        details: ["role": current.rawValue]), actor: actor, on: db)
        }
        return JSON.empty()
    }

    @Sendable func unlock(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await api.access.org(orgID, .memberList, identity)
        let (userID, _) = try await target(orgID, context)
        try await api.access.org(orgID, .memberUnlock, identity)
        let actor = context.auditActor
        try await api.store.write { db in
            try await api.store.resetFailedLogins(userID: userID, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: orgID, action: "user.unlocked", resourceType: "user", resourceID: userID), actor: actor, on: db)
        }
        return JSON.empty()
    }

    @Sendable func invite(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await api.access.org(orgID, .memberList, identity)
        let body = try await api.decode(InvitationRequest.self, request, context)
        try await api.access.org(orgID, .invitationCreate, identity)
        try await api.access.org(orgID, .memberManage, identity, grantedRole: body.role)
        let email = try Validate.email(body.email)
        let token = Token.make(prefix: "fsi_")
        let actor = context.auditActor
        let lifetime = api.settings.invitationLifetime
        let invitation = try await api.store.write { db in
            let invitation = try await api.store.insertInvitation(orgID: orgID, email: email, role: body.role, invitedBy: identity.user.id,
                                                                  tokenHash: Token.hash(token), lifetime: lifetime, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: orgID, action: "invitation.created", resourceType: "invitation", resourceID: invitation.id,
                                                        details: ["email": email, "role": body.role.rawValue]), actor: actor, on: db)
            return invitation
        }
        return try JSON.response(.created, InvitationResponse(id: invitation.id, email: email, role: body.role.rawValue, token: token, expiresAt: invitation.expiresAt))
    }

    @Sendable func accept(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        guard let token = context.parameters.get("token"), token.hasPrefix("fsi_"), token.count < 100 else { throw FlowStackError.notFound }
        try await api.auth.checkThrottle(context.clientIP)
        let body = try await api.decodeOptional(AcceptRequest.self, request, context, empty: AcceptRequest())
        let identity = context.identity
        if identity == nil, let failure = context.authFailure { throw failure }
        if case .apiKey = identity?.method {
            throw FlowStackError(status: 403, code: "session_required", message: "Invitations are accepted by a person, not an API key.")
        }
        let invalid = FlowStackError(status: 404, code: "invitation_invalid", message: "The invitation does not exist, has expired or was already used.")
        let now = api.now
        let tokenHash = Token.hash(token)
        // Check the invitation before anything expensive (password hashing).
        let pending = try await api.store.read { db in try await api.store.invitation(tokenHash: tokenHash, on: db) }
        guard let pending, pending.acceptedAt == nil, pending.expiresAt > now else {
            await api.auth.recordFailure(context.clientIP)
            throw invalid
        }
        var newAccount: (name: String, passwordHash: String)?
        if identity == nil {
            guard let rawName = body.name else { throw FlowStackError.badRequest("missing_field", "The field 'name' is required.", field: "name") }
            guard let password = body.password else { throw FlowStackError.badRequest("missing_field", "The field 'password' is required.", field: "password") }
            newAccount = (try Validate.name(rawName), try await api.auth.hashNewPassword(password))
        }
        let account = newAccount
        let actor = context.auditActor
        let result: (Organization, User)
        do {
            result = try await api.store.write { db in
                guard let invitation = try await api.store.invitation(tokenHash: tokenHash, on: db),
                      invitation.acceptedAt == nil, invitation.expiresAt > now
                else { throw invalid }
                let user: User
                if let identity {
                    guard identity.user.email == invitation.email else {
                        throw FlowStackError(status: 403, code: "invitation_email_mismatch", message: "This invitation is for another e-mail address.")
                    }
                    user = identity.user
                } else {
                    if try await Store.existsUser(email: invitation.email, on: db) {
                        throw FlowStackError.conflict("login_required", "An account with this e-mail exists: log in first, then accept the invitation.")
                    }
                    user = try await api.store.insertUser(email: invitation.email, name: account!.name, passwordHash: account!.passwordHash, on: db)
                }
                try await api.store.insertMembership(orgID: invitation.orgID, userID: user.id, role: invitation.role, on: db)
                try await api.store.markInvitationAccepted(id: invitation.id, on: db)
                var accepted = actor
                accepted.kind = .user
                accepted.id = user.id
                try await api.store.appendAudit(AuditRecord(orgID: invitation.orgID, action: "invitation.accepted", resourceType: "invitation",
                                                            resourceID: invitation.id, details: ["role": invitation.role.rawValue]), actor: accepted, on: db)
                guard let org = try await db.raw("SELECT id, name, plan, created_at FROM organizations WHERE id = \(bind: invitation.orgID)").first() else {
                    throw invalid
                }
                return (try Store.organization(from: org), user)
            }
        } catch let error as FlowStackError where error.code == "invitation_invalid" {
            await api.auth.recordFailure(context.clientIP)
            throw error
        }
        let role = try await api.store.access(orgID: result.0.id, userID: result.1.id)?.role
        return try JSON.response(.ok, AcceptResponse(organization: OrganizationDTO(result.0, role: role), user: UserDTO(result.1)))
    }
}

import SQLKit
