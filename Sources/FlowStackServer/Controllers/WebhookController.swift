import Crypto
import FlowStackApp
import FlowStackCore
import FlowStackCrypto
import FlowStackEngine
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Webhook ingress: `/webhook/{path}` starts the active workflow that serves the path, after the
/// Webhook node's authentication; `/webhook-waiting/{executionId}` resumes a waiting execution.
struct WebhookController {
    let api: API
    /// How far a signed request's timestamp may be from the server's clock.
    static let signatureTolerance: TimeInterval = 300

    func addRoutes(to router: Router<FlowStackRequestContext>) {
        for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete, .head] {
            router.on("webhook/**", method: method, use: receive)
        }
        router.post("webhook-waiting/:executionId/:token", use: resume)
    }

    @Sendable func receive(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let edge = api.settings.edge
        if let retry = api.limiter.take(
            "hook-ip:" + AddressKey.of(context.clientIP), .init(perSecond: edge.webhookAddressPerSecond, burst: edge.webhookAddressBurst))
        {
            throw FlowStackError.rateLimited("from your address", retryAfter: retry)
        }
        let raw = context.parameters.getCatchAll().joined(separator: "/")
        guard let path = WebhookPaths.normalize(raw), let (route, workflow) = try await api.webhooks.lookup(path, store: api.store),
            let node = workflow.definition.node(named: route.node)
        else {
            throw FlowStackError(status: 404, code: "webhook_not_found", message: "No active workflow serves this webhook path.")
        }
        guard request.method.rawValue == route.method else {
            var headers: HTTPFields = [:]
            headers[.allow] = route.method
            let error = FlowStackError(status: 405, code: "method_not_allowed", message: "This webhook accepts \(route.method) requests.")
            return try JSON.response(.methodNotAllowed, ErrorBody(error), headers: headers)
        }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: api.settings.maxBodyBytes)
        } catch {
            throw FlowStackError(
                status: 413, code: "payload_too_large", message: "The request body is larger than \(api.settings.maxBodyBytes) bytes.")
        }
        let bytes = Array(body.readableBytesView)
        let credentialHeader = try await authenticate(request, bytes: bytes, path: path, node: node, workflow: workflow, context: context)
        // The webhook's own budget is spent by callers that pass its authentication only, so
        // others cannot use it up (they meet the per-address limit and the failure throttle).
        if let retry = api.limiter.take("hook:" + path, .init(perSecond: edge.webhookPerSecond, burst: edge.webhookBurst)) {
            throw FlowStackError.rateLimited("to this webhook", retryAfter: retry)
        }
        let item = Item(
            json: .object([
                "body": try parseBody(bytes, contentType: request.headers[.contentType]),
                "headers": .object(visibleHeaders(request, hidden: credentialHeader.map { [$0.lowercased()] } ?? [])),
                "query": .object(
                    JSONObject(firstOf: request.uri.queryParameters.map { (String($0.key), JSONValue.string(String($0.value))) })),
                "method": .string(request.method.rawValue),
            ]))
        let respond = node.parameters["respond"]?.stringValue ?? "lastNode"
        let start = try await Idempotency.key(request).asyncMap { try await api.app.executions.begin($0, workflowID: workflow.id) }
        if case .replay(let id) = start {
            return Idempotency.markReplayed(try await replay(id, respond: respond, workflow: workflow.definition))
        }
        let executionID = start?.newExecutionID
        switch respond {
        case "immediately":
            let record = try await api.engine.submit(workflow, trigger: node.name, items: [item], mode: .webhook, id: executionID)
            return try JSON.response(.ok, ["executionId": record.id])
        case "respondNode":
            // Answered when the Respond to Webhook node runs; the rest of the workflow goes on.
            let reply = WebhookReply()
            let engine = api.engine
            let run = Task {
                defer { reply.close() }
                return try await engine.runNow(
                    workflow, trigger: node.name, items: [item], mode: .webhook, reply: reply, task: .caller,
                    id: executionID)
            }
            if let answer = await reply.wait() { return try response(answer.json) }
            return try self.respond(try await run.value, workflow: workflow.definition)
        default:
            let result = try await api.engine.runNow(
                workflow, trigger: node.name, items: [item], mode: .webhook, task: .shared, id: executionID)
            return try self.respond(result, workflow: workflow.definition)
        }
    }

    /// The answer to a repeated request: what the first one was (or would have been) answered.
    private func replay(_ id: String, respond: String, workflow: Workflow) async throws -> Response {
        if respond == "immediately" { return try JSON.response(.ok, ["executionId": id]) }
        guard let result = try await api.engine.result(of: id, waitingUpTo: 30) else {
            throw FlowStackError(status: 404, code: "not_found", message: "The execution this key started no longer exists.")
        }
        guard result.record.status.isFinished || result.record.status == .waiting else {
            return try JSON.response(.accepted, ["executionId": id, "status": result.record.status.rawValue])
        }
        return try self.respond(result, workflow: workflow)
    }

    /// The answer of a finished run: the Respond to Webhook node's response if one ran, else the
    /// last node's items (one item as an object, several as an array).
    private func respond(_ result: ExecutionResult, workflow: Workflow) throws -> Response {
        switch result.record.status {
        case .succeeded:
            break
        case .waiting:
            return try JSON.response(.accepted, ["executionId": result.record.id, "status": "waiting"])
        default:
            let error = FlowStackError(
                status: 500, code: "workflow_failed", message: "The workflow failed (execution \(result.record.id)).")
            return try JSON.response(.internalServerError, ErrorBody(error))
        }
        let responders = workflow.nodes.filter { $0.type == RespondToWebhookNode.descriptor.type }.compactMap { node -> Item? in
            guard let outputs = result.machine.outputs[node.name], outputs.count > RespondToWebhookNode.responseOutput else { return nil }
            return outputs[RespondToWebhookNode.responseOutput].first
        }
        if let response = responders.first?.json {
            return try self.response(response)
        }
        let output = result.output.map(\.json)
        return try JSON.response(.ok, output.count == 1 ? output[0] : .array(output))
    }

    /// The HTTP answer a Respond to Webhook node described, stripped of what would let a workflow
    /// speak with FlowStack's authority: no cookies (a planted `flowstack_oauth2` or session cookie
    /// is a login CSRF or an OAuth2 consent hijack), no CORS grant, no security header of its own.
    /// Every webhook answer also carries `Content-Security-Policy: sandbox` (ResponseMiddleware),
    /// so HTML a workflow sends runs, if at all, in an opaque origin that sees no FlowStack cookie.
    private func response(_ response: JSONValue) throws -> Response {
        let status = Int(response["statusCode"]?.numberValue ?? 200)
        var headers = Self.answerHeaders(response["headers"])
        let body = response["body"] ?? .null
        if case .string(let text) = body {
            if headers[.contentType] == nil { headers[.contentType] = "text/plain; charset=utf-8" }
            return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return try JSON.response(.init(code: status), body, headers: headers)
    }

    /// The headers of a Respond node's answer that may be sent; the rest are dropped (the node
    /// refuses them already: this is the second line).
    static func answerHeaders(_ given: JSONValue?) -> HTTPFields {
        var headers: HTTPFields = [:]
        for (name, value) in given?.objectValue ?? [:] {
            guard let field = HTTPField.Name(name), let text = value.stringValue, HeaderCheck.isValue(text),
                WebhookResponseHeaders.refusal(name: name, value: text) == nil
            else { continue }
            headers[field] = text
        }
        return headers
    }

    /// Resumes a Wait node waiting for a call: the node's output is the call's item
    /// (`{body, headers, query, method}`, without credentials), like a webhook trigger's.
    @Sendable func resume(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let id = try context.parameters.id("executionId", prefix: "exe")
        let notWaiting = FlowStackError(status: 404, code: "not_waiting", message: "No execution waits for a resume call here.")
        // A wrong token answers like an unknown id: the URL is the credential, and its absence
        // tells nothing about which executions exist or wait. Wrong tokens count as failed
        // authentication for the caller's address.
        let edge = api.settings.edge
        if let retry = api.limiter.take(
            "hook-ip:" + AddressKey.of(context.clientIP), .init(perSecond: edge.webhookAddressPerSecond, burst: edge.webhookAddressBurst))
        {
            throw FlowStackError.rateLimited("from your address", retryAfter: retry)
        }
        try await api.auth.checkThrottle(context.clientIP)
        guard let token = context.parameters.get("token"), api.store.verifyResumeToken(token, executionID: id) else {
            await api.auth.recordFailure(context.clientIP)
            throw notWaiting
        }
        // Unknown or not waiting: 404 before the body is read (wakeUp checks again, atomically).
        guard let record = try await api.store.execution(id: id), record.status == .waiting else { throw notWaiting }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: api.settings.maxBodyBytes)
        } catch {
            throw FlowStackError(
                status: 413, code: "payload_too_large", message: "The request body is larger than \(api.settings.maxBodyBytes) bytes.")
        }
        let item: JSONValue = .object([
            "body": try parseBody(Array(body.readableBytesView), contentType: request.headers[.contentType]),
            "headers": .object(visibleHeaders(request, hidden: [])),
            "query": .object(JSONObject(firstOf: request.uri.queryParameters.map { (String($0.key), JSONValue.string(String($0.value))) })),
            "method": .string(request.method.rawValue),
        ])
        guard try await api.engine.wakeUp(id, payload: item) else { throw notWaiting }
        return try JSON.response(.ok, ["executionId": id, "status": "resuming"])
    }

    private func parseBody(_ bytes: [UInt8], contentType: String?) throws -> JSONValue {
        if bytes.isEmpty { return .object([:]) }
        let type = JSON.mediaType(contentType)
        if type == "application/json" {
            guard JSON.nestingDepth(bytes) <= api.settings.maxJSONDepth else {
                throw FlowStackError.badRequest("json_too_deep", "The JSON body is nested deeper than \(api.settings.maxJSONDepth) levels.")
            }
            guard let value = try? JSONValue(parsing: bytes, maximumDepth: api.settings.maxJSONDepth) else {
                throw FlowStackError.badRequest("malformed_json", "The request body is not valid JSON.")
            }
            return value
        }
        if type == "application/x-www-form-urlencoded" {
            var components = URLComponents()
            components.percentEncodedQuery = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "+", with: "%20")
            var fields: JSONObject = [:]
            for item in components.queryItems ?? [] { fields[item.name] = .string(item.value ?? "") }
            return .object(fields)
        }
        if type.hasPrefix("text/") {
            guard let text = String(bytes: bytes, encoding: .utf8) else {
                throw FlowStackError.badRequest("invalid_text", "The text body is not valid UTF-8.")
            }
            return .string(text)
        }
        throw FlowStackError(
            status: 415, code: "unsupported_media_type",
            message: "Webhooks accept application/json, application/x-www-form-urlencoded and text/* bodies.")
    }

    /// The request's headers without credentials (and without `hidden`).
    private func visibleHeaders(_ request: Request, hidden extra: Set<String>) -> JSONObject {
        let hidden = extra.union(["authorization", "cookie", "proxy-authorization"])
        var headers: JSONObject = [:]
        for field in request.headers where !hidden.contains(field.name.canonicalName) {
            headers[field.name.canonicalName] = .string(field.value)
        }
        return headers
    }

    /// The Webhook node's authentication; returns the header that carried a header credential
    /// (kept from the workflow). Each refusal counts as a failed authentication of the caller's
    /// address (the login throttle): past the limit the address gets 429 on every webhook and
    /// login, so a credential cannot be guessed at request speed.
    private func authenticate(
        _ request: Request, bytes: [UInt8], path: String, node: WorkflowNode, workflow: StoredWorkflow,
        context: FlowStackRequestContext
    ) async throws -> String? {
        let mode = node.parameters["authentication"]?.stringValue ?? "none"
        if mode == "none" { return nil }
        try await api.auth.checkThrottle(context.clientIP)
        do {
            let credential = try await self.credential(mode, node: node, workflow: workflow)
            try await verify(credential, request, bytes: bytes, path: path, workflow: workflow)
            return credential.header
        } catch let error as FlowStackError where error.status == 401 {
            await api.auth.recordFailure(context.clientIP)
            throw error
        }
    }

    private struct Credential {
        var mode: String
        var username = ""
        var secret = ""
        var header: String?
    }

    private static let refused = FlowStackError(
        status: 401, code: "webhook_unauthorized", message: "The webhook request is not authorized.")

    /// The credential a request must present: from the node's connection (basic: username and
    /// password; apiKey: header name and value; secrets: field `secret`, the HMAC key), or, for
    /// workflows saved before connections held them, from the node's own parameters.
    private func credential(_ mode: String, node: WorkflowNode, workflow: StoredWorkflow) async throws -> Credential {
        func parameter(_ name: String) -> String { node.parameters[name]?.stringValue ?? "" }
        var credential = Credential(mode: mode)
        let reference = parameter("connection")
        guard !reference.isEmpty else {
            credential.username = parameter("username")
            credential.secret = mode == "basic" ? parameter("password") : mode == "header" ? parameter("headerValue") : parameter("secret")
            credential.header = mode == "header" ? parameter("headerName") : nil
            return credential
        }
        guard let connection = try await api.store.connection(reference: reference, projectID: workflow.projectID) else {
            api.logger.warning(
                "a webhook names a connection its project does not have", metadata: ["workflow": "\(workflow.id)", "node": "\(node.name)"])
            throw Self.refused
        }
        switch (mode, connection.kind) {
        case ("basic", .basic):
            credential.username = connection.data.config["username"] ?? ""
            credential.secret = connection.data.secrets["password"] ?? ""
        case ("header", .apiKey) where connection.data.config["in"] != "query":
            credential.header = connection.data.config["name"] ?? "X-API-Key"
            credential.secret = connection.data.secrets["key"] ?? ""
        case ("hmac", .secrets):
            credential.secret =
                connection.data.secrets["secret"] ?? (connection.data.secrets.count == 1 ? connection.data.secrets.values.first! : "")
        default:
            api.logger.warning(
                "a webhook's connection is of the wrong kind",
                metadata: [
                    "workflow": "\(workflow.id)", "node": "\(node.name)",
                    "kind": "\(connection.kind.rawValue)",
                ])
            throw Self.refused
        }
        return credential
    }

    private func verify(_ credential: Credential, _ request: Request, bytes: [UInt8], path: String, workflow: StoredWorkflow) async throws {
        let refused = Self.refused
        switch credential.mode {
        case "basic":
            let expected = "Basic " + Data("\(credential.username):\(credential.secret)".utf8).base64EncodedString()
            guard !credential.secret.isEmpty, Token.constantTimeEquals(request.headers[.authorization] ?? "", expected) else {
                throw refused
            }
        case "header":
            guard let name = credential.header, let field = HTTPField.Name(name), !credential.secret.isEmpty,
                Token.constantTimeEquals(request.headers[field] ?? "", credential.secret)
            else { throw refused }
        case "hmac":
            let secret = credential.secret
            guard !secret.isEmpty,
                let signature = request.headers[HTTPField.Name("X-FlowStack-Signature")!],
                let timestampText = request.headers[HTTPField.Name("X-FlowStack-Timestamp")!], let timestamp = Double(timestampText),
                let requestID = request.headers[HTTPField.Name("X-FlowStack-Id")!], Self.isRequestID(requestID)
            else {
                throw refused
            }
            let mac = HMAC<SHA256>.authenticationCode(
                for: Self.signedMessage(id: requestID, timestamp: timestampText, path: path, body: bytes),
                using: SymmetricKey(data: Array(secret.utf8)))
            let expected = "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
            guard Token.constantTimeEquals(signature, expected) else { throw refused }
            guard abs(api.now.timeIntervalSince1970 - timestamp) <= Self.signatureTolerance else {
                throw FlowStackError(
                    status: 401, code: "webhook_signature_expired", message: "The signed timestamp is too old or in the future.")
            }
            guard try await api.store.rememberWebhookRequest(workflowID: workflow.id, requestID: requestID) else {
                throw FlowStackError(status: 401, code: "webhook_replayed", message: "This signed request was already received.")
            }
        default:
            throw refused
        }
    }

    /// What an HMAC webhook signature covers: `id.timestamp./webhook/<path>` LF `body`. The path
    /// binds a signature to one webhook, so a request signed for one is refused by every other
    /// webhook that shares the secret. Ids have no `.`, timestamps no `/` and paths no LF, so the
    /// parts cannot be shifted into each other.
    static func signedMessage(id: String, timestamp: String, path: String, body: [UInt8]) -> [UInt8] {
        Array("\(id).\(timestamp)./webhook/\(path)\n".utf8) + body
    }

    /// 1–128 characters from `A–Z a–z 0–9 - _ :`.
    static func isRequestID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
            && id.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: ":"):
                    true
                default: false
                }
            }
    }
}
