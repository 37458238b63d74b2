import FlowStackApp
import FlowStackCore
import FlowStackCrypto
import HTTPTypes
import Hummingbird

/// Resolves the caller's identity on the API's routes from `Authorization: Bearer fsk_…` or the
/// session cookie (webhooks and OAuth2 callbacks are other route groups and never see it).
///
/// It never answers by itself: the authenticated routes' `APIContext` reports why presented
/// credentials were refused. Public routes ignore bad credentials.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = FlowStackRequestContext
    let auth: AuthService

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
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
                        context.authFailure = FlowStackError(
                            status: 403, code: "csrf_token_invalid",
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
