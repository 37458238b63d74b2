import FlowStackApp
import FlowStackCore
import Foundation
import Hummingbird
import NIOCore

/// The request context of every route: the client's address and, on the API's routes after the
/// auth middleware, the identity or the reason there is none.
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

    /// Where the request came from, for use cases that take no identity.
    public var client: Client { Client(ip: clientIP, userAgent: userAgent) }
}

/// The context of the API's authenticated routes: made only when the request has an identity,
/// so every handler there has a caller. A request without one gets the 401 explaining why.
public struct APIContext: ChildRequestContext {
    public typealias ParentContext = FlowStackRequestContext
    public var coreContext: CoreRequestContextStorage
    public let caller: Caller

    public init(context: FlowStackRequestContext) throws {
        guard let identity = context.identity else { throw context.authFailure ?? FlowStackError.unauthenticated }
        self.coreContext = context.coreContext
        self.caller = Caller(identity: identity, client: context.client)
    }

    public var maxUploadSize: Int { 1 << 20 }
}
