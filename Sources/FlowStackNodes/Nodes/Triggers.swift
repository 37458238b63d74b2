import FlowStackCore
import FlowStackRuntime

/// Starts a workflow by hand (`POST …/run`, `flowstack run`); passes the given items on.
public struct ManualTriggerNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.manualTrigger", isTrigger: true, inputs: 0)
    public func run(_ input: NodeInput) async throws -> NodeOutput { .items([input.items]) }
}

/// Starts a workflow from an HTTP request to `/webhook/{path}`; its item is `{body, headers, query, method}`.
public struct WebhookNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.webhook", isTrigger: true, inputs: 0,
        parameters: [
            .init("path", .string, required: true),
            .init("method", .options, options: ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
            .init("respond", .options, options: ["immediately", "lastNode", "respondNode"]),
            .init("authentication", .options, options: ["none", "basic", "header", "hmac"]),
            // The connection holding the credential: basic (username, password), apiKey (the
            // header's name and value) or secrets (field `secret`, the HMAC key). Never inline.
            .init("connection", .string),
        ])

    /// Parameters that once held webhook credentials inline, readable by every project viewer.
    public static let inlineSecretParameters = ["password", "headerValue", "secret"]
    public func run(_ input: NodeInput) async throws -> NodeOutput { .items([input.items]) }

    /// What a save refuses in the workflow's Webhook nodes: credentials held inline (readable by
    /// every project member), and authentication without the connection that holds its secret.
    public static func problems(in workflow: Workflow) -> [WorkflowProblem] {
        workflow.nodes.filter { $0.type == descriptor.type }.compactMap { node in
            let mode = node.parameters["authentication"]?.stringValue ?? "none"
            if let inline = inlineSecretParameters.first(where: { node.parameters[$0] != nil }) {
                return WorkflowProblem(
                    "webhook_secret_inline",
                    "The Webhook node '\(node.name)' holds its credential in the parameter '\(inline)', which every project member can read: keep it in a connection and name it in 'connection'.",
                    node: node.name, field: "parameters.\(inline)")
            }
            if mode != "none", (node.parameters["connection"]?.stringValue ?? "").isEmpty {
                return WorkflowProblem(
                    "webhook_connection_required",
                    "The Webhook node '\(node.name)' authenticates with '\(mode)': name the connection that holds the credential in 'connection'.",
                    node: node.name, field: "parameters.connection")
            }
            return nil
        }
    }
}

/// Starts a workflow on a cron schedule or every N seconds.
public struct ScheduleNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.schedule", isTrigger: true, inputs: 0,
        parameters: [
            .init("cron", .cron), .init("intervalSeconds", .number),
        ])
    public func run(_ input: NodeInput) async throws -> NodeOutput { .items([input.items]) }
}
