import FlowStackCore
import Foundation
import Synchronization

/// What a node run receives: its definition, one array of items per input, and what expressions
/// can see besides the item (other nodes' output, variables, time, ids).
public struct NodeInput: Sendable {
    public var node: WorkflowNode
    public var inputs: [[Item]]
    public var base: ExpressionContext
    public var services: (any NodeServices)?
    /// Lines the node logs (a Code node's console output), kept with the node's run.
    public let log: NodeLog

    public init(node: WorkflowNode, inputs: [[Item]], base: ExpressionContext, services: (any NodeServices)? = nil, log: NodeLog = NodeLog()) {
        self.node = node
        self.inputs = inputs
        self.base = base
        self.services = services
        self.log = log
    }

    /// The platform services, or a clear error naming what is missing.
    public func requireServices(_ what: String) throws -> any NodeServices {
        guard let services else { throw NodeError("\(what) is not available here.") }
        return services
    }

    /// Items of the first input (most nodes have one).
    public var items: [Item] { inputs.first ?? [] }

    /// The expression context for item `index` of `items`.
    public func context(for index: Int, in items: [Item]? = nil) -> ExpressionContext {
        let list = items ?? self.items
        var context = base
        context.json = index < list.count ? list[index].json : .object([:])
        context.inputItems = list.map(\.json)
        context.itemIndex = index
        return context
    }

    /// A parameter evaluated for one item: strings with `{{ }}` (at any depth) are templates.
    public func parameter(_ name: String, item index: Int) throws -> JSONValue? {
        guard let raw = node.parameters[name] else { return nil }
        return try Self.resolve(raw, context(for: index))
    }

    /// A parameter that does not depend on items (evaluated against the first item).
    public func parameter(_ name: String) throws -> JSONValue? {
        try parameter(name, item: 0)
    }

    public func string(_ name: String, item: Int = 0, default fallback: String = "") throws -> String {
        guard let value = try parameter(name, item: item) else { return fallback }
        if case .string(let s) = value { return s }
        if value == .null { return fallback }
        return value.jsonText
    }

    static func resolve(_ value: JSONValue, _ context: ExpressionContext) throws -> JSONValue {
        switch value {
        case .string(let text) where Template.containsExpression(text) || text.contains("\\{{"):
            return try Template.evaluate(text, context)
        case .array(let items):
            return .array(try items.map { try resolve($0, context) })
        case .object(let fields):
            return .object(try fields.mapValues { try resolve($0, context) })
        default:
            return value
        }
    }
}

/// The log lines of one node run.
public final class NodeLog: Sendable {
    private let storage = Mutex<[String]>([])
    public init() {}
    public func append(contentsOf lines: [String]) { storage.withLock { $0 += lines } }
    public var lines: [String] { storage.withLock { $0 } }
}

/// What a node run produced.
public enum NodeOutput: Sendable, Equatable {
    /// One array of items per output.
    case items([[Item]])
    /// Sleep until a time (Wait), then continue with these items.
    case wait(until: Date, items: [Item])
    /// Sleep until resumed from outside (a resume webhook), then continue with these items.
    case waitForResume(items: [Item])
}

/// A failure of a node, with a message safe to show and store.
public struct NodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var field: String?
    public init(_ message: String, field: String? = nil) {
        self.message = message
        self.field = field
    }
    public var description: String { message }
}

/// A built-in node type: its descriptor (for validation and `GET /node-types`) and its behaviour.
public protocol NodeType: Sendable {
    static var descriptor: NodeTypeDescriptor { get }
    func run(_ input: NodeInput) async throws -> NodeOutput
}
