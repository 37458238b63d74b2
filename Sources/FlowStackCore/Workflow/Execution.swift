import Foundation

public enum ExecutionMode: String, Codable, Sendable, CaseIterable {
    case manual, webhook, schedule
    case subworkflow = "sub-workflow"
    case retry, error
}

/// An execution's row: what can be queried stays in clear; its data (the event journal and the
/// error) is sealed.
public struct ExecutionRecord: Sendable, Equatable {
    public var id: String
    public var orgID: String
    public var projectID: String
    public var workflowID: String
    public var versionID: String
    public var mode: ExecutionMode
    public var status: ExecutionStatus
    public var triggerNode: String
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var failedNode: String?
    public var error: String?
    public var fence: Int
    public var waitUntil: Date?
    public var events: Int
    public var parentID: String?
    public var retryOf: String?

    public init(
        id: String = Identifier.makeOrdered("exe"), orgID: String, projectID: String, workflowID: String, versionID: String,
        mode: ExecutionMode, status: ExecutionStatus = .queued, triggerNode: String, createdAt: Date,
        parentID: String? = nil, retryOf: String? = nil
    ) {
        self.id = id
        self.orgID = orgID
        self.projectID = projectID
        self.workflowID = workflowID
        self.versionID = versionID
        self.mode = mode
        self.status = status
        self.triggerNode = triggerNode
        self.createdAt = createdAt
        self.fence = 0
        self.events = 0
        self.parentID = parentID
        self.retryOf = retryOf
    }
}

/// One journaled step of an execution.
public struct ExecutionJournalEntry: Sendable, Equatable {
    public var seq: Int
    public var node: String?
    public var event: ExecutionEvent
    public var createdAt: Date
    /// Timing and attempt of a node run, when the event is one.
    public var run: NodeRunInfo?

    public init(seq: Int, node: String?, event: ExecutionEvent, createdAt: Date, run: NodeRunInfo? = nil) {
        self.seq = seq
        self.node = node
        self.event = event
        self.createdAt = createdAt
        self.run = run
    }
}

public struct NodeRunInfo: Codable, Sendable, Equatable {
    public var attempt: Int
    public var milliseconds: Double
    public var logs: [String]?

    public init(attempt: Int, milliseconds: Double, logs: [String]? = nil) {
        self.attempt = attempt
        self.milliseconds = milliseconds
        self.logs = logs
    }
}

/// How an execution's row changes with a journal write.
public struct ExecutionProgress: Sendable {
    public var status: ExecutionStatus
    public var error: String?
    public var failedNode: String?
    public var waitUntil: Date?

    public init(status: ExecutionStatus, error: String? = nil, failedNode: String? = nil, waitUntil: Date? = nil) {
        self.status = status
        self.error = error
        self.failedNode = failedNode
        self.waitUntil = waitUntil
    }
}

public struct ExecutionFilter: Sendable {
    public var status: ExecutionStatus?
    public var workflowID: String?
    public var mode: ExecutionMode?

    public init(status: ExecutionStatus? = nil, workflowID: String? = nil, mode: ExecutionMode? = nil) {
        self.status = status
        self.workflowID = workflowID
        self.mode = mode
    }
}

/// The result of an execution that ran to the end (or to sleep).
public struct ExecutionResult: Sendable {
    public var record: ExecutionRecord
    public var machine: ExecutionStateMachine

    public init(record: ExecutionRecord, machine: ExecutionStateMachine) {
        self.record = record
        self.machine = machine
    }

    public var output: [Item] { machine.finalOutput }
}
