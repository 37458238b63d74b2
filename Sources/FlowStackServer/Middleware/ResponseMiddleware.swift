import FlowStackCore
import FlowStackStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// The outermost middleware: turns every error into the JSON error shape (internal errors become
/// a bare 500 that names only the request id), adds the security headers to every response, and
/// logs one line per request without query string, body or credentials.
struct ResponseMiddleware<Context: RequestContext>: RouterMiddleware {
    var routes: RouteTable?

    /// Strict: the API serves JSON only and no page may be framed or run inline script.
    static var securityHeaders: HTTPFields { ResponseHeaders.security }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as FlowStackError {
            response = error.response()
            // A method refused at the door (TRACE, PROPFIND…) still learns what the path serves.
            if error.status == 405, response.headers[.allow] == nil, let routes {
                if let allowed = routes.methods(for: request.uri.path) {
                    response.headers[.allow] = allowed.joined(separator: ", ")
                } else {
                    response = Self.translate(.notFound)
                }
            }
        } catch let error as StoreError {
            response = FlowStackError(error).response()
        } catch let error as WorkflowStoreError {
            response = FlowStackError(error).response()
        } catch let error as any HTTPResponseError {
            if error.status == .notFound, let allowed = routes?.methods(for: request.uri.path) {
                response = FlowStackError(
                    status: 405, code: "method_not_allowed", message: "The endpoint supports \(allowed.joined(separator: ", "))."
                ).response()
                response.headers[.allow] = allowed.joined(separator: ", ")
            } else {
                response = Self.translate(error.status)
            }
        } catch let error as AcceptanceUnknown {
            context.logger.error("answered 503: acceptance unknown", metadata: ["execution": "\(error.executionID)"])
            response = FlowStackError(
                status: 503, code: "acceptance_unknown",
                message:
                    "The database did not say whether the execution was accepted. Send the request again with the same Idempotency-Key header: it then starts nothing twice."
            ).response()
        } catch let error as DatabaseUnavailable {
            context.logger.error("answered 503: the database is unavailable", metadata: ["error": "\(error)"])
            response = FlowStackError(status: 503, code: "database_unavailable", message: "The database is unavailable; try again.")
                .response()
        } catch let error as DatabaseTimeout {
            context.logger.error("answered 503: the database did not answer", metadata: ["error": "\(error)"])
            response = FlowStackError(
                status: 503, code: "database_unavailable",
                message: "The database did not answer in time; the request may or may not have taken effect."
            ).response()
        } catch {
            context.logger.error(
                "internal error", metadata: ["error.type": "\(type(of: error))", "error": "\(String(describing: error).prefix(500))"])
            response = FlowStackError(status: 500, code: "internal_error", message: "An internal error occurred (request \(context.id)).")
                .response()
        }
        for field in Self.securityHeaders { response.headers[field.name] = field.value }
        if ResponseHeaders.isWebhookPath(request.uri.path) {
            // What a workflow answers is user content: it runs, if at all, in an opaque origin.
            response.headers[.contentSecurityPolicy] = ResponseHeaders.webhookContentSecurityPolicy
        }
        response.headers[ResponseHeaders.requestID] = context.id
        let elapsed = ContinuousClock.now - start
        context.logger.info(
            "request",
            metadata: [
                "method": "\(request.method.rawValue)",
                "path": "\(String(ResponseHeaders.loggablePath(request.uri.path).prefix(200)).encodingControlCharacters)",
                "status": "\(response.status.code)",
                "ms": "\(Double(elapsed.components.attoseconds / 1_000_000_000_000) / 1000 + Double(elapsed.components.seconds) * 1000)",
            ])
        return response
    }

    static func translate(_ status: HTTPResponse.Status) -> Response {
        switch status.code {
        case 404: FlowStackError(status: 404, code: "not_found", message: "No such endpoint.").response()
        case 405: FlowStackError(status: 405, code: "method_not_allowed", message: "The endpoint does not support this method.").response()
        case 413: FlowStackError(status: 413, code: "payload_too_large", message: "The request body is too large.").response()
        case 400..<500: FlowStackError(status: Int(status.code), code: "bad_request", message: status.reasonPhrase).response()
        default: FlowStackError(status: 500, code: "internal_error", message: "An internal error occurred.").response()
        }
    }
}

/// The headers every response carries, built once (a generic type cannot hold stored statics).
enum ResponseHeaders {
    static let security: HTTPFields = [
        .strictTransportSecurity: "max-age=63072000; includeSubDomains",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        .contentSecurityPolicy: "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        HTTPField.Name("X-Frame-Options")!: "DENY",
        .cacheControl: "no-store",
        HTTPField.Name("Cross-Origin-Opener-Policy")!: "same-origin",
        HTTPField.Name("Cross-Origin-Resource-Policy")!: "same-origin",
    ]
    static let requestID = HTTPField.Name("X-Request-Id")!
    static let webhookContentSecurityPolicy = "sandbox; default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

    /// The path without the bearer secrets some paths carry (a resume token, an invitation
    /// token): whoever reads the log must not be able to use them.
    static func loggablePath(_ path: String) -> String {
        var segments = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if segments.count > 3, segments[1] == "webhook-waiting" {
            segments.replaceSubrange(3..., with: ["…"])
        } else if segments.count > 4, segments[1] == "api", segments[3] == "invitations" {
            segments[4] = "…"
        }
        return segments.joined(separator: "/")
    }

    static func isWebhookPath(_ path: String) -> Bool {
        path.hasPrefix("/webhook/") || path.hasPrefix("/webhook-waiting/")
    }
}
