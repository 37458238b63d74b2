import FlowStackCore
import FlowStackNetwork
import Foundation

/// A Code node run, as the sandbox receives it.
public struct CodeRequest: Codable, Sendable {
    public enum Mode: String, Codable, Sendable { case all, each }
    public struct Context: Codable, Sendable {
        public var executionId: String
        public var workflowId: String
        public var workflowName: String
        public var nodeName: String
        /// The URL a call resumes this execution's webhook Waits at (`$execution.resumeUrl`).
        public var resumeUrl: String

        public init(executionId: String, workflowId: String, workflowName: String, nodeName: String, resumeUrl: String = "") {
            self.executionId = executionId
            self.workflowId = workflowId
            self.workflowName = workflowName
            self.nodeName = nodeName
            self.resumeUrl = resumeUrl
        }
    }
    public var code: String
    public var mode: Mode
    public var items: [Item]
    public var env: [String: String]
    public var timeLimitMs: Int
    public var maxOutputBytes: Int
    public var maxLogBytes: Int
    /// The child answers a clean memory error above this (the parent kills it a little higher).
    public var maxMemoryBytes: Int?
    public var context: Context
    /// A random value per run: `$secret(name)` placeholders carry it, so text from outside the
    /// run (a webhook payload, an API answer) can never ask for a secret.
    public var secretNonce: String?

    public init(
        code: String, mode: Mode, items: [Item], env: [String: String], timeLimitMs: Int, maxOutputBytes: Int,
        maxLogBytes: Int, context: Context
    ) {
        self.code = code
        self.mode = mode
        self.items = items
        self.env = env
        self.timeLimitMs = timeLimitMs
        self.maxOutputBytes = maxOutputBytes
        self.maxLogBytes = maxLogBytes
        self.context = context
    }
}

/// What the sandbox answered.
public struct CodeResponse: Codable, Sendable {
    public var ok: Bool
    public var items: [Item]?
    public var error: String?
    public var errorKind: String?
    public var line: Int?
    public var logs: [String]?

    public init(ok: Bool, items: [Item]? = nil, error: String? = nil, errorKind: String? = nil, line: Int? = nil, logs: [String]? = nil) {
        self.ok = ok
        self.items = items
        self.error = error
        self.errorKind = errorKind
        self.line = line
        self.logs = logs
    }
}

extension CodeRequest {
    /// The request as one line of JSON for the sandbox child: the document `JSONEncoder` writes
    /// (absent optionals left out), built with `JSONValue`'s writer, which is several times faster
    /// on many items.
    public func jsonLine() -> [UInt8] {
        var object: JSONObject = [
            "code": .string(code),
            "mode": .string(mode.rawValue),
            "items": .array(items.map(\.jsonValue)),
            "env": .object(JSONObject(env.mapValues(JSONValue.string))),
            "timeLimitMs": .number(Double(timeLimitMs)),
            "maxOutputBytes": .number(Double(maxOutputBytes)),
            "maxLogBytes": .number(Double(maxLogBytes)),
            "context": .object([
                "executionId": .string(context.executionId), "workflowId": .string(context.workflowId),
                "workflowName": .string(context.workflowName), "nodeName": .string(context.nodeName),
                "resumeUrl": .string(context.resumeUrl),
            ]),
        ]
        if let maxMemoryBytes { object["maxMemoryBytes"] = .number(Double(maxMemoryBytes)) }
        if let secretNonce { object["secretNonce"] = .string(secretNonce) }
        var line = JSONValue.object(object).jsonBytes()
        line.append(0x0A)
        return line
    }
}

/// The sandbox child's answer was not a `CodeResponse`.
public struct MalformedCodeResponse: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public var description: String { "malformed sandbox answer: \(reason)" }
}

extension CodeResponse {
    /// Reads the child's answer (one line of JSON) with `JSONValue`'s parser instead of
    /// `JSONDecoder`, which took most of the parent's time on a Code node returning many items.
    /// As strict as `Decodable`: a missing `ok`, a field of the wrong kind or an item without
    /// `json` is an error; a field that is null counts as absent.
    public init(parsing line: [UInt8]) throws {
        guard case .object(let fields) = try JSONValue(parsing: line) else { throw MalformedCodeResponse(reason: "not an object") }
        func present(_ key: String) -> JSONValue? {
            if let value = fields[key], value != .null { return value }
            return nil
        }
        func string(_ key: String) throws -> String? {
            guard let value = present(key) else { return nil }
            guard case .string(let text) = value else { throw MalformedCodeResponse(reason: "\(key) is not a string") }
            return text
        }
        guard case .bool(let ok) = fields["ok"] else { throw MalformedCodeResponse(reason: "ok is not a boolean") }
        var items: [Item]?
        if let value = present("items") {
            guard case .array(let elements) = value else { throw MalformedCodeResponse(reason: "items is not an array") }
            items = try elements.map { element in
                guard let item = Item(jsonValue: element) else { throw MalformedCodeResponse(reason: "an item is not {json, binary?}") }
                return item
            }
        }
        var line: Int?
        if let value = present("line") {
            guard case .number(let number) = value, let exact = Int(exactly: number) else {
                throw MalformedCodeResponse(reason: "line is not an integer")
            }
            line = exact
        }
        var logs: [String]?
        if let value = present("logs") {
            guard case .array(let elements) = value else { throw MalformedCodeResponse(reason: "logs is not an array") }
            logs = try elements.map { element in
                guard case .string(let text) = element else { throw MalformedCodeResponse(reason: "a log line is not a string") }
                return text
            }
        }
        self.init(ok: ok, items: items, error: try string("error"), errorKind: try string("errorKind"), line: line, logs: logs)
    }
}

extension Item {
    /// The item as `Codable` writes it: `{"json": …}`, with `"binary"` when there is any.
    public var jsonValue: JSONValue {
        var object: JSONObject = ["json": json]
        if let binary { object["binary"] = .object(JSONObject(binary)) }
        return .object(object)
    }

    /// An item from `{"json": …, "binary"?: {…}}`; nil for anything else (as `Decodable` fails).
    public init?(jsonValue: JSONValue) {
        guard case .object(let fields) = jsonValue, let json = fields["json"] else { return nil }
        switch fields["binary"] {
        case nil, .null?: self.init(json: json)
        case .object(let binary)?: self.init(json: json, binary: binary.dictionary)
        default: return nil
        }
    }
}

/// Answers a Code node's `$http.request` call (a JSON object) with a JSON object: the response,
/// or `{"error": "…"}`. It runs in the platform, outside the sandbox.
public typealias CodeBroker = @Sendable (JSONValue) async -> JSONValue

/// Runs Code node JavaScript (the sandbox pool).
public protocol CodeRunning: Sendable {
    func run(_ request: CodeRequest) async throws -> CodeResponse
    func run(_ request: CodeRequest, broker: CodeBroker?) async throws -> CodeResponse
}

extension CodeRunning {
    /// Runners without a broker channel answer `$http.request` with an error.
    public func run(_ request: CodeRequest, broker: CodeBroker?) async throws -> CodeResponse {
        try await run(request)
    }
}

/// The services of `flowstack run`: code and HTTP, but no other workflows to call.
public struct StandaloneServices: NodeServices {
    public let codeRunner: (any CodeRunning)?
    public let fetcher: (any OutboundFetching)?

    public init(codeRunner: (any CodeRunning)?, fetcher: (any OutboundFetching)?) {
        self.codeRunner = codeRunner
        self.fetcher = fetcher
    }

    public func executeWorkflow(id: String, items: [Item], wait: Bool, caller: ExpressionContext) async throws -> [Item] {
        throw NodeError("Sub-workflows need a server: `flowstack run` runs one workflow file.")
    }

    public func runCode(_ request: CodeRequest) async throws -> CodeResponse {
        guard let codeRunner else { throw NodeError("Code nodes are not available: the sandbox could not be started.") }
        return try await codeRunner.run(request)
    }

    public func runCode(_ request: CodeRequest, broker: CodeBroker?) async throws -> CodeResponse {
        guard let codeRunner else { throw NodeError("Code nodes are not available: the sandbox could not be started.") }
        return try await codeRunner.run(request, broker: broker)
    }

    public func fetch(_ request: OutboundRequest) async throws -> OutboundResponse {
        guard let fetcher else { throw NodeError("HTTP requests are not available here.") }
        return try await fetcher.fetch(request)
    }
}
