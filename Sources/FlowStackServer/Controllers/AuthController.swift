import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Hummingbird

/// Setup, signup, login, logout and the caller's own account.
struct AuthController {
    let api: API

    struct SetupRequest: Decodable {
        var token: String
        var email: String
        var password: String
        var name: String
        var organization: String
    }

    struct SignupRequest: Decodable {
        var email: String
        var password: String
        var name: String
        var organization: String
    }

    struct LoginRequest: Decodable {
        var email: String
        var password: String
    }

    struct PasswordChangeRequest: Decodable {
        var currentPassword: String
        var newPassword: String
    }

    struct AccountResponse: Encodable {
        var user: UserDTO
        var organization: OrganizationDTO
    }

    struct LoginResponse: Encodable {
        var user: UserDTO
        var csrfToken: String
    }

    struct MeResponse: Encodable {
        var user: UserDTO
        var organizations: [OrganizationDTO]
        var authentication: String
    }

    func addRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.post("setup", use: setup)
        group.post("auth/signup", use: signup)
        group.post("auth/login", use: login)
        group.post("auth/logout", use: logout)
        group.get("me", use: me)
        group.post("me/password", use: changePassword)
    }

    @Sendable func setup(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let body = try await api.decode(SetupRequest.self, request, context)
        try await api.auth.checkThrottle(context.clientIP)
        do {
            try await api.store.read { db in try await api.setup.check(body.token, on: db) }
        } catch let error as FlowStackError where error.code == "invalid_setup_token" {
            await api.auth.recordFailure(context.clientIP)
            throw error
        }
        let email = try Validate.email(body.email)
        let name = try Validate.name(body.name)
        let orgName = try Validate.name(body.organization, field: "organization")
        let hash = try await api.auth.hashNewPassword(body.password)
        let actor = context.auditActor
        let (user, org) = try await api.store.write { db in
            try await api.setup.check(body.token, on: db)
            let user = try await api.store.insertUser(email: email, name: name, passwordHash: hash, on: db)
            let org = try await api.store.insertOrganization(name: orgName, owner: user.id, on: db)
            try await api.store.setSetting(SetupService.settingName, nil, on: db)
            var owner = actor
            owner.kind = .user
            owner.id = user.id
            try await api.store.appendAudit(AuditRecord(orgID: org.id, action: "instance.setup", resourceType: "user", resourceID: user.id), actor: owner, on: db)
            return (user, org)
        }
        api.setup.consumed()
        return try JSON.response(.created, AccountResponse(user: UserDTO(user), organization: OrganizationDTO(org, role: .owner)))
    }

    @Sendable func signup(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        guard api.settings.allowSignup else {
            throw FlowStackError(status: 403, code: "signup_disabled", message: "Sign-up is disabled on this instance; ask an administrator for an invitation.")
        }
        let body = try await api.decode(SignupRequest.self, request, context)
        try await api.auth.checkThrottle(context.clientIP)
        let email = try Validate.email(body.email)
        let name = try Validate.name(body.name)
        let orgName = try Validate.name(body.organization, field: "organization")
        let hash = try await api.auth.hashNewPassword(body.password)
        let actor = context.auditActor
        let (user, org) = try await api.store.write { db in
            let user = try await api.store.insertUser(email: email, name: name, passwordHash: hash, on: db)
            let org = try await api.store.insertOrganization(name: orgName, plan: .free, owner: user.id, on: db)
            var signedUp = actor
            signedUp.kind = .user
            signedUp.id = user.id
            try await api.store.appendAudit(AuditRecord(orgID: org.id, action: "user.signup", resourceType: "user", resourceID: user.id), actor: signedUp, on: db)
            return (user, org)
        }
        return try JSON.response(.created, AccountResponse(user: UserDTO(user), organization: OrganizationDTO(org, role: .owner)))
    }

    @Sendable func login(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let body = try await api.decode(LoginRequest.self, request, context)
        guard body.password.utf8.count <= 4096 else { throw FlowStackError.invalidCredentials }
        let result = try await api.auth.login(email: body.email, password: body.password, actor: context.auditActor)
        let cookie = "\(AuthService.sessionCookieName)=\(result.sessionToken); Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=\(Int(api.settings.sessionAbsoluteLifetime))"
        return try JSON.response(.ok, LoginResponse(user: UserDTO(result.user), csrfToken: result.csrfToken), headers: [.setCookie: cookie])
    }

    @Sendable func logout(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        guard case .session(let session, _) = identity.method else {
            throw FlowStackError(status: 403, code: "session_required", message: "Logout ends a browser session; revoke an API key instead.")
        }
        let actor = context.auditActor
        try await api.store.write { db in
            try await api.store.deleteSession(id: session.id, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: nil, action: "auth.logout", resourceType: "session", resourceID: session.id), actor: actor, on: db)
        }
        let cookie = "\(AuthService.sessionCookieName)=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
        var response = JSON.empty()
        response.headers[.setCookie] = cookie
        return response
    }

    @Sendable func me(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgs: [(Organization, OrgRole)]
        if case .apiKey(_, let membership) = identity.method {
            orgs = membership.map { [($0.organization, $0.role)] } ?? []
        } else {
            orgs = try await api.store.organizations(forUser: identity.user.id)
        }
        let method: String = switch identity.method {
        case .session: "session"
        case .apiKey: "api_key"
        }
        return try JSON.response(.ok, MeResponse(user: UserDTO(identity.user), organizations: orgs.map { OrganizationDTO($0.0, role: $0.1) }, authentication: method))
    }

    @Sendable func changePassword(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        guard case .session(let session, _) = identity.method else {
            throw FlowStackError(status: 403, code: "session_required", message: "Changing a password needs a browser session, not an API key.")
        }
        let body = try await api.decode(PasswordChangeRequest.self, request, context)
        try await api.auth.checkThrottle(context.clientIP)
        guard await api.auth.hasher.verify(body.currentPassword, against: identity.user.passwordHash) else {
            await api.auth.recordFailure(context.clientIP)
            throw FlowStackError(status: 403, code: "invalid_current_password", message: "The current password is incorrect.", field: "currentPassword")
        }
        let hash = try await api.auth.hashNewPassword(body.newPassword, field: "newPassword")
        let actor = context.auditActor
        let userID = identity.user.id
        try await api.store.write { db in
            try await api.store.setPassword(userID: userID, passwordHash: hash, on: db)
            try await api.store.deleteSessions(userID: userID, keeping: session.id, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: nil, action: "user.password_changed", resourceType: "user", resourceID: userID), actor: actor, on: db)
        }
        return JSON.empty()
    }
}
