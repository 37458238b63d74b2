import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Logging

/// Passwords, logins, sessions and API-key authentication.
public struct AuthService: Sendable {
    public static let sessionCookieName = "__Host-flowstack_session"
    public static let apiKeyPrefix = "fsk_"

    let store: Store
    let settings: AppSettings
    let hasher: PasswordHasher
    let throttle: FailureThrottle
    let passwordPolicy: PasswordPolicy
    let logger: Logger
    /// API-key lookups for a second (`apiKeyCacheLifetime`), keyed by the key's hash (never the
    /// key): most requests then need no database read. Every change to who may do what announces
    /// `Change.identities`, which empties it on every replica, so a revoked key or a changed
    /// membership takes effect everywhere at once.
    let apiKeys: ExpiringCache<String, Store.APIKeyIdentity>
    /// A valid hash of a random password, verified for unknown e-mails so both cases cost the same.
    let dummyHash: String

    public init(store: Store, settings: AppSettings, logger: Logger) async throws {
        self.store = store
        self.settings = settings
        self.hasher = PasswordHasher(memoryKiB: settings.passwordHashMemoryKiB)
        self.throttle = FailureThrottle(limit: settings.ipFailureLimit, window: settings.ipFailureWindow, clock: store.clock)
        self.passwordPolicy = .standard
        self.logger = logger
        self.apiKeys = ExpiringCache(lifetime: settings.apiKeyCacheLifetime)
        self.dummyHash = try await hasher.hash(Token.make(prefix: ""))
        store.changes.subscribe { [apiKeys] change in
            switch change {
            case .identities, .everything: apiKeys.removeAll()
            case .workflows, .variables: break
            }
        }
    }

    var clock: any WallClock { store.clock }

    // MARK: Throttling

    public func checkThrottle(_ address: String) async throws {
        if let retry = await throttle.retryAfter(AddressKey.of(address)) {
            throw FlowStackError(
                status: 429, code: "too_many_attempts",
                message: "Too many failed attempts from your address; try again later.", retryAfter: retry)
        }
    }

    public func recordFailure(_ address: String) async {
        await throttle.recordFailure(AddressKey.of(address))
    }

    // MARK: Passwords

    public func hashNewPassword(_ password: String, field: String = "password") async throws -> String {
        try passwordPolicy.validate(password, field: field)
        return try await hasher.hash(password)
    }

    // MARK: Login

    public struct LoginResult: Sendable {
        public var user: User
        public var sessionToken: String
        public var csrfToken: String
        public var session: Session
    }

    /// Checks credentials with lockout and throttling. Unknown e-mail and wrong password give
    /// the same answer; a locked account is refused even with the right password.
    public func login(email rawEmail: String, password: String, from client: Client) async throws -> LoginResult {
        let actor = client.actor()
        guard password.utf8.count <= 4096 else { throw FlowStackError.invalidCredentials }
        try await checkThrottle(actor.ip)
        let email = (try? Validate.email(rawEmail)) ?? rawEmail.lowercased()
        guard let user = try await store.user(email: email) else {
            // Counted and locked exactly like an account, so the answers (401, then 423) do not
            // tell whether the address has one.
            let slot = try await store.reserveUnknownLoginAttempt(
                emailHash: Token.hash(email), maxFailures: settings.lockoutThreshold,
                forgetAfter: settings.lockoutDuration)
            await recordFailure(actor.ip)
            try await store.audit(
                AuditRecord(
                    orgID: nil, action: "auth.login", resourceType: "user", resourceID: nil,
                    outcome: "failure", details: ["reason": "unknown_email", "email": String(email.prefix(254))]), actor: actor)
            switch slot {
            case .locked(let until):
                throw Self.locked(until: until, now: clock.now())
            case .allowed(let attempt):
                _ = await hasher.verify(password, against: dummyHash)
                if attempt >= settings.lockoutThreshold {
                    let until = clock.now().addingTimeInterval(settings.lockoutDuration)
                    try await store.lockUnknownAddress(emailHash: Token.hash(email), until: until)
                    throw Self.locked(until: until, now: clock.now())
                }
                throw FlowStackError.invalidCredentials
            }
        }
        switch try await store.reserveLoginAttempt(
            userID: user.id, maxFailures: settings.lockoutThreshold, forgetAfter: settings.lockoutDuration)
        {
        case .locked(let until):
            await recordFailure(actor.ip)
            try await store.audit(
                AuditRecord(
                    orgID: nil, action: "auth.login", resourceType: "user", resourceID: user.id,
                    outcome: "failure", details: ["reason": "account_locked"]), actor: actor)
            throw Self.locked(until: until, now: clock.now())
        case .allowed(let attempt):
            let valid = await hasher.verify(password, against: user.passwordHash)
            guard valid, !user.disabled else {
                await recordFailure(actor.ip)
                let lockNow = attempt >= settings.lockoutThreshold
                let until = clock.now().addingTimeInterval(settings.lockoutDuration)
                try await store.write { db in
                    try await store.appendAudit(
                        AuditRecord(
                            orgID: nil, action: "auth.login", resourceType: "user", resourceID: user.id,
                            outcome: "failure", details: ["reason": user.disabled ? "account_disabled" : "wrong_password"]),
                        actor: actor, on: db)
                    if lockNow {
                        try await store.lockUser(userID: user.id, until: until, on: db)
                        try await store.appendAudit(
                            AuditRecord(
                                orgID: nil, action: "user.locked", resourceType: "user", resourceID: user.id,
                                details: ["failedAttempts": String(attempt), "until": RFC3339.format(until)]),
                            actor: actor, on: db)
                    }
                }
                if lockNow { throw Self.locked(until: until, now: clock.now()) }
                throw FlowStackError.invalidCredentials
            }
            let token = Token.make(prefix: "fss_")
            let lifetime = settings.sessionAbsoluteLifetime
            let session = try await store.write { db in
                try await store.resetFailedLogins(userID: user.id, on: db)
                let session = try await store.insertSession(
                    userID: user.id, tokenHash: Token.hash(token), absoluteLifetime: lifetime,
                    ip: actor.ip, userAgent: actor.userAgent, on: db)
                var audited = actor
                audited.kind = .user
                audited.id = user.id
                try await store.appendAudit(
                    AuditRecord(
                        orgID: nil, action: "auth.login", resourceType: "user", resourceID: user.id,
                        details: ["session": session.id]), actor: audited, on: db)
                return session
            }
            return LoginResult(user: user, sessionToken: token, csrfToken: Self.csrfToken(for: token), session: session)
        }
    }

    static func locked(until: Date, now: Date) -> FlowStackError {
        FlowStackError(
            status: 423, code: "account_locked",
            message: "The account is locked after too many failed logins; try again later or ask an administrator to unlock it.",
            retryAfter: max(1, Int(until.timeIntervalSince(now).rounded())))
    }

    /// The CSRF token of a session: derived from the session token, so it needs no storage and
    /// cannot be computed without the cookie.
    public static func csrfToken(for sessionToken: String) -> String {
        Token.hmac("flowstack.csrf.v1", key: Array(sessionToken.utf8))
    }

    // MARK: Resolving identity

    public func identity(forSessionToken token: String) async throws -> Identity {
        guard token.hasPrefix("fss_"), token.count < 100, let (session, user) = try await store.session(tokenHash: Token.hash(token)) else {
            throw FlowStackError(status: 401, code: "session_invalid", message: "The session is not valid; log in again.")
        }
        let now = clock.now()
        if now >= session.expiresAt || now.timeIntervalSince(session.lastSeenAt) >= settings.sessionIdleTimeout {
            try await store.write { db in try await store.deleteSession(id: session.id, on: db) }
            throw FlowStackError(status: 401, code: "session_expired", message: "The session has expired; log in again.")
        }
        guard !user.disabled else {
            throw FlowStackError(status: 401, code: "session_invalid", message: "The session is not valid; log in again.")
        }
        if now.timeIntervalSince(session.lastSeenAt) >= 60 {
            try await store.touchSession(id: session.id)
        }
        return Identity(user: user, method: .session(session, csrfToken: Self.csrfToken(for: token)))
    }

    public func identity(forAuthorization header: String) async throws -> Identity {
        let invalid = FlowStackError(status: 401, code: "invalid_api_key", message: "The API key is not valid, expired or revoked.")
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw FlowStackError(status: 401, code: "unsupported_authorization", message: "Use 'Authorization: Bearer <API key>'.")
        }
        let key = parts[1].trimmingCharacters(in: .whitespaces)
        guard key.hasPrefix(Self.apiKeyPrefix), key.count < 100 else { throw invalid }
        let hash = Token.hash(key)
        guard let found = try await apiKeys.value(for: hash, load: { [store] in try await store.apiKey(hash: hash) }) else { throw invalid }
        let apiKey = found.key
        let user = found.user
        let now = clock.now()
        guard apiKey.revokedAt == nil, apiKey.expiresAt.map({ now < $0 }) ?? true, !user.disabled else { throw invalid }
        if apiKey.lastUsedAt.map({ now.timeIntervalSince($0) >= 60 }) ?? true {
            try await store.touchAPIKey(id: apiKey.id)
            apiKeys.update(hash) { $0.key.lastUsedAt = now }
        }
        let membership = found.organization.flatMap { org in found.role.map { (organization: org, role: $0) } }
        return Identity(user: user, method: .apiKey(apiKey, membership: membership))
    }
}
