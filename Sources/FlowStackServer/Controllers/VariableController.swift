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

    func addRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.get("projects/:projectId/variables", use: list)
        group.post("projects/:projectId/variables", use: create)
        group.patch("projects/:projectId/variables/:name", use: update)
        group.delete("projects/:projectId/variables/:name", use: delete)
    }

    static func validName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.utf8.count <= 64 else { return false }
        let letters = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
        return letters.contains(first) && name.unicodeScalars.allSatisfy { letters.contains($0) || ("0"..."9").contains(Character($0)) }
    }

    private func checkedValue(_ value: String) throws -> String {
        guard value.utf8.count <= 64 * 1024 else { throw FlowStackError.validation("A value is at most 64 KiB.", field: "value") }
        return value
    }

    private func pathName(_ context: FlowStackRequestContext) throws -> String {
        guard let name = context.parameters.get("name"), Self.validName(name) else { throw FlowStackError.notFound }
        return name
    }

    @Sendable func list(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .workflowRead, identity)
        let variables = try await api.store.variables(projectID: access.project.id)
        // Values follow execution data: for those who may run the project's workflows. Viewers see the names.
        let withValues = access.role >= .runner
        return try JSON.response(.ok, ListDTO(items: variables.map { VariableDTO($0, withValue: withValues) }, nextCursor: nil))
    }

    @Sendable func create(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .workflowEdit, identity)
        let body = try await api.decode(CreateRequest.self, request, context)
        guard Self.validName(body.name) else {
            throw FlowStackError.validation("A name starts with a letter or _, then letters, digits or _, at most 64.", field: "name")
        }
        let value = try checkedValue(body.value)
        let project = access.project
        let actor = context.auditActor
        let created = try await api.store.write { [store = api.store] db in
            guard try await store.insertVariable(projectID: project.id, orgID: project.orgID, name: body.name, value: value, on: db) else { return false }
            // The audit trail names the variable, never its value.
            try await store.appendAudit(AuditRecord(orgID: project.orgID, action: "variable.created", resourceType: "variable",
                                                    resourceID: "\(project.id)/\(body.name)", details: [:]), actor: actor, on: db)
            return true
        }
        guard created else { throw FlowStackError.conflict("variable_exists", "The project already has a variable '\(body.name)'.", field: "name") }
        api.engine.variablesChanged(projectID: project.id)
        let variable = try await api.store.variables(projectID: project.id).first { $0.name == body.name }
        return try JSON.response(.created, VariableDTO(try variable.unwrap()))
    }

    @Sendable func update(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .workflowEdit, identity)
        let name = try pathName(context)
        let value = try checkedValue(try await api.decode(UpdateRequest.self, request, context).value)
        let project = access.project
        let actor = context.auditActor
        let updated = try await api.store.write { [store = api.store] db in
            guard try await store.updateVariable(projectID: project.id, orgID: project.orgID, name: name, value: value, on: db) else { return false }
            try await store.appendAudit(AuditRecord(orgID: project.orgID, action: "variable.updated", resourceType: "variable",
                                                    resourceID: "\(project.id)/\(name)", details: [:]), actor: actor, on: db)
            return true
        }
        guard updated else { throw FlowStackError.notFound }
        api.engine.variablesChanged(projectID: project.id)
        let variable = try await api.store.variables(projectID: project.id).first { $0.name == name }
        return try JSON.response(.ok, VariableDTO(try variable.unwrap()))
    }

    @Sendable func delete(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .workflowEdit, identity)
        let name = try pathName(context)
        let project = access.project
        let actor = context.auditActor
        let deleted = try await api.store.write { [store = api.store] db in
            guard try await store.deleteVariable(projectID: project.id, name: name, on: db) else { return false }
            try await store.appendAudit(AuditRecord(orgID: project.orgID, action: "variable.deleted", resourceType: "variable",
                                                    resourceID: "\(project.id)/\(name)", details: [:]), actor: actor, on: db)
            return true
        }
        guard deleted else { throw FlowStackError.notFound }
        api.engine.variablesChanged(projectID: project.id)
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

extension Optional {
    func unwrap() throws -> Wrapped {
        guard let self else { throw FlowStackError.notFound }
        return self
    }
}
