import Foundation

/// What the use cases are configured with: the identity and tenancy rules of the security page.
/// The server builds it from its settings (`ServerSettings.app`); tests shorten the thresholds.
public struct AppSettings: Sendable {
    public var allowSignup = false
    public var sessionIdleTimeout: TimeInterval = 24 * 3600
    public var sessionAbsoluteLifetime: TimeInterval = 7 * 24 * 3600
    public var lockoutThreshold = 10
    public var lockoutDuration: TimeInterval = 30 * 60
    /// Failed authentication attempts one address may make per window before 429.
    public var ipFailureLimit = 30
    public var ipFailureWindow: TimeInterval = 15 * 60
    public var apiKeyRotationDays = 90
    /// Key-encryption keys older than this are listed as due for rotation in security reports.
    public var keyRotationDays = 90
    /// How long an API-key lookup is cached. Announced changes (`Change.identities`) clear it on
    /// every replica at once; the lifetime bounds a missed announcement.
    public var apiKeyCacheLifetime: Duration = .seconds(1)
    public var invitationLifetime: TimeInterval = 7 * 24 * 3600
    /// argon2id memory in KiB (≥ 19 MiB).
    public var passwordHashMemoryKiB: UInt32 = 19 * 1024
    /// Where the OAuth2 provider sends the browser back to (`<public URL>/oauth2/callback`).
    public var oauthRedirectURI = "https://127.0.0.1:8443/oauth2/callback"
    /// After this long, an idempotency key whose execution was never written belongs to a
    /// request that died (the longer of the engine's lease and a database call's deadline).
    public var idempotencyStaleAfter: TimeInterval = 30
    /// Where the one-time setup token is written (`<data-dir>/setup-token`).
    public var setupTokenFile = "./flowstack-data/setup-token"

    public init() {}
}
