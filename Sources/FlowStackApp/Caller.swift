import FlowStackCore
import FlowStackStore

/// Who is making a request, once authenticated.
public struct Identity: Sendable {
    public enum Method: Sendable {
        case session(Session, csrfToken: String)
        /// An API key, with its creator's membership of the key's organization (nil once they left).
        case apiKey(APIKey, membership: (organization: Organization, role: OrgRole)?)
    }
    public var user: User
    public var method: Method

    public init(user: User, method: Method) {
        self.user = user
        self.method = method
    }

    public var credential: Credential {
        switch method {
        case .session: .session
        case .apiKey(let key, _): .apiKey(scope: key.scope, projectId: key.projectID)
        }
    }

    /// The project an API key is restricted to, if any.
    public var keyProjectID: String? {
        if case .apiKey(let key, _) = method { return key.projectID }
        return nil
    }
}

/// Where a request came from: what the audit trail and the address throttle record.
public struct Client: Sendable {
    public var ip: String
    public var userAgent: String

    public init(ip: String, userAgent: String = "") {
        self.ip = ip
        self.userAgent = userAgent
    }

    /// The audit actor of someone not (yet) signed in; `user` once the use case knows who.
    public func actor(user: String? = nil) -> AuditActor {
        AuditActor(kind: user == nil ? .anonymous : .user, id: user, ip: ip, userAgent: userAgent)
    }
}

/// An authenticated caller of a use case: the identity and the client it called from.
public struct Caller: Sendable {
    public var identity: Identity
    public var client: Client

    public init(identity: Identity, client: Client) {
        self.identity = identity
        self.client = client
    }

    public var user: User { identity.user }

    public var auditActor: AuditActor {
        switch identity.method {
        case .session: AuditActor(kind: .user, id: identity.user.id, ip: client.ip, userAgent: client.userAgent)
        case .apiKey(let key, _): AuditActor(kind: .apiKey, id: key.id, ip: client.ip, userAgent: client.userAgent)
        }
    }
}

/// Proof that a caller passed a use case's authorization, with what the check loaded. Only the
/// slice that checked makes one (before the request body is read), and its use case takes it
/// instead of loading and checking again.
public struct Permit<Target: Sendable>: Sendable {
    let target: Target
    let caller: Caller
}
