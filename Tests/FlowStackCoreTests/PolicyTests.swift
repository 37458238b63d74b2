import FlowStackCore
import Testing

/// The authorization policy as a table: every (org role × action) pair on a session, with the
/// expected decision. A change to the policy must change this table.
@Suite struct PolicyTableTests {
    static let orgLevel: [Action: [OrgRole: Decision]] = [
        .orgRead: [.owner: .allow, .admin: .allow, .member: .allow, .viewer: .allow],
        .memberList: [.owner: .allow, .admin: .allow, .member: .allow, .viewer: .allow],
        .projectList: [.owner: .allow, .admin: .allow, .member: .allow, .viewer: .allow],
        .orgUpdate: [.owner: .allow, .admin: .allow, .member: .forbidden, .viewer: .forbidden],
        .memberUnlock: [.owner: .allow, .admin: .allow, .member: .forbidden, .viewer: .forbidden],
        .invitationCreate: [.owner: .allow, .admin: .allow, .member: .forbidden, .viewer: .forbidden],
        .memberManage: [.owner: .allow, .admin: .allow, .member: .forbidden, .viewer: .forbidden],
        .apiKeyList: [.owner: .allow, .admin: .allow, .member: .allow, .viewer: .forbidden],
        .apiKeyCreate: [.owner: .allow, .admin: .allow, .member: .allow, .viewer: .forbidden],
        .apiKeyRevoke: [.owner: .allow, .admin: .allow, .member: .forbidden, .viewer: .forbidden],
        .auditRead: [.owner: .allow, .admin: .allow, .member: .forbidden, .viewer: .forbidden],
        .projectCreate: [.owner: .allow, .admin: .allow, .member: .allow, .viewer: .forbidden],
    ]

    /// Project actions for a user whose org role is `member`, by project role (nil: not in the project).
    static let projectLevel: [Action: [ProjectRole?: Decision]] = [
        .projectRead: [.editor: .allow, .runner: .allow, .viewer: .allow, nil: .notFound],
        .workflowRead: [.editor: .allow, .runner: .allow, .viewer: .allow, nil: .notFound],
        .workflowRun: [.editor: .allow, .runner: .allow, .viewer: .forbidden, nil: .notFound],
        .workflowEdit: [.editor: .allow, .runner: .forbidden, .viewer: .forbidden, nil: .notFound],
        .projectUpdate: [.editor: .allow, .runner: .forbidden, .viewer: .forbidden, nil: .notFound],
        .projectDelete: [.editor: .allow, .runner: .forbidden, .viewer: .forbidden, nil: .notFound],
        .projectMembersManage: [.editor: .allow, .runner: .forbidden, .viewer: .forbidden, nil: .notFound],
    ]

    @Test("the table covers every action")
    func coversEveryAction() {
        #expect(Set(Self.orgLevel.keys).union(Self.projectLevel.keys) == Set(Action.allCases))
    }

    @Test("org-level actions by role (team plan)", arguments: Array(orgLevel.keys), OrgRole.allCases)
    func orgLevelDecision(action: Action, role: OrgRole) {
        let decision = Policy.decide(action, AccessRequest(orgRole: role, plan: .team))
        #expect(decision == Self.orgLevel[action]![role]!, "\(role) \(action)")
    }

    @Test(
        "project actions by project role for org members", arguments: Array(projectLevel.keys),
        [ProjectRole?.none] + ProjectRole.allCases.map(Optional.some))
    func projectLevelDecision(action: Action, role: ProjectRole?) {
        let decision = Policy.decide(action, AccessRequest(orgRole: .member, projectRole: role, projectId: "prj_x"))
        #expect(decision == Self.projectLevel[action]![role]!, "\(String(describing: role)) \(action)")
    }

    @Test("org owners and admins edit every project; org viewers can never run", arguments: Action.allCases.filter(\.isProjectAction))
    func orgRoleCaps(action: Action) {
        #expect(Policy.decide(action, AccessRequest(orgRole: .admin, projectId: "p")) == .allow)
        #expect(Policy.decide(action, AccessRequest(orgRole: .owner, projectId: "p")) == .allow)
        let viewer = Policy.decide(action, AccessRequest(orgRole: .viewer, projectRole: .editor, projectId: "p"))
        #expect(viewer == (action == .projectRead || action == .workflowRead ? .allow : .forbidden))
    }

    @Test("a non-member is told the resource does not exist", arguments: Action.allCases)
    func nonMember(action: Action) {
        #expect(Policy.decide(action, AccessRequest(orgRole: nil, projectId: "p")) == .notFound)
    }

    @Test("a read-only API key is refused every write, including running workflows", arguments: Action.allCases)
    func readKey(action: Action) {
        let decision = Policy.decide(
            action, AccessRequest(orgRole: .owner, credential: .apiKey(scope: .read, projectId: nil), plan: .enterprise, projectId: "p"))
        #expect(decision == (action.isWrite ? .insufficientScope : .allow))
        #expect(Action.workflowRun.isWrite)
    }

    @Test("a project API key sees only its project")
    func projectKey() {
        let key = Credential.apiKey(scope: .write, projectId: "prj_a")
        #expect(Policy.decide(.projectRead, AccessRequest(orgRole: .owner, credential: key, projectId: "prj_a")) == .allow)
        #expect(Policy.decide(.projectRead, AccessRequest(orgRole: .owner, credential: key, projectId: "prj_b")) == .notFound)
        #expect(Policy.decide(.memberManage, AccessRequest(orgRole: .owner, credential: key)) == .forbidden)
        #expect(Policy.decide(.auditRead, AccessRequest(orgRole: .owner, credential: key, plan: .enterprise)) == .forbidden)
    }

    @Test("admins cannot touch owners or grant ownership; members may only leave")
    func memberManagement() {
        #expect(Policy.decide(.memberManage, AccessRequest(orgRole: .admin, targetRole: .owner)) == .forbidden)
        #expect(Policy.decide(.memberManage, AccessRequest(orgRole: .admin, targetRole: .member, grantedRole: .owner)) == .forbidden)
        #expect(Policy.decide(.memberManage, AccessRequest(orgRole: .admin, targetRole: .member, grantedRole: .admin)) == .allow)
        #expect(Policy.decide(.memberManage, AccessRequest(orgRole: .owner, targetRole: .owner, grantedRole: .admin)) == .allow)
        #expect(Policy.decide(.memberManage, AccessRequest(orgRole: .member, targetRole: .member, targetIsSelf: true)) == .allow)
        #expect(
            Policy.decide(.memberManage, AccessRequest(orgRole: .member, targetRole: .member, grantedRole: .admin, targetIsSelf: true))
                == .forbidden)
        #expect(Policy.decide(.apiKeyRevoke, AccessRequest(orgRole: .member, targetIsSelf: true)) == .allow)
    }
}

@Suite struct EntitlementTests {
    @Test("audit logs by plan: none on free and pro, 30 days on team, 1 year on enterprise")
    func auditLogs() {
        #expect(Entitlements.of(.free).auditRetentionDays == nil)
        #expect(Entitlements.of(.pro).auditRetentionDays == nil)
        #expect(Entitlements.of(.team).auditRetentionDays == 30)
        #expect(Entitlements.of(.enterprise).auditRetentionDays == 365)
        #expect(Policy.decide(.auditRead, AccessRequest(orgRole: .owner, plan: .free)) == .planUpgradeRequired(.auditLogs))
        #expect(Policy.decide(.auditRead, AccessRequest(orgRole: .owner, plan: .pro)) == .planUpgradeRequired(.auditLogs))
        #expect(Policy.decide(.auditRead, AccessRequest(orgRole: .owner, plan: .team)) == .allow)
    }

    @Test("enterprise-only features", arguments: [Feature.sso, .ipAllowlist, .customRetention, .dedicatedInfrastructure, .hipaa])
    func enterpriseOnly(feature: Feature) {
        #expect(Plan.allCases.filter { Entitlements.of($0).includes(feature) } == [.enterprise])
    }
}
