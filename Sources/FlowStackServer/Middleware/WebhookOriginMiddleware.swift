import FlowStackCore
import HTTPTypes
import Hummingbird

/// Keeps webhooks on an origin of their own, when one is configured: a request that arrives at
/// the webhook port, or names the webhook host, may reach only the webhooks, the resume calls
/// and the health probes; the app's origin no longer serves webhooks. A workflow's answer then
/// never comes from the origin that holds the app's cookies and script.
struct WebhookOriginMiddleware: RouterMiddleware {
    typealias Context = FlowStackRequestContext
    let webhookPort: Int?
    let webhookHost: String?
    let webhookBaseURL: String

    static func isWebhookPath(_ path: String) -> Bool {
        path.hasPrefix("/webhook/") || path.hasPrefix("/webhook-waiting/")
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let webhookPath = Self.isWebhookPath(path)
        if isWebhookOrigin(request, context) {
            guard webhookPath || path == "/healthz" || path == "/readyz" else {
                throw FlowStackError(
                    status: 404, code: "not_found", message: "This origin serves webhooks only (/webhook/…, /webhook-waiting/…).")
            }
        } else if webhookPath {
            throw FlowStackError(status: 404, code: "webhook_elsewhere", message: "Webhooks are served at \(webhookBaseURL)/webhook/….")
        }
        return try await next(request, context)
    }

    private func isWebhookOrigin(_ request: Request, _ context: Context) -> Bool {
        if let webhookPort, context.localPort == webhookPort { return true }
        // HTTP/1's Host header becomes the request's authority; a Host field left over wins.
        guard let webhookHost, let authority = request.headers[HTTPField.Name("Host")!] ?? request.head.authority else { return false }
        return Self.hostName(authority) == webhookHost
    }

    /// The host of an authority (`name:port`, `[v6]:port`), lower-cased.
    static func hostName(_ authority: String) -> String {
        let lower = authority.lowercased()
        if lower.hasPrefix("["), let end = lower.firstIndex(of: "]") { return String(lower[lower.index(after: lower.startIndex)..<end]) }
        return String(lower.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }
}
