import FlowStackCore
import FlowStackNetwork
import FlowStackRuntime
import Foundation

/// Runs the user's JavaScript in the sandbox, once for all items or once for each item. The code
/// is never treated as a template; project variables are visible as `$env`.
public struct CodeNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.code",
        parameters: [
            .init("code", .code, required: true),
            .init("mode", .options, options: ["runOnceForAllItems", "runOnceForEachItem"]),
            .init("timeLimitMs", .number),
        ])

    public static let defaultTimeLimitMs = 10_000
    public static let maximumTimeLimitMs = 120_000
    /// The longest error message kept from the sandbox, in UTF-8 bytes.
    static let maximumErrorBytes = 16 << 10

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        guard case .string(let code)? = input.node.parameters["code"], !code.isEmpty else {
            throw NodeError("code must be JavaScript source text.", field: "code")
        }
        guard code.utf8.count <= 256 * 1024 else { throw NodeError("code must be at most 256 KiB.", field: "code") }
        let mode: CodeRequest.Mode
        switch input.node.parameters["mode"]?.stringValue ?? "runOnceForAllItems" {
        case "runOnceForAllItems": mode = .all
        case "runOnceForEachItem": mode = .each
        default: throw NodeError("mode must be runOnceForAllItems or runOnceForEachItem.", field: "mode")
        }
        var limit = Self.defaultTimeLimitMs
        if let given = input.node.parameters["timeLimitMs"]?.numberValue {
            guard given >= 1, given <= Double(Self.maximumTimeLimitMs) else {
                throw NodeError("timeLimitMs must be from 1 to \(Self.maximumTimeLimitMs).", field: "timeLimitMs")
            }
            limit = Int(given)
        }
        let services = try input.requireServices("The Code node")
        var request = CodeRequest(
            code: code, mode: mode, items: input.items, env: input.base.variables, timeLimitMs: limit,
            maxOutputBytes: 16 << 20, maxLogBytes: 64 << 10,
            context: .init(
                executionId: input.base.executionID, workflowId: input.base.workflowID,
                workflowName: input.base.workflowName, nodeName: input.node.name,
                resumeUrl: input.base.resumeURL))
        let nonce = (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 16) }.joined()
        request.secretNonce = nonce
        let response = try await services.runCode(
            request,
            broker: Self.broker(
                services: services, caller: input.base, timeLimitMs: limit,
                secretNonce: nonce))
        input.log.append(contentsOf: response.logs ?? [])
        guard response.ok else {
            let line = response.line.map { " (line \($0))" } ?? ""
            var message = response.error ?? "The code failed."
            // The sandbox cuts messages to 8 KiB; its answers are not trusted to.
            if message.utf8.count > Self.maximumErrorBytes {
                message = String(decoding: message.utf8.prefix(Self.maximumErrorBytes), as: UTF8.self) + " …"
            }
            throw NodeError(message + line, field: "code")
        }
        return .items([response.items ?? []])
    }

    /// Answers `$http.request` from the sandbox: the call is plain data (url, method, headers,
    /// body, connection); the platform signs it with the connection and sends it through the SSRF
    /// guard. The answer is redacted of every secret this execution uses before it goes back in.
    static func broker(services: any NodeServices, caller: ExpressionContext, timeLimitMs: Int, secretNonce: String) -> CodeBroker {
        { call in
            do {
                var request = try outboundRequest(call, timeLimitMs: timeLimitMs)
                request.secretNonce = secretNonce
                let connection = call["connection"]?.stringValue ?? ""
                let response =
                    connection.isEmpty
                    ? try await services.fetch(request)
                    : try await services.fetch(request, connection: connection, caller: caller)
                var headers: JSONObject = [:]
                for (name, value) in response.headers { headers[name.lowercased()] = .string(value) }
                let text = String(decoding: response.body, as: UTF8.self)
                var answer: JSONObject = [
                    "status": .number(Double(response.status)), "headers": .object(headers), "body": .string(text),
                ]
                let contentType = headers["content-type"]?.stringValue?.lowercased() ?? ""
                if contentType.contains("json"), let json = try? JSONValue(parsing: response.body) {
                    answer["json"] = json
                }
                return caller.redactor?.redact(.object(answer)) ?? .object(answer)
            } catch let error as NodeError {
                return .object(["error": .string(caller.redactor?.redact(error.message) ?? error.message)])
            } catch {
                return .object(["error": .string("The request failed.")])
            }
        }
    }

    static func outboundRequest(_ call: JSONValue, timeLimitMs: Int) throws -> OutboundRequest {
        guard case .string(let url)? = call["url"], let components = URLComponents(string: url),
            let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https", components.host?.isEmpty == false
        else {
            throw NodeError("$http.request needs url, an absolute http or https URL.")
        }
        let method = (call["method"]?.stringValue ?? "GET").uppercased()
        guard HTTPRequestNode.methods.contains(method) else {
            throw NodeError("$http.request method must be one of \(HTTPRequestNode.methods.joined(separator: ", ")).")
        }
        var headers: [(String, String)] = []
        if let given = call["headers"], given != .null {
            guard let fields = given.objectValue else { throw NodeError("$http.request headers must be an object of strings.") }
            for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
                let text = value.stringValue ?? value.jsonText
                guard HeaderCheck.isToken(name), HeaderCheck.isValue(text) else {
                    throw NodeError("$http.request: the header '\(name)' is not valid.")
                }
                headers.append((name, text))
            }
        }
        var body: [UInt8]?
        switch call["body"] {
        case nil, .null?:
            break
        case .string(let text)?:
            body = Array(text.utf8)
        case let value?:
            body = Array(value.jsonText.utf8)
            if !headers.contains(where: { $0.0.lowercased() == "content-type" }) { headers.append(("Content-Type", "application/json")) }
        }
        let timeout = min(call["timeout"]?.numberValue.map { $0 / 1000 } ?? 30, Double(timeLimitMs) / 1000, 300)
        guard timeout > 0 else { throw NodeError("$http.request timeout must be positive (milliseconds).") }
        return OutboundRequest(method: method, url: url, headers: headers, body: body, timeout: timeout)
    }
}
