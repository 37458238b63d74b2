import FlowStackCore
import FlowStackRuntime
import Foundation

/// Starts a workflow when another workflow calls it (Execute Workflow); passes the caller's items on.
public struct ExecuteWorkflowTriggerNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.executeWorkflowTrigger", isTrigger: true, inputs: 0)
    public func run(_ input: NodeInput) async throws -> NodeOutput { .items([input.items]) }
}

/// Starts a workflow when another workflow that names it as its error workflow fails; its item is
/// `{execution: {id, error, lastNodeExecuted, mode}, workflow: {id, name}}`.
public struct ErrorTriggerNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.errorTrigger", isTrigger: true, inputs: 0)
    public func run(_ input: NodeInput) async throws -> NodeOutput { .items([input.items]) }
}

/// Runs another workflow of the same project with this node's items, waiting for its result or not.
public struct ExecuteWorkflowNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.executeWorkflow",
        parameters: [
            .init("workflowId", .string, required: true), .init("wait", .boolean),
        ])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        let id = try input.string("workflowId")
        guard Identifier.isValid(id, prefix: "wf") else { throw NodeError("'\(id)' is not a workflow id.", field: "workflowId") }
        let wait = try input.parameter("wait")?.isTruthy ?? true
        let services = try input.requireServices("Execute Workflow")
        let output = try await services.executeWorkflow(id: id, items: input.items, wait: wait, caller: input.base)
        return .items([output])
    }
}

/// Pauses the execution: for a duration, until a time, or until a call to the execution's
/// resume URL (`$execution.resumeUrl`). Long waits sleep in the database, not in memory.
public struct WaitNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.wait",
        parameters: [
            .init("resume", .options, required: true, options: ["timeInterval", "specificTime", "webhook"]),
            .init("seconds", .number), .init("until", .string),
        ])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        switch try input.string("resume") {
        case "timeInterval":
            guard let seconds = try input.parameter("seconds")?.numberValue, seconds >= 0, seconds <= 31_536_000 else {
                throw NodeError("seconds must be a number from 0 to 31536000.", field: "seconds")
            }
            return .wait(until: input.base.now.addingTimeInterval(seconds), items: input.items)
        case "specificTime":
            let text = try input.string("until")
            guard let date = RFC3339.parse(text) else { throw NodeError("until must be an ISO 8601 date and time.", field: "until") }
            return .wait(until: date, items: input.items)
        case "webhook":
            return .waitForResume(items: input.items)
        default:
            throw NodeError("resume must be timeInterval, specificTime or webhook.", field: "resume")
        }
    }
}

/// Sets the response of the webhook that started the execution: status, headers and body
/// (the first item's JSON, or a given body). Items pass through unchanged.
public struct RespondToWebhookNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.respondToWebhook",
        parameters: [
            .init("statusCode", .number), .init("body", .json), .init("headers", .json),
        ])

    /// Where the response is kept: an extra output no edge can reach.
    public static let responseOutput = 1

    /// What a save refuses in the workflow's Respond to Webhook nodes: headers a webhook answer may not carry.
    public static func problems(in workflow: Workflow) -> [WorkflowProblem] {
        workflow.nodes.filter { $0.type == descriptor.type }.compactMap { node in
            WebhookResponseHeaders.refusal(headers: node.parameters["headers"]).map {
                WorkflowProblem("webhook_header_refused", $0, node: node.name, field: "parameters.headers")
            }
        }
    }

    /// The names of the workflow's Respond to Webhook nodes.
    public static func nodes(in workflow: Workflow) -> Set<String> {
        Set(workflow.nodes.filter { $0.type == descriptor.type }.map(\.name))
    }

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        let status = try input.parameter("statusCode")?.numberValue ?? 200
        guard (200...599).contains(status), status == status.rounded() else {
            throw NodeError("statusCode must be an HTTP status from 200 to 599.", field: "statusCode")
        }
        var headers: JSONObject = [:]
        if let given = try input.parameter("headers") {
            guard let object = given.objectValue else { throw NodeError("headers must be an object of strings.", field: "headers") }
            for (name, value) in object {
                guard let text = value.stringValue, HeaderCheck.isToken(name), HeaderCheck.isValue(text) else {
                    throw NodeError("The header '\(name)' is not a valid header.", field: "headers")
                }
                if let refusal = WebhookResponseHeaders.refusal(name: name, value: text) {
                    throw NodeError(refusal, field: "headers")
                }
                headers[name] = .string(text)
            }
        }
        let body = try input.parameter("body") ?? input.items.first?.json ?? .object([:])
        let response = Item(json: .object(["statusCode": .number(status), "headers": .object(headers), "body": body]))
        return .items([input.items, [response]])
    }
}

/// The headers a webhook answer may carry. A workflow's answer is served from a FlowStack
/// origin, so it must not set cookies there (login CSRF, OAuth2 consent hijack by cookie
/// tossing), grant CORS, replace the security headers, register reporting or service-worker
/// policy for the origin, ask for credentials, frame the message itself (length and connection
/// headers are the server's) or redirect off the server (an open redirect). So: default deny.
/// The content headers below, and `X-` headers of the workflow's own, are allowed.
public enum WebhookResponseHeaders {
    static let allowed: Set<String> = [
        "content-type", "content-disposition", "content-language", "expires", "etag", "last-modified",
        "location", "retry-after", "vary", "allow", "age", "pragma",
    ]
    /// `X-` names that are browsers' or FlowStack's, not a workflow's.
    static let refusedExtensions: Set<String> = [
        "x-frame-options", "x-content-type-options", "x-request-id", "x-xss-protection", "x-permitted-cross-domain-policies",
        "x-dns-prefetch-control", "x-download-options", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    ]

    /// Why the header may not be sent, or nil when it may.
    public static func refusal(name: String, value: String) -> String? {
        let lower = name.lowercased()
        let own = lower.hasPrefix("x-") && !refusedExtensions.contains(lower)
        guard allowed.contains(lower) || own else {
            return "A webhook answer may not set the header '\(name)': it may set Content-Type, Content-Disposition, Content-Language, "
                + "Expires, ETag, Last-Modified, Location (a path on this server), Retry-After, Vary, Allow, Age, Pragma and X- headers of its own."
        }
        if lower == "location" && !isLocalReference(value) {
            return "A webhook answer may redirect only to a path on this server (such as /webhook/next), not to another site."
        }
        return nil
    }

    /// Why a Respond node's literal `headers` parameter cannot be saved, or nil. A name is checked
    /// whatever its value; a value only when it is not an expression (that is checked at run time).
    public static func refusal(headers: JSONValue?) -> String? {
        guard let object = headers?.objectValue else { return nil }
        for (name, value) in object.sorted(by: { $0.key < $1.key }) {
            let text = value.stringValue ?? ""
            if let refusal = refusal(name: name, value: text.contains("{{") ? "/" : text) { return refusal }
        }
        return nil
    }

    /// A path on the same origin: starts with one `/`, no scheme, no `//` or `/\` authority.
    static func isLocalReference(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.first == UInt8(ascii: "/") else { return false }
        if bytes.count > 1 && (bytes[1] == UInt8(ascii: "/") || bytes[1] == UInt8(ascii: "\\")) { return false }
        return !bytes.contains { $0 < 0x21 || $0 == 0x7F || $0 == UInt8(ascii: "\\") }
    }
}

/// Routes each item to the first rule that holds; items no rule takes go to the last output.
public struct SwitchNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.switch", outputs: nil, parameters: [.init("rules", .json, required: true)])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        guard case .array(let rules)? = input.node.parameters["rules"] else {
            throw NodeError("rules must be an array of conditions.", field: "rules")
        }
        var outputs = Array(repeating: [Item](), count: rules.count + 1)
        for (index, item) in input.items.enumerated() {
            let context = input.context(for: index)
            var target = rules.count
            for (rule, condition) in rules.enumerated() {
                if try NodeInput.resolve(condition, context).isTruthy {
                    target = rule
                    break
                }
            }
            outputs[target].append(item)
        }
        return .items(outputs)
    }
}

/// Date & Time: the current time, formatting, and adding or subtracting durations.
public struct DateTimeNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.dateTime",
        parameters: [
            .init("operation", .options, required: true, options: ["now", "format", "add", "subtract"]),
            .init("value", .string), .init("amount", .number),
            .init("unit", .options, options: ["milliseconds", "seconds", "minutes", "hours", "days", "weeks"]),
            .init("format", .string), .init("outputField", .string),
        ])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        var output: [Item] = []
        var formatters: [String: DateFormatter] = [:]
        for (index, item) in input.items.enumerated() {
            let field = try input.string("outputField", item: index, default: "date")
            guard !field.isEmpty else { throw NodeError("outputField must not be empty.", field: "outputField") }
            let result: String
            switch try input.string("operation", item: index) {
            case "now":
                result = RFC3339.format(input.base.now)
            case "format":
                let date = try date(input, index)
                let pattern = try input.string("format", item: index, default: "yyyy-MM-dd'T'HH:mm:ssXXX")
                guard pattern.count <= 100 else { throw NodeError("format must be at most 100 characters.", field: "format") }
                // One formatter per pattern for the whole run: making one costs more than using it.
                let formatter =
                    formatters[pattern]
                    ?? {
                        let formatter = DateFormatter()
                        formatter.locale = Locale(identifier: "en_US_POSIX")
                        formatter.timeZone = input.base.timeZone
                        formatter.dateFormat = pattern
                        formatters[pattern] = formatter
                        return formatter
                    }()
                result = formatter.string(from: date)
            case let operation where operation == "add" || operation == "subtract":
                let date = try date(input, index)
                guard let amount = try input.parameter("amount", item: index)?.numberValue, amount.isFinite, abs(amount) < 1e12 else {
                    throw NodeError("amount must be a number.", field: "amount")
                }
                let unit: Double =
                    switch try input.string("unit", item: index, default: "seconds") {
                    case "milliseconds": 0.001
                    case "seconds": 1
                    case "minutes": 60
                    case "hours": 3600
                    case "days": 86400
                    case "weeks": 604_800
                    default: throw NodeError("unit must be milliseconds, seconds, minutes, hours, days or weeks.", field: "unit")
                    }
                let delta = amount * unit * (operation == "add" ? 1 : -1)
                result = RFC3339.format(date.addingTimeInterval(delta))
            default:
                throw NodeError("operation must be now, format, add or subtract.", field: "operation")
            }
            var json = item.json.objectValue ?? ["value": item.json]
            json[field] = .string(result)
            output.append(Item(json: .object(json), binary: item.binary))
        }
        return .items([output])
    }

    private func date(_ input: NodeInput, _ index: Int) throws -> Date {
        let text = try input.string("value", item: index)
        if let date = RFC3339.parse(text) { return date }
        if let millis = Double(text), millis.isFinite { return Date(timeIntervalSince1970: millis / 1000) }
        throw NodeError("value must be an ISO 8601 date or milliseconds since 1970.", field: "value")
    }
}
