import FlowStackApp
import FlowStackCore
import FlowStackEngine
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import Foundation
import Hummingbird

/// Workflows: versioned definitions in projects, activation (webhooks, schedules) and manual runs.
struct WorkflowController {
    let api: API

    /// A workflow definition, plus the version it was based on when saving over one.
    struct SaveRequest: Decodable {
        var versionId: String?
        var workflow: Workflow

        enum CodingKeys: String, CodingKey { case versionId }

        init(from decoder: any Decoder) throws {
            workflow = try Workflow(from: decoder)
            versionId = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .versionId)
        }
    }

    struct RunRequest: Decodable {
        var items: [JSONValue]?
    }

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.post("projects/:projectId/workflows", use: create)
        group.get("projects/:projectId/workflows", use: list)
        group.get("workflows/:workflowId", use: get)
        group.put("workflows/:workflowId", use: update)
        group.delete("workflows/:workflowId", use: delete)
        group.get("workflows/:workflowId/versions", use: versions)
        group.post("workflows/:workflowId/activate", use: activate)
        group.post("workflows/:workflowId/deactivate", use: deactivate)
        group.post("workflows/:workflowId/run", use: run)
        group.get("node-types", use: nodeTypes)
    }

    var workflows: Workflows { api.app.workflows }

    private func workflowID(_ context: APIContext) throws -> String {
        try context.parameters.id("workflowId", prefix: "wf")
    }

    @Sendable func create(_ request: Request, context: APIContext) async throws -> Response {
        let projectID = try context.parameters.id("projectId", prefix: "prj")
        let permit = try await workflows.authorizeCreate(projectID: projectID, by: context.caller)
        let body = try await api.decode(SaveRequest.self, request, context)
        let (workflow, warnings) = try await workflows.create(permit, definition: body.workflow)
        // Saved anyway; the warnings tell the editor which node and line hold a credential.
        return try JSON.response(.created, WorkflowDTO(workflow, warnings: warnings))
    }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let projectID = try context.parameters.id("projectId", prefix: "prj")
        let limit = try Paging.limit(request)
        var cursor: String?
        if let given = request.query("cursor") {
            guard Identifier.isValid(given, prefix: "wf") else {
                throw FlowStackError.validation("The cursor is not valid.", field: "cursor")
            }
            cursor = given
        }
        let page = try await workflows.list(projectID: projectID, after: cursor, limit: limit, by: context.caller)
        return try JSON.response(.ok, ListDTO(items: page.items.map { WorkflowDTO($0) }, nextCursor: page.more ? page.items.last?.id : nil))
    }

    @Sendable func get(_ request: Request, context: APIContext) async throws -> Response {
        try JSON.response(.ok, WorkflowDTO(try await workflows.get(try workflowID(context), by: context.caller)))
    }

    @Sendable func update(_ request: Request, context: APIContext) async throws -> Response {
        let id = try workflowID(context)
        let permit = try await workflows.authorizeEdit(id, by: context.caller)
        let body = try await api.decode(SaveRequest.self, request, context)
        let (saved, warnings) = try await workflows.update(permit, definition: body.workflow, expectedVersionID: body.versionId)
        return try JSON.response(.ok, WorkflowDTO(saved, warnings: warnings))
    }

    @Sendable func delete(_ request: Request, context: APIContext) async throws -> Response {
        try await workflows.delete(try workflowID(context), by: context.caller)
        return JSON.empty()
    }

    @Sendable func versions(_ request: Request, context: APIContext) async throws -> Response {
        let versions = try await workflows.versions(try workflowID(context), by: context.caller)
        return try JSON.response(.ok, ListDTO(items: versions.map(WorkflowVersionDTO.init), nextCursor: nil))
    }

    @Sendable func activate(_ request: Request, context: APIContext) async throws -> Response {
        try JSON.response(.ok, WorkflowDTO(try await workflows.setActive(try workflowID(context), true, by: context.caller)))
    }

    @Sendable func deactivate(_ request: Request, context: APIContext) async throws -> Response {
        try JSON.response(.ok, WorkflowDTO(try await workflows.setActive(try workflowID(context), false, by: context.caller)))
    }

    @Sendable func run(_ request: Request, context: APIContext) async throws -> Response {
        let id = try workflowID(context)
        let permit = try await workflows.authorizeRun(id, by: context.caller)
        let body = try await api.decodeOptional(RunRequest.self, request, context, empty: RunRequest(items: nil))
        let wait = request.query("wait").map { $0 == "true" || $0 == "1" } ?? false
        let outcome = try await workflows.run(permit, items: body.items, wait: wait, idempotencyKey: try Idempotency.key(request))
        switch outcome {
        case .finished(let result, let replayed):
            return Idempotency.mark(try JSON.response(.ok, RunResultDTO(result)), replayed: replayed)
        case .accepted(let executionID, let status, let replayed):
            return Idempotency.mark(
                try JSON.response(.accepted, RunAcceptedDTO(id: executionID, status: status.rawValue)), replayed: replayed)
        }
    }

    @Sendable func nodeTypes(_ request: Request, context: APIContext) async throws -> Response {
        try JSON.response(.ok, ListDTO(items: workflows.nodeTypes(by: context.caller).map(NodeTypeDTO.init), nextCursor: nil))
    }
}

enum Paging {
    static func limit(_ request: Request) throws -> Int {
        guard let text = request.query("limit") else { return 50 }
        guard let value = Int(text), (1...200).contains(value) else {
            throw FlowStackError.validation("limit must be a whole number from 1 to 200.", field: "limit")
        }
        return value
    }
}
