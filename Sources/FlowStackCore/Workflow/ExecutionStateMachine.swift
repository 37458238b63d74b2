import Foundation

/// One item flowing between nodes: JSON plus optional binary references.
public struct Item: Codable, Sendable, Equatable {
    public var json: JSONValue
    public var binary: [String: JSONValue]?

    public init(json: JSONValue, binary: [String: JSONValue]? = nil) {
        self.json = json
        self.binary = binary
    }
}

public enum ExecutionStatus: String, Codable, Sendable {
    case queued, running, waiting, succeeded, failed, cancelled

    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// What the runner reports to the state machine.
public enum ExecutionEvent: Codable, Sendable, Equatable {
    /// Start at `trigger` with the trigger's output items.
    case start(trigger: String, items: [Item])
    /// A node finished: one array of items per output.
    case nodeSucceeded(node: String, outputs: [[Item]])
    case nodeFailed(node: String, error: String)
    /// A node asked to sleep until a time (Wait), or until resumed when `until` is nil; `resumed`
    /// later continues it, by default with `items`.
    case nodeWaiting(node: String, until: Date?, items: [Item])
    case resumed(node: String, outputs: [[Item]])
    /// A retry delay elapsed.
    case retryDue(node: String)
    case cancel
    case timedOut
}

/// What the state machine asks the runner to do.
public enum ExecutionAction: Sendable, Equatable {
    /// Run `node` (attempt counts from 1) with one array of items per input.
    case runNode(node: String, inputs: [[Item]], attempt: Int)
    /// Call back with `.retryDue` after the delay.
    case scheduleRetry(node: String, afterMilliseconds: Int)
    /// Persist that the execution sleeps until `until` (or until resumed by a webhook).
    case sleep(node: String, until: Date?)
    /// The execution is over.
    case finish(status: ExecutionStatus, error: String?, failedNode: String?)
}

/// The execution engine's state, as a value: events in, actions out, no I/O.
///
/// Data flows along edges. A node runs once every node feeding it has settled; it runs when at
/// least one input got items, and is skipped (settling with no output) when none did, so an
/// untaken If branch does not run. Nodes that become ready together are all returned, for the
/// runner to run in parallel. A failing node retries with exponential backoff when asked to,
/// then stops the execution, continues with an error item, or routes to its error output.
public struct ExecutionStateMachine: Codable, Sendable, Equatable {
    public private(set) var status: ExecutionStatus = .queued
    /// Outputs of every node that finished, by name (checkpointed by the runner).
    public private(set) var outputs: [String: [[Item]]] = [:]
    /// Nodes that settled without running (no input items).
    public private(set) var skipped: Set<String> = []
    public private(set) var running: Set<String> = []
    public private(set) var attempts: [String: Int] = [:]
    public private(set) var lastNode: String?
    public private(set) var error: String?
    public private(set) var failedNode: String?
    /// The items a waiting node continues with, by node.
    public private(set) var waiting: [String: [Item]] = [:]
    /// When the execution sleeps until (nil while waiting for a resume call).
    public private(set) var waitingUntil: Date?
    public let workflow: Workflow
    /// Regular outputs per node (from the node catalog); the error output comes after them.
    public let outputCounts: [String: Int]

    public init(workflow: Workflow, outputCounts: [String: Int] = [:]) {
        self.workflow = workflow
        self.outputCounts = outputCounts
    }

    private func settled(_ node: String) -> Bool {
        outputs[node] != nil || skipped.contains(node)
    }

    private func incoming(_ node: String) -> [Edge] {
        workflow.edges.filter { $0.to == node }
    }

    private func inputCount(_ node: String) -> Int {
        max(1, (incoming(node).map(\.input).max() ?? 0) + 1)
    }

    /// The inputs of `node` gathered from its settled upstream nodes.
    public func inputs(for node: String) -> [[Item]] {
        var inputs = Array(repeating: [Item](), count: inputCount(node))
        for edge in incoming(node) {
            guard let upstream = outputs[edge.from], edge.output < upstream.count else { continue }
            // One edge into an input shares the upstream array instead of copying it.
            if inputs[edge.input].isEmpty {
                inputs[edge.input] = upstream[edge.output]
            } else {
                inputs[edge.input] += upstream[edge.output]
            }
        }
        return inputs
    }

    /// Nodes whose upstream has all settled and that have not run; the skipped ones settle at once.
    private mutating func readyNodes() -> [ExecutionAction] {
        var actions: [ExecutionAction] = []
        var changed = true
        while changed {
            changed = false
            for node in workflow.nodes.map(\.name) where !settled(node) && !running.contains(node) {
                let edges = incoming(node)
                guard !edges.isEmpty, edges.allSatisfy({ settled($0.from) }) else { continue }
                let gathered = inputs(for: node)
                if gathered.allSatisfy(\.isEmpty) {
                    skipped.insert(node)
                    changed = true
                } else {
                    running.insert(node)
                    attempts[node, default: 0] += 1
                    actions.append(.runNode(node: node, inputs: gathered, attempt: attempts[node]!))
                }
            }
        }
        return actions
    }

    private mutating func finishIfDone() -> [ExecutionAction] {
        guard running.isEmpty, status == .running else { return [] }
        status = .succeeded
        return [.finish(status: .succeeded, error: nil, failedNode: nil)]
    }

    private mutating func fail(_ node: String, _ message: String) -> [ExecutionAction] {
        status = .failed
        error = message
        failedNode = node
        running.removeAll()
        return [.finish(status: .failed, error: message, failedNode: node)]
    }

    /// The items of the last node that produced output (what `?wait=true` answers with).
    public var finalOutput: [Item] {
        guard let lastNode, let out = outputs[lastNode] else { return [] }
        return out.first ?? []
    }

    /// What a runner taking over this execution must do: run again every node that was running
    /// (it never completed, so it never checkpointed), or go back to sleep.
    public func resumeActions() -> [ExecutionAction] {
        switch status {
        case .running:
            return running.sorted().map { .runNode(node: $0, inputs: inputs(for: $0), attempt: attempts[$0] ?? 1) }
        case .waiting:
            return waiting.keys.sorted().map { .sleep(node: $0, until: waitingUntil) }
        default:
            return []
        }
    }

    public mutating func handle(_ event: ExecutionEvent) -> [ExecutionAction] {
        if status.isFinished { return [] }
        switch event {
        case .start(let trigger, let items):
            guard status == .queued, workflow.node(named: trigger) != nil else { return [] }
            status = .running
            outputs[trigger] = [items]
            lastNode = trigger
            // Other entry points (a second trigger) do not run in this execution.
            for node in workflow.nodes where node.name != trigger && incoming(node.name).isEmpty {
                skipped.insert(node.name)
            }
            return readyNodes() + finishIfDone()
        case .nodeSucceeded(let node, let produced), .resumed(let node, let produced):
            guard running.contains(node) else { return [] }
            if waiting.removeValue(forKey: node) != nil, waiting.isEmpty {
                status = .running
                waitingUntil = nil
            }
            running.remove(node)
            outputs[node] = produced
            lastNode = node
            return readyNodes() + finishIfDone()
        case .nodeFailed(let node, let message):
            guard running.contains(node), let definition = workflow.node(named: node) else { return [] }
            let attempt = attempts[node] ?? 1
            if definition.retryOnFail && attempt < definition.maxTries {
                let delay = definition.waitBetweenTries * (1 << min(attempt - 1, 10))
                return [.scheduleRetry(node: node, afterMilliseconds: min(delay, 3_600_000))]
            }
            switch definition.onError {
            case .stop:
                return fail(node, message)
            case .continue:
                running.remove(node)
                outputs[node] = [[Item(json: ["error": .string(message)])]]
                lastNode = node
                return readyNodes() + finishIfDone()
            case .errorOutput:
                running.remove(node)
                let inputItems = inputs(for: node).flatMap { $0 }
                let regular = outputCounts[node] ?? 1
                var routed = Array(repeating: [Item](), count: regular + 1)
                routed[regular] = inputItems.map { item in
                    var json = item.json.objectValue ?? ["value": item.json]
                    json["error"] = .string(message)
                    return Item(json: .object(json), binary: item.binary)
                }
                outputs[node] = routed
                lastNode = node
                return readyNodes() + finishIfDone()
            }
        case .retryDue(let node):
            guard running.contains(node) else { return [] }
            attempts[node, default: 0] += 1
            return [.runNode(node: node, inputs: inputs(for: node), attempt: attempts[node]!)]
        case .nodeWaiting(let node, let until, let items):
            guard running.contains(node) else { return [] }
            status = .waiting
            waiting[node] = items
            waitingUntil = until
            return [.sleep(node: node, until: until)]
        case .cancel:
            status = .cancelled
            running.removeAll()
            return [.finish(status: .cancelled, error: nil, failedNode: nil)]
        case .timedOut:
            let node = running.sorted().first ?? lastNode ?? ""
            return fail(node, "The workflow exceeded its timeout.")
        }
    }
}

extension ExecutionEvent {
    /// The node an event is about, if any.
    public var nodeName: String? {
        switch self {
        case .start(let trigger, _): trigger
        case .nodeSucceeded(let node, _), .nodeFailed(let node, _), .nodeWaiting(let node, _, _), .resumed(let node, _),
            .retryDue(let node):
            node
        case .cancel, .timedOut: nil
        }
    }
}
