import FlowStackApp
import FlowStackCore
import FlowStackServer
import FlowStackStore
import FlowStackTesting
import Foundation
import HTTPTypes
import Testing

@Suite struct AuditTests {
    @Test(
        "authentication and changes are recorded with actor, action, resource, time, IP and outcome, and no secrets",
        arguments: Backend.allCases)
    func recorded(backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.trustedProxies = ["unknown"] }
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            try await Admin(store: app.store).setPlan(orgID: owner.orgID, plan: .team)
            _ = try await client.post(
                "/api/v1/auth/login", ["email": owner.email, "password": "Wrong-Passw0rd-x"], headers: ["X-Forwarded-For": "203.0.113.7"])
            let auth = try await client.login(owner)
            let key = try await client.createAPIKey(auth, orgID: owner.orgID)
            let forged = try await client.post("/api/v1/orgs/\(owner.orgID)/projects", ["name": "evil\nname\u{1B}[31m"], auth: auth)
            #expect(forged.status == 422)
            let projectID = try await client.createProject(auth, orgID: owner.orgID, name: "Reports")
            let events = try await client.get("/api/v1/orgs/\(owner.orgID)/audit-events?limit=200", auth: auth)
            #expect(events.status == 200)
            let items = try #require(events.json["items"] as? [[String: Any]])
            let actions = items.map { $0["action"] as! String }
            for action in ["instance.setup", "api_key.created", "project.created", "org.plan_changed"] {
                #expect(actions.contains(action), "\(action)")
            }
            let created = try #require(items.first { $0["action"] as? String == "project.created" })
            #expect((created["actor"] as? [String: Any])?["id"] as? String == owner.userID)
            #expect((created["resource"] as? [String: Any])?["id"] as? String == projectID)
            #expect(created["outcome"] as? String == "success")
            #expect(created["ip"] as? String != nil)
            #expect((created["createdAt"] as? String)?.hasSuffix("Z") == true)
            #expect((created["details"] as? [String: String])?["name"] == "Reports")
            // No secret values anywhere in the trail, including login failures (not org-scoped).
            let everything = try await app.store.read { db in
                try await db.raw("SELECT action, ip, outcome FROM audit_events").all().map {
                    try $0.decode(column: "action", as: String.self)
                }
            }
            #expect(everything.contains("auth.login"))
            #expect(!events.text.contains(key) && !events.text.contains(owner.password) && !events.text.contains("Wrong-Passw0rd-x"))
            let failed = try await app.store.read { db in
                try await db.raw("SELECT ip FROM audit_events WHERE action = 'auth.login' AND outcome = 'failure'").first()?.decode(
                    column: "ip", as: String.self)
            }
            #expect(failed == "203.0.113.7")
        }
    }

    @Test("audit logs follow the plan: free is refused, team shows 30 days, and pagination walks every event", arguments: Backend.allCases)
    func planAndPaging(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let free = try await client.get("/api/v1/orgs/\(owner.orgID)/audit-events", auth: auth)
            #expect(free.status == 403)
            #expect(free.errorCode == "plan_upgrade_required")
            try await Admin(store: app.store).setPlan(orgID: owner.orgID, plan: .team)
            for i in 0..<7 { _ = try await client.createProject(auth, orgID: owner.orgID, name: "P\(i)") }
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await client.get(
                    "/api/v1/orgs/\(owner.orgID)/audit-events?limit=3&action=project.created" + (cursor.map { "&cursor=\($0)" } ?? ""),
                    auth: auth)
                #expect(page.status == 200)
                seen += (page.json["items"] as? [[String: Any]] ?? []).map { $0["id"] as! String }
                cursor = page.json["nextCursor"] as? String
            } while cursor != nil
            #expect(seen.count == 7 && Set(seen).count == 7)
            app.clock.advance(by: 31 * 86_400)
            let reauth = try await client.login(owner)
            let old = try await client.get("/api/v1/orgs/\(owner.orgID)/audit-events?action=project.created", auth: reauth)
            #expect((old.json["items"] as? [Any])?.isEmpty == true)
            #expect(try await client.get("/api/v1/orgs/\(owner.orgID)/audit-events?limit=0", auth: reauth).status == 400)
            #expect(try await client.get("/api/v1/orgs/\(owner.orgID)/audit-events?since=yesterday", auth: reauth).status == 400)
            // Members cannot read the trail.
            let member = try await client.createAccount(app, email: "m@example.com")
            try await client.addMember(app, userID: member.userID, orgID: owner.orgID, role: .member)
            #expect(try await client.get("/api/v1/orgs/\(owner.orgID)/audit-events", auth: try await client.login(member)).status == 403)
        }
    }
}

@Suite struct InboundTests {
    @Test("wrong content type → 415, oversize → 413, too deep → 400, malformed → 400, and nothing changes", arguments: Backend.allCases)
    func refusedBodies(backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.maxBodyBytes = 4096 }
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let path = "/api/v1/orgs/\(owner.orgID)/projects"
            for contentType in ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain", "application/jsonx"] {
                let response = try await client.request(.post, path, rawBody: #"{"name":"x"}"#, contentType: contentType, auth: auth)
                #expect(response.status == 415, "\(contentType)")
            }
            let missing = try await client.request(.post, path, rawBody: #"{"name":"x"}"#, contentType: nil, auth: auth)
            #expect(missing.status == 415)
            let big = try await client.request(
                .post, path, rawBody: #"{"name":"x","description":""# + String(repeating: "a", count: 5000) + #""}"#, auth: auth)
            #expect(big.status == 413)
            let deep = try await client.request(
                .post, path, rawBody: #"{"name":"x","d":"# + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "}",
                auth: auth)
            #expect(deep.status == 400)
            #expect(deep.errorCode == "json_too_deep")
            let malformed = try await client.request(.post, path, rawBody: #"{"name": "#, auth: auth)
            #expect(malformed.status == 400)
            let wrongType = try await client.request(.post, path, json: ["name": 42], auth: auth)
            #expect(wrongType.status == 400)
            #expect(wrongType.errorField == "name")
            let missingField = try await client.request(.post, path, json: ["description": "x"], auth: auth)
            #expect(missingField.status == 400)
            #expect(missingField.errorField == "name")
            let nul = try await client.request(.post, path, rawBody: #"{"name":"x","description":"a\u0000b"}"#, auth: auth)
            #expect(nul.status == 400)
            #expect(nul.errorCode == "invalid_character")
            let escaped = try await client.request(.post, "/api/v1/auth/login", rawBody: #"{"email":"x\u0000@example.com","password":"p"}"#)
            #expect(escaped.status == 400)
            let list = try await client.get(path, auth: auth)
            #expect((list.json["items"] as? [Any])?.isEmpty == true)
            try await Admin(store: app.store).setPlan(orgID: owner.orgID, plan: .team)
            let query = try await client.get("/api/v1/orgs/\(owner.orgID)/audit-events?action=%C3%BE%00x", auth: auth)
            #expect(query.status == 400, "\(query.text)")
        }
    }

    @Test(
        "every response carries HSTS and the security headers, and no server version",
        arguments: ["/healthz", "/readyz", "/api/v1/me", "/nope", "/api/v1/openapi.json"])
    func headers(path: String) async throws {
        let app = try await TestApp.make(.sqlite)
        try await app.test { client in
            let response = try await client.get(path)
            #expect(response.header("Strict-Transport-Security")?.contains("max-age=63072000") == true)
            #expect(response.header("X-Content-Type-Options") == "nosniff")
            #expect(response.header("Referrer-Policy") == "no-referrer")
            #expect(response.header("Content-Security-Policy")?.contains("default-src 'none'") == true)
            #expect(response.header("Server") == nil)
            if response.status >= 400 {
                #expect(response.errorCode != nil, "\(path): \(response.text)")
            }
        }
    }

    @Test("readiness reports the database", arguments: Backend.allCases)
    func readiness(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { (client: APIClient) async throws in
            #expect(try await client.get("/healthz").status == 200)
            #expect(try await client.get("/readyz").status == 200)
        }
    }
}

@Suite struct OpenAPITests {
    @Test("the OpenAPI document lists exactly the routes the router serves")
    func matchesRouter() async throws {
        let app = try await TestApp.make(.sqlite)
        let routes = Set(
            app.router.routes.map { route -> String in
                let path = route.path.components.map { component -> String in
                    let text = "\(component)"
                    // A catch-all (the webhook path) is documented as one path parameter.
                    return text.hasPrefix(":") ? "{\(text.dropFirst())}" : text == "**" ? "{path}" : text
                }.joined(separator: "/")
                return "\(route.method.rawValue.lowercased()) /\(path)"
            })
        try await app.test { client in
            let document = try await client.get("/api/v1/openapi.json")
            #expect(document.json["openapi"] as? String == "3.1.0")
            let paths = try #require(document.json["paths"] as? [String: [String: Any]])
            let documented = Set(paths.flatMap { path, operations in operations.keys.map { "\($0) \(path)" } })
            #expect(documented == routes, "undocumented: \(routes.subtracting(documented)); not served: \(documented.subtracting(routes))")
        }
    }
}
