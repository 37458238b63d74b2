import Foundation

/// A workflow definition: a trigger and nodes joined by edges (docs/workflow-format.md).
public struct Workflow: Codable, Sendable, Equatable {
    public var name: String
    public var nodes: [WorkflowNode]
    public var edges: [Edge]
    public var settings: WorkflowSettings

    public init(name: String, nodes: [WorkflowNode], edges: [Edge] = [], settings: WorkflowSettings = .init()) {
        self.name = name
        self.nodes = nodes
        self.edges = edges
        self.settings = settings
    }

    enum CodingKeys: String, CodingKey { case name, nodes, edges, settings }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        nodes = try c.decode([WorkflowNode].self, forKey: .nodes)
        edges = try c.decodeIfPresent([Edge].self, forKey: .edges) ?? []
        settings = try c.decodeIfPresent(WorkflowSettings.self, forKey: .settings) ?? .init()
    }

    public func node(named name: String) -> WorkflowNode? {
        nodes.first { $0.name == name }
    }
}

/// What a node does when it fails.
public enum OnError: String, Codable, Sendable {
    /// Fail the execution (default).
    case stop
    /// Pass the error on as an item and continue.
    case `continue`
    /// Route the failed items to the node's last output (the error output).
    case errorOutput
}

/// One node of a workflow.
public struct WorkflowNode: Codable, Sendable, Equatable {
    public var id: String?
    public var name: String
    public var type: String
    public var typeVersion: Int
    public var parameters: [String: JSONValue]
    /// A connection (credential) reference, by id.
    public var connection: String?
    public var position: [Double]?
    public var retryOnFail: Bool
    public var maxTries: Int
    /// Milliseconds between tries.
    public var waitBetweenTries: Int
    public var onError: OnError
    /// Seconds; nil uses the workflow's timeout.
    public var timeout: Double?

    public init(
        id: String? = nil, name: String, type: String, typeVersion: Int = 1, parameters: [String: JSONValue] = [:],
        connection: String? = nil, position: [Double]? = nil, retryOnFail: Bool = false, maxTries: Int = 3,
        waitBetweenTries: Int = 1000, onError: OnError = .stop, timeout: Double? = nil
    ) {
        self.id = id
        self.name = name
        self.type = type
        self.typeVersion = typeVersion
        self.parameters = parameters
        self.connection = connection
        self.position = position
        self.retryOnFail = retryOnFail
        self.maxTries = maxTries
        self.waitBetweenTries = waitBetweenTries
        self.onError = onError
        self.timeout = timeout
    }

    enum CodingKeys: String, CodingKey {
        case id, name, type, typeVersion, parameters, connection, position, retryOnFail, maxTries, waitBetweenTries, onError, timeout
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(String.self, forKey: .id)
        name = try c.decode(String.self, forKey: .name)
        type = try c.decode(String.self, forKey: .type)
        typeVersion = try c.decodeIfPresent(Int.self, forKey: .typeVersion) ?? 1
        parameters = try c.decodeIfPresent([String: JSONValue].self, forKey: .parameters) ?? [:]
        connection = try c.decodeIfPresent(String.self, forKey: .connection)
        position = try c.decodeIfPresent([Double].self, forKey: .position)
        retryOnFail = try c.decodeIfPresent(Bool.self, forKey: .retryOnFail) ?? false
        maxTries = try c.decodeIfPresent(Int.self, forKey: .maxTries) ?? 3
        waitBetweenTries = try c.decodeIfPresent(Int.self, forKey: .waitBetweenTries) ?? 1000
        onError = try c.decodeIfPresent(OnError.self, forKey: .onError) ?? .stop
        timeout = try c.decodeIfPresent(Double.self, forKey: .timeout)
    }
}

/// A connection from one node's output to another node's input.
public struct Edge: Codable, Sendable, Equatable, Hashable {
    public var from: String
    public var to: String
    public var output: Int
    public var input: Int

    public init(from: String, to: String, output: Int = 0, input: Int = 0) {
        self.from = from
        self.to = to
        self.output = output
        self.input = input
    }

    enum CodingKeys: String, CodingKey { case from, to, output, input }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        from = try c.decode(String.self, forKey: .from)
        to = try c.decode(String.self, forKey: .to)
        output = try c.decodeIfPresent(Int.self, forKey: .output) ?? 0
        input = try c.decodeIfPresent(Int.self, forKey: .input) ?? 0
    }
}

public struct WorkflowSettings: Codable, Sendable, Equatable {
    /// Seconds the whole execution may take.
    public var timeout: Double?
    public var errorWorkflowId: String?
    /// IANA time zone for schedules and date expressions.
    public var timezone: String?
    /// "all", "errors" or "none": which executions keep their node data.
    public var saveExecutionData: String?

    public init(timeout: Double? = nil, errorWorkflowId: String? = nil, timezone: String? = nil, saveExecutionData: String? = nil) {
        self.timeout = timeout
        self.errorWorkflowId = errorWorkflowId
        self.timezone = timezone
        self.saveExecutionData = saveExecutionData
    }
}
