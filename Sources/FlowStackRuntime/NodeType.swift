import FlowStackCore
import Foundation
import Synchronization

/// What a node run receives: its definition, one array of items per input, and what expressions
/// can see besides the item (other nodes' output, variables, time, ids).
public struct NodeInput: Sendable {
    public var node: WorkflowNode { didSet { cache = RunCache() } }
    public var inputs: [[Item]] { didSet { cache = RunCache() } }
    public var base: ExpressionContext { didSet { cache = RunCache() } }
    public var services: (any NodeServices)?
    /// Lines the node logs (a Code node's console output), kept with the node's run.
    public let log: NodeLog
    /// What every item's evaluation shares, built once per run of the node.
    private var cache = RunCache()

    public init(
        node: WorkflowNode, inputs: [[Item]], base: ExpressionContext, services: (any NodeServices)? = nil, log: NodeLog = NodeLog()
    ) {
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

    /// The expression context for item `index` of `items`. The list of every item's JSON
    /// (`$input.all()`) is built once and shared by all items' contexts: built per item, it made
    /// a node's cost grow with the square of its items.
    public func context(for index: Int) -> ExpressionContext {
        let items = self.items
        var context = base
        context.json = index < items.count ? items[index].json : .object([:])
        context.inputItems = cache.inputJSON { items.map(\.json) }
        context.itemIndex = index
        return context
    }

    /// A parameter evaluated for one item: strings with `{{ }}` (at any depth) are templates,
    /// parsed once per run of the node, not once per item.
    public func parameter(_ name: String, item index: Int) throws -> JSONValue? {
        guard let raw = node.parameters[name] else { return nil }
        let limits = base.limits
        return try cache.parameter(name) { CompiledParameter(raw, limits: limits) }.resolve(context(for: index))
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

    public static func resolve(_ value: JSONValue, _ context: ExpressionContext) throws -> JSONValue {
        try CompiledParameter(value, limits: context.limits).resolve(context)
    }
}

/// The per-run state that `NodeInput`'s copies share: one instance per run of a node.
private final class RunCache: Sendable {
    private let state = Mutex<(inputJSON: [JSONValue]?, parameters: [String: CompiledParameter])>((nil, [:]))

    func inputJSON(_ make: () -> [JSONValue]) -> [JSONValue] {
        if let built = state.withLock({ $0.inputJSON }) { return built }
        let built = make()
        state.withLock { $0.inputJSON = built }
        return built
    }

    func parameter(_ name: String, _ make: () -> CompiledParameter) -> CompiledParameter {
        if let built = state.withLock({ $0.parameters[name] }) { return built }
        let built = make()
        state.withLock { $0.parameters[name] = built }
        return built
    }
}

/// A parameter value with its templates parsed: literal JSON where there is no `{{ }}`.
indirect enum CompiledParameter: Sendable {
    case literal(JSONValue)
    case template(Template)
    /// A template that does not parse: the error is thrown where the value is needed.
    case invalid(ExpressionError)
    case array([CompiledParameter])
    /// The members in order, with the object's shape (kept for the resolved objects).
    case object(JSONObject, [CompiledParameter])

    init(_ value: JSONValue, limits: ExpressionLimits) {
        switch value {
        case .string(let text) where Template.containsExpression(text) || text.contains("\\{{"):
            do { self = .template(try Template(text, limits: limits)) } catch { self = .invalid(error) }
        case .array(let items):
            let compiled = items.map { CompiledParameter($0, limits: limits) }
            self = compiled.allSatisfy(\.isLiteral) ? .literal(value) : .array(compiled)
        case .object(let fields):
            let compiled = fields.values.map { CompiledParameter($0, limits: limits) }
            self = compiled.allSatisfy(\.isLiteral) ? .literal(value) : .object(fields, compiled)
        default:
            self = .literal(value)
        }
    }

    var isLiteral: Bool {
        if case .literal = self { return true }
        return false
    }

    public func resolve(_ context: ExpressionContext) throws -> JSONValue {
        switch self {
        case .literal(let value): value
        case .template(let template): try template.evaluate(context)
        case .invalid(let error): throw error
        case .array(let items): .array(try items.map { try $0.resolve(context) })
        case .object(let fields, let compiled):
            .object(try fields.replacingValues { try compiled[$0].resolve(context) })
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

/// A built-in node type: its descriptor (for validation and `GET /node-types`) and its behaviour.
public protocol NodeType: Sendable {
    static var descriptor: NodeTypeDescriptor { get }
    func run(_ input: NodeInput) async throws -> NodeOutput
}
