import FlowStackCore

/// Starts a workflow by hand (`POST …/run`, `flowstack run`); passes the given items on.
public struct ManualTriggerNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.manualTrigger", isTrigger: true, inputs: 0)
    public func run(_ input: NodeInput) async throws -> NodeOutput { .items([input.items]) }
}

/// Starts a workflow from an HTTP request to `/webhook/{path}`; its item is `{body, headers, query, method}`.
public struct WebhookNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.webhook", isTrigger: true, inputs: 0, parameters: [
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
}

/// Starts a workflow on a cron schedule or every N seconds.
public struct ScheduleNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.schedule", isTrigger: true, inputs: 0, parameters: [
        .init("cron", .cron), .init("intervalSeconds", .number),
    ])
    public func run(_ input: NodeInput) async throws -> NodeOutput { .items([input.items]) }
}
