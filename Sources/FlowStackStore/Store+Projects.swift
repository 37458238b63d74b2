import FlowStackCore
import FlowStackCrypto
import Foundation
import SQLKit

extension Store {
    private func descriptionContext(projectID: String, orgID: String) -> SealContext {
        SealContext(table: "projects", rowID: projectID, column: "description", orgID: orgID)
    }

    func project(from row: any SQLRow) throws -> Project {
        let id = try row.string("id")
        let orgID = try row.string("org_id")
        var description = ""
        if let sealed = try row.optionalBytes("description_sealed") {
            description = try sealer.openString(sealed, context: descriptionContext(projectID: id, orgID: orgID))
        }
        return Project(
            id: id, orgID: orgID, name: try row.string("name"), description: description,
            createdAt: try row.date("created_at"), updatedAt: try row.date("updated_at"))
    }

    public func insertProject(orgID: String, name: String, description: String, creator: String, on db: any SQLDatabase) async throws
        -> Project
    {
        let id = Identifier.make("prj")
        let now = self.now
        let sealed = try sealer.seal(description, context: descriptionContext(projectID: id, orgID: orgID))
        try await db.raw(
            """
            INSERT INTO projects (id, org_id, name, description_sealed, created_at, updated_at)
            VALUES (\(bind: id), \(bind: orgID), \(bind: name), \(bind: Data(sealed)),
                    \(bind: now.millisecondsSince1970), \(bind: now.millisecondsSince1970))
            """
        ).run()
        try await setProjectMember(projectID: id, userID: creator, role: .editor, on: db)
        return Project(id: id, orgID: orgID, name: name, description: description, createdAt: now, updatedAt: now)
    }

    public func project(id: String) async throws -> Project? {
        let row = try await read { db in
            try await db.raw("SELECT id, org_id, name, description_sealed, created_at, updated_at FROM projects WHERE id = \(bind: id)")
                .first()
        }
        return try row.map(project(from:))
    }

    /// The projects of an organization; `visibleTo` limits them to the user's own projects.
    public func projects(orgID: String, visibleTo userID: String?, restrictedTo projectID: String?) async throws -> [Project] {
        let rows = try await read { db in
            var query: SQLQueryString = """
                SELECT p.id, p.org_id, p.name, p.description_sealed, p.created_at, p.updated_at FROM projects p
                WHERE p.org_id = \(bind: orgID)
                """
            if let userID {
                query += " AND EXISTS (SELECT 1 FROM project_members pm WHERE pm.project_id = p.id AND pm.user_id = \(bind: userID))"
            }
            if let projectID {
                query += " AND p.id = \(bind: projectID)"
            }
            query += " ORDER BY p.created_at, p.id"
            return try await db.raw(query).all()
        }
        return try rows.map(project(from:))
    }

    public func updateProject(_ project: Project, on db: any SQLDatabase) async throws {
        let sealed = try sealer.seal(project.description, context: descriptionContext(projectID: project.id, orgID: project.orgID))
        try await db.raw(
            """
            UPDATE projects SET name = \(bind: project.name), description_sealed = \(bind: Data(sealed)),
                updated_at = \(bind: now.millisecondsSince1970) WHERE id = \(bind: project.id)
            """
        ).run()
    }

    public func deleteProject(id: String, on db: any SQLDatabase) async throws {
        try await db.raw("DELETE FROM project_members WHERE project_id = \(bind: id)").run()
        try await db.raw("DELETE FROM api_keys WHERE project_id = \(bind: id)").run()
        try await db.raw("DELETE FROM projects WHERE id = \(bind: id)").run()
    }

    public func projectRole(projectID: String, userID: String) async throws -> ProjectRole? {
        try await read { db in
            try await db.raw("SELECT role FROM project_members WHERE project_id = \(bind: projectID) AND user_id = \(bind: userID)")
                .first().flatMap { ProjectRole(rawValue: try $0.string("role")) }
        }
    }

    public func projectMembers(projectID: String) async throws -> [ProjectMember] {
        try await read { db in
            try await db.raw(
                """
                SELECT u.id, u.email, u.name, pm.role FROM project_members pm JOIN users u ON u.id = pm.user_id
                WHERE pm.project_id = \(bind: projectID) ORDER BY pm.created_at, u.id
                """
            ).all().map { row in
                ProjectMember(
                    userID: try row.string("id"), email: try row.string("email"), name: try row.string("name"),
                    role: ProjectRole(rawValue: try row.string("role")) ?? .viewer)
            }
        }
    }

    public func setProjectMember(projectID: String, userID: String, role: ProjectRole, on db: any SQLDatabase) async throws {
        try await db.raw(
            """
            INSERT INTO project_members (project_id, user_id, role, created_at)
            VALUES (\(bind: projectID), \(bind: userID), \(bind: role.rawValue), \(bind: now.millisecondsSince1970))
            ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role
            """
        ).run()
    }

    /// Removes a project member; returns whether there was one.
    public func removeProjectMember(projectID: String, userID: String, on db: any SQLDatabase) async throws -> Bool {
        let existed =
            try await db.raw("SELECT 1 AS one FROM project_members WHERE project_id = \(bind: projectID) AND user_id = \(bind: userID)")
            .first() != nil
        try await db.raw("DELETE FROM project_members WHERE project_id = \(bind: projectID) AND user_id = \(bind: userID)").run()
        return existed
    }
}
