import FlowStackApp
import FlowStackCore
import FlowStackEngine
import FlowStackStore
import Foundation
import Hummingbird

/// Executions: history with node data, retry from the failed node, cancel, delete, resume.
struct ExecutionController {
    let api: API
    var executions: Executions { api.app.executions }

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.get("projects/:projectId/executions", use: list)
        group.get("executions/:executionId", use: get)
        group.delete("executions/:executionId", use: delete)
        group.post("executions/:executionId/retry", use: retry)
        group.post("executions/:executionId/cancel", use: cancel)
    }

    private func executionID(_ context: APIContext) throws -> String {
        try context.parameters.id("executionId", prefix: "exe")
    }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let projectID = try context.parameters.id("projectId", prefix: "prj")
        var filter = ExecutionFilter()
        if let status = request.query("status") {
            guard let value = ExecutionStatus(rawValue: status) else {
                throw FlowStackError.validation("status must be queued, running, waiting, succeeded, failed or cancelled.", field: "status")
            }
            filter.status = value
        }
        if let mode = request.query("mode") {
            guard let value = ExecutionMode(rawValue: mode) else {
                throw FlowStackError.validation(
                    "mode must be one of \(ExecutionMode.allCases.map(\.rawValue).joined(separator: ", ")).", field: "mode")
            }
            filter.mode = value
        }
        if let workflowID = request.query("workflowId") {
            guard Identifier.isValid(workflowID, prefix: "wf") else {
                throw FlowStackError.validation("workflowId is not a workflow id.", field: "workflowId")
            }
            filter.workflowID = workflowID
        }
        let limit = try Paging.limit(request)
        let page = try await executions.list(
            projectID: projectID, filter: filter, before: request.query("cursor"), limit: limit, by: context.caller)
        return try JSON.response(
            .ok, ListDTO(items: page.items.map { ExecutionDTO($0) }, nextCursor: page.more ? page.items.last?.id : nil))
    }

    @Sendable func get(_ request: Request, context: APIContext) async throws -> Response {
        let detail = try await executions.get(try executionID(context), by: context.caller)
        var dto = ExecutionDTO(detail.record, journal: detail.journal, machine: detail.machine)
        dto.resumeUrl = detail.resumeURL
        return try JSON.response(.ok, dto)
    }

    @Sendable func delete(_ request: Request, context: APIContext) async throws -> Response {
        try await executions.delete(try executionID(context), by: context.caller)
        return JSON.empty()
    }

    @Sendable func retry(_ request: Request, context: APIContext) async throws -> Response {
        let retried = try await executions.retry(try executionID(context), by: context.caller)
        return try JSON.response(.accepted, RunAcceptedDTO(id: retried.id, status: retried.status.rawValue))
    }

    @Sendable func cancel(_ request: Request, context: APIContext) async throws -> Response {
        try JSON.response(.ok, ExecutionDTO(try await executions.cancel(try executionID(context), by: context.caller)))
    }
}
