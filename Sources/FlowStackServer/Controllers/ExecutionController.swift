import FlowStackCore
import FlowStackEngine
import FlowStackStore
import Foundation
import Hummingbird

/// Executions: history with node data, retry from the failed node, cancel, delete, resume.
struct ExecutionController {
    let api: API

    func addRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.get("projects/:projectId/executions", use: list)
        group.get("executions/:executionId", use: get)
        group.delete("executions/:executionId", use: delete)
        group.post("executions/:executionId/retry", use: retry)
        group.post("executions/:executionId/cancel", use: cancel)
    }

    /// The execution at `executionId` and the caller's access to its project.
    private func load(_ context: FlowStackRequestContext, _ action: Action) async throws -> (ExecutionRecord, Access.ProjectAccess) {
        let identity = try context.requireIdentity()
        let id = try context.parameters.id("executionId", prefix: "exe")
        guard let record = try await api.store.execution(id: id) else { throw FlowStackError.notFound }
        let access = try await api.access.project(record.projectID, action, identity)
        return (record, access)
    }

    @Sendable func list(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .workflowRead, identity)
        var filter = ExecutionFilter()
        if let status = request.query("status") {
            guard let value = ExecutionStatus(rawValue: status) else {
                throw FlowStackError.validation("status must be queued, running, waiting, succeeded, failed or cancelled.", field: "status")
            }
            filter.status = value
        }
        if let mode = request.query("mode") {
            guard let value = ExecutionMode(rawValue: mode) else {
                throw FlowStackError.validation("mode must be one of \(ExecutionMode.allCases.map(\.rawValue).joined(separator: ", ")).", field: "mode")
            }
            filter.mode = value
        }
        if let workflowID = request.query("workflowId") {
            guard Identifier.isValid(workflowID, prefix: "wf") else { throw FlowStackError.validation("workflowId is not a workflow id.", field: "workflowId") }
            filter.workflowID = workflowID
        }
        let limit = try Paging.limit(request)
        var cursor: ExecutionRecord?
        if let given = request.query("cursor") {
            guard Identifier.isValid(given, prefix: "exe"), let record = try await api.store.execution(id: given), record.projectID == access.project.id else {
                throw FlowStackError.validation("The cursor is not valid.", field: "cursor")
            }
            cursor = record
        }
        let page = try await api.store.executions(projectID: access.project.id, filter: filter, before: cursor, limit: limit + 1)
        let items = Array(page.prefix(limit))
        return try JSON.response(.ok, ListDTO(items: items.map { ExecutionDTO($0) }, nextCursor: page.count > limit ? items.last?.id : nil))
    }

    @Sendable func get(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (record, access) = try await load(context, .workflowRead)
        // Node data (the items that flowed) is for those who may run the workflow; viewers see the outline.
        guard access.role >= .runner else { return try JSON.response(.ok, ExecutionDTO(record)) }
        let journal = try await api.store.journal(executionID: record.id, orgID: record.orgID)
        var machine: ExecutionStateMachine?
        if let definition = try await api.store.workflowDefinition(versionID: record.versionID, orgID: record.orgID) {
            var replayed = ExecutionStateMachine(workflow: definition, outputCounts: api.engine.driver.outputCounts(definition))
            for entry in journal { _ = replayed.handle(entry.event) }
            machine = replayed
        }
        var dto = ExecutionDTO(record, journal: journal, machine: machine)
        // The resume URL resumes the run: only for those who may run it (not a read-only key).
        if record.status == .waiting, let until = record.waitUntil, until >= Date.distantFuture.addingTimeInterval(-86400),
           let identity = context.identity, (try? await api.access.project(record.projectID, .workflowRun, identity)) != nil {
            dto.resumeUrl = ExecutionEngine.resumeURL(base: api.engine.configuration.webhookBaseURL, executionID: record.id,
                                                      token: api.store.resumeToken(executionID: record.id))
        }
        return try JSON.response(.ok, dto)
    }

    @Sendable func delete(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (record, _) = try await load(context, .workflowEdit)
        guard record.status.isFinished else {
            throw FlowStackError.conflict("execution_not_finished", "Cancel the execution before deleting it.")
        }
        try await api.store.deleteExecution(id: record.id)
        return JSON.empty()
    }

    @Sendable func retry(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (record, _) = try await load(context, .workflowRun)
        do {
            let retried = try await api.engine.retry(record)
            return try JSON.response(.accepted, RunAcceptedDTO(id: retried.id, status: retried.status.rawValue))
        } catch ExecutionEngine.RetryError.notFailed {
            throw FlowStackError.conflict("execution_not_failed", "Only a failed execution can be retried.")
        } catch ExecutionEngine.RetryError.workflowGone {
            throw FlowStackError.conflict("workflow_deleted", "The workflow of this execution was deleted.")
        }
    }

    @Sendable func cancel(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (record, _) = try await load(context, .workflowRun)
        guard try await api.store.cancelExecution(id: record.id) else {
            throw FlowStackError.conflict("execution_finished", "The execution has already finished.")
        }
        guard let cancelled = try await api.store.execution(id: record.id) else { throw FlowStackError.notFound }
        return try JSON.response(.ok, ExecutionDTO(cancelled))
    }
}
