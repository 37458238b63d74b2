import FlowStackCore
import Foundation
import HTTPTypes
import Hummingbird

/// Refuses requests that are unsafe before any handler sees them:
/// credentials in the query string (they end up in logs and browser history), bodies that
/// declare a size over the limit, and bodies whose content type is not JSON on the JSON API
/// (n8n CVE-2026-21858 came from an endpoint that also parsed other content types).
struct RequestGuardMiddleware: RouterMiddleware {
    typealias Context = FlowStackRequestContext
    let maxBodyBytes: Int
    let trustedProxies: Set<String>

    static let credentialParameterNames: Set<String> = [
        "api_key", "apikey", "api-key", "key", "token", "access_token", "session", "password", "flowstack_session",
    ]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.userAgent = String((request.headers[.userAgent] ?? "").prefix(512))
        if trustedProxies.contains(context.peerIP), let forwarded = request.headers[HTTPField.Name("X-Forwarded-For")!] {
            // The right-most address is the one our trusted proxy saw.
            if let last = forwarded.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !last.isEmpty {
                context.clientIP = String(last.prefix(64))
            }
        }
        for (name, value) in request.uri.queryParameters {
            if name.contains("\u{0}") || value.contains("\u{0}") {
                throw FlowStackError.badRequest("invalid_parameter", "Query parameters must not contain the NUL character.", field: String(name))
            }
            if Self.credentialParameterNames.contains(name.lowercased()) || value.hasPrefix("fsk_") {
                throw FlowStackError.badRequest(
                    "credentials_in_query",
                    "Credentials are not accepted in the query string; send an API key as 'Authorization: Bearer <key>'.",
                    field: String(name)
                )
            }
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBodyBytes {
            throw FlowStackError(status: 413, code: "payload_too_large", message: "The request body is larger than \(maxBodyBytes) bytes.")
        }
        let hasBody = (request.headers[.contentLength].flatMap(Int.init) ?? 0) > 0 || request.headers[.transferEncoding] != nil
        if hasBody && request.uri.path.hasPrefix("/api/") && !JSON.isJSONContentType(request.headers[.contentType]) {
            throw FlowStackError(status: 415, code: "unsupported_media_type", message: "The request body must be application/json.")
        }
        return try await next(request, context)
    }
}
