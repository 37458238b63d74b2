import FlowStackApp
import FlowStackCore
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

    /// Routes for callers who are not signed in (yet).
    func addPublicRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.post("setup", use: setup)
        group.post("auth/signup", use: signup)
        group.post("auth/login", use: login)
    }

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.post("auth/logout", use: logout)
        group.get("me", use: me)
        group.post("me/password", use: changePassword)
    }

    var accounts: Accounts { api.app.accounts }

    @Sendable func setup(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let body = try await api.decode(SetupRequest.self, request, context)
        let (user, org) = try await accounts.setup(
            token: body.token, email: body.email, password: body.password, name: body.name,
            organization: body.organization, from: context.client)
        return try JSON.response(.created, AccountResponse(user: UserDTO(user), organization: OrganizationDTO(org, role: .owner)))
    }

    @Sendable func signup(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let body = try await api.decode(SignupRequest.self, request, context)
        let (user, org) = try await accounts.signup(
            email: body.email, password: body.password, name: body.name, organization: body.organization,
            from: context.client)
        return try JSON.response(.created, AccountResponse(user: UserDTO(user), organization: OrganizationDTO(org, role: .owner)))
    }

    @Sendable func login(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let body = try await api.decode(LoginRequest.self, request, context)
        let result = try await accounts.login(email: body.email, password: body.password, from: context.client)
        let cookie =
            "\(AuthService.sessionCookieName)=\(result.sessionToken); Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=\(Int(api.settings.app.sessionAbsoluteLifetime))"
        return try JSON.response(.ok, LoginResponse(user: UserDTO(result.user), csrfToken: result.csrfToken), headers: [.setCookie: cookie])
    }

    @Sendable func logout(_ request: Request, context: APIContext) async throws -> Response {
        try await accounts.logout(by: context.caller)
        let cookie = "\(AuthService.sessionCookieName)=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
        var response = JSON.empty()
        response.headers[.setCookie] = cookie
        return response
    }

    @Sendable func me(_ request: Request, context: APIContext) async throws -> Response {
        let orgs = try await api.app.organizations.list(by: context.caller)
        let method: String =
            switch context.caller.identity.method {
            case .session: "session"
            case .apiKey: "api_key"
            }
        return try JSON.response(
            .ok,
            MeResponse(
                user: UserDTO(context.caller.user), organizations: orgs.map { OrganizationDTO($0.0, role: $0.1) },
                authentication: method))
    }

    @Sendable func changePassword(_ request: Request, context: APIContext) async throws -> Response {
        guard case .session = context.caller.identity.method else {
            throw FlowStackError(
                status: 403, code: "session_required", message: "Changing a password needs a browser session, not an API key.")
        }
        let body = try await api.decode(PasswordChangeRequest.self, request, context)
        try await accounts.changePassword(current: body.currentPassword, new: body.newPassword, by: context.caller)
        return JSON.empty()
    }
}
