import FlowStackApp
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
    /// The optional HTTPS port of the webhook origin: webhooks and resume calls are served
    /// there only, and the API and the app not at all (docs/security-model.md).
    public var webhookPort: Int?
    /// The address webhooks are reached at from outside, when it is its own host name (a proxy
    /// in front maps it to this server); a request for that host is served as the webhook origin.
    public var webhookPublicURL: String?
    /// nil: SQLite in the data directory.
    public var database: DatabaseLocation?
    /// Deadlines of database calls and, on PostgreSQL, of FlowStack's sessions.
    public var databaseTimeouts = DatabaseTimeouts()
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// Path of a keyring file, or the keyring JSON itself (for secrets injected by environment).
    public var keyringFile: String?
    public var keyringJSON: String?
    /// A command whose standard output is the keyring JSON (a KMS or vault CLI), run at start.
    public var keyringCommand: String?

    /// The address users reach this server at (for OAuth2 redirect URIs); by default
    /// `https://<host>:<port>`.
    public var publicURL: String?
    /// How long a webhook path's workflow is cached; announced workflow changes clear it on
    /// every replica at once, so this bounds only a missed announcement.
    public var webhookCacheLifetime: Duration = .seconds(1)
    public var maxBodyBytes = 1 << 20
    public var maxJSONDepth = 32
    /// Peers whose X-Forwarded-For header is believed; nobody's by default.
    public var trustedProxies: Set<String> = []

    /// The execution engine's leases, polling and concurrency.
    public var engine = EngineConfiguration()
    /// The identity and tenancy rules the use cases apply (lockout, sessions, keys, sign-up).
    public var app = AppSettings()
    /// The `flowstack-sandbox` executable for Code nodes (default: next to the running binary).
    public var sandboxPath: String?
    /// Hosts and CIDR ranges the HTTP Request node may reach although they are private.
    public var httpAllow: [String] = []

    /// The edge protection of the listeners and the API (see docs/security-model.md).
    public var edge = EdgeSettings()

    public init() {}

    /// The use cases' settings, with what they take from the server's (URLs, files, deadlines).
    public var resolvedApp: AppSettings {
        var app = self.app
        let base = publicURL ?? "https://\(host):\(port)"
        app.oauthRedirectURI = base.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/oauth2/callback"
        app.setupTokenFile = (dataDirectory as NSString).appendingPathComponent("setup-token")
        // After this long, a key whose execution was never written belongs to a request that died.
        app.idempotencyStaleAfter = max(engine.leaseDuration, databaseTimeouts.call.inSeconds + 5)
        return app
    }

    /// The engine's configuration, with what it takes from the server's settings.
    public var engineConfiguration: EngineConfiguration {
        var configuration = engine
        configuration.webhookBaseURL = webhookBaseURL
        return configuration
    }

    /// Where webhooks are reached from outside (resume URLs are built from it): the webhook
    /// public URL, else the webhook port on this host, else the server's own public URL.
    public var webhookBaseURL: String {
        if let webhookPublicURL { return webhookPublicURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) }
        if let webhookPort { return localURL(port: webhookPort) }
        if let publicURL { return publicURL }
        return localURL(port: port)
    }

    /// Whether webhooks have an origin of their own (and so are not served with the API).
    public var hasWebhookOrigin: Bool { webhookPort != nil || webhookHost != nil }

    /// The host name of the webhook public URL, when it differs from the server's.
    public var webhookHost: String? {
        guard let webhookPublicURL, let host = URLComponents(string: webhookPublicURL)?.host?.lowercased() else { return nil }
        let own = publicURL.flatMap { URLComponents(string: $0)?.host?.lowercased() }
        return host == own ? nil : host
    }

    private func localURL(port: Int) -> String {
        let display = host == "0.0.0.0" || host == "::" ? "localhost" : host
        return "https://\(display.contains(":") ? "[\(display)]" : display):\(port)"
    }

    public var resolvedDatabase: DatabaseLocation {
        database ?? .sqlite(path: (dataDirectory as NSString).appendingPathComponent("flowstack.sqlite"))
    }
}

/// Limits that keep one client from taking the server from everyone else: request rates, open
/// connections, and how long a connection may take to send a request.
public struct EdgeSettings: Sendable {
    /// API requests per client address: a bucket of `apiBurst` refilled at `apiPerSecond`.
    public var apiPerSecond: Double = 50
    public var apiBurst: Double = 200
    /// API requests per API key (per user for sessions), and per organization over all its API keys.
    public var keyPerSecond: Double = 50
    public var keyBurst: Double = 200
    public var orgPerSecond: Double = 200
    public var orgBurst: Double = 800
    /// Calls of one webhook path, and webhook calls per client address.
    public var webhookPerSecond: Double = 100
    public var webhookBurst: Double = 400
    public var webhookAddressPerSecond: Double = 50
    public var webhookAddressBurst: Double = 200
    /// Open connections one address may hold, and new connections (TLS handshakes) per second.
    public var connectionsPerAddress = 64
    public var handshakesPerSecond: Double = 20
    public var handshakeBurst: Double = 60
    /// A connection must deliver a request's headers within this long of opening (or of its
    /// previous answer); a body must keep arriving (no gap longer than `idleTimeout`) and be
    /// complete within `bodyTimeout` of its headers (a body trickled a byte at a time is cut).
    public var headerTimeout: Duration = .seconds(10)
    public var idleTimeout: Duration = .seconds(30)
    public var bodyTimeout: Duration = .seconds(60)
    public var maxHeaderBytes = 32 * 1024
    public var maxURLBytes = 8 * 1024

    public init() {}

    /// No request-rate or connection limits (0 turns each off): for tests and benchmarks that
    /// are one client at full speed. The timeouts and size limits stay.
    public static var unlimited: EdgeSettings {
        var edge = EdgeSettings()
        (edge.apiPerSecond, edge.apiBurst, edge.keyPerSecond, edge.keyBurst, edge.orgPerSecond, edge.orgBurst) = (0, 0, 0, 0, 0, 0)
        (edge.webhookPerSecond, edge.webhookBurst, edge.webhookAddressPerSecond, edge.webhookAddressBurst) = (0, 0, 0, 0)
        (edge.connectionsPerAddress, edge.handshakesPerSecond) = (0, 0)
        return edge
    }
}
