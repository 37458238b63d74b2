import Crypto
import FlowStackCore
import FlowStackNetwork
import FlowStackRuntime
import Foundation

/// Makes an HTTP request per item. Requests go through the platform's SSRF guard: private,
/// loopback, link-local and metadata addresses are refused unless an operator allowed them.
public struct HTTPRequestNode: NodeType {
    public init() {}
    static let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    /// The most response bytes one item's pages may add up to.
    static let paginationByteLimit = 64 << 20
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.httpRequest",
        parameters: [
            .init("url", .string, required: true),
            .init("method", .options, options: methods),
            .init("query", .json), .init("headers", .json),
            .init("bodyType", .options, options: ["none", "json", "form", "raw"]), .init("body", .json), .init("contentType", .string),
            .init("timeout", .number), .init("followRedirects", .boolean), .init("maxRedirects", .number),
            .init("responseFormat", .options, options: ["autodetect", "json", "text", "binary"]), .init("fullResponse", .boolean),
            .init("ignoreHttpErrors", .boolean), .init("connection", .string),
            .init("pagination", .json, check: Pagination.problems),
            .init("idempotencyKey", .boolean),
        ])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        let services = try input.requireServices("The HTTP Request node")
        var output: [Item] = []
        for index in input.items.indices {
            // A connection (by id or name, of this workflow's project) signs the request; its
            // secret is added by the platform and never appears in the node's data.
            let connection = try input.string("connection", item: index, default: input.node.connection ?? "")
            let fullResponse = try input.parameter("fullResponse", item: index)?.isTruthy ?? false
            let pagination = try Pagination(input, item: index)
            if let pagination, pagination.setsBody, !["json", "form"].contains(try input.string("bodyType", item: index, default: "none")) {
                throw NodeError(
                    "A page parameter in the body needs bodyType json or form with an object body.", field: "pagination.parameters")
            }
            var overrides = PageOverrides()
            var origin: URL?
            var pageCount = 0
            var received = 0
            pages: while true {
                var request = try makeRequest(input, index, overrides: overrides, page: pageCount)
                if let first = origin, let next = URL(string: request.url), !next.hasSameOrigin(as: first) {
                    // The next page's address comes from the server's answer: a credential is
                    // only ever sent to the origin the node itself named.
                    if !connection.isEmpty {
                        throw NodeError(
                            "The next page (\(next.host ?? "?")) is on another origin than the first request; with a connection, pagination stays on one origin.",
                            field: "pagination.nextUrl")
                    }
                    request.headers.removeAll { OutboundRequest.originBoundHeaders.contains($0.0.lowercased()) }
                }
                origin = origin ?? URL(string: request.url)
                let response =
                    connection.isEmpty
                    ? try await services.fetch(request)
                    : try await services.fetch(request, connection: connection, caller: input.base)
                pageCount += 1
                received += response.body.count
                if pagination != nil, received > Self.paginationByteLimit {
                    throw NodeError(
                        "Pagination received more than \(Self.paginationByteLimit >> 20) MiB; lower maxRequests or narrow the request.",
                        field: "pagination.maxRequests")
                }
                if let pagination, pagination.completion == .statusCode, pagination.statusCodes.contains(response.status) { break }
                if !(200..<400).contains(response.status), !(try input.parameter("ignoreHttpErrors", item: index)?.isTruthy ?? false) {
                    // Redacted before it is cut, so no part of a secret survives at the cut.
                    let body = String(decoding: response.body.prefix(64 * 1024), as: UTF8.self)
                    let snippet = String((input.base.redactor?.redact(body) ?? body).prefix(200))
                    throw NodeError("The server answered \(response.status): \(snippet)")
                }
                let (body, binary) = try decode(response, input, index)
                guard let pagination else {
                    output += items(body: body, binary: binary, response: response, fullResponse: fullResponse)
                    break
                }
                if pagination.completion == .emptyResponse, Pagination.isEmpty(body, bytes: response.body) { break }
                output += items(body: body, binary: binary, response: response, fullResponse: fullResponse)
                if pageCount >= pagination.maxRequests { break }
                let scope = Pagination.scope(input, item: index, response: Self.describe(response, body: body), pageCount: pageCount)
                if try pagination.isComplete(scope) { break }
                switch pagination.mode {
                case .nextUrl:
                    guard let next = try pagination.nextURL(scope, after: request.url) else { break pages }
                    overrides.url = next
                case .parameters:
                    overrides = PageOverrides(try pagination.settings(scope))
                }
                if pagination.intervalMilliseconds > 0 { try await Task.sleep(for: .milliseconds(pagination.intervalMilliseconds)) }
            }
        }
        return .items([output])
    }

    /// The same for every run of this request of this execution (a worker that takes the
    /// execution over sends the same key again), different for every other: the remote API can
    /// then perform the at-least-once node's request once.
    static func idempotencyKey(execution: String, node: String, item: Int, page: Int) -> String {
        let digest = SHA256.hash(data: Array("\(execution)\u{0}\(node)\u{0}\(item)\u{0}\(page)".utf8))
        return "fs-" + digest.prefix(16).map { String(format: "%02x", $0) }.joined()
    }

    func makeRequest(_ input: NodeInput, _ index: Int, overrides: PageOverrides = PageOverrides(), page: Int = 0) throws -> OutboundRequest
    {
        let method = try input.string("method", item: index, default: "GET").uppercased()
        guard Self.methods.contains(method) else {
            throw NodeError("method must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS.", field: "method")
        }
        let urlText = try overrides.url ?? input.string("url", item: index)
        guard var components = URLComponents(string: urlText), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https",
            components.host?.isEmpty == false
        else {
            throw NodeError("url must be an absolute http or https URL.", field: "url")
        }
        if overrides.url == nil, let query = try input.parameter("query", item: index), query != .null {
            guard let fields = query.objectValue else { throw NodeError("query must be an object.", field: "query") }
            var items = components.queryItems ?? []
            for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
                items.append(URLQueryItem(name: name, value: value.stringValue ?? value.jsonText))
            }
            components.queryItems = items
        }
        if !overrides.query.isEmpty {
            // A page parameter replaces a query parameter of the same name.
            var items = components.queryItems ?? []
            items.removeAll { item in overrides.query.contains { $0.0 == item.name } }
            items += overrides.query.map { URLQueryItem(name: $0.0, value: $0.1) }
            components.queryItems = items
        }
        guard let url = components.url?.absoluteString else { throw NodeError("url is not a valid URL.", field: "url") }
        var headers: [(String, String)] = []
        if let given = try input.parameter("headers", item: index), given != .null {
            guard let fields = given.objectValue else { throw NodeError("headers must be an object of strings.", field: "headers") }
            for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
                let text = value.stringValue ?? value.jsonText
                guard HeaderCheck.isToken(name), HeaderCheck.isValue(text) else {
                    throw NodeError("The header '\(name)' is not valid.", field: "headers")
                }
                headers.append((name, text))
            }
        }
        for (name, text) in overrides.headers {
            guard HeaderCheck.isToken(name), HeaderCheck.isValue(text) else {
                throw NodeError("The header '\(name)' is not valid.", field: "pagination.parameters")
            }
            headers.removeAll { $0.0.lowercased() == name.lowercased() }
            headers.append((name, text))
        }
        if try input.parameter("idempotencyKey", item: index)?.isTruthy ?? false,
            !headers.contains(where: { $0.0.lowercased() == "idempotency-key" })
        {
            headers.append(
                ("Idempotency-Key", Self.idempotencyKey(execution: input.base.executionID, node: input.node.name, item: index, page: page)))
        }
        var body: [UInt8]?
        let bodyType = try input.string("bodyType", item: index, default: "none")
        var given = try input.parameter("body", item: index)
        if !overrides.body.isEmpty {
            guard bodyType == "json" || bodyType == "form", var fields = (given ?? .object([:])).objectValue else {
                throw NodeError(
                    "A page parameter in the body needs bodyType json or form with an object body.", field: "pagination.parameters")
            }
            for (name, value) in overrides.body { fields[name] = value }
            given = .object(fields)
        }
        func setContentType(_ value: String) {
            if !headers.contains(where: { $0.0.lowercased() == "content-type" }) { headers.append(("Content-Type", value)) }
        }
        switch bodyType {
        case "none":
            break
        case "json":
            body = Array((given ?? .null).jsonText.utf8)
            setContentType("application/json")
        case "form":
            guard let fields = given?.objectValue else { throw NodeError("A form body must be an object.", field: "body") }
            var form = URLComponents()
            form.queryItems = fields.sorted(by: { $0.key < $1.key }).map {
                URLQueryItem(name: $0.key, value: $0.value.stringValue ?? $0.value.jsonText)
            }
            body = Array((form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B").utf8)
            setContentType("application/x-www-form-urlencoded")
        case "raw":
            body = Array((given?.stringValue ?? given?.jsonText ?? "").utf8)
            setContentType(try input.string("contentType", item: index, default: "text/plain; charset=utf-8"))
        default:
            throw NodeError("bodyType must be none, json, form or raw.", field: "bodyType")
        }
        let timeout = try input.parameter("timeout", item: index)?.numberValue ?? 30
        guard timeout > 0, timeout <= 300 else { throw NodeError("timeout must be from 0 to 300 seconds.", field: "timeout") }
        let maxRedirects = Int(try input.parameter("maxRedirects", item: index)?.numberValue ?? 5)
        guard (0...20).contains(maxRedirects) else { throw NodeError("maxRedirects must be from 0 to 20.", field: "maxRedirects") }
        return OutboundRequest(
            method: method, url: url, headers: headers, body: body, timeout: timeout,
            followRedirects: try input.parameter("followRedirects", item: index)?.isTruthy ?? true, maxRedirects: maxRedirects)
    }

    /// The response body as the node's `responseFormat` reads it, and a binary part if any.
    func decode(_ response: OutboundResponse, _ input: NodeInput, _ index: Int) throws -> (body: JSONValue, binary: [String: JSONValue]?) {
        let contentType = response.headers.first { $0.0.lowercased() == "content-type" }?.1.lowercased() ?? ""
        var format = try input.string("responseFormat", item: index, default: "autodetect")
        if format == "autodetect" {
            format =
                contentType.contains("json")
                ? "json" : (contentType.hasPrefix("text/") || contentType.contains("xml") || contentType.isEmpty) ? "text" : "binary"
        }
        switch format {
        case "json":
            if response.body.isEmpty { return (.null, nil) }
            guard let parsed = try? JSONValue(parsing: response.body) else {
                throw NodeError("The response is not valid JSON.")
            }
            return (parsed, nil)
        case "text":
            return (.string(String(decoding: response.body, as: UTF8.self)), nil)
        case "binary":
            return (
                .null,
                [
                    "data": .object([
                        "mimeType": .string(contentType.isEmpty ? "application/octet-stream" : contentType),
                        "data": .string(Data(response.body).base64EncodedString()), "fileSize": .number(Double(response.body.count)),
                    ])
                ]
            )
        default:
            throw NodeError("responseFormat must be autodetect, json, text or binary.", field: "responseFormat")
        }
    }

    /// `{statusCode, headers, body}`: the full response item, and `$response` in pagination.
    static func describe(_ response: OutboundResponse, body: JSONValue) -> JSONValue {
        // Of a repeated header the first value counts.
        var fields = JSONObject()
        for (name, value) in response.headers where fields[name.lowercased()] == nil { fields[name.lowercased()] = .string(value) }
        let headers = JSONValue.object(fields)
        return .object(["statusCode": .number(Double(response.status)), "headers": headers, "body": body])
    }

    func items(body: JSONValue, binary: [String: JSONValue]?, response: OutboundResponse, fullResponse: Bool) -> [Item] {
        if fullResponse {
            return [Item(json: Self.describe(response, body: body), binary: binary)]
        }
        switch body {
        case .array(let elements) where elements.allSatisfy({ $0.objectValue != nil }):
            return elements.map { Item(json: $0) }
        case .object:
            return [Item(json: body, binary: binary)]
        case .null:
            return [Item(json: .object([:]), binary: binary)]
        default:
            return [Item(json: .object(["data": body]), binary: binary)]
        }
    }
}
