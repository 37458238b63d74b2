import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import FlowStackTesting
import Foundation
import HTTPTypes
import Testing

@testable import FlowStackServer

@Suite struct APIKeyTests {
    @Test("a key has 256 random bits, is shown once, and the database holds only its hash, prefix and last 4", arguments: Backend.allCases)
    func storage(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let created = try await client.post("/api/v1/orgs/\(owner.orgID)/api-keys", ["name": "ci", "scope": "read"], auth: auth)
            #expect(created.status == 201)
            let key = try #require(created.json["key"] as? String)
            #expect(key.hasPrefix("fsk_"))
            #expect(
                Data(
                    base64Encoded: String(key.dropFirst(4)).replacingOccurrences(of: "-", with: "+").replacingOccurrences(
                        of: "_", with: "/") + "=")?.count == 32)
            #expect(created.json["last4"] as? String == String(key.suffix(4)))
            let listed = try await client.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: auth)
            let item = try #require((listed.json["items"] as? [[String: Any]])?.first)
            #expect(item["key"] == nil)
            #expect(!listed.text.contains(key))
            for field in ["id", "name", "prefix", "last4", "scope", "createdAt", "rotationDue"] { #expect(item[field] != nil, "\(field)") }
            #expect(item.keys.contains("lastUsedAt") && item.keys.contains("expiresAt") && item.keys.contains("projectId"))
            let bytes = try app.database.rawBytes()
            #expect(!bytes.contains(marker: key))
            #expect(!bytes.contains(marker: String(key.dropFirst(8))))
            #expect(bytes.contains(marker: Token.hash(key)))
            let me = try await client.get("/api/v1/me", auth: .apiKey(key))
            #expect(me.status == 200)
            #expect(me.json["authentication"] as? String == "api_key")
        }
    }

    @Test("a read-only key gets 403 on every write operation of the OpenAPI document", arguments: Backend.allCases)
    func readOnly(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let projectID = try await client.createProject(auth, orgID: owner.orgID)
            let key = try await client.createAPIKey(auth, orgID: owner.orgID, scope: "read")
            let keys = try await client.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: auth)
            let keyID = try #require((keys.json["items"] as? [[String: Any]])?.first?["id"] as? String)
            let workflow: [String: Any] = [
                "name": "W", "nodes": [["name": "M", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]]],
            ]
            let workflowID = try #require(
                try await client.post("/api/v1/projects/\(projectID)/workflows", workflow, auth: auth).json["id"] as? String)
            let executionID = try #require(
                try await client.post("/api/v1/workflows/\(workflowID)/run?wait=true", nil, auth: auth).json["id"] as? String)
            let connectionID = try #require(
                try await client.post(
                    "/api/v1/projects/\(projectID)/connections",
                    ["name": "c", "type": "bearer", "data": ["token": "t"]], auth: auth
                ).json["id"] as? String)
            let document = try await client.get("/api/v1/openapi.json")
            let paths = try #require(document.json["paths"] as? [String: [String: Any]])
            var checked = 0
            for (template, operations) in paths.sorted(by: { $0.key < $1.key }) {
                for method in operations.keys where method != "get" {
                    // Routes for the anonymous (setup, login, invitations) and the caller's own session are not API-key writes.
                    if [
                        "/api/v1/setup", "/api/v1/auth/signup", "/api/v1/auth/login", "/api/v1/auth/logout",
                        "/api/v1/me/password", "/api/v1/invitations/{token}/accept",
                    ].contains(template) {
                        continue
                    }
                    // Webhooks authenticate per workflow, not with API keys.
                    if template.hasPrefix("/webhook") { continue }
                    let path =
                        template
                        .replacingOccurrences(of: "{orgId}", with: owner.orgID).replacingOccurrences(of: "{projectId}", with: projectID)
                        .replacingOccurrences(of: "{userId}", with: owner.userID).replacingOccurrences(of: "{keyId}", with: keyID)
                        .replacingOccurrences(of: "{workflowId}", with: workflowID).replacingOccurrences(
                            of: "{executionId}", with: executionID
                        )
                        .replacingOccurrences(of: "{connectionId}", with: connectionID)
                    let body: [String: Any] = ["name": "x", "role": "viewer", "scope": "read", "email": "x@example.com"]
                    let response = try await client.request(
                        HTTPRequest.Method(method.uppercased())!, path, json: method == "delete" ? nil : body, auth: .apiKey(key))
                    #expect(response.status == 403, "\(method) \(template): \(response.status) \(response.text)")
                    #expect(response.errorCode == "insufficient_scope", "\(method) \(template)")
                    checked += 1
                }
            }
            #expect(checked >= 10)
            // Nothing changed.
            #expect(try await client.get("/api/v1/projects/\(projectID)", auth: auth).json["name"] as? String == "Project")
            #expect(
                try await client.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: auth).json["items"].map { ($0 as! [Any]).count } == 1)
        }
    }

    @Test("a key in the query string is refused, and revoked or expired keys are refused at once", arguments: Backend.allCases)
    func refusals(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let key = try await client.createAPIKey(auth, orgID: owner.orgID)
            for query in ["api_key=\(key)", "token=\(key)", "x=\(key)", "access_token=abc"] {
                let response = try await client.get("/api/v1/me?\(query)")
                #expect(response.status == 400, "\(query)")
                #expect(response.errorCode == "credentials_in_query")
                #expect(!response.text.contains(key))
            }
            let keys = try await client.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: auth)
            let keyID = try #require((keys.json["items"] as? [[String: Any]])?.first?["id"] as? String)
            #expect(try await client.get("/api/v1/me", auth: .apiKey(key)).status == 200)
            #expect(try await client.request(.delete, "/api/v1/orgs/\(owner.orgID)/api-keys/\(keyID)", auth: auth).status == 204)
            let revoked = try await client.get("/api/v1/me", auth: .apiKey(key))
            #expect(revoked.status == 401)
            #expect(revoked.errorCode == "invalid_api_key")

            let expiring = try await client.createAPIKey(auth, orgID: owner.orgID, expiresInDays: 1)
            #expect(try await client.get("/api/v1/me", auth: .apiKey(expiring)).status == 200)
            app.clock.advance(by: 86_400 + 1)
            #expect(try await client.get("/api/v1/me", auth: .apiKey(expiring)).status == 401)
            #expect(try await client.get("/api/v1/me", auth: .apiKey("fsk_" + String(repeating: "A", count: 43))).status == 401)
            #expect(try await client.get("/api/v1/me", auth: .apiKey("not-a-key")).status == 401)
        }
    }

    @Test("a key revoked by another server stops working within a second (the lookup cache lives one second)")
    func revokedElsewhere() async throws {
        let app = try await TestApp.make(.sqlite)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let key = try await client.createAPIKey(auth, orgID: owner.orgID)
            #expect(try await client.get("/api/v1/me", auth: .apiKey(key)).status == 200)
            // Another server revokes it: this one's cache does not see that change.
            let store = app.store
            try await store.write { db in try await db.raw("UPDATE api_keys SET revoked_at = 1").run() }
            try await Task.sleep(for: .milliseconds(1100))
            #expect(try await client.get("/api/v1/me", auth: .apiKey(key)).status == 401)
        }
    }

    @Test("webhooks and running, retrying or cancelling keep cached keys; any other change authenticates afresh")
    func runsKeepCachedKeys() async throws {
        // A long cache life, so only a clear can make this server notice the revocation below.
        let app = try await TestApp.make(.sqlite) { $0.app.apiKeyCacheLifetime = .seconds(600) }
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let key = try await client.createAPIKey(auth, orgID: owner.orgID)
            let project = try await client.createProject(auth, orgID: owner.orgID)
            let workflow: [String: Any] = [
                "name": "Run", "nodes": [["name": "M", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]]],
            ]
            let id = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as? String)
            _ = try await client.createActiveWebhook(auth, projectID: project, path: "keeps-keys")
            #expect(try await client.post("/api/v1/workflows/\(id)/run", nil, auth: .apiKey(key)).status == 202)
            // Revoked behind this server's back (as another server would): the cached lookup
            // still serves, and neither webhooks nor runs clear it.
            try await app.store.write { db in try await db.raw("UPDATE api_keys SET revoked_at = 1").run() }
            #expect(try await client.post("/webhook/keeps-keys", ["n": 1]).status == 200)
            #expect(try await client.post("/api/v1/workflows/\(id)/run", nil, auth: .apiKey(key)).status == 202)
            #expect(try await client.post("/api/v1/workflows/\(id)/run", nil, auth: .apiKey(key)).status == 202)
            // Any other change does: the next request reads the key again and finds it revoked.
            _ = try await client.createProject(auth, orgID: owner.orgID, name: "Other")
            let refused = try await client.post("/api/v1/workflows/\(id)/run", nil, auth: .apiKey(key))
            #expect(refused.status == 401)
            #expect(refused.errorCode == "invalid_api_key")
        }
    }

    @Test("a change's announcement names it for other replicas, and an unknown one means everything")
    func changePayloads() {
        for change in [Change.identities, .workflows, .variables(projectID: "prj_1"), .everything] {
            #expect(Change(payload: change.payload) == change)
        }
        #expect(Change(payload: "from-a-newer-replica") == .everything)
        #expect(Change(payload: "") == .everything)
    }

    @Test("keys older than 90 days are flagged for rotation", arguments: Backend.allCases)
    func rotationDue(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            _ = try await client.createAPIKey(auth, orgID: owner.orgID)
            let fresh = try await client.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: auth)
            #expect((fresh.json["items"] as? [[String: Any]])?.first?["rotationDue"] as? Bool == false)
            app.clock.advance(by: 90 * 86_400 + 1)
            let reauth = try await client.login(owner)
            let old = try await client.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: reauth)
            #expect((old.json["items"] as? [[String: Any]])?.first?["rotationDue"] as? Bool == true)
        }
    }

    @Test("a project key sees only its project; a member sees and revokes only their own keys", arguments: Backend.allCases)
    func scoping(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let a = try await client.createProject(auth, orgID: owner.orgID, name: "A")
            let b = try await client.createProject(auth, orgID: owner.orgID, name: "B")
            let key = try await client.createAPIKey(auth, orgID: owner.orgID, projectID: a)
            #expect(try await client.get("/api/v1/projects/\(a)", auth: .apiKey(key)).status == 200)
            #expect(try await client.get("/api/v1/projects/\(b)", auth: .apiKey(key)).status == 404)
            let listed = try await client.get("/api/v1/orgs/\(owner.orgID)/projects", auth: .apiKey(key))
            #expect((listed.json["items"] as? [[String: Any]])?.map { $0["id"] as! String } == [a])
            #expect(try await client.get("/api/v1/orgs/\(owner.orgID)/members", auth: .apiKey(key)).status == 403)
            #expect(try await client.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: .apiKey(key)).status == 403)

            let member = try await client.createAccount(app, email: "m@example.com")
            try await client.addMember(app, userID: member.userID, orgID: owner.orgID, role: .member)
            let memberAuth = try await client.login(member)
            _ = try await client.createAPIKey(memberAuth, orgID: owner.orgID)
            let mine = try await client.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: memberAuth)
            #expect((mine.json["items"] as? [Any])?.count == 1)
            let all = try await client.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: auth)
            let ownerKeyID = try #require(
                (all.json["items"] as? [[String: Any]])?.first { $0["projectId"] as? String == a }?["id"] as? String)
            #expect(try await client.request(.delete, "/api/v1/orgs/\(owner.orgID)/api-keys/\(ownerKeyID)", auth: memberAuth).status == 403)
        }
    }
}
