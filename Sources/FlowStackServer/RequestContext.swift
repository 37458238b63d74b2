import FlowStackCore
import FlowStackStore
import Foundation
import Hummingbird
import NIOCore

/// Who is making a request, once authenticated.
public struct Identity: Sendable {
    public enum Method: Sendable {
        case session(Session, csrfToken: String)
        /// An API key, with its creator's membership of the key's organization (nil once they left).
        case apiKey(APIKey, membership: (organization: Organization, role: OrgRole)?)
    }
    public var user: User
    public var method: Method

    public var credential: Credential {
        switch method {
        case .session: .session
        case .apiKey(let key, _): .apiKey(scope: key.scope, projectId: key.projectID)
        }
    }
}

/// The request context of the public API: the client's address and, after the auth
/// middleware, the identity or the reason there is none.
public struct FlowStackRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The peer address of the connection.
    public let peerIP: String
    /// The local port the request arrived at (which listener).
    public let localPort: Int?
    /// The client address used for throttling and audit (the peer, or X-Forwarded-For from a trusted proxy).
    public var clientIP: String
    public var userAgent = ""
    public var identity: Identity?
    /// Why credentials that were presented were refused (reported when a route needs identity).
    public var authFailure: FlowStackError?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        let address = source.channel.remoteAddress?.ipAddress ?? "unknown"
        self.peerIP = address
        self.clientIP = address
        self.localPort = source.channel.localAddress?.port
    }

    public var maxUploadSize: Int { 1 << 20 }

    /// The authenticated identity, or the 401 explaining why there is none.
    public func requireIdentity() throws -> Identity {
        if let identity { return identity }
        throw authFailure ?? FlowStackError.unauthenticated
    }

    public var auditActor: AuditActor {
        switch identity?.method {
        case .session: AuditActor(kind: .user, id: identity?.user.id, ip: clientIP, userAgent: userAgent)
        case .apiKey(let key, _): AuditActor(kind: .apiKey, id: key.id, ip: clientIP, userAgent: userAgent)
        case nil: AuditActor(kind: .anonymous, id: nil, ip: clientIP, userAgent: userAgent)
        }
    }
}
