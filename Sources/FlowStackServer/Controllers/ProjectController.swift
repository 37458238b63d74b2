import FlowStackCore
import FlowStackStore
import Foundation
import Hummingbird

/// Projects and their members.
struct ProjectController {
    let api: API

    struct CreateRequest: Decodable {
        var name: String
        var description: String?
    }

    struct UpdateRequest: Decodable {
        var name: String?
        var description: String?
    }

    struct MemberRequest: Decodable { var role: ProjectRole }

    func addRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.get("orgs/:orgId/projects", use: list)
        group.post("orgs/:orgId/projects", use: create)
        group.get("projects/:projectId", use: get)
        group.patch("projects/:projectId", use: update)
        group.delete("projects/:projectId", use: delete)
        group.get("projects/:projectId/members", use: members)
        group.put("projects/:projectId/members/:userId", use: setMember)
        group.delete("projects/:projectId/members/:userId", use: removeMember)
    }

    private func description(_ raw: String?) throws -> String {
        let value = raw ?? ""
        guard value.count <= 2000 else { throw FlowStackError.validation("The description must be at most 2000 characters long.", field: "description") }
        return value
    }

    @Sendable func list(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        let access = try await api.access.org(orgID, .projectList, identity)
        var restricted: String?
        if case .apiKey(let key, _) = identity.method { restricted = key.projectID }
        let projects = try await api.store.projects(orgID: orgID, visibleTo: access.role >= .admin ? nil : identity.user.id, restrictedTo: restricted)
        return try JSON.response(.ok, ListDTO(items: projects.map(ProjectDTO.init), nextCursor: nil))
    }

    @Sendable func create(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await api.access.org(orgID, .projectCreate, identity)
        let body = try await api.decode(CreateRequest.self, request, context)
        let name = try Validate.name(body.name)
        let description = try description(body.description)
        let actor = context.auditActor
        let project = try await api.store.write { db in
            let project = try await api.store.insertProject(orgID: orgID, name: name, description: description, creator: identity.user.id, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: orgID, action: "project.created", resourceType: "project", resourceID: project.id,
                                                        details: ["name": name]), actor: actor, on: db)
            return project
        }
        return try JSON.response(.created, ProjectDTO(project))
    }

    @Sendable func get(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .projectRead, identity)
        return try JSON.response(.ok, ProjectDTO(access.project))
    }

    @Sendable func update(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .projectUpdate, identity)
        let body = try await api.decode(UpdateRequest.self, request, context)
        var project = access.project
        if let name = body.name { project.name = try Validate.name(name) }
        if let text = body.description { project.description = try description(text) }
        let updated = project
        let actor = context.auditActor
        try await api.store.write { db in
            try await api.store.updateProject(updated, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: updated.orgID, action: "project.updated", resourceType: "project", resourceID: updated.id),
                                            actor: actor, on: db)
        }
        return try JSON.response(.ok, ProjectDTO(try await api.store.project(id: project.id) ?? project))
    }

    @Sendable func delete(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .projectDelete, identity)
        let actor = context.auditActor
        try await api.store.write { db in
            try await api.store.deleteProject(id: access.project.id, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: access.project.orgID, action: "project.deleted", resourceType: "project",
                                                        resourceID: access.project.id, details: ["name": access.project.name]), actor: actor, on: db)
        }
        return JSON.empty()
    }

    @Sendable func members(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .projectRead, identity)
        return try JSON.response(.ok, ListDTO(items: try await api.store.projectMembers(projectID: access.project.id).map(ProjectMemberDTO.init), nextCursor: nil))
    }

    @Sendable func setMember(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .projectMembersManage, identity)
        let userID = try context.parameters.id("userId", prefix: "usr")
        let body = try await api.decode(MemberRequest.self, request, context)
        guard try await api.store.access(orgID: access.project.orgID, userID: userID) != nil else {
            throw FlowStackError.validation("The user is not a member of this project's organization.", field: "userId")
        }
        let actor = context.auditActor
        try await api.store.write { db in
            try await api.store.setProjectMember(projectID: access.project.id, userID: userID, role: body.role, on: db)
            try await api.store.appendAudit(AuditRecord(orgID: access.project.orgID, action: "project.member_set", resourceType: "project",
                                                        resourceID: access.project.id, details: ["user": userID, "role": body.role.rawValue]), actor: actor, on: db)
        }
        let member = try await api.store.projectMembers(projectID: access.project.id).first { $0.userID == userID }
        guard let member else { throw FlowStackError.notFound }
        return try JSON.response(.ok, ProjectMemberDTO(member))
    }

    @Sendable func removeMember(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .projectMembersManage, identity)
        let userID = try context.parameters.id("userId", prefix: "usr")
        let actor = context.auditActor
        try await api.store.write { db in
            guard try await api.store.removeProjectMember(projectID: access.project.id, userID: userID, on: db) else { throw FlowStackError.notFound }
            try await api.store.appendAudit(AuditRecord(orgID: access.project.orgID, action: "project.member_removed", resourceType: "project",
                                                        resourceID: access.project.id, details: ["user": userID]), actor: actor, on: db)
        }
        return JSON.empty()
    }
}
