import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import HTTPTypes
import Hummingbird

/// Resolves the caller's identity from `Authorization: Bearer fsk_…` or the session cookie.
///
/// It never answers by itself: a route that needs identity calls `requireIdentity()`, which
/// reports why presented credentials were refused. Public routes ignore bad credentials.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = FlowStackRequestContext
    let auth: AuthService

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path.hasPrefix("/webhook") {
            // Webhooks authenticate per workflow (WebhookController), never with user
            // credentials, and change no one's identity: the key cache stays.
            return try await next(request, context)
        }
        let response = try await authenticate(request, context: context, next: next)
        if request.method != .get && request.method != .head && request.method != .options, response.status.code < 400,
           !Self.leavesIdentitiesAlone(method: request.method, path: request.uri.path) {
            // A change may revoke a key or change what its creator may do: authenticate afresh.
            auth.apiKeys.removeAll()
        }
        return response
    }

    /// The changes that cannot revoke a key or change what anyone may do: running a workflow, and
    /// retrying or cancelling an execution (what automation calls at a high rate; webhooks never
    /// reach this check). Every other change empties the key cache; a path that only resembles
    /// these does too.
    static func leavesIdentitiesAlone(method: HTTPRequest.Method, path: String) -> Bool {
        guard method == .post else { return false }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0].isEmpty, parts[1] == "api", parts[2] == "v1", !parts[4].isEmpty else { return false }
        switch (parts[3], parts[5]) {
        case ("workflows", "run"), ("executions", "retry"), ("executions", "cancel"): return true
        default: return false
        }
    }

    private func authenticate(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let authorization = request.headers[.authorization] {
            do {
                context.identity = try await auth.identity(forAuthorization: authorization)
            } catch let error as FlowStackError {
                context.authFailure = error
            }
        } else if let token = request.cookies[AuthService.sessionCookieName]?.value {
            do {
                let identity = try await auth.identity(forSessionToken: token)
                if request.method != .get && request.method != .head && request.method != .options {
                    let sent = request.headers[HTTPField.Name("X-CSRF-Token")!] ?? ""
                    guard case .session(_, let csrf) = identity.method, Token.constantTimeEquals(sent, csrf) else {
                        context.authFailure = FlowStackError(status: 403, code: "csrf_token_invalid",
                                                             message: "State-changing requests with a session need the X-CSRF-Token header from login.")
                        return try await next(request, context)
                    }
                }
                context.identity = identity
            } catch let error as FlowStackError {
                context.authFailure = error
            }
        }
        return try await next(request, context)
    }
}
