import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation

/// Organizations, their members and invitations.
public struct Organizations: Sendable {
    let app: UseCases
    var store: Store { app.store }

    /// The organizations the caller belongs to (an API key: its own), with the caller's role.
    public func list(by caller: Caller) async throws -> [(Organization, OrgRole)] {
        if case .apiKey(_, let membership) = caller.identity.method {
            return membership.map { [($0.organization, $0.role)] } ?? []
        }
        return try await store.organizations(forUser: caller.user.id)
    }

    public func get(_ orgID: String, by caller: Caller) async throws -> (Organization, OrgRole) {
        let access = try await app.access.org(orgID, .orgRead, caller.identity)
        guard let org = try await store.organization(id: orgID) else { throw FlowStackError.notFound }
        return (org, access.role)
    }

    public func members(_ orgID: String, by caller: Caller) async throws -> [Member] {
        try await app.access.org(orgID, .memberList, caller.identity)
        return try await store.members(orgID: orgID)
    }

    /// A member's current role; someone who is not a member is not found.
    private func target(_ orgID: String, _ userID: String) async throws -> OrgRole {
        guard let role = try await store.access(orgID: orgID, userID: userID)?.role else { throw FlowStackError.notFound }
        return role
    }

    /// Checks the caller may see the organization's members, before the request body is read.
    public func authorizeMemberList(_ orgID: String, by caller: Caller) async throws {
        try await app.access.org(orgID, .memberList, caller.identity)
    }

    public func changeRole(_ orgID: String, userID: String, to role: OrgRole, by caller: Caller) async throws -> Member {
        try await app.access.org(orgID, .memberList, caller.identity)
        let current = try await target(orgID, userID)
        try await app.access.org(
            orgID, .memberManage, caller.identity, targetRole: current, grantedRole: role, targetIsSelf: userID == caller.user.id)
        let actor = caller.auditActor
        try await store.write(announcing: [.identities]) { [store] db in
            try await store.setMemberRole(orgID: orgID, userID: userID, role: role, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: orgID, action: "member.role_changed", resourceType: "user", resourceID: userID,
                    details: ["from": current.rawValue, "to": role.rawValue]), actor: actor, on: db)
        }
        guard let member = try await store.members(orgID: orgID).first(where: { $0.userID == userID }) else {
            throw FlowStackError.notFound
        }
        return member
    }

    public func removeMember(_ orgID: String, userID: String, by caller: Caller) async throws {
        try await app.access.org(orgID, .memberList, caller.identity)
        let current = try await target(orgID, userID)
        try await app.access.org(orgID, .memberManage, caller.identity, targetRole: current, targetIsSelf: userID == caller.user.id)
        let actor = caller.auditActor
        try await store.write(announcing: [.identities]) { [store] db in
            try await store.removeMember(orgID: orgID, userID: userID, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: orgID, action: "member.removed", resourceType: "user", resourceID: userID,
                    details: ["role": current.rawValue]), actor: actor, on: db)
        }
    }

    public func unlock(_ orgID: String, userID: String, by caller: Caller) async throws {
        try await app.access.org(orgID, .memberList, caller.identity)
        _ = try await target(orgID, userID)
        try await app.access.org(orgID, .memberUnlock, caller.identity)
        let actor = caller.auditActor
        try await store.write { [store] db in
            try await store.resetFailedLogins(userID: userID, on: db)
            try await store.appendAudit(
                AuditRecord(orgID: orgID, action: "user.unlocked", resourceType: "user", resourceID: userID), actor: actor, on: db)
        }
    }

    /// A new invitation and its token (shown once).
    public func invite(_ orgID: String, email rawEmail: String, role: OrgRole, by caller: Caller) async throws -> (
        Invitation, token: String
    ) {
        try await app.access.org(orgID, .memberList, caller.identity)
        try await app.access.org(orgID, .invitationCreate, caller.identity)
        try await app.access.org(orgID, .memberManage, caller.identity, grantedRole: role)
        let email = try Validate.email(rawEmail)
        let token = Token.make(prefix: "fsi_")
        let actor = caller.auditActor
        let lifetime = app.settings.invitationLifetime
        let invitation = try await store.write { [store, inviter = caller.user.id] db in
            let invitation = try await store.insertInvitation(
                orgID: orgID, email: email, role: role, invitedBy: inviter,
                tokenHash: Token.hash(token), lifetime: lifetime, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: orgID, action: "invitation.created", resourceType: "invitation", resourceID: invitation.id,
                    details: ["email": email, "role": role.rawValue]), actor: actor, on: db)
            return invitation
        }
        return (invitation, token)
    }

    /// Accepts an invitation: as the signed-in user it was sent to, or by creating the account
    /// (`name` and `password`). Unknown, used and expired tokens count as failed attempts.
    public func accept(token: String, identity: Identity?, name: String?, password: String?, from client: Client)
        async throws -> (Organization, User, OrgRole?)
    {
        guard token.hasPrefix("fsi_"), token.count < 100 else { throw FlowStackError.notFound }
        try await app.auth.checkThrottle(client.ip)
        if case .apiKey = identity?.method {
            throw FlowStackError(status: 403, code: "session_required", message: "Invitations are accepted by a person, not an API key.")
        }
        let invalid = FlowStackError(
            status: 404, code: "invitation_invalid", message: "The invitation does not exist, has expired or was already used.")
        let now = store.now
        let tokenHash = Token.hash(token)
        // Check the invitation before anything expensive (password hashing).
        let pending = try await store.invitation(tokenHash: tokenHash)
        guard let pending, pending.acceptedAt == nil, pending.expiresAt > now else {
            await app.auth.recordFailure(client.ip)
            throw invalid
        }
        var newAccount: (name: String, passwordHash: String)?
        if identity == nil {
            guard let name else { throw FlowStackError.badRequest("missing_field", "The field 'name' is required.", field: "name") }
            guard let password else {
                throw FlowStackError.badRequest("missing_field", "The field 'password' is required.", field: "password")
            }
            newAccount = (try Validate.name(name), try await app.auth.hashNewPassword(password))
        }
        let account = newAccount
        let result: (Organization, User)
        do {
            result = try await store.write(announcing: [.identities]) { [store] db in
                guard let invitation = try await store.invitation(tokenHash: tokenHash, on: db),
                    invitation.acceptedAt == nil, invitation.expiresAt > now
                else { throw invalid }
                let user: User
                if let identity {
                    guard identity.user.email == invitation.email else {
                        throw FlowStackError(
                            status: 403, code: "invitation_email_mismatch", message: "This invitation is for another e-mail address.")
                    }
                    user = identity.user
                } else {
                    if try await Store.existsUser(email: invitation.email, on: db) {
                        throw FlowStackError.conflict(
                            "login_required", "An account with this e-mail exists: log in first, then accept the invitation.")
                    }
                    user = try await store.insertUser(
                        email: invitation.email, name: account!.name, passwordHash: account!.passwordHash, on: db)
                }
                try await store.insertMembership(orgID: invitation.orgID, userID: user.id, role: invitation.role, on: db)
                try await store.markInvitationAccepted(id: invitation.id, on: db)
                try await store.appendAudit(
                    AuditRecord(
                        orgID: invitation.orgID, action: "invitation.accepted", resourceType: "invitation",
                        resourceID: invitation.id, details: ["role": invitation.role.rawValue]),
                    actor: client.actor(user: user.id), on: db)
                guard let org = try await store.organization(id: invitation.orgID, on: db) else { throw invalid }
                return (org, user)
            }
        } catch let error as FlowStackError where error.code == "invitation_invalid" {
            await app.auth.recordFailure(client.ip)
            throw error
        }
        let role = try await store.access(orgID: result.0.id, userID: result.1.id)?.role
        return (result.0, result.1, role)
    }
}

/// Projects and their members.
public struct Projects: Sendable {
    let app: UseCases
    var store: Store { app.store }

    private func description(_ raw: String?) throws -> String {
        let value = raw ?? ""
        guard value.count <= 2000 else {
            throw FlowStackError.validation("The description must be at most 2000 characters long.", field: "description")
        }
        return value
    }

    /// The projects of an organization the caller may see (admins: all; a project key: its own).
    public func list(orgID: String, by caller: Caller) async throws -> [Project] {
        let access = try await app.access.org(orgID, .projectList, caller.identity)
        return try await store.projects(
            orgID: orgID, visibleTo: access.role >= .admin ? nil : caller.user.id,
            restrictedTo: caller.identity.keyProjectID)
    }

    /// Checks the caller may create a project in `orgID` (before the request body is read).
    public func authorizeCreate(orgID: String, by caller: Caller) async throws {
        try await app.access.org(orgID, .projectCreate, caller.identity)
    }

    public func create(orgID: String, name rawName: String, description rawDescription: String?, by caller: Caller) async throws -> Project
    {
        try await authorizeCreate(orgID: orgID, by: caller)
        let name = try Validate.name(rawName)
        let description = try description(rawDescription)
        let actor = caller.auditActor
        return try await store.write(announcing: [.identities]) { [store, creator = caller.user.id] db in
            let project = try await store.insertProject(orgID: orgID, name: name, description: description, creator: creator, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: orgID, action: "project.created", resourceType: "project", resourceID: project.id,
                    details: ["name": name]), actor: actor, on: db)
            return project
        }
    }

    public func get(_ projectID: String, by caller: Caller) async throws -> Project {
        try await app.access.project(projectID, .projectRead, caller.identity).project
    }

    /// Checks the caller may do `action` (`.projectUpdate`, `.projectMembersManage`) in the
    /// project, before the request body is read.
    public func authorize(_ action: Action, projectID: String, by caller: Caller) async throws {
        try await app.access.project(projectID, action, caller.identity)
    }

    public func update(_ projectID: String, name: String?, description text: String?, by caller: Caller) async throws -> Project {
        let access = try await app.access.project(projectID, .projectUpdate, caller.identity)
        var project = access.project
        if let name { project.name = try Validate.name(name) }
        if let text { project.description = try description(text) }
        let updated = project
        let actor = caller.auditActor
        try await store.write { [store] db in
            try await store.updateProject(updated, on: db)
            try await store.appendAudit(
                AuditRecord(orgID: updated.orgID, action: "project.updated", resourceType: "project", resourceID: updated.id),
                actor: actor, on: db)
        }
        return try await store.project(id: project.id) ?? project
    }

    public func delete(_ projectID: String, by caller: Caller) async throws {
        let project = try await app.access.project(projectID, .projectDelete, caller.identity).project
        let actor = caller.auditActor
        try await store.write(announcing: [.identities, .workflows]) { [store] db in
            try await store.deleteProject(id: project.id, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: project.orgID, action: "project.deleted", resourceType: "project",
                    resourceID: project.id, details: ["name": project.name]), actor: actor, on: db)
        }
    }

    public func members(_ projectID: String, by caller: Caller) async throws -> [ProjectMember] {
        let project = try await app.access.project(projectID, .projectRead, caller.identity).project
        return try await store.projectMembers(projectID: project.id)
    }

    public func setMember(_ projectID: String, userID: String, role: ProjectRole, by caller: Caller) async throws -> ProjectMember {
        let project = try await app.access.project(projectID, .projectMembersManage, caller.identity).project
        guard try await store.access(orgID: project.orgID, userID: userID) != nil else {
            throw FlowStackError.validation("The user is not a member of this project's organization.", field: "userId")
        }
        let actor = caller.auditActor
        try await store.write(announcing: [.identities]) { [store] db in
            try await store.setProjectMember(projectID: project.id, userID: userID, role: role, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: project.orgID, action: "project.member_set", resourceType: "project",
                    resourceID: project.id, details: ["user": userID, "role": role.rawValue]), actor: actor, on: db)
        }
        guard let member = try await store.projectMembers(projectID: project.id).first(where: { $0.userID == userID }) else {
            throw FlowStackError.notFound
        }
        return member
    }

    public func removeMember(_ projectID: String, userID: String, by caller: Caller) async throws {
        let project = try await app.access.project(projectID, .projectMembersManage, caller.identity).project
        let actor = caller.auditActor
        try await store.write(announcing: [.identities]) { [store] db in
            guard try await store.removeProjectMember(projectID: project.id, userID: userID, on: db) else { throw FlowStackError.notFound }
            try await store.appendAudit(
                AuditRecord(
                    orgID: project.orgID, action: "project.member_removed", resourceType: "project",
                    resourceID: project.id, details: ["user": userID]), actor: actor, on: db)
        }
    }
}
