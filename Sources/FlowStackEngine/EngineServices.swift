import FlowStackCore
import FlowStackNetwork
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import Foundation

/// What nodes get from the engine: sub-workflows in the same project, the sandbox, outbound HTTP.
struct EngineServices: NodeServices {
    let engine: ExecutionEngine

    func executeWorkflow(id: String, items: [Item], wait: Bool, caller: ExpressionContext) async throws -> [Item] {
        guard caller.callDepth < engine.configuration.maximumDepth else {
            throw NodeError("Sub-workflows are nested more than \(engine.configuration.maximumDepth) deep.")
        }
        let store = engine.store
        // A workflow can only call workflows of its own project.
        guard let callerWorkflow = try await store.workflow(id: caller.workflowID),
            let target = try await store.workflow(id: id), target.projectID == callerWorkflow.projectID
        else {
            throw NodeError("No workflow '\(id)' in this project.", field: "workflowId")
        }
        guard let trigger = target.definition.nodes.first(where: { $0.type == ExecuteWorkflowTriggerNode.descriptor.type }) else {
            throw NodeError("The workflow '\(target.name)' has no Execute Workflow Trigger.", field: "workflowId")
        }
        if wait {
            let result = try await engine.runNow(
                target, trigger: trigger.name, items: items, mode: .subworkflow, parentID: caller.executionID,
                depth: caller.callDepth + 1)
            switch result.record.status {
            case .succeeded: return result.output
            case .waiting: throw NodeError("The sub-workflow went to sleep; call it without waiting.")
            default: throw NodeError("The sub-workflow failed: \(result.record.error ?? "unknown error")")
            }
        }
        _ = try await engine.submit(target, trigger: trigger.name, items: items, mode: .subworkflow, parentID: caller.executionID)
        return items
    }

    func runCode(_ request: CodeRequest) async throws -> CodeResponse {
        guard let runner = engine.codeRunner else { throw NodeError("Code nodes are not available: the sandbox is not configured.") }
        try await RunFence.check()
        return try await runner.run(request)
    }

    func runCode(_ request: CodeRequest, broker: CodeBroker?) async throws -> CodeResponse {
        guard let runner = engine.codeRunner else { throw NodeError("Code nodes are not available: the sandbox is not configured.") }
        try await RunFence.check()
        return try await runner.run(request, broker: broker)
    }

    func fetch(_ request: OutboundRequest) async throws -> OutboundResponse {
        guard let fetcher = engine.fetcher else { throw NodeError("HTTP requests are not available here.") }
        try await RunFence.check()
        return try await fetcher.fetch(request)
    }

    func fetch(_ request: OutboundRequest, connection: String, caller: ExpressionContext) async throws -> OutboundResponse {
        try await RunFence.check()
        return try await engine.connections.fetch(request, connection: connection, caller: caller)
    }
}
