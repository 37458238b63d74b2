import FlowStackCore
import FlowStackOperations
import Foundation
import HTTPTypes
import Hummingbird

/// The API's rate limits (the middleware of the API's route group). Before authentication, per client address, so a flood of anonymous or
/// invalid-key calls is refused before it costs a key lookup; after it, per API key and per
/// organization, so one automation cannot starve the others. Webhooks have limits of their own
/// (WebhookController); the health probes have none. Separate from the login throttle, which
/// counts failures, not requests.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = FlowStackRequestContext
    enum Phase: Sendable { case address, identity }
    let phase: Phase
    let limiter: RateLimiter
    let edge: EdgeSettings

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        switch phase {
        case .address:
            if let retry = limiter.take("ip:" + AddressKey.of(context.clientIP), .init(perSecond: edge.apiPerSecond, burst: edge.apiBurst))
            {
                throw FlowStackError.rateLimited("from your address", retryAfter: retry)
            }
        case .identity:
            guard let identity = context.identity else { break }
            switch identity.method {
            case .apiKey(let key, _):
                if let retry = limiter.take("key:" + key.id, .init(perSecond: edge.keyPerSecond, burst: edge.keyBurst)) {
                    throw FlowStackError.rateLimited("with this API key", retryAfter: retry)
                }
                if let retry = limiter.take("org:" + key.orgID, .init(perSecond: edge.orgPerSecond, burst: edge.orgBurst)) {
                    throw FlowStackError.rateLimited("for this organization", retryAfter: retry)
                }
            case .session:
                if let retry = limiter.take("user:" + identity.user.id, .init(perSecond: edge.keyPerSecond, burst: edge.keyBurst)) {
                    throw FlowStackError.rateLimited("from your account", retryAfter: retry)
                }
            }
        }
        return try await next(request, context)
    }
}
