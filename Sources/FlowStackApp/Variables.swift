import FlowStackCore
import FlowStackStore
import Foundation

/// Project variables: `$env.NAME` in expressions and Code nodes. Values are sealed at rest.
public struct Variables: Sendable {
    let app: UseCases
    var store: Store { app.store }

    public static func validName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.utf8.count <= 64 else { return false }
        let letters = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
        return letters.contains(first) && name.unicodeScalars.allSatisfy { letters.contains($0) || ("0"..."9").contains(Character($0)) }
    }

    private func checkedValue(_ value: String) throws -> String {
        guard value.utf8.count <= 64 * 1024 else { throw FlowStackError.validation("A value is at most 64 KiB.", field: "value") }
        return value
    }

    /// The variables, and whether the caller may see their values (those who may run the
    /// project's workflows, like execution data; viewers see the names).
    public func list(projectID: String, by caller: Caller) async throws -> (variables: [Variable], withValues: Bool) {
        let access = try await app.access.project(projectID, .workflowRead, caller.identity)
        return (try await store.variables(projectID: access.project.id), access.role >= .runner)
    }

    /// Checks the caller may change the project's variables (before the request body is read).
    public func authorizeEdit(projectID: String, by caller: Caller) async throws {
        try await app.access.project(projectID, .workflowEdit, caller.identity)
    }

    public func create(projectID: String, name: String, value rawValue: String, by caller: Caller) async throws -> Variable {
        let project = try await app.access.project(projectID, .workflowEdit, caller.identity).project
        guard Self.validName(name) else {
            throw FlowStackError.validation("A name starts with a letter or _, then letters, digits or _, at most 64.", field: "name")
        }
        let value = try checkedValue(rawValue)
        let actor = caller.auditActor
        let created = try await store.write(announcing: [.variables(projectID: project.id)]) { [store] db in
            guard try await store.insertVariable(projectID: project.id, orgID: project.orgID, name: name, value: value, on: db) else {
                return false
            }
            // The audit trail names the variable, never its value.
            try await store.appendAudit(
                AuditRecord(
                    orgID: project.orgID, action: "variable.created", resourceType: "variable",
                    resourceID: "\(project.id)/\(name)", details: [:]), actor: actor, on: db)
            return true
        }
        guard created else {
            throw FlowStackError.conflict("variable_exists", "The project already has a variable '\(name)'.", field: "name")
        }
        return try await variable(name, projectID: project.id)
    }

    public func update(projectID: String, name: String, value rawValue: String, by caller: Caller) async throws -> Variable {
        let project = try await app.access.project(projectID, .workflowEdit, caller.identity).project
        guard Self.validName(name) else { throw FlowStackError.notFound }
        let value = try checkedValue(rawValue)
        let actor = caller.auditActor
        let updated = try await store.write(announcing: [.variables(projectID: project.id)]) { [store] db in
            guard try await store.updateVariable(projectID: project.id, orgID: project.orgID, name: name, value: value, on: db) else {
                return false
            }
            try await store.appendAudit(
                AuditRecord(
                    orgID: project.orgID, action: "variable.updated", resourceType: "variable",
                    resourceID: "\(project.id)/\(name)", details: [:]), actor: actor, on: db)
            return true
        }
        guard updated else { throw FlowStackError.notFound }
        return try await variable(name, projectID: project.id)
    }

    public func delete(projectID: String, name: String, by caller: Caller) async throws {
        let project = try await app.access.project(projectID, .workflowEdit, caller.identity).project
        guard Self.validName(name) else { throw FlowStackError.notFound }
        let actor = caller.auditActor
        let deleted = try await store.write(announcing: [.variables(projectID: project.id)]) { [store] db in
            guard try await store.deleteVariable(projectID: project.id, name: name, on: db) else { return false }
            try await store.appendAudit(
                AuditRecord(
                    orgID: project.orgID, action: "variable.deleted", resourceType: "variable",
                    resourceID: "\(project.id)/\(name)", details: [:]), actor: actor, on: db)
            return true
        }
        guard deleted else { throw FlowStackError.notFound }
    }

    private func variable(_ name: String, projectID: String) async throws -> Variable {
        guard let variable = try await store.variables(projectID: projectID).first(where: { $0.name == name }) else {
            throw FlowStackError.notFound
        }
        return variable
    }
}
