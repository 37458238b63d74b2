import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation

/// The instance's first owner, sign-up, sessions and the caller's own account.
public struct Accounts: Sendable {
    let app: UseCases
    var store: Store { app.store }

    /// Sets the instance up with the one-time setup token: the first owner and organization.
    public func setup(
        token: String, email rawEmail: String, password: String, name rawName: String, organization: String,
        from client: Client
    ) async throws -> (User, Organization) {
        try await app.auth.checkThrottle(client.ip)
        do {
            try await app.setup.check(token)
        } catch let error as FlowStackError where error.code == "invalid_setup_token" {
            await app.auth.recordFailure(client.ip)
            throw error
        }
        let email = try Validate.email(rawEmail)
        let name = try Validate.name(rawName)
        let orgName = try Validate.name(organization, field: "organization")
        let hash = try await app.auth.hashNewPassword(password)
        let (user, org) = try await store.write(announcing: [.identities]) { [store] db in
            try SetupService.check(token, against: try await store.setting(SetupService.settingName, on: db))
            let user = try await store.insertUser(email: email, name: name, passwordHash: hash, on: db)
            let org = try await store.insertOrganization(name: orgName, owner: user.id, on: db)
            try await store.setSetting(SetupService.settingName, nil, on: db)
            try await store.appendAudit(
                AuditRecord(orgID: org.id, action: "instance.setup", resourceType: "user", resourceID: user.id),
                actor: client.actor(user: user.id), on: db)
            return (user, org)
        }
        app.setup.consumed()
        return (user, org)
    }

    /// A new account with its own organization, when the instance allows sign-up.
    public func signup(
        email rawEmail: String, password: String, name rawName: String, organization: String,
        from client: Client
    ) async throws -> (User, Organization) {
        guard app.settings.allowSignup else {
            throw FlowStackError(
                status: 403, code: "signup_disabled",
                message: "Sign-up is disabled on this instance; ask an administrator for an invitation.")
        }
        try await app.auth.checkThrottle(client.ip)
        let email = try Validate.email(rawEmail)
        let name = try Validate.name(rawName)
        let orgName = try Validate.name(organization, field: "organization")
        let hash = try await app.auth.hashNewPassword(password)
        return try await store.write { [store] db in
            let user = try await store.insertUser(email: email, name: name, passwordHash: hash, on: db)
            let org = try await store.insertOrganization(name: orgName, plan: .free, owner: user.id, on: db)
            try await store.appendAudit(
                AuditRecord(orgID: org.id, action: "user.signup", resourceType: "user", resourceID: user.id),
                actor: client.actor(user: user.id), on: db)
            return (user, org)
        }
    }

    /// Checks credentials (with lockout and throttling) and opens a session.
    public func login(email: String, password: String, from client: Client) async throws -> AuthService.LoginResult {
        try await app.auth.login(email: email, password: password, from: client)
    }

    /// Ends the caller's browser session.
    public func logout(by caller: Caller) async throws {
        guard case .session(let session, _) = caller.identity.method else {
            throw FlowStackError(
                status: 403, code: "session_required", message: "Logout ends a browser session; revoke an API key instead.")
        }
        let actor = caller.auditActor
        try await store.write { [store] db in
            try await store.deleteSession(id: session.id, on: db)
            try await store.appendAudit(
                AuditRecord(orgID: nil, action: "auth.logout", resourceType: "session", resourceID: session.id), actor: actor, on: db)
        }
    }

    /// Changes the caller's password and ends their other sessions.
    public func changePassword(current: String, new: String, by caller: Caller) async throws {
        guard case .session(let session, _) = caller.identity.method else {
            throw FlowStackError(
                status: 403, code: "session_required", message: "Changing a password needs a browser session, not an API key.")
        }
        try await app.auth.checkThrottle(caller.client.ip)
        guard await app.auth.hasher.verify(current, against: caller.user.passwordHash) else {
            await app.auth.recordFailure(caller.client.ip)
            throw FlowStackError(
                status: 403, code: "invalid_current_password", message: "The current password is incorrect.", field: "currentPassword")
        }
        let hash = try await app.auth.hashNewPassword(new, field: "newPassword")
        let actor = caller.auditActor
        let userID = caller.user.id
        try await store.write(announcing: [.identities]) { [store] db in
            try await store.setPassword(userID: userID, passwordHash: hash, on: db)
            try await store.deleteSessions(userID: userID, keeping: session.id, on: db)
            try await store.appendAudit(
                AuditRecord(orgID: nil, action: "user.password_changed", resourceType: "user", resourceID: userID), actor: actor, on: db)
        }
    }
}
