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
    public var logs: [String]?

    public init(node: String, status: String, items: Int, attempts: Int, milliseconds: Double, error: String?, logs: [String]? = nil) {
        self.node = node
        self.status = status
        self.items = items
        self.attempts = attempts
        self.milliseconds = milliseconds
        self.error = error
        self.logs = logs
    }
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
/// `flowstack run FILE` (no server, no database). Ready nodes run concurrently; waits are slept.
public struct LocalRunner: Sendable {
    public let driver: WorkflowDriver

    public init(catalog: NodeCatalog, services: (any NodeServices)? = nil) {
        self.driver = WorkflowDriver(catalog: catalog, services: services)
    }

    public var catalog: NodeCatalog { driver.catalog }

    public struct InvalidWorkflow: Error, CustomStringConvertible {
        public let problems: [WorkflowProblem]
        public var description: String { problems.map(\.description).joined(separator: "\n") }
    }

    public func run(
        _ workflow: Workflow, input: [Item] = [Item(json: .object([:]))], trigger: String? = nil,
        variables: [String: String] = [:], executionID: String = Identifier.makeOrdered("exe")
    ) async throws -> RunResult {
        let problems = WorkflowValidator.validate(workflow, catalog: catalog.descriptors)
        guard problems.isEmpty else { throw InvalidWorkflow(problems: problems) }
        guard let start = trigger.flatMap(workflow.node(named:)) ?? workflow.nodes.first(where: driver.isTrigger) else {
            throw InvalidWorkflow(problems: [.init("no_trigger", "The workflow needs a trigger node.")])
        }
        var machine = ExecutionStateMachine(workflow: workflow, outputCounts: driver.outputCounts(workflow))
        let timeZone = workflow.settings.timezone.flatMap(TimeZone.init(identifier:)) ?? TimeZone(identifier: "UTC")!
        let base = ExpressionContext(
            variables: variables, timeZone: timeZone, executionID: executionID, workflowID: "local", workflowName: workflow.name)
        var summaries: [String: NodeRunSummary] = [:]

        // The trigger passes the input on.
        let triggerOutput = await driver.runNode(start, inputs: [input], base: base)
        guard case .items(let triggered) = triggerOutput.result else {
            throw InvalidWorkflow(problems: [.init("trigger_failed", triggerOutput.error ?? "The trigger failed.", node: start.name)])
        }
        summaries[start.name] = NodeRunSummary(
            node: start.name, status: "succeeded", items: triggered.first?.count ?? 0, attempts: 1,
            milliseconds: triggerOutput.milliseconds, error: nil)
        let actions = machine.handle(.start(trigger: start.name, items: triggered.first ?? []))
        let deadline = workflow.settings.timeout.map { Date().addingTimeInterval($0) }
        _ = try await driver.drive(&machine, actions: actions, base: base, deadline: deadline, journal: nil, summaries: &summaries)
        for name in machine.skipped {
            summaries[name] = NodeRunSummary(node: name, status: "skipped", items: 0, attempts: 0, milliseconds: 0, error: nil)
        }
        let ordered = workflow.nodes.compactMap { summaries[$0.name] }
        return RunResult(
            status: machine.status, output: machine.finalOutput, error: machine.error, failedNode: machine.failedNode, nodes: ordered)
    }
}
