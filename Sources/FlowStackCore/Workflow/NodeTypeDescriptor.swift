/// What validation needs to know about a node type: its versions, inputs and outputs, and its
/// parameters. The node implementations (FlowStackNodes) provide these.
public struct NodeTypeDescriptor: Sendable {
    public enum ParameterKind: String, Sendable {
        case string, number, boolean, options, json, cron, code
    }

    public struct Parameter: Sendable {
        public var name: String
        public var kind: ParameterKind
        public var required: Bool
        /// Allowed values, for `.options`.
        public var options: [String]
        /// Checks the shape of a `.json` value beyond its kind, at save time: each problem names
        /// the field inside the parameter (`mode`, `parameters[0].in`). Strings that are
        /// expressions are checked when they run instead.
        public var check: (@Sendable (JSONValue) -> [(field: String, message: String)])?

        public init(
            _ name: String, _ kind: ParameterKind, required: Bool = false, options: [String] = [],
            check: (@Sendable (JSONValue) -> [(field: String, message: String)])? = nil
        ) {
            self.name = name
            self.kind = kind
            self.required = required
            self.options = options
            self.check = check
        }
    }

    public var type: String
    public var versions: Set<Int>
    public var isTrigger: Bool
    public var inputs: Int
    /// Outputs of the node; nil when a parameter decides (Switch).
    public var outputs: Int?
    public var parameters: [Parameter]

    public init(
        type: String, versions: Set<Int> = [1], isTrigger: Bool = false, inputs: Int = 1, outputs: Int? = 1, parameters: [Parameter] = []
    ) {
        self.type = type
        self.versions = versions
        self.isTrigger = isTrigger
        self.inputs = inputs
        self.outputs = outputs
        self.parameters = parameters
    }
}
