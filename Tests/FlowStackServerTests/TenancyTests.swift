import FlowStackApp
import FlowStackCore
import FlowStackServer
import FlowStackStore
import FlowStackTesting
import Foundation
import HTTPTypes
import Testing

/// Another tenant's IDs on every route answer 404, never data.
@Suite struct TenancyTests {
    struct Route: Sendable, CustomStringConvertible {
        var method: HTTPRequest.Method
        var path: String
        var body: [String: String]?
        var description: String { "\(method) \(path)" }
    }

    /// Every org- and project-scoped route, with A's identifiers filled in.
    static func routes(orgID: String, projectID: String, userID: String, keyID: String) -> [Route] {
        [
            Route(method: .get, path: "/api/v1/orgs/\(orgID)"),
            Route(method: .get, path: "/api/v1/orgs/\(orgID)/members"),
            Route(method: .patch, path: "/api/v1/orgs/\(orgID)/members/\(userID)", body: ["role": "viewer"]),
            Route(method: .delete, path: "/api/v1/orgs/\(orgID)/members/\(userID)"),
            Route(method: .post, path: "/api/v1/orgs/\(orgID)/members/\(userID)/unlock"),
            Route(method: .post, path: "/api/v1/orgs/\(orgID)/invitations", body: ["email": "x@example.com", "role": "admin"]),
            Route(method: .get, path: "/api/v1/orgs/\(orgID)/projects"),
            Route(method: .post, path: "/api/v1/orgs/\(orgID)/projects", body: ["name": "intrusion"]),
            Route(method: .get, path: "/api/v1/projects/\(projectID)"),
            Route(method: .patch, path: "/api/v1/projects/\(projectID)", body: ["name": "renamed"]),
            Route(method: .delete, path: "/api/v1/projects/\(projectID)"),
            Route(method: .get, path: "/api/v1/projects/\(projectID)/members"),
            Route(method: .put, path: "/api/v1/projects/\(projectID)/members/\(userID)", body: ["role": "viewer"]),
            Route(method: .delete, path: "/api/v1/projects/\(projectID)/members/\(userID)"),
            Route(method: .get, path: "/api/v1/orgs/\(orgID)/api-keys"),
            Route(method: .post, path: "/api/v1/orgs/\(orgID)/api-keys", body: ["name": "k", "scope": "write"]),
            Route(method: .delete, path: "/api/v1/orgs/\(orgID)/api-keys/\(keyID)"),
            Route(method: .get, path: "/api/v1/orgs/\(orgID)/audit-events"),
        ]
    }

    @Test(
        "a user of org B gets 404 on every route with org A's IDs, by session and by API key; A is unchanged", arguments: Backend.allCases)
    func crossOrg(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let a = try await client.setupOwner(app)
            let aAuth = try await client.login(a)
            try await Admin(store: app.store).setPlan(orgID: a.orgID, plan: .enterprise)
            let projectID = try await client.createProject(aAuth, orgID: a.orgID, name: "Secret")
            _ = try await client.createAPIKey(aAuth, orgID: a.orgID)
            let keyID = try #require(
                (try await client.get("/api/v1/orgs/\(a.orgID)/api-keys", auth: aAuth).json["items"] as? [[String: Any]])?.first?["id"]
                    as? String)

            let b = try await client.createAccount(app, email: "b@example.com")
            try await Admin(store: app.store).setPlan(orgID: b.orgID, plan: .enterprise)
            let bSession = try await client.login(b)
            let bKey = try await client.createAPIKey(bSession, orgID: b.orgID)
            for auth in [bSession, Auth.apiKey(bKey)] {
                for route in Self.routes(orgID: a.orgID, projectID: projectID, userID: a.userID, keyID: keyID) {
                    let response = try await client.request(route.method, route.path, json: route.body, auth: auth)
                    #expect(response.status == 404, "\(route): \(response.status) \(response.text)")
                    #expect(!response.text.contains("Secret"))
                }
            }
            let project = try await client.get("/api/v1/projects/\(projectID)", auth: aAuth)
            #expect(project.json["name"] as? String == "Secret")
            #expect((try await client.get("/api/v1/orgs/\(a.orgID)/members", auth: aAuth).json["items"] as? [Any])?.count == 1)
            #expect((try await client.get("/api/v1/orgs/\(a.orgID)/api-keys", auth: aAuth).json["items"] as? [Any])?.count == 1)
            let orgs = try await client.get("/api/v1/orgs", auth: bSession)
            #expect((orgs.json["items"] as? [[String: Any]])?.map { $0["id"] as! String } == [b.orgID])
        }
    }

    @Test("inside one org, a member sees only the projects they belong to", arguments: Backend.allCases)
    func projectIsolation(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let ownerAuth = try await client.login(owner)
            let hidden = try await client.createProject(ownerAuth, orgID: owner.orgID, name: "Hidden")
            let shared = try await client.createProject(ownerAuth, orgID: owner.orgID, name: "Shared")
            let member = try await client.createAccount(app, email: "m@example.com")
            try await client.addMember(app, userID: member.userID, orgID: owner.orgID, role: .member)
            #expect(
                try await client.request(
                    .put, "/api/v1/projects/\(shared)/members/\(member.userID)", json: ["role": "runner"], auth: ownerAuth
                ).status == 200)
            let auth = try await client.login(member)
            let list = try await client.get("/api/v1/orgs/\(owner.orgID)/projects", auth: auth)
            #expect((list.json["items"] as? [[String: Any]])?.map { $0["id"] as! String } == [shared])
            for route in Self.routes(orgID: owner.orgID, projectID: hidden, userID: owner.userID, keyID: "key_00000000000000000000000000")
            where route.path.hasPrefix("/api/v1/projects/") {
                #expect(try await client.request(route.method, route.path, json: route.body, auth: auth).status == 404, "\(route)")
            }
            // A runner may read but not edit the shared project.
            #expect(try await client.get("/api/v1/projects/\(shared)", auth: auth).status == 200)
            #expect(try await client.request(.patch, "/api/v1/projects/\(shared)", json: ["name": "x"], auth: auth).status == 403)
            #expect(try await client.request(.delete, "/api/v1/projects/\(shared)", auth: auth).status == 403)
        }
    }

    @Test(
        "roles: viewers cannot create, members cannot manage, admins cannot touch owners, the last owner stays", arguments: Backend.allCases
    )
    func roles(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let ownerAuth = try await client.login(owner)
            var auths: [OrgRole: (APIClient.Account, Auth)] = [:]
            for role in [OrgRole.admin, .member, .viewer] {
                let account = try await client.createAccount(app, email: "\(role.rawValue)@example.com")
                try await client.addMember(app, userID: account.userID, orgID: owner.orgID, role: role)
                auths[role] = (account, try await client.login(account))
            }
            let viewer = auths[.viewer]!.1
            let member = auths[.member]!.1
            let admin = auths[.admin]!.1
            #expect(try await client.post("/api/v1/orgs/\(owner.orgID)/projects", ["name": "v"], auth: viewer).status == 403)
            #expect(
                try await client.post("/api/v1/orgs/\(owner.orgID)/api-keys", ["name": "v", "scope": "read"], auth: viewer).status == 403)
            #expect(try await client.post("/api/v1/orgs/\(owner.orgID)/projects", ["name": "m"], auth: member).status == 201)
            #expect(
                try await client.post(
                    "/api/v1/orgs/\(owner.orgID)/invitations", ["email": "n@example.com", "role": "member"], auth: member
                ).status == 403)
            #expect(
                try await client.request(
                    .patch, "/api/v1/orgs/\(owner.orgID)/members/\(auths[.viewer]!.0.userID)", json: ["role": "admin"], auth: member
                ).status == 403)
            // Admins manage members but not owners.
            #expect(
                try await client.request(
                    .patch, "/api/v1/orgs/\(owner.orgID)/members/\(auths[.viewer]!.0.userID)", json: ["role": "member"], auth: admin
                ).status == 200)
            #expect(
                try await client.request(
                    .patch, "/api/v1/orgs/\(owner.orgID)/members/\(owner.userID)", json: ["role": "viewer"], auth: admin
                ).status == 403)
            #expect(
                try await client.request(
                    .patch, "/api/v1/orgs/\(owner.orgID)/members/\(auths[.member]!.0.userID)", json: ["role": "owner"], auth: admin
                ).status == 403)
            #expect(
                try await client.post("/api/v1/orgs/\(owner.orgID)/invitations", ["email": "n@example.com", "role": "owner"], auth: admin)
                    .status == 403)
            // The last owner cannot be demoted or removed.
            let demote = try await client.request(
                .patch, "/api/v1/orgs/\(owner.orgID)/members/\(owner.userID)", json: ["role": "admin"], auth: ownerAuth)
            #expect(demote.status == 409)
            #expect(demote.errorCode == "last_owner")
            #expect(try await client.request(.delete, "/api/v1/orgs/\(owner.orgID)/members/\(owner.userID)", auth: ownerAuth).status == 409)
            // A removed member loses access at once.
            #expect(
                try await client.request(.delete, "/api/v1/orgs/\(owner.orgID)/members/\(auths[.member]!.0.userID)", auth: admin).status
                    == 204)
            #expect(try await client.get("/api/v1/orgs/\(owner.orgID)", auth: member).status == 404)
        }
    }

    @Test("an invitation adds the invitee once, with the invited role", arguments: Backend.allCases)
    func invitations(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let invited = try await client.post(
                "/api/v1/orgs/\(owner.orgID)/invitations", ["email": "new@example.com", "role": "member"], auth: auth)
            #expect(invited.status == 201)
            let token = try #require(invited.json["token"] as? String)
            #expect(try await client.post("/api/v1/invitations/\(token)/accept", ["name": "New"]).status == 400)
            let weak = try await client.post("/api/v1/invitations/\(token)/accept", ["name": "New", "password": "weak"])
            #expect(weak.status == 422)
            let accepted = try await client.post("/api/v1/invitations/\(token)/accept", ["name": "New", "password": "Fresh-Start-42"])
            #expect(accepted.status == 200, "\(accepted.text)")
            #expect((accepted.json["organization"] as? [String: Any])?["role"] as? String == "member")
            #expect(
                try await client.post("/api/v1/invitations/\(token)/accept", ["name": "Again", "password": "Fresh-Start-42"]).status == 404)
            #expect(
                try await client.post("/api/v1/invitations/fsi_unknown/accept", ["name": "X", "password": "Fresh-Start-42"]).status == 404)
            let newcomer = try await client.login(
                APIClient.Account(userID: "", orgID: owner.orgID, email: "new@example.com", password: "Fresh-Start-42"))
            #expect(try await client.get("/api/v1/orgs/\(owner.orgID)", auth: newcomer).status == 200)
            // Expired invitations are refused.
            let late = try await client.post(
                "/api/v1/orgs/\(owner.orgID)/invitations", ["email": "late@example.com", "role": "viewer"], auth: auth)
            app.clock.advance(by: 8 * 86_400)
            let lateToken = try #require(late.json["token"] as? String)
            #expect(
                try await client.post("/api/v1/invitations/\(lateToken)/accept", ["name": "L", "password": "Fresh-Start-42"]).status == 404)
        }
    }
}
