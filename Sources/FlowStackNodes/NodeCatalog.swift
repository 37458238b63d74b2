import FlowStackCore

/// Every built-in node type, by type name.
public struct NodeCatalog: Sendable {
    public let types: [String: any NodeType]

    public init(types: [any NodeType]) {
        self.types = Dictionary(uniqueKeysWithValues: types.map { (type(of: $0).descriptor.type, $0) })
    }

    public static let standard = NodeCatalog(types: [
        ManualTriggerNode(), WebhookNode(), ScheduleNode(), SetNode(), IfNode(), FilterNode(), NoOpNode(), MergeNode(),
        LimitNode(), SortNode(), SplitOutNode(), AggregateNode(), RemoveDuplicatesNode(), StopAndErrorNode(), CryptoNode(),
        ExecuteWorkflowTriggerNode(), ErrorTriggerNode(), ExecuteWorkflowNode(), WaitNode(), RespondToWebhookNode(), SwitchNode(),
        DateTimeNode(), CodeNode(), HTTPRequestNode(),
    ])

    public var descriptors: [String: NodeTypeDescriptor] {
        types.mapValues { type(of: $0).descriptor }
    }

    public func node(_ type: String) -> (any NodeType)? { types[type] }
}
