import FlowStackCore
import FlowStackEngine
import FlowStackStore
import Foundation

/// A workflow: its definition's fields (`name`, `nodes`, `edges`, `settings`) plus what the
/// server keeps about it.
struct WorkflowDTO: Encodable {
    var workflow: StoredWorkflow
    /// Hard-coded credentials found when saving (only on create and update answers).
    var warnings: [CredentialFinding]?
    init(_ workflow: StoredWorkflow, warnings: [CredentialFinding]? = nil) {
        self.workflow = workflow
        self.warnings = warnings
    }

    enum CodingKeys: String, CodingKey { case id, projectId, active, versionId, version, createdAt, updatedAt, warnings }

    func encode(to encoder: any Encoder) throws {
        try workflow.definition.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(workflow.id, forKey: .id)
        try container.encode(workflow.projectID, forKey: .projectId)
        try container.encode(workflow.active, forKey: .active)
        try container.encode(workflow.versionID, forKey: .versionId)
        try container.encode(workflow.version, forKey: .version)
        try container.encode(workflow.createdAt, forKey: .createdAt)
        try container.encode(workflow.updatedAt, forKey: .updatedAt)
        if let warnings { try container.encode(warnings, forKey: .warnings) }
    }

}

struct WorkflowVersionDTO: Encodable {
    var id: String
    var version: Int
    var createdBy: String?
    var createdAt: Date
    init(_ version: WorkflowVersionInfo) {
        id = version.id
        self.version = version.version
        createdBy = version.createdBy
        createdAt = version.createdAt
    }
}

/// `POST …/run?wait=true`: `{"id", "status", "output": [json of the last node's items], "error"?}`.
struct RunResultDTO: Encodable {
    var id: String
    var status: String
    var output: [JSONValue]
    var error: String?
    var failedNode: String?
    init(_ result: ExecutionResult) {
        id = result.record.id
        status = result.record.status.rawValue
        output = result.record.status == .succeeded ? result.output.map(\.json) : []
        error = result.record.error
        failedNode = result.record.failedNode
    }
}

struct RunAcceptedDTO: Encodable {
    var id: String
    var status: String
}

struct NodeTypeDTO: Encodable {
    struct Parameter: Encodable {
        var name: String
        var type: String
        var required: Bool
        var options: [String]?
    }
    var type: String
    var versions: [Int]
    var trigger: Bool
    var inputs: Int
    var outputs: Int?
    var parameters: [Parameter]
    init(_ descriptor: NodeTypeDescriptor) {
        type = descriptor.type
        versions = descriptor.versions.sorted()
        trigger = descriptor.isTrigger
        inputs = descriptor.inputs
        outputs = descriptor.outputs
        parameters = descriptor.parameters.map {
            Parameter(name: $0.name, type: $0.kind.rawValue, required: $0.required, options: $0.options.isEmpty ? nil : $0.options)
        }
    }
}

struct ExecutionDTO: Encodable {
    struct NodeRun: Encodable {
        var node: String
        var status: String
        var attempt: Int?
        var milliseconds: Double?
        var finishedAt: Date
        var input: [JSONValue]?
        var output: [[JSONValue]]?
        var error: String?
        var logs: [String]?
    }
    var id: String
    var workflowId: String
    var projectId: String
    var versionId: String
    var mode: String
    var status: String
    var createdAt: Date
    var startedAt: Date?
    var finishedAt: Date?
    var waitUntil: Date?
    var error: String?
    var failedNode: String?
    var retryOf: String?
    var parentId: String?
    var output: [JSONValue]?
    var nodes: [NodeRun]?
    /// Where a call resumes it, while it waits for one (only for those who may run it).
    var resumeUrl: String?

    init(_ record: ExecutionRecord, journal: [ExecutionJournalEntry]? = nil, machine: ExecutionStateMachine? = nil) {
        id = record.id
        workflowId = record.workflowID
        projectId = record.projectID
        versionId = record.versionID
        mode = record.mode.rawValue
        status = record.status.rawValue
        createdAt = record.createdAt
        startedAt = record.startedAt
        finishedAt = record.finishedAt
        waitUntil =
            record.status == .waiting && record.waitUntil.map { $0 < Date.distantFuture.addingTimeInterval(-86400) } == true
            ? record.waitUntil : nil
        error = record.error
        failedNode = record.failedNode
        retryOf = record.retryOf
        parentId = record.parentID
        guard let journal else { return }
        output = machine.map { $0.status == .succeeded ? $0.finalOutput.map(\.json) : [] }
        // Replay to know each node's inputs as it ran.
        var replay = machine.map { ExecutionStateMachine(workflow: $0.workflow, outputCounts: $0.outputCounts) }
        var runs: [NodeRun] = []
        for entry in journal {
            var run: NodeRun?
            switch entry.event {
            case .start(let trigger, let items):
                run = NodeRun(node: trigger, status: "succeeded", finishedAt: entry.createdAt, output: [items.map(\.json)])
            case .nodeSucceeded(let node, let outputs), .resumed(let node, let outputs):
                run = NodeRun(
                    node: node, status: "succeeded", attempt: entry.run?.attempt, milliseconds: entry.run?.milliseconds,
                    finishedAt: entry.createdAt, input: replay?.inputs(for: node).flatMap { $0 }.map(\.json),
                    output: outputs.map { $0.map(\.json) }, logs: entry.run?.logs)
            case .nodeFailed(let node, let message):
                run = NodeRun(
                    node: node, status: "failed", attempt: entry.run?.attempt, milliseconds: entry.run?.milliseconds,
                    finishedAt: entry.createdAt, input: replay?.inputs(for: node).flatMap { $0 }.map(\.json), error: message,
                    logs: entry.run?.logs)
            case .nodeWaiting(let node, _, _):
                run = NodeRun(
                    node: node, status: "waiting", attempt: entry.run?.attempt, milliseconds: entry.run?.milliseconds,
                    finishedAt: entry.createdAt)
            case .retryDue, .cancel, .timedOut:
                break
            }
            _ = replay?.handle(entry.event)
            if let run { runs.append(run) }
        }
        nodes = runs
    }
}
