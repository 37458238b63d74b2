import FlowStackCore
import Foundation

/// How one node run went, for `flowstack run`'s summary.
public struct NodeRunSummary: Sendable, Codable, Equatable {
    public var node: String
    public var status: String
    public var items: Int
    public var attempts: Int
    public var milliseconds: Double
    public var error: String?
}

/// The result of running a workflow.
public struct RunResult: Sendable {
    public var status: ExecutionStatus
    public var output: [Item]
    public var error: String?
    public var failedNode: String?
    public var nodes: [NodeRunSummary]
}

/// Runs a workflow in memory by driving the execution state machine: the engine of
/// `flowstack run FILE` (no server, no database). Ready nodes run concurrently.
public struct LocalRunner: Sendable {
    public let catalog: NodeCatalog

    public init(catalog: NodeCatalog = .standard) {
        self.catalog = catalog
    }

    public struct InvalidWorkflow: Error, CustomStringConvertible {
        public let problems: [WorkflowProblem]
        public var description: String { problems.map(\.description).joined(separator: "\n") }
    }

    public func run(_ workflow: Workflow, input: [Item] = [Item(json: .object([:]))], trigger: String? = nil,
                    variables: [String: String] = [:], executionID: String = Identifier.make("exe")) async throws -> RunResult {
        let problems = WorkflowValidator.validate(workflow, catalog: catalog.descriptors)
        guard problems.isEmpty else { throw InvalidWorkflow(problems: problems) }
        let triggers = workflow.nodes.filter { catalog.node($0.type).map { type(of: $0).descriptor.isTrigger } ?? false }
        guard let start = trigger.flatMap(workflow.node(named:)) ?? triggers.first else {
            throw InvalidWorkflow(problems: [.init("no_trigger", "The workflow needs a trigger node.")])
        }
        var outputCounts: [String: Int] = [:]
        for node in workflow.nodes {
            if let nodeType = catalog.node(node.type) {
                outputCounts[node.name] = type(of: nodeType).descriptor.outputs ?? WorkflowValidator.outputCount(node) ?? 1
            }
        }
        var machine = ExecutionStateMachine(workflow: workflow, outputCounts: outputCounts)
        let timeZone = workflow.settings.timezone.flatMap(TimeZone.init(identifier:)) ?? TimeZone(identifier: "UTC")!
        let base = ExpressionContext(variables: variables, timeZone: timeZone, executionID: executionID, workflowID: "local", workflowName: workflow.name)
        var summaries: [String: NodeRunSummary] = [:]

        // The trigger passes the input on.
        let triggerOutput = try await runNode(start, inputs: [input], base: base)
        guard case .items(let triggered) = triggerOutput.result else {
            throw InvalidWorkflow(problems: [.init("trigger_failed", triggerOutput.error ?? "The trigger failed.", node: start.name)])
        }
        summaries[start.name] = NodeRunSummary(node: start.name, status: "succeeded", items: triggered.first?.count ?? 0, attempts: 1,
                                               milliseconds: triggerOutput.milliseconds, error: nil)
        var actions = machine.handle(.start(trigger: start.name, items: triggered.first ?? []))
        let deadline = workflow.settings.timeout.map { Date().addingTimeInterval($0) }

        await withTaskGroup(of: (ExecutionEvent, NodeRunSummary?).self) { group in
            loop: while true {
                for action in actions {
                    switch action {
                    case .runNode(let name, let inputs, let attempt):
                        guard let node = workflow.node(named: name) else { continue }
                        var context = base
                        context.nodeOutputs = machine.outputs.mapValues { $0.first?.map(\.json) ?? [] }
                        group.addTask {
                            let outcome = try? await self.runNode(node, inputs: inputs, base: context)
                            let ms = outcome?.milliseconds ?? 0
                            switch outcome?.result {
                            case .items(let outputs)?:
                                return (.nodeSucceeded(node: name, outputs: outputs),
                                        NodeRunSummary(node: name, status: "succeeded", items: outputs.reduce(0) { $0 + $1.count }, attempts: attempt, milliseconds: ms, error: nil))
                            case .wait(let until, let items)?:
                                let delay = until.timeIntervalSinceNow
                                if delay > 0 { try? await Task.sleep(for: .seconds(delay)) }
                                return (.resumed(node: name, outputs: [items]),
                                        NodeRunSummary(node: name, status: "succeeded", items: items.count, attempts: attempt, milliseconds: ms, error: nil))
                            case nil:
                                let message = outcome?.error ?? "The node failed."
                                return (.nodeFailed(node: name, error: message),
                                        NodeRunSummary(node: name, status: "failed", items: 0, attempts: attempt, milliseconds: ms, error: message))
                            }
                        }
                    case .scheduleRetry(let name, let delay):
                        group.addTask {
                            try? await Task.sleep(for: .milliseconds(delay))
                            return (.retryDue(node: name), nil)
                        }
                    case .sleep:
                        break
                    case .finish:
                        group.cancelAll()
                        break loop
                    }
                }
                let next: (ExecutionEvent, NodeRunSummary?)?
                if let deadline {
                    group.addTask {
                        try? await Task.sleep(for: .seconds(max(0, deadline.timeIntervalSinceNow)))
                        return (.timedOut, nil)
                    }
                }
                next = await group.next()
                guard let (event, summary) = next else { break }
                if let summary { summaries[summary.node] = summary }
                actions = machine.handle(event)
            }
        }
        for name in machine.skipped { summaries[name] = NodeRunSummary(node: name, status: "skipped", items: 0, attempts: 0, milliseconds: 0, error: nil) }
        let ordered = workflow.nodes.compactMap { summaries[$0.name] }
        return RunResult(status: machine.status, output: machine.finalOutput, error: machine.error, failedNode: machine.failedNode, nodes: ordered)
    }

    struct Outcome: Sendable {
        var result: NodeOutput?
        var error: String?
        var milliseconds: Double
    }

    func runNode(_ node: WorkflowNode, inputs: [[Item]], base: ExpressionContext) async throws -> Outcome {
        let started = ContinuousClock.now
        func elapsed() -> Double {
            let d = ContinuousClock.now - started
            return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        }
        guard let nodeType = catalog.node(node.type) else {
            return Outcome(result: nil, error: "Unknown node type '\(node.type)'", milliseconds: 0)
        }
        do {
            let input = NodeInput(node: node, inputs: inputs, base: base)
            let output: NodeOutput
            if let timeout = node.timeout {
                output = try await withThrowingTaskGroup(of: NodeOutput?.self) { group in
                    group.addTask { try await nodeType.run(input) }
                    group.addTask {
                        try await Task.sleep(for: .seconds(timeout))
                        return nil
                    }
                    defer { group.cancelAll() }
                    guard let first = try await group.next(), let result = first else {
                        throw NodeError("The node did not finish within \(timeout) seconds")
                    }
                    return result
                }
            } else {
                output = try await nodeType.run(input)
            }
            return Outcome(result: output, error: nil, milliseconds: elapsed())
        } catch let error as NodeError {
            return Outcome(result: nil, error: error.message, milliseconds: elapsed())
        } catch let error as ExpressionError {
            return Outcome(result: nil, error: "Expression error: \(error.description)", milliseconds: elapsed())
        } catch {
            return Outcome(result: nil, error: "The node failed: \(error)", milliseconds: elapsed())
        }
    }
}
