import FlowStackCore
import FlowStackEngine
import FlowStackStore
import Foundation

/// Everything `flowstack serve` can be configured with. Defaults are the security page's values;
/// tests shorten the thresholds.
public struct ServerSettings: Sendable {
    public var dataDirectory: String = "./flowstack-data"
    public var host: String = "127.0.0.1"
    /// The HTTPS port; 0 picks a free port (tests).
    public var port: Int = 8443
    /// The optional plain-HTTP port that only rejects.
    public var httpPort: Int?
    /// nil: SQLite in the data directory.
    public var database: DatabaseLocation?
    /// Deadlines of database calls and, on PostgreSQL, of FlowStack's sessions.
    public var databaseTimeouts = DatabaseTimeouts()
    public var allowSignup = false
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// Path of a keyring file, or the keyring JSON itself (for secrets injected by environment).
    public var keyringFile: String?
    public var keyringJSON: String?
    /// A command whose standard output is the keyring JSON (a KMS or vault CLI), run at start.
    public var keyringCommand: String?

    public var sessionIdleTimeout: TimeInterval = 24 * 3600
    /// The address users reach this server at (for OAuth2 redirect URIs); by default
    /// `https://<host>:<port>`.
    public var publicURL: String?
    /// Key-encryption keys older than this are listed as due for rotation in security reports.
    public var keyRotationDays = 90
    public var sessionAbsoluteLifetime: TimeInterval = 7 * 24 * 3600
    public var lockoutThreshold = 10
    public var lockoutDuration: TimeInterval = 30 * 60
    /// Failed authentication attempts one IP may make per window before 429.
    public var ipFailureLimit = 30
    public var ipFailureWindow: TimeInterval = 15 * 60
    public var apiKeyRotationDays = 90
    /// How long an API-key lookup is cached: a key revoked through another server stops working
    /// here within this time (through this server, at once).
    public var apiKeyCacheLifetime: Duration = .seconds(1)
    public var invitationLifetime: TimeInterval = 7 * 24 * 3600
    public var maxBodyBytes = 1 << 20
    public var maxJSONDepth = 32
    /// Peers whose X-Forwarded-For header is believed; nobody's by default.
    public var trustedProxies: Set<String> = []
    /// argon2id memory in KiB (≥ 19 MiB).
    public var passwordHashMemoryKiB: UInt32 = 19 * 1024

    /// The execution engine's leases, polling and concurrency.
    public var engine = EngineConfiguration()
    /// The `flowstack-sandbox` executable for Code nodes (default: next to the running binary).
    public var sandboxPath: String?
    /// Hosts and CIDR ranges the HTTP Request node may reach although they are private.
    public var httpAllow: [String] = []

    public init() {}

    public var resolvedDatabase: DatabaseLocation {
        database ?? .sqlite(path: (dataDirectory as NSString).appendingPathComponent("flowstack.sqlite"))
    }
}
