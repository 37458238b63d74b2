/// Everything FlowStack lets an actor do, for authorization decisions.
public enum Action: String, Sendable, CaseIterable {
    case orgRead, orgUpdate
    case memberList, memberManage, memberUnlock, invitationCreate
    case apiKeyList, apiKeyCreate, apiKeyRevoke
    case auditRead
    case projectList, projectCreate, projectRead, projectUpdate, projectDelete, projectMembersManage
    case workflowRead, workflowEdit, workflowRun

    /// Whether the action changes state (or has side effects, like running a workflow).
    public var isWrite: Bool {
        switch self {
        case .orgRead, .memberList, .apiKeyList, .auditRead, .projectList, .projectRead, .workflowRead: false
        default: true
        }
    }

    /// Whether the action targets one project (and so needs a project role).
    public var isProjectAction: Bool {
        switch self {
        case .projectRead, .projectUpdate, .projectDelete, .projectMembersManage,
            .workflowRead, .workflowEdit, .workflowRun:
            true
        default: false
        }
    }
}

/// How the actor authenticated.
public enum Credential: Sendable, Equatable {
    case session
    /// An API key; `projectId` restricts it to one project.
    case apiKey(scope: APIKeyScope, projectId: String?)
}

/// What the policy needs to know about an actor and a resource.
public struct AccessRequest: Sendable, Equatable {
    /// The actor's role in the resource's organization; nil when not a member.
    public var orgRole: OrgRole?
    /// The actor's own role in the target project, if any.
    public var projectRole: ProjectRole?
    public var credential: Credential
    public var plan: Plan
    /// The project the action targets, for project actions.
    public var projectId: String?
    /// For actions on a member: that member's current role, and the role being granted.
    public var targetRole: OrgRole?
    public var grantedRole: OrgRole?
    /// Whether the target (an API key, a membership) belongs to the actor.
    public var targetIsSelf: Bool

    public init(
        orgRole: OrgRole?, projectRole: ProjectRole? = nil, credential: Credential = .session,
        plan: Plan = .free, projectId: String? = nil, targetRole: OrgRole? = nil,
        grantedRole: OrgRole? = nil, targetIsSelf: Bool = false
    ) {
        self.orgRole = orgRole
        self.projectRole = projectRole
        self.credential = credential
        self.plan = plan
        self.projectId = projectId
        self.targetRole = targetRole
        self.grantedRole = grantedRole
        self.targetIsSelf = targetIsSelf
    }
}

/// The outcome of an authorization decision.
public enum Decision: Sendable, Equatable {
    case allow
    /// Hide the resource's existence: the caller has no access to its tenant or project.
    case notFound
    case forbidden
    case insufficientScope
    case planUpgradeRequired(Feature)

    /// The error to answer with, or nil when allowed.
    public var error: FlowStackError? {
        switch self {
        case .allow: nil
        case .notFound: .notFound
        case .forbidden: .forbidden
        case .insufficientScope: .insufficientScope
        case .planUpgradeRequired(let feature): .featureNotInPlan(feature.displayName)
        }
    }
}

/// The single authorization policy of FlowStack: every route asks it, and it is tested as a table.
public enum Policy {
    public static func decide(_ action: Action, _ request: AccessRequest) -> Decision {
        guard let orgRole = request.orgRole else { return .notFound }

        if case .apiKey(let scope, let keyProject) = request.credential {
            if let keyProject {
                // A project key sees its own project and nothing else of the org's management.
                if action.isProjectAction {
                    if request.projectId != keyProject { return .notFound }
                } else if action != .orgRead && action != .projectList {
                    return .forbidden
                }
            }
            if scope == .read && action.isWrite { return .insufficientScope }
        }

        if action.isProjectAction {
            return decideProject(action, orgRole: orgRole, projectRole: request.projectRole)
        }

        let isAdmin = orgRole >= .admin
        switch action {
        case .orgRead, .memberList, .projectList:
            return .allow
        case .orgUpdate, .memberUnlock, .invitationCreate:
            return isAdmin ? .allow : .forbidden
        case .memberManage:
            guard isAdmin else {
                // Anyone but the last owner may leave; the store enforces "last owner".
                return request.targetIsSelf && request.grantedRole == nil ? .allow : .forbidden
            }
            if orgRole == .admin && (request.targetRole == .owner || request.grantedRole == .owner) {
                return .forbidden
            }
            return .allow
        case .apiKeyList, .apiKeyCreate:
            return orgRole >= .member ? .allow : .forbidden
        case .apiKeyRevoke:
            return isAdmin || (orgRole >= .member && request.targetIsSelf) ? .allow : .forbidden
        case .auditRead:
            guard isAdmin else { return .forbidden }
            return Entitlements.of(request.plan).includes(.auditLogs) ? .allow : .planUpgradeRequired(.auditLogs)
        case .projectCreate:
            return orgRole >= .member ? .allow : .forbidden
        default:
            return .forbidden
        }
    }

    /// The role a user effectively holds in a project: org owners and admins edit every project;
    /// org viewers never do more than view.
    public static func effectiveProjectRole(orgRole: OrgRole, projectRole: ProjectRole?) -> ProjectRole? {
        if orgRole >= .admin { return .editor }
        guard let projectRole else { return nil }
        return orgRole == .viewer ? .viewer : projectRole
    }

    private static func decideProject(_ action: Action, orgRole: OrgRole, projectRole: ProjectRole?) -> Decision {
        guard let role = effectiveProjectRole(orgRole: orgRole, projectRole: projectRole) else { return .notFound }
        switch action {
        case .projectRead, .workflowRead:
            return .allow
        case .workflowRun:
            return role >= .runner ? .allow : .forbidden
        case .projectUpdate, .workflowEdit, .projectMembersManage, .projectDelete:
            return role == .editor ? .allow : .forbidden
        default:
            return .forbidden
        }
    }
}
