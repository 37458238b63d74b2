import Crypto
import FlowStackCore
import FlowStackEngine
import FlowStackNetwork
import FlowStackNodes
import FlowStackRuntime
import FlowStackServer
import FlowStackStore
import FlowStackTesting
import Foundation
import HTTPTypes
import Synchronization
import Testing

/// A stand-in for a remote API (outside our control): counts calls and fails the first ones.
final class ScriptedFetcher: OutboundFetching {
    let failures: Int
    private let calls = Mutex(0)
    init(failures: Int = 0) { self.failures = failures }
    var count: Int { calls.withLock { $0 } }

    func fetch(_ request: OutboundRequest) async throws -> OutboundResponse {
        let n = calls.withLock { value in
            value += 1
            return value
        }
        if n <= failures { return OutboundResponse(status: 503, headers: [], body: Array("busy".utf8)) }
        return OutboundResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array(#"{"call":\#(n)}"#.utf8))
    }
}

nonisolated(unsafe) let greet: [String: Any] = [
    "name": "Greet",
    "nodes": [
        [
            "name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
            "parameters": ["method": "POST", "path": "greet", "respond": "lastNode"],
        ],
        ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
        [
            "name": "Shape", "type": "flowstack.set", "typeVersion": 1,
            "parameters": ["fields": ["greeting": "Hello {{ $json.body?.name ?? $json.name }}"]],
        ],
    ],
    "edges": [["from": "Hook", "to": "Shape"], ["from": "Manual", "to": "Shape"]],
]

func setUp(_ client: APIClient, _ app: TestApp) async throws -> (auth: Auth, project: String, owner: APIClient.Account) {
    let owner = try await client.setupOwner(app)
    let auth = try await client.login(owner)
    let project = try await client.createProject(auth, orgID: owner.orgID)
    return (auth, project, owner)
}

func waitForStatus(
    _ client: APIClient, _ id: String, auth: Auth, until done: Set<String> = ["succeeded", "failed", "cancelled", "waiting"]
) async throws -> APIResponse {
    for _ in 0..<200 {
        let response = try await client.get("/api/v1/executions/\(id)", auth: auth)
        if let status = response.json["status"] as? String, done.contains(status) { return response }
        try await Task.sleep(for: .milliseconds(25))
    }
    return try await client.get("/api/v1/executions/\(id)", auth: auth)
}

@Suite struct WorkflowAPITests {
    @Test("create, validate, version, 409 on a stale version, delete", arguments: Backend.allCases)
    func lifecycle(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            var broken = greet
            broken["edges"] = [["from": "Hook", "to": "Nowhere"]]
            let invalid = try await client.post("/api/v1/projects/\(project)/workflows", broken, auth: auth)
            #expect(invalid.status == 422)
            #expect(invalid.errorCode == "invalid_workflow")
            let problems = (invalid.json["error"] as? [String: Any])?["problems"] as? [[String: Any]] ?? []
            #expect(problems.contains { $0["code"] as? String == "dangling_edge" })

            let created = try await client.post("/api/v1/projects/\(project)/workflows", greet, auth: auth)
            #expect(created.status == 201)
            let id = created.json["id"] as! String
            let v1 = created.json["versionId"] as! String
            #expect(created.json["version"] as? Int == 1)
            #expect((created.json["nodes"] as? [Any])?.count == 3)

            var renamed = greet
            renamed["name"] = "Greet 2"
            renamed["versionId"] = v1
            let saved = try await client.request(.put, "/api/v1/workflows/\(id)", json: renamed, auth: auth)
            #expect(saved.status == 200)
            #expect(saved.json["version"] as? Int == 2)
            let stale = try await client.request(.put, "/api/v1/workflows/\(id)", json: renamed, auth: auth)
            #expect(stale.status == 409)
            #expect(stale.errorCode == "stale_version")
            var missing = greet
            missing["name"] = "x"
            #expect(try await client.request(.put, "/api/v1/workflows/\(id)", json: missing, auth: auth).status == 422)

            let versions = try await client.get("/api/v1/workflows/\(id)/versions", auth: auth)
            #expect((versions.json["items"] as? [[String: Any]])?.map { $0["version"] as? Int } == [2, 1])
            let fetched = try await client.get("/api/v1/workflows/\(id)", auth: auth)
            #expect(fetched.json["name"] as? String == "Greet 2")
            let list = try await client.get("/api/v1/projects/\(project)/workflows", auth: auth)
            #expect((list.json["items"] as? [Any])?.count == 1)

            let types = try await client.get("/api/v1/node-types", auth: auth)
            let names = (types.json["items"] as? [[String: Any]])?.compactMap { $0["type"] as? String } ?? []
            #expect(names.contains("flowstack.code") && names.contains("flowstack.httpRequest") && names.count >= 24)

            #expect(try await client.request(.delete, "/api/v1/workflows/\(id)", auth: auth).status == 204)
            #expect(try await client.get("/api/v1/workflows/\(id)", auth: auth).status == 404)
        }
    }

    @Test("the definition is sealed at rest", arguments: Backend.allCases)
    func sealed(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        let marker = "MARKER-\(UUID().uuidString)"
        try await app.test { client in
            let (auth, project, owner) = try await setUp(client, app)
            var workflow = greet
            workflow["nodes"] = [
                ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                ["name": "Shape", "type": "flowstack.set", "typeVersion": 1, "parameters": ["fields": ["secret": marker]]],
            ]
            workflow["edges"] = [["from": "Manual", "to": "Shape"]]
            let created = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth)
            let run = try await client.post(
                "/api/v1/workflows/\(created.json["id"] as! String)/run?wait=true", ["items": [["in": marker]]], auth: auth)
            #expect(run.json["status"] as? String == "succeeded")
            let bytes = try app.database.rawBytes()
            #expect(!bytes.contains(marker: marker))
            // The search does find what is stored in clear (a project name).
            _ = try await client.createProject(auth, orgID: owner.orgID, name: "PLAIN-\(marker)")
            #expect(try app.database.rawBytes().contains(marker: "PLAIN-\(marker)"))
        }
    }

    @Test("run with wait answers the output; without, 202 and the queue runs it", arguments: Backend.allCases)
    func run(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let id = try await client.post("/api/v1/projects/\(project)/workflows", greet, auth: auth).json["id"] as! String
            let waited = try await client.post("/api/v1/workflows/\(id)/run?wait=true", ["items": [["name": "Ada"]]], auth: auth)
            #expect(waited.status == 200)
            #expect(waited.json["status"] as? String == "succeeded")
            #expect((waited.json["output"] as? [[String: Any]])?.first?["greeting"] as? String == "Hello Ada")

            let notObject = try await client.post("/api/v1/workflows/\(id)/run?wait=true", ["items": [["name": "Ada"], 5]], auth: auth)
            #expect(notObject.status == 422)
            #expect(notObject.errorField == "items[1]")
            let accepted = try await client.post("/api/v1/workflows/\(id)/run", ["items": [["name": "Bob"]]], auth: auth)
            #expect(accepted.status == 202)
            let execution = try await waitForStatus(client, accepted.json["id"] as! String, auth: auth)
            #expect(execution.json["status"] as? String == "succeeded")
            #expect((execution.json["output"] as? [[String: Any]])?.first?["greeting"] as? String == "Hello Bob")
            let nodes = execution.json["nodes"] as? [[String: Any]] ?? []
            #expect(nodes.map { $0["node"] as? String } == ["Manual", "Shape"])
            #expect((nodes.last?["input"] as? [[String: Any]])?.first?["name"] as? String == "Bob")

            let list = try await client.get("/api/v1/projects/\(project)/executions?status=succeeded&limit=1", auth: auth)
            #expect((list.json["items"] as? [Any])?.count == 1)
            #expect(list.json["nextCursor"] is String)
            let next = try await client.get(
                "/api/v1/projects/\(project)/executions?status=succeeded&limit=1&cursor=\(list.json["nextCursor"] as! String)", auth: auth)
            #expect((next.json["items"] as? [Any])?.count == 1)
            #expect(next.json["nextCursor"] is NSNull || next.json["nextCursor"] == nil)
            #expect(try await client.get("/api/v1/projects/\(project)/executions?status=bogus", auth: auth).status == 422)
        }
    }

    @Test("project roles: viewers read without node data, runners run, neither edits", arguments: Backend.allCases)
    func roles(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, owner) = try await setUp(client, app)
            let id = try await client.post("/api/v1/projects/\(project)/workflows", greet, auth: auth).json["id"] as! String
            let run = try await client.post("/api/v1/workflows/\(id)/run?wait=true", ["items": [["name": "Ada"]]], auth: auth)
            for role in ["viewer", "runner"] {
                let other = try await client.createAccount(app, email: "\(role)@example.com")
                try await client.addMember(app, userID: other.userID, orgID: owner.orgID, role: .member)
                #expect(
                    try await client.request(.put, "/api/v1/projects/\(project)/members/\(other.userID)", json: ["role": role], auth: auth)
                        .status == 200)
                let login = try await client.login(other)
                let ran = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: login)
                #expect(ran.status == (role == "runner" ? 200 : 403))
                var edit = greet
                edit["versionId"] = "x"
                #expect(try await client.request(.put, "/api/v1/workflows/\(id)", json: edit, auth: login).status == 403)
                let execution = try await client.get("/api/v1/executions/\(run.json["id"] as! String)", auth: login)
                #expect(execution.status == 200)
                #expect((execution.json["nodes"] != nil) == (role == "runner"))
            }
            let stranger = try await client.createAccount(app, email: "stranger@example.com")
            let strangerAuth = try await client.login(stranger)
            #expect(try await client.get("/api/v1/workflows/\(id)", auth: strangerAuth).status == 404)
            #expect(try await client.get("/api/v1/executions/\(run.json["id"] as! String)", auth: strangerAuth).status == 404)
        }
    }

    @Test(
        "webhooks: served once active, unique paths, method checked, response of the last node or a Respond node",
        arguments: Backend.allCases)
    func webhooks(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let id = try await client.post("/api/v1/projects/\(project)/workflows", greet, auth: auth).json["id"] as! String
            #expect(try await client.post("/webhook/greet", ["name": "Ada"]).status == 404)
            #expect(try await client.post("/api/v1/workflows/\(id)/activate", nil, auth: auth).json["active"] as? Bool == true)
            let answered = try await client.post("/webhook/greet", ["name": "Ada"])
            #expect(answered.status == 200)
            #expect(answered.json["greeting"] as? String == "Hello Ada")
            #expect(try await client.get("/webhook/greet").status == 405)
            #expect(try await client.request(.post, "/webhook/greet", rawBody: "<x/>", contentType: "application/xml").status == 415)
            let malformed = try await client.request(
                .post, "/webhook/greet", rawBody: #"{"name": "Ada",}"#, contentType: "application/json")
            #expect(malformed.status == 400 && malformed.errorCode == "malformed_json")
            #expect(try await client.post("/webhook/greet/", ["name": "Ada"]).json["greeting"] as? String == "Hello Ada")

            let twin = try await client.post("/api/v1/projects/\(project)/workflows", greet, auth: auth).json["id"] as! String
            let clash = try await client.post("/api/v1/workflows/\(twin)/activate", nil, auth: auth)
            #expect(clash.status == 409)
            #expect(clash.errorCode == "webhook_path_taken")

            let responder: [String: Any] = [
                "name": "Custom",
                "nodes": [
                    [
                        "name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
                        "parameters": ["method": "POST", "path": "custom/reply", "respond": "respondNode"],
                    ],
                    [
                        "name": "Reply", "type": "flowstack.respondToWebhook", "typeVersion": 1,
                        "parameters": ["statusCode": 201, "body": ["seen": "{{ $json.body.n * 2 }}"], "headers": ["X-Flow": "yes"]],
                    ],
                ],
                "edges": [["from": "Hook", "to": "Reply"]],
            ]
            let custom = try await client.post("/api/v1/projects/\(project)/workflows", responder, auth: auth).json["id"] as! String
            _ = try await client.post("/api/v1/workflows/\(custom)/activate", nil, auth: auth)
            let reply = try await client.post("/webhook/custom/reply", ["n": 21])
            #expect(reply.status == 201)
            #expect(reply.header("X-Flow") == "yes")
            #expect(reply.json["seen"] as? Double == 42)

            // The answer comes when the Respond node runs, before the slow rest of the workflow; by
            // then the execution is on disk, and it goes on to finish.
            let early: [String: Any] = [
                "name": "Early",
                "nodes": [
                    [
                        "name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
                        "parameters": ["method": "POST", "path": "early", "respond": "respondNode"],
                    ],
                    [
                        "name": "Reply", "type": "flowstack.respondToWebhook", "typeVersion": 1,
                        "parameters": ["statusCode": 202, "body": ["queued": true]],
                    ],
                    [
                        "name": "Slow", "type": "flowstack.wait", "typeVersion": 1,
                        "parameters": ["resume": "timeInterval", "seconds": 1.9],
                    ],
                    ["name": "Done", "type": "flowstack.set", "typeVersion": 1, "parameters": ["fields": ["done": true]]],
                ],
                "edges": [["from": "Hook", "to": "Reply"], ["from": "Reply", "to": "Slow"], ["from": "Slow", "to": "Done"]],
            ]
            let earlyID = try await client.post("/api/v1/projects/\(project)/workflows", early, auth: auth).json["id"] as! String
            _ = try await client.post("/api/v1/workflows/\(earlyID)/activate", nil, auth: auth)
            let started = ContinuousClock.now
            let quick = try await client.post("/webhook/early", ["n": 1])
            #expect(quick.status == 202)
            #expect(quick.json["queued"] as? Bool == true)
            #expect(ContinuousClock.now - started < .seconds(1.8))
            let listed = try await client.get("/api/v1/projects/\(project)/executions?workflowId=\(earlyID)", auth: auth)
            let execution = try #require((listed.json["items"] as? [[String: Any]])?.first?["id"] as? String)
            let finished = try await waitForStatus(client, execution, auth: auth, until: ["succeeded", "failed"])
            #expect(finished.json["status"] as? String == "succeeded")

            _ = try await client.post("/api/v1/workflows/\(id)/deactivate", nil, auth: auth)
            #expect(try await client.post("/webhook/greet", ["name": "Ada"]).status == 404)
        }
    }

    @Test("HMAC webhooks refuse a tampered body, a stale timestamp and a replayed id", arguments: Backend.allCases)
    func signedWebhooks(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let secret = "s3cret-signing-key"
            func hook(_ path: String, _ parameters: [String: Any]) -> [String: Any] {
                [
                    "name": path,
                    "nodes": [
                        [
                            "name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
                            "parameters": ["method": "POST", "path": path, "authentication": "hmac"].merging(parameters) { $1 },
                        ],
                        ["name": "Done", "type": "flowstack.noOp", "typeVersion": 1, "parameters": [:]],
                    ],
                    "edges": [["from": "Hook", "to": "Done"]],
                ]
            }
            // The key lives in a connection (write-only); a workflow holding it inline is refused.
            let inline = try await client.post("/api/v1/projects/\(project)/workflows", hook("signed", ["secret": secret]), auth: auth)
            #expect(inline.status == 422)
            #expect(inline.text.contains("webhook_secret_inline"))
            #expect(
                try await client.post("/api/v1/projects/\(project)/workflows", hook("signed", [:]), auth: auth).text.contains(
                    "webhook_connection_required"))
            #expect(
                try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "signing", "type": "secrets", "data": ["secret": secret]], auth: auth
                ).status == 201)
            for path in ["signed", "other", "signed.x"] {
                let id =
                    try await client.post("/api/v1/projects/\(project)/workflows", hook(path, ["connection": "signing"]), auth: auth).json[
                        "id"] as! String
                #expect(try await client.post("/api/v1/workflows/\(id)/activate", nil, auth: auth).status == 200)
                let stored = try await client.get("/api/v1/workflows/\(id)", auth: auth)
                #expect(!stored.text.contains(secret))
            }
            func sign(_ body: String, id: String, at time: Int, path: String = "signed") -> String {
                let mac = HMAC<SHA256>.authenticationCode(
                    for: Array("\(id).\(time)./webhook/\(path)\n\(body)".utf8), using: SymmetricKey(data: Array(secret.utf8)))
                return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
            }
            let now = Int(app.clock.now().timeIntervalSince1970)
            let body = #"{"amount":10}"#
            func send(_ body: String, signature: String, id: String, at time: Int, path: String = "signed") async throws -> APIResponse {
                try await client.request(
                    .post, "/webhook/\(path)", rawBody: body,
                    headers: [
                        "X-FlowStack-Signature": signature, "X-FlowStack-Timestamp": "\(time)", "X-FlowStack-Id": id,
                    ])
            }
            #expect(try await send(body, signature: sign(body, id: "r1", at: now), id: "r1", at: now).status == 200)
            #expect(try await send(body, signature: sign(body, id: "r1", at: now), id: "r1", at: now).errorCode == "webhook_replayed")
            // The signature binds the path: accepted by /webhook/signed, refused by another webhook sharing the key.
            #expect(try await send(body, signature: sign(body, id: "r5", at: now), id: "r5", at: now, path: "other").status == 401)
            #expect(
                try await send(body, signature: sign(body, id: "r5", at: now, path: "other"), id: "r5", at: now, path: "other").status
                    == 200)
            // The path ends at a newline, which no path has: path `signed.x` with body `y` is not path `signed` with body `x.y`.
            let shifted = HMAC<SHA256>.authenticationCode(
                for: Array("r7.\(now)./webhook/signed.x\ny".utf8), using: SymmetricKey(data: Array(secret.utf8)))
            #expect(
                try await client.request(
                    .post, "/webhook/signed", rawBody: "x\ny", contentType: "text/plain",
                    headers: [
                        "X-FlowStack-Signature": "sha256=" + shifted.map { String(format: "%02x", $0) }.joined(),
                        "X-FlowStack-Timestamp": "\(now)",
                        "X-FlowStack-Id": "r7",
                    ]
                ).status == 401)
            #expect(
                try await send("{}", signature: sign("{}", id: "r8", at: now, path: "signed.x"), id: "r8", at: now, path: "signed.x").status
                    == 200)
            // The old forms (without the path, or with it and a '.') are refused.
            let dotted = HMAC<SHA256>.authenticationCode(
                for: Array("r9.\(now)./webhook/signed.\(body)".utf8), using: SymmetricKey(data: Array(secret.utf8)))
            #expect(
                try await send(body, signature: "sha256=" + dotted.map { String(format: "%02x", $0) }.joined(), id: "r9", at: now).status
                    == 401)
            let unbound = HMAC<SHA256>.authenticationCode(
                for: Array("r6.\(now).\(body)".utf8), using: SymmetricKey(data: Array(secret.utf8)))
            #expect(
                try await send(body, signature: "sha256=" + unbound.map { String(format: "%02x", $0) }.joined(), id: "r6", at: now).status
                    == 401)
            #expect(try await send(#"{"amount":99}"#, signature: sign(body, id: "r2", at: now), id: "r2", at: now).status == 401)
            let old = now - 3600
            #expect(
                try await send(body, signature: sign(body, id: "r3", at: old), id: "r3", at: old).errorCode == "webhook_signature_expired")
            #expect(try await send(body, signature: sign(body, id: "r.4", at: now), id: "r.4", at: now).status == 401)
            #expect(try await client.post("/webhook/signed", ["amount": 10]).status == 401)
        }
    }

    @Test("retry continues from the failed node: completed nodes do not run again", arguments: Backend.allCases)
    func retryFromFailedNode(_ backend: Backend) async throws {
        let fetcher = ScriptedFetcher(failures: 1)
        let app = try await TestApp.make(backend, fetcher: fetcher)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let workflow: [String: Any] = [
                "name": "Fetch twice",
                "nodes": [
                    ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                    [
                        "name": "First", "type": "flowstack.httpRequest", "typeVersion": 1,
                        "parameters": ["url": "https://api.example.com/a"],
                    ],
                    [
                        "name": "Second", "type": "flowstack.httpRequest", "typeVersion": 1,
                        "parameters": ["url": "https://api.example.com/b"],
                    ],
                ],
                "edges": [["from": "Manual", "to": "First"], ["from": "First", "to": "Second"]],
            ]
            // The first call fails (503): First fails and nothing else runs.
            let id = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as! String
            let failed = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth)
            #expect(failed.json["status"] as? String == "failed")
            #expect(failed.json["failedNode"] as? String == "First")
            #expect(fetcher.count == 1)
            let retried = try await client.post("/api/v1/executions/\(failed.json["id"] as! String)/retry", nil, auth: auth)
            #expect(retried.status == 202)
            let done = try await waitForStatus(client, retried.json["id"] as! String, auth: auth)
            #expect(done.json["status"] as? String == "succeeded")
            #expect(done.json["retryOf"] as? String == failed.json["id"] as? String)
            #expect(fetcher.count == 3)
            #expect((done.json["output"] as? [[String: Any]])?.first?["call"] as? Double == 3)
            #expect(try await client.post("/api/v1/executions/\(retried.json["id"] as! String)/retry", nil, auth: auth).status == 409)
        }
    }

    @Test("Wait for a resume call sleeps in the database; cancel ends an execution", arguments: Backend.allCases)
    func waitResumeCancel(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let workflow: [String: Any] = [
                "name": "Approve",
                "nodes": [
                    ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                    ["name": "Hold", "type": "flowstack.wait", "typeVersion": 1, "parameters": ["resume": "webhook"]],
                    ["name": "After", "type": "flowstack.set", "typeVersion": 1, "parameters": ["fields": ["approved": true]]],
                ],
                "edges": [["from": "Manual", "to": "Hold"], ["from": "Hold", "to": "After"]],
            ]
            let id = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as! String
            let waiting = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth)
            #expect(waiting.json["status"] as? String == "waiting")
            let execution = waiting.json["id"] as! String
            // The resume URL carries the execution's token; the id alone, or a wrong token, is not found.
            let resumeURL = try #require(try await client.get("/api/v1/executions/\(execution)", auth: auth).json["resumeUrl"] as? String)
            let resumePath = String(resumeURL[try #require(resumeURL.range(of: "/webhook-waiting/")).lowerBound...])
            #expect(resumePath.hasPrefix("/webhook-waiting/\(execution)/"))
            #expect(try await client.post("/webhook-waiting/\(execution)", nil).status == 404)
            #expect(try await client.post(String(resumePath.dropLast(2)) + "AA", nil).status == 404)
            // The resume call's body and query become the Wait node's output; credentials do not.
            #expect(
                try await client.request(
                    .post, resumePath + "?by=ann", json: ["decision": "yes"],
                    headers: ["Authorization": "Bearer not-for-the-workflow"]
                ).status == 200)
            let done = try await waitForStatus(client, execution, auth: auth, until: ["succeeded", "failed"])
            #expect(done.json["status"] as? String == "succeeded")
            let output = try #require((done.json["output"] as? [[String: Any]])?.first)
            #expect(output["approved"] as? Bool == true)
            #expect((output["body"] as? [String: Any])?["decision"] as? String == "yes")
            #expect((output["query"] as? [String: Any])?["by"] as? String == "ann")
            #expect(!done.text.contains("not-for-the-workflow"))
            #expect(try await client.post(resumePath, nil).status == 404)
            // Not waiting any more: 404 whatever the body (it is not even read).
            #expect(try await client.request(.post, resumePath, rawBody: "<x/>", contentType: "application/xml").status == 404)

            let second = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth).json["id"] as! String
            let cancelled = try await client.post("/api/v1/executions/\(second)/cancel", nil, auth: auth)
            #expect(cancelled.json["status"] as? String == "cancelled")
            #expect(try await client.post("/api/v1/executions/\(second)/cancel", nil, auth: auth).status == 409)
            #expect(try await client.post("/webhook-waiting/\(second)/\(app.store.resumeToken(executionID: second))", nil).status == 404)
            #expect(try await client.request(.delete, "/api/v1/executions/\(second)", auth: auth).status == 204)
        }
    }
}

@Suite struct WorkflowCompositionTests {
    @Test(
        "Execute Workflow runs a workflow of the same project and returns its output; other projects are out of reach",
        arguments: Backend.allCases)
    func subWorkflow(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, owner) = try await setUp(client, app)
            let child: [String: Any] = [
                "name": "Child",
                "nodes": [
                    ["name": "Called", "type": "flowstack.executeWorkflowTrigger", "typeVersion": 1, "parameters": [:]],
                    [
                        "name": "Double", "type": "flowstack.set", "typeVersion": 1,
                        "parameters": ["fields": ["twice": "{{ $json.n * 2 }}"]],
                    ],
                ],
                "edges": [["from": "Called", "to": "Double"]],
            ]
            let childID = try await client.post("/api/v1/projects/\(project)/workflows", child, auth: auth).json["id"] as! String
            func parent(_ target: String) -> [String: Any] {
                [
                    "name": "Parent",
                    "nodes": [
                        ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                        ["name": "Call", "type": "flowstack.executeWorkflow", "typeVersion": 1, "parameters": ["workflowId": target]],
                    ],
                    "edges": [["from": "Manual", "to": "Call"]],
                ]
            }
            let parentID = try await client.post("/api/v1/projects/\(project)/workflows", parent(childID), auth: auth).json["id"] as! String
            let result = try await client.post("/api/v1/workflows/\(parentID)/run?wait=true", ["items": [["n": 21]]], auth: auth)
            #expect(result.json["status"] as? String == "succeeded")
            #expect((result.json["output"] as? [[String: Any]])?.first?["twice"] as? Double == 42)
            let subs = try await client.get("/api/v1/projects/\(project)/executions?mode=sub-workflow", auth: auth)
            #expect((subs.json["items"] as? [[String: Any]])?.first?["parentId"] as? String == result.json["id"] as? String)

            let elsewhere = try await client.createProject(auth, orgID: owner.orgID, name: "Elsewhere")
            let foreign =
                try await client.post("/api/v1/projects/\(elsewhere)/workflows", parent(childID), auth: auth).json["id"] as! String
            let refused = try await client.post("/api/v1/workflows/\(foreign)/run?wait=true", ["items": [["n": 1]]], auth: auth)
            #expect(refused.json["status"] as? String == "failed")
            #expect((refused.json["error"] as? String)?.contains("No workflow") == true)
        }
    }

    @Test("a failed execution starts its error workflow with what failed", arguments: Backend.allCases)
    func errorWorkflow(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let handler: [String: Any] = [
                "name": "On error",
                "nodes": [
                    ["name": "Failed", "type": "flowstack.errorTrigger", "typeVersion": 1, "parameters": [:]],
                    [
                        "name": "Note", "type": "flowstack.set", "typeVersion": 1,
                        "parameters": ["fields": ["seen": "{{ $json.execution.lastNodeExecuted }}"]],
                    ],
                ],
                "edges": [["from": "Failed", "to": "Note"]],
            ]
            let handlerID = try await client.post("/api/v1/projects/\(project)/workflows", handler, auth: auth).json["id"] as! String
            let failing: [String: Any] = [
                "name": "Fails",
                "nodes": [
                    ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                    ["name": "Boom", "type": "flowstack.stopAndError", "typeVersion": 1, "parameters": ["message": "planned"]],
                ],
                "edges": [["from": "Manual", "to": "Boom"]],
                "settings": ["errorWorkflowId": handlerID],
            ]
            let id = try await client.post("/api/v1/projects/\(project)/workflows", failing, auth: auth).json["id"] as! String
            let result = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth)
            #expect(result.json["status"] as? String == "failed")
            var handled: [[String: Any]] = []
            for _ in 0..<100 {
                let list = try await client.get(
                    "/api/v1/projects/\(project)/executions?workflowId=\(handlerID)&status=succeeded", auth: auth)
                handled = list.json["items"] as? [[String: Any]] ?? []
                if !handled.isEmpty { break }
                try await Task.sleep(for: .milliseconds(30))
            }
            let detail = try await client.get("/api/v1/executions/\(try #require(handled.first?["id"] as? String))", auth: auth)
            #expect((detail.json["output"] as? [[String: Any]])?.first?["seen"] as? String == "Boom")
        }
    }

    @Test("webhook basic and header authentication compare the credentials and hide them from the workflow", arguments: Backend.allCases)
    func webhookAuthentication(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            func hook(_ path: String, _ parameters: [String: Any]) -> [String: Any] {
                [
                    "name": path,
                    "nodes": [
                        [
                            "name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
                            "parameters": ["method": "POST", "path": path].merging(parameters) { $1 },
                        ],
                        ["name": "Done", "type": "flowstack.noOp", "typeVersion": 1, "parameters": [:]],
                    ],
                    "edges": [["from": "Hook", "to": "Done"]],
                ]
            }
            #expect(
                try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "hook-basic", "type": "basic", "data": ["username": "u", "password": "p4ss"]], auth: auth
                ).status == 201)
            #expect(
                try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "hook-key", "type": "apiKey", "data": ["name": "X-Hook-Key", "key": "k3y"]], auth: auth
                ).status == 201)
            for inline in [
                hook("basic", ["authentication": "basic", "username": "u", "password": "p4ss"]),
                hook("header", ["authentication": "header", "headerName": "X-Hook-Key", "headerValue": "k3y"]),
            ] {
                #expect(try await client.post("/api/v1/projects/\(project)/workflows", inline, auth: auth).status == 422)
            }
            for workflow in [
                hook("basic", ["authentication": "basic", "connection": "hook-basic"]),
                hook("header", ["authentication": "header", "connection": "hook-key"]),
            ] {
                let id = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as! String
                #expect(try await client.post("/api/v1/workflows/\(id)/activate", nil, auth: auth).status == 200)
            }
            let good = "Basic " + Data("u:p4ss".utf8).base64EncodedString()
            let bad = "Basic " + Data("u:nope".utf8).base64EncodedString()
            let basic = try await client.post("/webhook/basic", ["a": 1], headers: ["Authorization": good])
            #expect(basic.status == 200)
            #expect((basic.json["headers"] as? [String: Any])?["authorization"] == nil)
            #expect(try await client.post("/webhook/basic", ["a": 1], headers: ["Authorization": bad]).status == 401)
            #expect(try await client.post("/webhook/basic", ["a": 1]).status == 401)
            let header = try await client.post("/webhook/header", ["a": 1], headers: ["X-Hook-Key": "k3y"])
            #expect(header.status == 200)
            #expect((header.json["headers"] as? [String: Any])?["x-hook-key"] == nil)
            #expect(try await client.post("/webhook/header", ["a": 1], headers: ["X-Hook-Key": "k3y!"]).status == 401)
        }
    }

    @Test("saveExecutionData none keeps the outline of an execution but none of its data", arguments: Backend.allCases)
    func saveExecutionData(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        let marker = "KEEP-NOT-\(UUID().uuidString)"
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            var workflow = codeFree(marker)
            workflow["settings"] = ["saveExecutionData": "none"]
            let id = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as! String
            let result = try await client.post("/api/v1/workflows/\(id)/run?wait=true", ["items": [["secret": marker]]], auth: auth)
            #expect(result.json["status"] as? String == "succeeded")
            let detail = try await client.get("/api/v1/executions/\(result.json["id"] as! String)", auth: auth)
            #expect(detail.json["status"] as? String == "succeeded")
            #expect((detail.json["nodes"] as? [Any])?.isEmpty == true)
            var kept = codeFree(marker)
            kept["name"] = "Kept"
            let keptID = try await client.post("/api/v1/projects/\(project)/workflows", kept, auth: auth).json["id"] as! String
            let keptRun = try await client.post("/api/v1/workflows/\(keptID)/run?wait=true", ["items": [["secret": marker]]], auth: auth)
            let keptDetail = try await client.get("/api/v1/executions/\(keptRun.json["id"] as! String)", auth: auth)
            #expect((keptDetail.json["nodes"] as? [Any])?.count == 2)
        }
    }

    func codeFree(_ marker: String) -> [String: Any] {
        [
            "name": "Plain",
            "nodes": [
                ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                ["name": "Copy", "type": "flowstack.set", "typeVersion": 1, "parameters": ["fields": ["copy": "{{ $json.secret }}"]]],
            ],
            "edges": [["from": "Manual", "to": "Copy"]],
        ]
    }

    @Test("a workflow timeout fails the execution", arguments: Backend.allCases)
    func workflowTimeout(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let slow: [String: Any] = [
                "name": "Slow",
                "nodes": [
                    ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                    [
                        "name": "Pause", "type": "flowstack.wait", "typeVersion": 1,
                        "parameters": ["resume": "timeInterval", "seconds": 1.5],
                    ],
                    ["name": "After", "type": "flowstack.noOp", "typeVersion": 1, "parameters": [:]],
                ],
                "edges": [["from": "Manual", "to": "Pause"], ["from": "Pause", "to": "After"]],
                "settings": ["timeout": 0.3],
            ]
            let id = try await client.post("/api/v1/projects/\(project)/workflows", slow, auth: auth).json["id"] as! String
            let result = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth)
            #expect(result.json["status"] as? String == "failed")
            #expect((result.json["error"] as? String)?.contains("timeout") == true)
            // The same workflow with room to finish succeeds.
            var roomy = slow
            roomy["settings"] = ["timeout": 10]
            let roomyID = try await client.post("/api/v1/projects/\(project)/workflows", roomy, auth: auth).json["id"] as! String
            let roomyRun = try await client.post("/api/v1/workflows/\(roomyID)/run?wait=true", nil, auth: auth)
            #expect(roomyRun.json["status"] as? String == "succeeded", "\(roomyRun.text)")
        }
    }
}
