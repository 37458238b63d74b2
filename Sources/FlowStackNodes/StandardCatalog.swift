import FlowStackRuntime

extension NodeCatalog {
    /// Every built-in node type.
    public static let standard = NodeCatalog(types: [
        ManualTriggerNode(), WebhookNode(), ScheduleNode(), SetNode(), IfNode(), FilterNode(), NoOpNode(), MergeNode(),
        LimitNode(), SortNode(), SplitOutNode(), AggregateNode(), RemoveDuplicatesNode(), StopAndErrorNode(), CryptoNode(),
        ExecuteWorkflowTriggerNode(), ErrorTriggerNode(), ExecuteWorkflowNode(), WaitNode(), RespondToWebhookNode(), SwitchNode(),
        DateTimeNode(), CodeNode(), HTTPRequestNode(),
    ])
}
