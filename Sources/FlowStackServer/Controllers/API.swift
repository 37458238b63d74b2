import FlowStackApp
import FlowStackCore
import FlowStackEngine
import FlowStackOperations
import FlowStackStore
import Foundation
import Hummingbird
import Logging

/// What every controller needs; built once by the application builder.
struct API: Sendable {
    let app: UseCases
    let settings: ServerSettings
    let logger: Logger
    /// The request-rate buckets of the API and webhooks (RateLimitMiddleware, WebhookController).
    let limiter: RateLimiter
    let webhooks: WebhookCache

    var store: Store { app.store }
    var engine: ExecutionEngine { app.engine }
    var auth: AuthService { app.auth }
    var now: Date { store.clock.now() }

    func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: some RequestContext) async throws -> T {
        try await JSON.decode(type, from: request, context: context, maxBytes: settings.maxBodyBytes, maxDepth: settings.maxJSONDepth)
    }

    /// Decodes a body that may be absent (an empty body decodes as `empty`).
    func decodeOptional<T: Decodable>(_ type: T.Type, _ request: Request, _ context: some RequestContext, empty: T) async throws -> T {
        let length = request.headers[.contentLength].flatMap(Int.init) ?? (request.headers[.transferEncoding] == nil ? 0 : 1)
        if length == 0 { return empty }
        return try await decode(type, request, context)
    }
}

extension Parameters {
    /// A path identifier of the expected kind; anything else is simply not found.
    func id(_ name: String, prefix: String) throws -> String {
        guard let value = self.get(name), Identifier.isValid(value, prefix: prefix) else { throw FlowStackError.notFound }
        return value
    }
}

extension Request {
    /// Query parameter `name`, if present (possibly empty).
    func query(_ name: String) -> String? {
        uri.queryParameters[Substring(name)].map(String.init)
    }
}
