import FlowStackApp
import FlowStackCore
import FlowStackStore
import Foundation
import Hummingbird

/// Projects and their members.
struct ProjectController {
    let api: API
    var projects: Projects { api.app.projects }

    struct CreateRequest: Decodable {
        var name: String
        var description: String?
    }

    struct UpdateRequest: Decodable {
        var name: String?
        var description: String?
    }

    struct MemberRequest: Decodable { var role: ProjectRole }

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.get("orgs/:orgId/projects", use: list)
        group.post("orgs/:orgId/projects", use: create)
        group.get("projects/:projectId", use: get)
        group.patch("projects/:projectId", use: update)
        group.delete("projects/:projectId", use: delete)
        group.get("projects/:projectId/members", use: members)
        group.put("projects/:projectId/members/:userId", use: setMember)
        group.delete("projects/:projectId/members/:userId", use: removeMember)
    }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let projects = try await projects.list(orgID: try context.parameters.id("orgId", prefix: "org"), by: context.caller)
        return try JSON.response(.ok, ListDTO(items: projects.map(ProjectDTO.init), nextCursor: nil))
    }

    @Sendable func create(_ request: Request, context: APIContext) async throws -> Response {
        let orgID = try context.parameters.id("orgId", prefix: "org")
        try await projects.authorizeCreate(orgID: orgID, by: context.caller)
        let body = try await api.decode(CreateRequest.self, request, context)
        let project = try await projects.create(orgID: orgID, name: body.name, description: body.description, by: context.caller)
        return try JSON.response(.created, ProjectDTO(project))
    }

    @Sendable func get(_ request: Request, context: APIContext) async throws -> Response {
        try JSON.response(
            .ok, ProjectDTO(try await projects.get(try context.parameters.id("projectId", prefix: "prj"), by: context.caller)))
    }

    @Sendable func update(_ request: Request, context: APIContext) async throws -> Response {
        let projectID = try context.parameters.id("projectId", prefix: "prj")
        try await projects.authorize(.projectUpdate, projectID: projectID, by: context.caller)
        let body = try await api.decode(UpdateRequest.self, request, context)
        return try JSON.response(
            .ok, ProjectDTO(try await projects.update(projectID, name: body.name, description: body.description, by: context.caller)))
    }

    @Sendable func delete(_ request: Request, context: APIContext) async throws -> Response {
        try await projects.delete(try context.parameters.id("projectId", prefix: "prj"), by: context.caller)
        return JSON.empty()
    }

    @Sendable func members(_ request: Request, context: APIContext) async throws -> Response {
        let members = try await projects.members(try context.parameters.id("projectId", prefix: "prj"), by: context.caller)
        return try JSON.response(.ok, ListDTO(items: members.map(ProjectMemberDTO.init), nextCursor: nil))
    }

    @Sendable func setMember(_ request: Request, context: APIContext) async throws -> Response {
        let projectID = try context.parameters.id("projectId", prefix: "prj")
        try await projects.authorize(.projectMembersManage, projectID: projectID, by: context.caller)
        let userID = try context.parameters.id("userId", prefix: "usr")
        let body = try await api.decode(MemberRequest.self, request, context)
        return try JSON.response(
            .ok, ProjectMemberDTO(try await projects.setMember(projectID, userID: userID, role: body.role, by: context.caller)))
    }

    @Sendable func removeMember(_ request: Request, context: APIContext) async throws -> Response {
        try await projects.removeMember(
            try context.parameters.id("projectId", prefix: "prj"), userID: try context.parameters.id("userId", prefix: "usr"),
            by: context.caller)
        return JSON.empty()
    }
}
