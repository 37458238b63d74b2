import FlowStackCore
import FlowStackCrypto
import Foundation
import SQLKit

/// A project variable: a name in clear, its value sealed (AAD: project, name, org).
public struct Variable: Sendable, Equatable {
    public var projectID: String
    public var name: String
    public var value: String
    public var createdAt: Date
    public var updatedAt: Date
}

extension Store {
    private func valueContext(projectID: String, name: String, orgID: String) -> SealContext {
        SealContext(table: "variables", rowID: "\(projectID)/\(name)", column: "value", orgID: orgID)
    }

    private func variable(from row: any SQLRow) throws -> Variable {
        let projectID = try row.string("project_id")
        let name = try row.string("name")
        let orgID = try row.string("org_id")
        return Variable(
            projectID: projectID, name: name,
            value: try sealer.openString(
                try row.bytes("value_sealed"), context: valueContext(projectID: projectID, name: name, orgID: orgID)),
            createdAt: try row.date("created_at"), updatedAt: try row.date("updated_at"))
    }

    /// Creates a variable; false when the project already has one by that name.
    public func insertVariable(projectID: String, orgID: String, name: String, value: String, on db: any SQLDatabase) async throws -> Bool {
        let now = self.now.millisecondsSince1970
        let sealed = Data(try sealer.seal(value, context: valueContext(projectID: projectID, name: name, orgID: orgID)))
        return try await db.raw(
            """
            INSERT INTO variables (project_id, name, org_id, value_sealed, created_at, updated_at)
            VALUES (\(bind: projectID), \(bind: name), \(bind: orgID), \(bind: sealed), \(bind: now), \(bind: now))
            ON CONFLICT DO NOTHING RETURNING name
            """
        ).first() != nil
    }

    /// Changes a variable's value; false when there is no such variable.
    public func updateVariable(projectID: String, orgID: String, name: String, value: String, on db: any SQLDatabase) async throws -> Bool {
        let sealed = Data(try sealer.seal(value, context: valueContext(projectID: projectID, name: name, orgID: orgID)))
        return try await db.raw(
            """
            UPDATE variables SET value_sealed = \(bind: sealed), updated_at = \(bind: now.millisecondsSince1970)
            WHERE project_id = \(bind: projectID) AND name = \(bind: name) RETURNING name
            """
        ).first() != nil
    }

    public func deleteVariable(projectID: String, name: String, on db: any SQLDatabase) async throws -> Bool {
        try await db.raw("DELETE FROM variables WHERE project_id = \(bind: projectID) AND name = \(bind: name) RETURNING name").first()
            != nil
    }

    public func variables(projectID: String) async throws -> [Variable] {
        let rows = try await read { db in
            try await db.raw(
                """
                SELECT project_id, name, org_id, value_sealed, created_at, updated_at FROM variables
                WHERE project_id = \(bind: projectID) ORDER BY name
                """
            ).all()
        }
        return try rows.map(variable(from:))
    }

    /// A project's variables as `$env` sees them.
    public func variableMap(projectID: String) async throws -> [String: String] {
        Dictionary(try await variables(projectID: projectID).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
    }
}
