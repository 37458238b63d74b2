import Foundation

/// What an expression can see while it is evaluated for one item. Nothing else is reachable:
/// not the process, its environment, the filesystem or a JavaScript engine.
public struct ExpressionContext: Sendable {
    /// The current item's JSON (`$json`).
    public var json: JSONValue
    /// Every input item's JSON (`$input.all()`, `$input.first()`, …).
    public var inputItems: [JSONValue]
    /// The index of the current item (`$itemIndex`).
    public var itemIndex: Int
    /// The output items of nodes that already ran, by node name (`$node["Name"]`, `$("Name")`):
    /// the nodes' own item arrays, not copies of them.
    public var nodeOutputs: [String: [Item]]
    /// Project variables (`$env.NAME`); never the server's own environment.
    public var variables: [String: String]
    public var now: Date
    public var timeZone: TimeZone
    public var executionID: String
    /// The URL a call resumes this execution's webhook Waits at (`$execution.resumeUrl`); it
    /// carries the execution's resume token, so it is as secret as the execution's data.
    public var resumeURL: String = ""
    public var workflowID: String
    public var workflowName: String
    /// The project the workflow belongs to: connections and variables resolve in it only.
    public var projectID: String = ""
    /// Secrets this execution has used, removed from whatever it stores.
    public var redactor: Redactor? = nil
    public var limits: ExpressionLimits
    /// How deep in sub-workflow calls this execution runs (0 at the top).
    public var callDepth = 0
    /// Names a node binds for some of its own parameters, each starting with `$` (the HTTP
    /// Request node's `$response` and `$pageCount` while it paginates). They hold data, which is
    /// read like `$json` and never evaluated.
    public var boundNames: [String: JSONValue] = [:]

    public init(
        json: JSONValue = .object([:]), inputItems: [JSONValue]? = nil, itemIndex: Int = 0,
        nodeOutputs: [String: [Item]] = [:], variables: [String: String] = [:], now: Date = Date(),
        timeZone: TimeZone = TimeZone(identifier: "UTC")!, executionID: String = "", workflowID: String = "",
        workflowName: String = "", limits: ExpressionLimits = .init()
    ) {
        self.json = json
        self.inputItems = inputItems ?? [json]
        self.itemIndex = itemIndex
        self.nodeOutputs = nodeOutputs
        self.variables = variables
        self.now = now
        self.timeZone = timeZone
        self.executionID = executionID
        self.workflowID = workflowID
        self.workflowName = workflowName
        self.limits = limits
    }
}

/// Bounds on one evaluation, so an expression cannot hang or exhaust memory.
public struct ExpressionLimits: Sendable {
    /// Evaluation steps (roughly, nodes of the syntax tree visited, including inside callbacks).
    public var steps = 100_000
    public var maximumStringLength = 1 << 20
    public var maximumArrayLength = 100_000
    /// Length of the expression source itself.
    public var maximumSourceLength = 10_000

    public init() {}
}
