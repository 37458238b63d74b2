import FlowStackSandbox
import FlowStackTesting
import Foundation
import Testing

/// Project variables: CRUD, sealed at rest, `$env` in expressions and Code nodes, and no way to
/// read another project's variables (SECURITY-TESTS 30 for variables).
@Suite struct VariableTests {
    @Test("create, list, change and delete; names and duplicates checked; values sealed at rest", arguments: Backend.allCases)
    func crud(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        let marker = "VAR-\(UUID().uuidString)"
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let base = "/api/v1/projects/\(project)/variables"
            let created = try await client.post(base, ["name": "API_TOKEN", "value": marker], auth: auth)
            #expect(created.status == 201)
            #expect(created.json["value"] as? String == marker)
            #expect(try await client.post(base, ["name": "API_TOKEN", "value": "x"], auth: auth).status == 409)
            for bad in ["1abc", "with-dash", "", String(repeating: "a", count: 65), "ü"] {
                #expect(try await client.post(base, ["name": bad, "value": "x"], auth: auth).status == 422, "\(bad)")
            }
            #expect(try await client.post(base, ["name": "BIG", "value": String(repeating: "x", count: 70_000)], auth: auth).status == 422)
            let listed = try await client.get(base, auth: auth)
            #expect((listed.json["items"] as? [[String: Any]])?.map { $0["name"] as? String } == ["API_TOKEN"])
            #expect(!(try app.database.rawBytes().contains(marker: marker)))
            let changed = try await client.request(.patch, "\(base)/API_TOKEN", json: ["value": "v2"], auth: auth)
            #expect(changed.json["value"] as? String == "v2")
            #expect(try await client.request(.patch, "\(base)/MISSING", json: ["value": "v2"], auth: auth).status == 404)
            #expect(try await client.request(.delete, "\(base)/API_TOKEN", auth: auth).status == 204)
            #expect(try await client.request(.delete, "\(base)/API_TOKEN", auth: auth).status == 404)
            // The audit trail records the change, never the value.
            let audit = try await app.store.read { db in
                try await db.raw("SELECT action FROM audit_events WHERE action LIKE 'variable.%'").all()
            }
            #expect(audit.count == 3)
        }
    }

    @Test("viewers and their keys see variable names, not values, as they see no execution data", arguments: Backend.allCases)
    func viewersSeeNames(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test(worker: false) { client in
            let (auth, project, owner) = try await setUp(client, app)
            let base = "/api/v1/projects/\(project)/variables"
            #expect(try await client.post(base, ["name": "REGION", "value": "eu-west-7"], auth: auth).status == 201)
            var seen: [String: String] = [:]
            for role in ["viewer", "runner"] {
                let member = try await client.createAccount(app, email: "\(role)@example.com")
                try await client.addMember(app, userID: member.userID, orgID: owner.orgID, role: .member)
                #expect(
                    try await client.request(.put, "/api/v1/projects/\(project)/members/\(member.userID)", json: ["role": role], auth: auth)
                        .status == 200)
                let login = try await client.login(member)
                let key = try await client.createAPIKey(login, orgID: owner.orgID, scope: "read")
                for credential in [login, .apiKey(key)] {
                    let listed = try await client.get(base, auth: credential)
                    #expect(listed.status == 200)
                    let item = try #require((listed.json["items"] as? [[String: Any]])?.first)
                    #expect(item["name"] as? String == "REGION")
                    seen[role] = item["value"] as? String ?? "-"
                    #expect(listed.text.contains("eu-west-7") == (role == "runner"))
                }
            }
            #expect(seen == ["viewer": "-", "runner": "eu-west-7"])
        }
    }

    @Test("$env reads the project's own variables in expressions and Code nodes, never another project's", arguments: Backend.allCases)
    func environment(_ backend: Backend) async throws {
        let pool = SandboxPool(executable: sandboxExecutable)
        let app = try await TestApp.make(backend, codeRunner: pool)
        try await app.test { client in
            let (auth, project, owner) = try await setUp(client, app)
            let other = try await client.createProject(auth, orgID: owner.orgID, name: "Other")
            _ = try await client.post("/api/v1/projects/\(project)/variables", ["name": "GREETING", "value": "Hello"], auth: auth)
            _ = try await client.post("/api/v1/projects/\(other)/variables", ["name": "OTHER_SECRET", "value": "not-yours"], auth: auth)
            let workflow: [String: Any] = [
                "name": "Env",
                "nodes": [
                    ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                    [
                        "name": "Set", "type": "flowstack.set", "typeVersion": 1,
                        "parameters": [
                            "fields": ["greeting": "{{ $env.GREETING }} world", "other": "{{ $env.OTHER_SECRET ?? 'absent' }}"]
                        ],
                    ],
                    [
                        "name": "Code", "type": "flowstack.code", "typeVersion": 1,
                        "parameters": [
                            "code": "return items.map(i => ({json: {...i.json, fromCode: $env.GREETING, keys: Object.keys($env)}}))"
                        ],
                    ],
                ],
                "edges": [["from": "Manual", "to": "Set"], ["from": "Set", "to": "Code"]],
            ]
            let id = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as! String
            let result = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth)
            let output = try #require((result.json["output"] as? [[String: Any]])?.first)
            #expect(output["greeting"] as? String == "Hello world")
            #expect(output["other"] as? String == "absent")
            #expect(output["fromCode"] as? String == "Hello")
            #expect(output["keys"] as? [String] == ["GREETING"])
        }
        await pool.shutdown()
    }
}
