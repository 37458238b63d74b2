import FlowStackCore
import FlowStackEngine
import FlowStackStore
import Foundation

/// Executions: history with node data, retry from the failed node, cancel, delete; and the
/// idempotency keys of requests that start them.
public struct Executions: Sendable {
    let app: UseCases
    var store: Store { app.store }

    /// The execution and the caller's access to its project for `action`.
    func load(_ executionID: String, _ action: Action, by caller: Caller) async throws -> (ExecutionRecord, Access.ProjectAccess) {
        guard let record = try await store.execution(id: executionID) else { throw FlowStackError.notFound }
        let access = try await app.access.project(record.projectID, action, caller.identity)
        return (record, access)
    }

    /// A page of the project's executions before the execution `cursor`, and whether there are more.
    public func list(projectID: String, filter: ExecutionFilter, before cursor: String?, limit: Int, by caller: Caller)
        async throws -> (items: [ExecutionRecord], more: Bool)
    {
        let project = try await app.access.project(projectID, .workflowRead, caller.identity).project
        var after: ExecutionRecord?
        if let cursor {
            guard Identifier.isValid(cursor, prefix: "exe"), let record = try await store.execution(id: cursor),
                record.projectID == project.id
            else {
                throw FlowStackError.validation("The cursor is not valid.", field: "cursor")
            }
            after = record
        }
        let page = try await store.executions(projectID: project.id, filter: filter, before: after, limit: limit + 1)
        return (Array(page.prefix(limit)), page.count > limit)
    }

    /// An execution as the caller may see it: the outline for viewers; node data and, while it
    /// waits for a call, the resume URL for those who may run it.
    public struct Detail: Sendable {
        public var record: ExecutionRecord
        public var journal: [ExecutionJournalEntry]?
        public var machine: ExecutionStateMachine?
        public var resumeURL: String?
    }

    public func get(_ executionID: String, by caller: Caller) async throws -> Detail {
        let (record, access) = try await load(executionID, .workflowRead, by: caller)
        guard access.role >= .runner else { return Detail(record: record) }
        let journal = try await store.journal(executionID: record.id, orgID: record.orgID)
        var machine: ExecutionStateMachine?
        if let definition = try await store.workflowDefinition(versionID: record.versionID, orgID: record.orgID) {
            var replayed = ExecutionStateMachine(workflow: definition, outputCounts: app.engine.driver.outputCounts(definition))
            for entry in journal { _ = replayed.handle(entry.event) }
            machine = replayed
        }
        var detail = Detail(record: record, journal: journal, machine: machine)
        // The resume URL resumes the run: only for those who may run it (not a read-only key).
        if record.status == .waiting, let until = record.waitUntil, until >= Date.distantFuture.addingTimeInterval(-86400),
            (try? await app.access.project(record.projectID, .workflowRun, caller.identity)) != nil
        {
            detail.resumeURL = ExecutionEngine.resumeURL(
                base: app.engine.configuration.webhookBaseURL, executionID: record.id,
                token: store.resumeToken(executionID: record.id))
        }
        return detail
    }

    public func delete(_ executionID: String, by caller: Caller) async throws {
        let (record, _) = try await load(executionID, .workflowEdit, by: caller)
        guard record.status.isFinished else {
            throw FlowStackError.conflict("execution_not_finished", "Cancel the execution before deleting it.")
        }
        try await store.deleteExecution(id: record.id)
    }

    /// Retries a failed execution from its failed node.
    public func retry(_ executionID: String, by caller: Caller) async throws -> ExecutionRecord {
        let (record, _) = try await load(executionID, .workflowRun, by: caller)
        do {
            return try await app.engine.retry(record)
        } catch ExecutionEngine.RetryError.notFailed {
            throw FlowStackError.conflict("execution_not_failed", "Only a failed execution can be retried.")
        } catch ExecutionEngine.RetryError.workflowGone {
            throw FlowStackError.conflict("workflow_deleted", "The workflow of this execution was deleted.")
        }
    }

    public func cancel(_ executionID: String, by caller: Caller) async throws -> ExecutionRecord {
        let (record, _) = try await load(executionID, .workflowRun, by: caller)
        guard try await store.cancelExecution(id: record.id) else {
            throw FlowStackError.conflict("execution_finished", "The execution has already finished.")
        }
        guard let cancelled = try await store.execution(id: record.id) else { throw FlowStackError.notFound }
        return cancelled
    }

    /// What a request with an idempotency key does.
    public enum Start: Sendable {
        /// Start execution `executionID` (the key names it from now on).
        case start(executionID: String)
        /// Answer with execution `executionID`, which an earlier request with the key started.
        case replay(executionID: String)

        /// The id a new execution must take.
        public var newExecutionID: String? {
            if case .start(let id) = self { id } else { nil }
        }
    }

    /// Claims `key` for a new execution of `workflowID`, or finds the execution it started.
    /// A key whose execution was never written is taken over once the request that claimed it
    /// must have ended (`AppSettings.idempotencyStaleAfter`); until then a repeat gets 409.
    public func begin(_ key: String, workflowID: String) async throws -> Start {
        let id = Identifier.makeOrdered("exe")
        switch try await store.claimIdempotencyKey(key, workflowID: workflowID, executionID: id) {
        case .claimed:
            return .start(executionID: id)
        case .used(let previous, let age):
            if try await store.execution(id: previous) != nil { return .replay(executionID: previous) }
            let inUse = FlowStackError(
                status: 409, code: "idempotency_key_in_use",
                message: "A request with this Idempotency-Key is still being handled; send it again in a few seconds.")
            guard age >= app.settings.idempotencyStaleAfter else { throw inUse }
            // The request that claimed it died before its execution was accepted.
            guard try await store.reassignIdempotencyKey(key, workflowID: workflowID, from: previous, to: id) else { throw inUse }
            return .start(executionID: id)
        }
    }
}
