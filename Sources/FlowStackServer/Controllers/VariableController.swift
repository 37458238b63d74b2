import FlowStackApp
import FlowStackCore
import FlowStackStore
import Foundation
import Hummingbird

/// Project variables: `$env.NAME` in expressions and Code nodes. Values are sealed at rest.
struct VariableController {
    let api: API

    struct CreateRequest: Decodable {
        var name: String
        var value: String
    }

    struct UpdateRequest: Decodable {
        var value: String
    }

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.get("projects/:projectId/variables", use: list)
        group.post("projects/:projectId/variables", use: create)
        group.patch("projects/:projectId/variables/:name", use: update)
        group.delete("projects/:projectId/variables/:name", use: delete)
    }

    var variables: Variables { api.app.variables }

    private func projectID(_ context: APIContext) throws -> String {
        try context.parameters.id("projectId", prefix: "prj")
    }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let (list, withValues) = try await variables.list(projectID: try projectID(context), by: context.caller)
        return try JSON.response(.ok, ListDTO(items: list.map { VariableDTO($0, withValue: withValues) }, nextCursor: nil))
    }

    @Sendable func create(_ request: Request, context: APIContext) async throws -> Response {
        let projectID = try projectID(context)
        try await variables.authorizeEdit(projectID: projectID, by: context.caller)
        let body = try await api.decode(CreateRequest.self, request, context)
        return try JSON.response(
            .created, VariableDTO(try await variables.create(projectID: projectID, name: body.name, value: body.value, by: context.caller)))
    }

    @Sendable func update(_ request: Request, context: APIContext) async throws -> Response {
        let projectID = try projectID(context)
        try await variables.authorizeEdit(projectID: projectID, by: context.caller)
        let name = context.parameters.get("name") ?? ""
        let body = try await api.decode(UpdateRequest.self, request, context)
        return try JSON.response(
            .ok, VariableDTO(try await variables.update(projectID: projectID, name: name, value: body.value, by: context.caller)))
    }

    @Sendable func delete(_ request: Request, context: APIContext) async throws -> Response {
        try await variables.delete(projectID: try projectID(context), name: context.parameters.get("name") ?? "", by: context.caller)
        return JSON.empty()
    }
}

struct VariableDTO: Encodable {
    var name: String
    var value: String?
    var createdAt: Date
    var updatedAt: Date
    init(_ variable: Variable, withValue: Bool = true) {
        name = variable.name
        value = withValue ? variable.value : nil
        createdAt = variable.createdAt
        updatedAt = variable.updatedAt
    }
}
