import FlowStackTesting
import Foundation
import Testing

/// Hard-coded credential detection on save, and the organization's security report.
@Suite struct SecurityReportTests {
    @Test(
        "saving a workflow with a hard-coded token returns warnings naming node and line; the report lists them",
        arguments: Backend.allCases)
    func warnings(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, owner) = try await setUp(client, app)
            // Assembled at run time so that no scanner flags this file.
            let token = "gh" + "p_" + String(repeating: "aB3dE5fG7h", count: 4)
            let code = "const url = 'https://api.github.com/user';\nconst token = '\(token)';\nreturn [];"
            let workflow: [String: Any] = [
                "name": "Leaky",
                "nodes": [
                    ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                    ["name": "Code", "type": "flowstack.code", "typeVersion": 1, "parameters": ["code": code]],
                    [
                        "name": "Call", "type": "flowstack.httpRequest", "typeVersion": 1,
                        "parameters": ["url": "https://api.example.com", "headers": ["Authorization": "Bearer \(token)"]],
                    ],
                ],
                "edges": [["from": "Manual", "to": "Code"], ["from": "Code", "to": "Call"]],
            ]
            let saved = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth)
            #expect(saved.status == 201)
            let warnings = try #require(saved.json["warnings"] as? [[String: Any]])
            #expect(
                warnings.contains { $0["node"] as? String == "Code" && $0["line"] as? Int == 2 && $0["kind"] as? String == "githubToken" })
            #expect(warnings.contains { $0["node"] as? String == "Call" && ($0["field"] as? String ?? "").hasPrefix("headers") })
            #expect(!saved.text.contains("\"warnings\"") || !String(describing: warnings).contains(token))
            // A clean workflow has an empty list; reading a workflow carries none.
            let clean = try await client.post(
                "/api/v1/projects/\(project)/workflows", httpWorkflow(url: "https://api.example.com", connection: "crm"), auth: auth)
            #expect((clean.json["warnings"] as? [Any])?.isEmpty == true)
            #expect(try await client.get("/api/v1/workflows/\(saved.json["id"] as! String)", auth: auth).json["warnings"] == nil)

            _ = try await client.post(
                "/api/v1/projects/\(project)/connections", ["name": "crm", "type": "bearer", "data": ["token": "t-123456789012"]],
                auth: auth)
            let report = try await client.get("/api/v1/orgs/\(owner.orgID)/security-report", auth: auth)
            #expect(report.status == 200, "\(report.text)")
            let listed = try #require(report.json["credentialWarnings"] as? [[String: Any]])
            #expect(listed.count == warnings.count)
            #expect(listed.allSatisfy { $0["workflowName"] as? String == "Leaky" })
            #expect(!report.text.contains(token))
            #expect((report.json["connectionsNeverTested"] as? [[String: Any]])?.map { $0["name"] as? String } == ["crm"])
            #expect((report.json["keysDueForRotation"] as? [Any])?.isEmpty == true)
            // Ninety days on, both key-encryption keys are due for rotation.
            let key = try await client.createAPIKey(auth, orgID: owner.orgID)
            app.clock.advance(by: 91 * 86_400)
            let later = try await client.get("/api/v1/orgs/\(owner.orgID)/security-report", auth: .apiKey(key))
            #expect(later.status == 200, "\(later.text)")
            #expect(
                Set((later.json["keysDueForRotation"] as? [[String: Any]])?.compactMap { $0["purpose"] as? String } ?? []) == [
                    "data", "connections",
                ])
            // Members who are not admins do not get the report.
            let member = try await client.createAccount(app, email: "member@example.com")
            try await client.addMember(app, userID: member.userID, orgID: owner.orgID, role: .member)
            #expect(try await client.get("/api/v1/orgs/\(owner.orgID)/security-report", auth: try await client.login(member)).status == 403)
            #expect((later.json["apiKeysDueForRotation"] as? [Any])?.count == 1)
        }
    }
}
