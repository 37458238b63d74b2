import FlowStackCore
import FlowStackStore

/// Looks up what the policy needs and asks it. Every protected route goes through here.
public struct Access: Sendable {
    let store: Store

    public init(store: Store) {
        self.store = store
    }

    public struct OrgAccess: Sendable {
        public var orgID: String
        public var role: OrgRole
        public var plan: Plan
    }

    /// The caller's access to an organization for `action`, or the policy's refusal.
    @discardableResult
    public func org(
        _ orgID: String, _ action: Action, _ identity: Identity, targetRole: OrgRole? = nil,
        grantedRole: OrgRole? = nil, targetIsSelf: Bool = false
    ) async throws -> OrgAccess {
        let access: (role: OrgRole, plan: Plan)?
        if case .apiKey(let key, let membership) = identity.method {
            // An API key only ever reaches its own organization; its membership came with it.
            guard key.orgID == orgID else { throw FlowStackError.notFound }
            access = membership.map { ($0.role, $0.organization.plan) }
        } else {
            access = try await store.access(orgID: orgID, userID: identity.user.id)
        }
        let request = AccessRequest(
            orgRole: access?.role, credential: identity.credential, plan: access?.plan ?? .free,
            targetRole: targetRole, grantedRole: grantedRole, targetIsSelf: targetIsSelf)
        if let error = Policy.decide(action, request).error { throw error }
        return OrgAccess(orgID: orgID, role: access!.role, plan: access!.plan)
    }

    public struct ProjectAccess: Sendable {
        public var project: Project
        public var orgRole: OrgRole
        public var role: ProjectRole
    }

    /// The caller's access to a project for `action`; a project the caller cannot see is 404.
    @discardableResult
    public func project(_ projectID: String, _ action: Action, _ identity: Identity) async throws -> ProjectAccess {
        guard let project = try await store.project(id: projectID) else { throw FlowStackError.notFound }
        let access: (role: OrgRole, plan: Plan)?
        if case .apiKey(let key, let membership) = identity.method {
            guard key.orgID == project.orgID else { throw FlowStackError.notFound }
            access = membership.map { ($0.role, $0.organization.plan) }
        } else {
            access = try await store.access(orgID: project.orgID, userID: identity.user.id)
        }
        let projectRole = try await store.projectRole(projectID: projectID, userID: identity.user.id)
        let request = AccessRequest(
            orgRole: access?.role, projectRole: projectRole, credential: identity.credential,
            plan: access?.plan ?? .free, projectId: projectID)
        if let error = Policy.decide(action, request).error { throw error }
        let role = Policy.effectiveProjectRole(orgRole: access!.role, projectRole: projectRole) ?? .viewer
        return ProjectAccess(project: project, orgRole: access!.role, role: role)
    }
}
