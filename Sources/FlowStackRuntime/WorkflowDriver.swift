import FlowStackCore
import FlowStackNetwork
import Foundation

/// What nodes can ask of the platform around them: sub-workflows, user code, outbound HTTP.
/// The server and `flowstack run` each provide their own; a node that needs a missing service
/// fails with a clear error.
public protocol NodeServices: Sendable {
    /// Runs workflow `id` with `items`; answers its last node's items (or `[]` when not waiting).
    func executeWorkflow(id: String, items: [Item], wait: Bool, caller: ExpressionContext) async throws -> [Item]
    /// Runs JavaScript for a Code node.
    func runCode(_ request: CodeRequest) async throws -> CodeResponse
    /// Runs JavaScript for a Code node whose `$http.request` calls `broker` answers.
    func runCode(_ request: CodeRequest, broker: CodeBroker?) async throws -> CodeResponse
    /// Makes an outbound HTTP request for the HTTP Request node, through the SSRF guard.
    func fetch(_ request: OutboundRequest) async throws -> OutboundResponse
    /// The same, signed with a connection of the caller's project (found by id or name).
    func fetch(_ request: OutboundRequest, connection: String, caller: ExpressionContext) async throws -> OutboundResponse
}

extension NodeServices {
    public func runCode(_ request: CodeRequest, broker: CodeBroker?) async throws -> CodeResponse {
        try await runCode(request)
    }

    public func fetch(_ request: OutboundRequest, connection: String, caller: ExpressionContext) async throws -> OutboundResponse {
        throw NodeError("Connections need a FlowStack server: `flowstack run` has none.", field: "connection")
    }
}

/// Persists an execution's progress. `record` is called after the state machine has taken
/// `event` and before any of `actions` is carried out; when it throws (the lease was lost, the
/// database is gone) the run stops, and whoever holds the execution next replays the journal.
public protocol ExecutionJournal: Sendable {
    func record(_ event: ExecutionEvent, node: NodeRunSummary?, machine: ExecutionStateMachine, actions: [ExecutionAction]) async throws
}

/// How a run ended when it did not finish: it went to sleep (Wait) and must be resumed.
public enum DriveOutcome: Sendable, Equatable {
    case finished
    case sleeping(until: Date?)
}

/// Drives an execution state machine: runs the nodes it asks for (ready nodes concurrently),
/// feeds their results back, and journals every step. Shared by `flowstack run` and the server.
public struct WorkflowDriver: Sendable {
    public let catalog: NodeCatalog
    public let services: (any NodeServices)?
    /// Waits shorter than this are slept in place; longer ones suspend the execution.
    public let inlineWaitLimit: TimeInterval

    public init(catalog: NodeCatalog, services: (any NodeServices)? = nil, inlineWaitLimit: TimeInterval = .infinity) {
        self.catalog = catalog
        self.services = services
        self.inlineWaitLimit = inlineWaitLimit
    }

    /// Regular output counts per node, as the state machine needs them.
    public func outputCounts(_ workflow: Workflow) -> [String: Int] {
        var counts: [String: Int] = [:]
        for node in workflow.nodes {
            if let nodeType = catalog.node(node.type) {
                counts[node.name] = type(of: nodeType).descriptor.outputs ?? WorkflowValidator.outputCount(node) ?? 1
            }
        }
        return counts
    }

    public func isTrigger(_ node: WorkflowNode) -> Bool {
        catalog.node(node.type).map { type(of: $0).descriptor.isTrigger } ?? false
    }

    /// Runs `actions` and everything they lead to, until the execution finishes or sleeps.
    public func drive(
        _ machine: inout ExecutionStateMachine, actions initial: [ExecutionAction], base: ExpressionContext,
        deadline: Date?, journal: (any ExecutionJournal)?, summaries: inout [String: NodeRunSummary]
    ) async throws -> DriveOutcome {
        let workflow = machine.workflow
        var actions = initial
        var outcome = DriveOutcome.finished
        var pending = 0
        try await withThrowingTaskGroup(of: (ExecutionEvent, NodeRunSummary?).self) { group in
            if let deadline {
                group.addTask {
                    try await Task.sleep(for: .seconds(max(0, deadline.timeIntervalSinceNow)))
                    return (.timedOut, nil)
                }
            }
            loop: while true {
                let completed: (ExecutionEvent, NodeRunSummary?)
                if deadline == nil, pending == 0, actions.count == 1, case .runNode(let name, let inputs, let attempt) = actions[0],
                    let node = workflow.node(named: name)
                {
                    try await RunFence.check()
                    // One node and nothing else running: run it in this task. A child task would
                    // add a task, a hop to the pool and one back, and run alone all the same.
                    // (With a workflow timeout the deadline's timer must race the node.)
                    completed = await step(node, inputs: inputs, attempt: attempt, base: context(base, machine))
                } else {
                    for action in actions {
                        switch action {
                        case .runNode(let name, let inputs, let attempt):
                            guard let node = workflow.node(named: name) else { continue }
                            try await RunFence.check()
                            let frozen = context(base, machine)
                            pending += 1
                            group.addTask { await self.step(node, inputs: inputs, attempt: attempt, base: frozen) }
                        case .scheduleRetry(let name, let delay):
                            pending += 1
                            group.addTask {
                                try await Task.sleep(for: .milliseconds(delay))
                                return (.retryDue(node: name), nil)
                            }
                        case .sleep(let name, let until):
                            let delay = until.map { $0.timeIntervalSinceNow } ?? .infinity
                            if delay <= inlineWaitLimit, let items = machine.waiting[name] {
                                pending += 1
                                group.addTask {
                                    if delay > 0 { try await Task.sleep(for: .seconds(delay)) }
                                    return (.resumed(node: name, outputs: [items]), nil)
                                }
                            }
                        case .finish:
                            group.cancelAll()
                            break loop
                        }
                    }
                    if pending == 0 {
                        // Nothing is running: the execution either finished or sleeps.
                        if machine.status == .waiting { outcome = .sleeping(until: machine.waitingUntil) }
                        group.cancelAll()
                        break loop
                    }
                    guard let next = try await group.next() else { break }
                    if case .timedOut = next.0 {} else { pending -= 1 }
                    completed = next
                }
                let (event, summary) = completed
                if let summary { summaries[summary.node] = summary }
                actions = machine.handle(event)
                try await journal?.record(event, node: summary, machine: machine, actions: actions)
            }
        }
        return outcome
    }

    /// The context a node runs in: `base` with the outputs of the nodes that ran so far.
    private func context(_ base: ExpressionContext, _ machine: ExecutionStateMachine) -> ExpressionContext {
        var context = base
        // `$now` and a Wait's duration count from when the node starts, not from when the run did.
        context.now = Date()
        // The outputs' own arrays (shared, not copied): a node's items are not held twice.
        context.nodeOutputs = machine.outputs.mapValues { $0.first ?? [] }
        return context
    }

    /// Runs one node and says what happened, as an event for the state machine and a summary.
    private func step(_ node: WorkflowNode, inputs: [[Item]], attempt: Int, base: ExpressionContext) async -> (
        ExecutionEvent, NodeRunSummary?
    ) {
        let name = node.name
        let outcome = await runNode(node, inputs: inputs, base: base)
        switch outcome.result {
        case .items(let outputs)?:
            return (
                .nodeSucceeded(node: name, outputs: outputs),
                NodeRunSummary(
                    node: name, status: "succeeded", items: outputs.reduce(0) { $0 + $1.count },
                    attempts: attempt, milliseconds: outcome.milliseconds, error: nil, logs: outcome.logs.nilIfEmpty)
            )
        case .wait(let until, let items)?:
            return (
                .nodeWaiting(node: name, until: until, items: items),
                NodeRunSummary(
                    node: name, status: "waiting", items: items.count, attempts: attempt,
                    milliseconds: outcome.milliseconds, error: nil)
            )
        case .waitForResume(let items)?:
            return (
                .nodeWaiting(node: name, until: nil, items: items),
                NodeRunSummary(
                    node: name, status: "waiting", items: items.count, attempts: attempt,
                    milliseconds: outcome.milliseconds, error: nil)
            )
        case nil:
            let message = outcome.error ?? "The node failed."
            return (
                .nodeFailed(node: name, error: message),
                NodeRunSummary(
                    node: name, status: "failed", items: 0, attempts: attempt,
                    milliseconds: outcome.milliseconds, error: message, logs: outcome.logs.nilIfEmpty)
            )
        }
    }

    struct Outcome: Sendable {
        var result: NodeOutput?
        var error: String?
        var milliseconds: Double
        var logs: [String] = []
    }

    func runNode(_ node: WorkflowNode, inputs: [[Item]], base: ExpressionContext) async -> Outcome {
        let started = ContinuousClock.now
        func elapsed() -> Double {
            let d = ContinuousClock.now - started
            return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        }
        guard let nodeType = catalog.node(node.type) else {
            return Outcome(result: nil, error: "Unknown node type '\(node.type)'", milliseconds: 0)
        }
        let log = NodeLog()
        var outcome = await runNode(node, nodeType: nodeType, inputs: inputs, base: base, log: log, elapsed: elapsed)
        outcome.logs = log.lines
        if let redactor = base.redactor, !redactor.isEmpty {
            // Secrets of connections this run used never reach the journal, whoever echoed them.
            outcome.logs = outcome.logs.map(redactor.redact)
            outcome.error = outcome.error.map(redactor.redact)
            switch outcome.result {
            case .items(let outputs)?: outcome.result = .items(outputs.map(redactor.redact))
            case .wait(let until, let items)?: outcome.result = .wait(until: until, items: redactor.redact(items))
            case .waitForResume(let items)?: outcome.result = .waitForResume(items: redactor.redact(items))
            case nil: break
            }
        }
        return outcome
    }

    private func runNode(
        _ node: WorkflowNode, nodeType: any NodeType, inputs: [[Item]], base: ExpressionContext, log: NodeLog,
        elapsed: () -> Double
    ) async -> Outcome {
        do {
            let input = NodeInput(node: node, inputs: inputs, base: base, services: services, log: log)
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
        } catch is CancellationError {
            return Outcome(result: nil, error: "The node was cancelled.", milliseconds: elapsed())
        } catch {
            return Outcome(result: nil, error: "The node failed: \(error)", milliseconds: elapsed())
        }
    }
}

extension Array {
    var nilIfEmpty: Self? { isEmpty ? nil : self }
}

/// Asked before a run does anything with an effect outside it: a node starts, an outbound
/// request is sent, user code runs. Throws when the run may no longer act (another worker holds
/// the execution now), so a worker that was paused past its lease performs no new side effect.
public protocol SideEffectPermit: Sendable {
    func permit() async throws
}

/// The permit of the run the current task drives; nil where no lease applies (`flowstack run`).
public enum RunFence {
    @TaskLocal public static var current: (any SideEffectPermit)?

    /// Throws when the current run may no longer act.
    public static func check() async throws {
        try await current?.permit()
    }
}
