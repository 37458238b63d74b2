import Crypto
import FlowStackCore
import FlowStackTesting
import Foundation
import HTTPTypes
import Testing

@testable import FlowStackServer

/// The penetration test's findings (issue 17) and the edge protection: each test failed on the
/// build the tester used.
@Suite struct EdgeTests {
    func hook(_ path: String, _ parameters: [String: Any] = [:], then reply: [String: Any]? = nil) -> [String: Any] {
        var nodes: [[String: Any]] = [
            [
                "name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
                "parameters": ["method": "POST", "path": path, "respond": reply == nil ? "lastNode" : "respondNode"]
                    .merging(parameters) { $1 },
            ]
        ]
        if let reply {
            nodes.append(["name": "Reply", "type": "flowstack.respondToWebhook", "typeVersion": 1, "parameters": reply])
        } else {
            nodes.append(["name": "Done", "type": "flowstack.noOp", "typeVersion": 1, "parameters": [:]])
        }
        return ["name": path, "nodes": nodes, "edges": [["from": "Hook", "to": nodes[1]["name"] as! String]]]
    }

    func activate(_ client: APIClient, _ auth: Auth, _ project: String, _ workflow: [String: Any]) async throws -> String {
        let created = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth)
        try #require(created.status == 201, "\(created.text)")
        let id = created.json["id"] as! String
        try #require(try await client.post("/api/v1/workflows/\(id)/activate", nil, auth: auth).status == 200)
        return id
    }

    /// A workflow that waits for a resume call, and a run of it now waiting: (workflow, execution).
    func waitingExecution(_ client: APIClient, _ auth: Auth, _ project: String) async throws -> (String, String) {
        let workflow: [String: Any] = [
            "name": "Approve",
            "nodes": [
                ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                ["name": "Hold", "type": "flowstack.wait", "typeVersion": 1, "parameters": ["resume": "webhook"]],
            ],
            "edges": [["from": "Manual", "to": "Hold"]],
        ]
        let id = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as! String
        let run = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth)
        try #require(run.json["status"] as? String == "waiting", "\(run.text)")
        return (id, run.json["id"] as! String)
    }

    // MARK: Findings 1 and 2: a webhook answer cannot speak with the origin's authority

    @Test("a Respond node cannot set cookies, CORS or security headers, nor redirect off the server", arguments: Backend.allCases)
    func webhookAnswerHeaders(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let refused: [(String, String)] = [
                ("Set-Cookie", "__Host-flowstack_oauth2=planted; Path=/; Secure"),
                ("set-cookie", "__Host-flowstack_session=planted; Path=/; Secure"),
                ("Access-Control-Allow-Origin", "https://evil.example"),
                ("Access-Control-Allow-Credentials", "true"),
                ("Content-Security-Policy", "default-src *"),
                ("X-Frame-Options", "ALLOWALL"),
                ("Strict-Transport-Security", "max-age=0"),
                ("Location", "https://evil.example/"),
                ("Location", "//evil.example/"),
                ("Location", "/\\evil.example/"),
                ("Refresh", "0; url=https://evil.example/"),
                ("NEL", #"{"report_to":"x","max_age":86400}"#),
                ("Report-To", #"{"group":"x","endpoints":[{"url":"https://evil.example/"}]}"#),
                ("WWW-Authenticate", "Basic realm=\"FlowStack\""),
                ("Service-Worker-Allowed", "/"),
                ("X-Request-Id", "spoofed"),
            ]
            // Written into the workflow: refused when it is saved, and nothing is saved.
            for (index, (name, value)) in refused.enumerated() {
                let saved = try await client.post(
                    "/api/v1/projects/\(project)/workflows",
                    hook("refused\(index)", then: ["statusCode": 302, "headers": [name: value], "body": "x"]), auth: auth)
                #expect(saved.status == 422, "\(name): \(value)")
                #expect(saved.text.contains("webhook_header_refused"), "\(name): \(value)")
            }
            #expect((try await client.get("/api/v1/projects/\(project)/workflows", auth: auth).json["items"] as? [Any])?.count == 0)
            // Computed from the request: refused when the node runs; the answer is a plain failure.
            let id = try await activate(
                client, auth, project, hook("computed", then: ["statusCode": 302, "headers": "{{ $json.body.headers }}", "body": "x"]))
            for (name, value) in refused {
                let answer = try await client.post("/webhook/computed", ["headers": [name: value]])
                #expect(answer.status == 500, "\(name): \(value)")
                #expect(answer.header("Set-Cookie") == nil)
                #expect(answer.header("Access-Control-Allow-Origin") == nil && answer.header("Access-Control-Allow-Credentials") == nil)
                #expect(answer.header("Location") == nil && answer.header("Refresh") == nil)
                #expect(answer.header("X-Frame-Options") == "DENY")
                #expect(answer.header("Strict-Transport-Security")?.contains("max-age=0") != true)
                #expect(answer.header("Content-Security-Policy") == ResponseHeaders.webhookContentSecurityPolicy)
            }
            let executions =
                try await client.get("/api/v1/projects/\(project)/executions?workflowId=\(id)", auth: auth).json["items"]
                as? [[String: Any]] ?? []
            #expect(executions.count == refused.count)
            #expect(executions.allSatisfy { $0["status"] as? String == "failed" })
            // A value computed from the request is checked the same way.
            _ = try await activate(
                client, auth, project, hook("echoed", then: ["headers": ["Location": "{{ $json.body.next }}"], "statusCode": 303]))
            #expect(try await client.post("/webhook/echoed", ["next": "https://evil.example"]).status == 500)
            let local = try await client.post("/webhook/echoed", ["next": "/webhook/next?step=2"])
            #expect(local.status == 303)
            #expect(local.header("Location") == "/webhook/next?step=2")

            // What an answer may carry: content headers and X- headers of its own.
            _ = try await activate(
                client, auth, project,
                hook(
                    "download",
                    then: [
                        "headers": [
                            "Content-Disposition": "attachment; filename=\"r.csv\"", "X-Report": "7", "ETag": "\"v1\"",
                            "Content-Type": "text/csv",
                        ],
                        "body": "a,b",
                    ]))
            let download = try await client.post("/webhook/download", ["a": 1])
            #expect(download.status == 200)
            #expect(download.header("Content-Disposition") == "attachment; filename=\"r.csv\"")
            #expect(download.header("X-Report") == "7" && download.header("ETag") == "\"v1\"")
            // The second line: whatever a node's answer holds, only allowed headers are sent.
            let filtered = WebhookController.answerHeaders(
                .object([
                    "Set-Cookie": .string("a=b"), "set-cookie": .string("c=d"), "Access-Control-Allow-Origin": .string("*"),
                    "Location": .string("https://evil.example"), "NEL": .string("{}"), "X-Ok": .string("yes"), "X-Bad": .string("a\r\nb"),
                    "Content-Type": .string("text/plain"),
                ]))
            #expect(filtered.map(\.name.canonicalName).sorted() == ["content-type", "x-ok"])

            // User-chosen HTML is served sandboxed: no script of it runs with the origin's authority.
            _ = try await activate(
                client, auth, project,
                hook(
                    "page",
                    then: [
                        "headers": ["Content-Type": "text/html; charset=utf-8"],
                        "body": "<script>fetch('/api/v1/me')</script>",
                    ]))
            let page = try await client.post("/webhook/page", ["a": 1])
            #expect(page.status == 200)
            #expect(page.header("Content-Type")?.hasPrefix("text/html") == true)
            #expect(page.header("Cache-Control") == "no-store")
            #expect(
                try await client.post(
                    "/api/v1/projects/\(project)/workflows",
                    hook("cached", then: ["headers": ["Cache-Control": "public, max-age=86400"]]), auth: auth
                ).status == 422)
            let policy = try #require(page.header("Content-Security-Policy"))
            #expect(policy.hasPrefix("sandbox"))
            #expect(policy.contains("default-src 'none'"))
            // The resume path of a Wait node is a webhook too.
            #expect(
                try await client.post("/webhook-waiting/x/y", nil).header("Content-Security-Policy")
                    == ResponseHeaders.webhookContentSecurityPolicy)
            // The API keeps its own policy.
            #expect(
                try await client.get("/api/v1/me", auth: auth).header("Content-Security-Policy")
                    != ResponseHeaders.webhookContentSecurityPolicy)
        }
    }

    @Test("the OAuth2 binder is a __Host- cookie that a webhook cannot plant", arguments: Backend.allCases)
    func oauthBinderCannotBeTossed(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            // The attacker's plan: a webhook that answers with the binder cookie of the attacker's flow.
            let planted = try await client.post(
                "/api/v1/projects/\(project)/workflows",
                hook("toss", then: ["headers": ["Set-Cookie": "__Host-flowstack_oauth2=attacker; Path=/; Secure; HttpOnly"]]),
                auth: auth)
            #expect(planted.status == 422 && planted.text.contains("webhook_header_refused"))
            // Nor can an expression: a header name or value computed from the request is checked at run time.
            _ = try await activate(client, auth, project, hook("toss2", then: ["headers": "{{ $json.body.headers }}"]))
            let computed = try await client.post(
                "/webhook/toss2", ["headers": ["Set-Cookie": "__Host-flowstack_oauth2=attacker; Path=/; Secure"]])
            #expect(computed.status == 500)
            #expect(computed.header("Set-Cookie") == nil)
        }
    }

    @Test("with a webhook origin configured, webhooks are served only there, and nothing else is", arguments: Backend.allCases)
    func webhookOrigin(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend) {
            $0.publicURL = "https://flows.example.com"
            $0.webhookPublicURL = "https://hooks.example.com/"
        }
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            _ = try await activate(client, auth, project, hook("inbox"))
            for host in ["hooks.example.com", "HOOKS.example.com:443"] {
                #expect(try await client.post("/webhook/inbox", ["a": 1], headers: ["Host": host]).status == 200, "\(host)")
            }
            let elsewhere = try await client.post("/webhook/inbox", ["a": 1], headers: ["Host": "flows.example.com"])
            #expect(elsewhere.status == 404 && elsewhere.errorCode == "webhook_elsewhere")
            #expect(elsewhere.text.contains("https://hooks.example.com/webhook/"))
            #expect(try await client.post("/webhook/inbox", ["a": 1]).errorCode == "webhook_elsewhere")
            // The app's API, its sign-in and its OAuth2 callback are not on the webhook origin.
            for path in ["/api/v1/me", "/api/v1/openapi.json", "/oauth2/callback?state=x"] {
                let refused = try await client.get(path, auth: auth, headers: ["Host": "hooks.example.com"])
                #expect(refused.status == 404, "\(path)")
            }
            #expect(
                try await client.post(
                    "/api/v1/auth/login", ["email": "a@example.com", "password": "x"],
                    headers: ["Host": "hooks.example.com"]
                ).status == 404)
            #expect(try await client.get("/healthz", headers: ["Host": "hooks.example.com"]).status == 200)
            // Resume URLs name the webhook origin, and work there only.
            let (_, execution) = try await waitingExecution(client, auth, project)
            let url = try #require(try await client.get("/api/v1/executions/\(execution)", auth: auth).json["resumeUrl"] as? String)
            #expect(url.hasPrefix("https://hooks.example.com/webhook-waiting/\(execution)/"))
            let path = String(url.dropFirst("https://hooks.example.com".count))
            #expect(try await client.post(path, nil).errorCode == "webhook_elsewhere")
            #expect(try await client.post(path, nil, headers: ["Host": "hooks.example.com"]).status == 200)
        }
    }

    // MARK: Finding 3: webhook secrets live in connections

    @Test("webhook secrets are refused as parameters and never shown to viewers", arguments: Backend.allCases)
    func webhookSecretsInConnections(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, owner) = try await setUp(client, app)
            for (kind, parameters) in [
                ("basic", ["authentication": "basic", "username": "u", "password": "p4ss"]),
                ("header", ["authentication": "header", "headerName": "X-Key", "headerValue": "k3y"]),
                ("hmac", ["authentication": "hmac", "secret": "s3cret-s3cret"]),
            ] {
                let refused = try await client.post("/api/v1/projects/\(project)/workflows", hook(kind, parameters), auth: auth)
                #expect(refused.status == 422, "\(kind)")
                #expect(refused.text.contains("webhook_secret_inline"), "\(kind)")
                let missing = try await client.post(
                    "/api/v1/projects/\(project)/workflows", hook(kind, ["authentication": kind]), auth: auth)
                #expect(missing.text.contains("webhook_connection_required"), "\(kind)")
            }
            #expect(
                try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "hook-hmac", "type": "secrets", "data": ["secret": "s3cret-s3cret-value"]], auth: auth
                ).status == 201)
            let id = try await activate(client, auth, project, hook("hmac", ["authentication": "hmac", "connection": "hook-hmac"]))
            let viewer = try await client.createAccount(app, email: "viewer@example.com")
            try await client.addMember(app, userID: viewer.userID, orgID: owner.orgID, role: .member)
            _ = try await client.request(.put, "/api/v1/projects/\(project)/members/\(viewer.userID)", json: ["role": "viewer"], auth: auth)
            let login = try await client.login(viewer)
            let read = try await client.get("/api/v1/workflows/\(id)", auth: login)
            #expect(read.status == 200)
            #expect(!read.text.contains("s3cret-s3cret-value"))
            let connection = try await client.get("/api/v1/projects/\(project)/connections", auth: login)
            #expect(!connection.text.contains("s3cret-s3cret-value"))
        }
    }

    // MARK: Finding 4: resume URLs carry a token, shown only to those who may run

    @Test("viewers and read-only keys get no resume URL; runners do", arguments: Backend.allCases)
    func resumeURLForRunnersOnly(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.publicURL = "https://hooks.example.com" }
        try await app.test { client in
            let (auth, project, owner) = try await setUp(client, app)
            let (id, execution) = try await waitingExecution(client, auth, project)
            var seen: [String: Bool] = [:]
            for role in ["viewer", "runner"] {
                let other = try await client.createAccount(app, email: "\(role)@example.com")
                try await client.addMember(app, userID: other.userID, orgID: owner.orgID, role: .member)
                _ = try await client.request(.put, "/api/v1/projects/\(project)/members/\(other.userID)", json: ["role": role], auth: auth)
                let login = try await client.login(other)
                let read = try await client.get("/api/v1/executions/\(execution)", auth: login)
                #expect(read.status == 200)
                #expect(read.json["status"] as? String == "waiting")
                seen[role] = read.json["resumeUrl"] != nil
                let listed = try await client.get("/api/v1/projects/\(project)/executions", auth: login)
                #expect(!listed.text.contains(app.store.resumeToken(executionID: execution)))
            }
            #expect(seen == ["viewer": false, "runner": true])
            let readOnly = try await client.createAPIKey(auth, orgID: owner.orgID, scope: "read")
            let byKey = try await client.get("/api/v1/executions/\(execution)", auth: .apiKey(readOnly))
            #expect(byKey.status == 200 && byKey.json["resumeUrl"] == nil)
            let url = try #require(try await client.get("/api/v1/executions/\(execution)", auth: auth).json["resumeUrl"] as? String)
            #expect(url == "https://hooks.example.com/webhook-waiting/\(execution)/\(app.store.resumeToken(executionID: execution))")
            // The token is a MAC of the execution id: another execution's token does not fit.
            let other = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth).json["id"] as! String
            #expect(try await client.post("/webhook-waiting/\(execution)/\(app.store.resumeToken(executionID: other))", nil).status == 404)
            #expect(
                try await client.post("/webhook-waiting/\(execution)/\(app.store.resumeToken(executionID: execution))", nil).status == 200)
        }
    }

    // MARK: Finding 5: webhook authentication is throttled per address

    @Test("wrong webhook credentials from one address are throttled, the right one included", arguments: Backend.allCases)
    func webhookAuthenticationThrottle(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.app.ipFailureLimit = 20 }
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            #expect(
                try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "hook-key", "type": "apiKey", "data": ["name": "X-Hook-Key", "key": "k3y-right"]], auth: auth
                ).status == 201)
            #expect(
                try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "hook-hmac", "type": "secrets", "data": ["secret": "hmac-secret-value"]], auth: auth
                ).status == 201)
            _ = try await activate(client, auth, project, hook("keyed", ["authentication": "header", "connection": "hook-key"]))
            _ = try await activate(client, auth, project, hook("signed", ["authentication": "hmac", "connection": "hook-hmac"]))
            #expect(try await client.post("/webhook/keyed", ["a": 1], headers: ["X-Hook-Key": "k3y-right"]).status == 200)
            var statuses: [Int] = []
            for i in 0..<12 {
                statuses.append(try await client.post("/webhook/keyed", ["a": 1], headers: ["X-Hook-Key": "wrong-\(i)"]).status)
            }
            for i in 0..<12 {
                let now = Int(app.clock.now().timeIntervalSince1970)
                statuses.append(
                    try await client.post(
                        "/webhook/signed", ["a": 1],
                        headers: [
                            "X-FlowStack-Signature": "sha256=" + String(repeating: "0", count: 64), "X-FlowStack-Id": "id\(i)",
                            "X-FlowStack-Timestamp": "\(now)",
                        ]
                    ).status)
            }
            #expect(statuses.prefix(20).allSatisfy { $0 == 401 }, "\(statuses)")
            #expect(statuses.suffix(4).allSatisfy { $0 == 429 }, "\(statuses)")
            let blocked = try await client.post("/webhook/keyed", ["a": 1], headers: ["X-Hook-Key": "k3y-right"])
            #expect(blocked.status == 429)
            #expect(blocked.errorCode == "too_many_attempts")
            #expect(Int(blocked.header("Retry-After") ?? "") ?? 0 > 0)
            // Not trusted as a proxy: a forwarded address does not reset the count.
            #expect(
                try await client.post("/webhook/keyed", ["a": 1], headers: ["X-Hook-Key": "k3y-right", "X-Forwarded-For": "203.0.113.7"])
                    .status == 429)
            app.clock.advance(by: 15 * 60 + 1)
            #expect(try await client.post("/webhook/keyed", ["a": 1], headers: ["X-Hook-Key": "k3y-right"]).status == 200)
        }
    }

    // MARK: Finding 7 and the edge: request-rate limits

    @Test(
        "a flood of anonymous API calls from one address gets 429 with Retry-After; a spoofed X-Forwarded-For does not help",
        arguments: Backend.allCases)
    func addressRateLimit(_ backend: Backend) async throws {
        let app = try await TestApp.make(
            backend,
            configure: {
                $0.edge.apiPerSecond = 2
                $0.edge.apiBurst = 10
            })
        try await app.test(worker: false) { client in
            var statuses: [Int] = []
            for i in 0..<15 {
                statuses.append(
                    try await client.get("/api/v1/me", auth: .apiKey("fsk_invalid\(i)"), headers: ["X-Forwarded-For": "198.51.100.\(i)"])
                        .status)
            }
            #expect(statuses.prefix(10).allSatisfy { $0 == 401 }, "\(statuses)")
            #expect(statuses.suffix(5).allSatisfy { $0 == 429 }, "\(statuses)")
            let limited = try await client.get("/api/v1/me")
            #expect(limited.errorCode == "rate_limited")
            #expect(limited.header("Retry-After") == "1")
            #expect(limited.header("X-Content-Type-Options") == "nosniff")
            // The probes are not rate limited: an orchestrator must see a healthy replica as one.
            #expect(try await client.get("/healthz").status == 200)
            app.clock.advance(by: 1)
            #expect(try await client.get("/api/v1/me").status == 401)
            #expect(try await client.get("/api/v1/me").status == 401)
            #expect(try await client.get("/api/v1/me").status == 429)
        }
    }

    @Test("a trusted proxy's clients each get their own address limit", arguments: Backend.allCases)
    func addressRateLimitBehindProxy(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend) { settings in
            settings.edge.apiPerSecond = 1
            settings.edge.apiBurst = 3
            settings.trustedProxies = ["unknown"]
        }
        try await app.test(worker: false) { client in
            for address in ["198.51.100.1", "198.51.100.2"] {
                let statuses = try await (0..<4).asyncMap { _ in
                    try await client.get("/api/v1/me", headers: ["X-Forwarded-For": address]).status
                }
                #expect(statuses == [401, 401, 401, 429], "\(address)")
            }
        }
    }

    @Test("each API key and each organization has its own budget", arguments: Backend.allCases)
    func keyAndOrgRateLimits(_ backend: Backend) async throws {
        let app = try await TestApp.make(
            backend,
            configure: {
                $0.edge.keyPerSecond = 1
                $0.edge.keyBurst = 4
                $0.edge.orgPerSecond = 1
                $0.edge.orgBurst = 6
            })
        try await app.test(worker: false) { client in
            let (auth, _, owner) = try await setUp(client, app)
            let first = try await client.createAPIKey(auth, orgID: owner.orgID, scope: "read")
            let second = try await client.createAPIKey(auth, orgID: owner.orgID, scope: "read")
            let statuses = try await (0..<5).asyncMap { _ in try await client.get("/api/v1/me", auth: .apiKey(first)).status }
            #expect(statuses == [200, 200, 200, 200, 429])
            let keyLimited = try await client.get("/api/v1/me", auth: .apiKey(first))
            #expect(keyLimited.errorCode == "rate_limited" && keyLimited.text.contains("API key"))
            // The second key has its own budget, but the organization's (6) is shared by both.
            #expect(try await client.get("/api/v1/me", auth: .apiKey(second)).status == 200)
            #expect(try await client.get("/api/v1/me", auth: .apiKey(second)).status == 200)
            let orgLimited = try await client.get("/api/v1/me", auth: .apiKey(second))
            #expect(orgLimited.status == 429 && orgLimited.text.contains("organization"))
            // Another organization is not affected.
            let other = try await client.createAccount(app, email: "other@example.com")
            let otherAuth = try await client.login(other)
            let otherKey = try await client.createAPIKey(otherAuth, orgID: other.orgID, scope: "read")
            #expect(try await client.get("/api/v1/me", auth: .apiKey(otherKey)).status == 200)
            app.clock.advance(by: 2)
            #expect(try await client.get("/api/v1/me", auth: .apiKey(first)).status == 200)
        }
    }

    @Test("a flood on one public webhook is refused before it becomes executions", arguments: Backend.allCases)
    func webhookRateLimits(_ backend: Backend) async throws {
        let app = try await TestApp.make(
            backend,
            configure: {
                $0.edge.webhookPerSecond = 1
                $0.edge.webhookBurst = 5
                $0.edge.webhookAddressPerSecond = 1
                $0.edge.webhookAddressBurst = 10
            })
        try await app.test(worker: false) { client in
            let (auth, project, _) = try await setUp(client, app)
            let id = try await activate(client, auth, project, hook("public", ["respond": "immediately"]))
            _ = try await activate(client, auth, project, hook("other", ["respond": "immediately"]))
            let statuses = try await (0..<8).asyncMap { _ in try await client.post("/webhook/public", ["a": 1]).status }
            #expect(statuses.filter { $0 == 200 || $0 == 202 }.count == 5, "\(statuses)")
            #expect(statuses.suffix(3).allSatisfy { $0 == 429 }, "\(statuses)")
            let listed = try await client.get("/api/v1/projects/\(project)/executions?workflowId=\(id)", auth: auth)
            #expect((listed.json["items"] as? [Any])?.count == 5)
            // The path is spent; another webhook is not, until the address's own budget (10, 8 spent) is.
            #expect(try await client.post("/webhook/other", ["a": 1]).status < 300)
            #expect(try await client.post("/webhook/other", ["a": 1]).status < 300)
            let byAddress = try await client.post("/webhook/other", ["a": 1])
            #expect(byAddress.status == 429)
            #expect(byAddress.header("Retry-After") != nil)
            // Unknown paths cost the address too: probing for webhooks is a flood like any other.
            #expect(try await client.post("/webhook/nope", ["a": 1]).status == 429)
        }
    }

    // MARK: Finding 8: the lockout does not tell whether an account exists

    @Test("an unknown address locks after as many failures as an account, with the same answer", arguments: Backend.allCases)
    func unknownAddressLocks(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend) { $0.app.ipFailureLimit = 1000 }
        try await app.test(worker: false) { client in
            let owner = try await client.setupOwner(app)
            func attempts(_ email: String) async throws -> [APIResponse] {
                try await (1...11).asyncMap { _ in
                    try await client.post("/api/v1/auth/login", ["email": email, "password": "Wrong-Passw0rd"])
                }
            }
            let known = try await attempts(owner.email)
            let unknown = try await attempts("nobody@example.com")
            #expect(known.map(\.status) == unknown.map(\.status))
            #expect(unknown.map(\.status) == Array(repeating: 401, count: 9) + [423, 423])
            #expect(known.last?.text == unknown.last?.text)
            #expect(known.last?.header("Retry-After") == unknown.last?.header("Retry-After"))
            // Case and spaces do not make a new address.
            #expect(try await client.post("/api/v1/auth/login", ["email": " NoBody@Example.com", "password": "x"]).status == 423)
            app.clock.advance(by: 30 * 60 + 1)
            #expect(try await client.post("/api/v1/auth/login", ["email": "nobody@example.com", "password": "x"]).status == 401)
            #expect(try await client.post("/api/v1/auth/login", ["email": owner.email, "password": owner.password]).status == 200)
        }
    }

    // MARK: The request guard

    @Test(
        "encoded traversal, control characters and bad encodings in a path are refused",
        arguments: [
            "/webhook/%2e%2e/api", "/webhook/%2E%2E/x", "/api/v1/%2fetc", "/webhook/a%5cb", "/webhook/a%00b", "/webhook/%c0%ae%c0%ae/x",
            "/webhook/%e0%80%ae", "/webhook/a%zz", "/webhook/a%4", "/webhook/../api/v1/me", "/webhook/./x", "/webhook/a\\b", "/webhook/%ff",
            "//api/v1/me", "//webhook/x", "/api//v1/me", "/webhook//x",
        ])
    func pathRefused(_ path: String) {
        #expect(RequestGuardMiddleware.pathProblem(path) != nil, "\(path)")
    }

    @Test(
        "ordinary paths pass the guard",
        arguments: [
            "/", "/webhook/orders/new", "/webhook/orders/new/", "/webhook/caf%C3%A9", "/webhook/a%20b", "/webhook/v1.2/x", "/webhook/...x",
        ])
    func pathAccepted(_ path: String) {
        #expect(RequestGuardMiddleware.pathProblem(path) == nil, "\(path)")
    }

    @Test("the guard answers typed refusals before any handler runs", arguments: Backend.allCases)
    func guardAnswers(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test(worker: false) { client in
            // The router would serve `//api/…` as `/api/…`, past every check that goes by the prefix.
            let doubled = try await client.get("//api/v1/me")
            #expect(doubled.status == 400 && doubled.errorCode == "invalid_path")
            let traversal = try await client.get("/webhook/%2e%2e/api/v1/me")
            #expect(traversal.status == 400 && traversal.errorCode == "invalid_path")
            #expect(try await client.post("/webhook/a%2fb", ["a": 1]).errorCode == "invalid_path")
            let method = try await client.request(HTTPRequest.Method("PROPFIND")!, "/api/v1/me")
            #expect(method.status == 405 && method.errorCode == "method_not_allowed")
            let long = try await client.get("/api/v1/me?q=" + String(repeating: "a", count: 9 * 1024))
            #expect(long.status == 414 && long.errorCode == "uri_too_long")
            var big: [String: String] = [:]
            for i in 0..<40 { big["X-Pad-\(i)"] = String(repeating: "p", count: 1000) }
            let headers = try await client.get("/api/v1/me", headers: big)
            #expect(headers.status == 431 && headers.errorCode == "headers_too_large")
            #expect(headers.header("X-Content-Type-Options") == "nosniff")
        }
    }

    // MARK: Finding 12: redaction covers encoded forms of a secret

    @Test("a secret is redacted percent-encoded, JSON-escaped and in base64")
    func redactionEncodings() {
        let secret = #"s3cr+t/"quote"\back slash=="#
        let redactor = Redactor()
        redactor.register([secret])
        let percent = secret.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let lowerPercent = percent.lowercased() // the secret has no capitals: only the escapes change
        let escaped = String(
            String(decoding: try! JSONSerialization.data(withJSONObject: [secret], options: [.withoutEscapingSlashes]), as: UTF8.self)
                .dropFirst(2).dropLast(2))
        let base64 = Data(secret.utf8).base64EncodedString()
        let urlSafe = base64.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
            of: "=", with: "")
        let prefixed = Data(("Basic user:" + secret).utf8).base64EncodedString()
        // Text encodings are replaced whole.
        for (form, text) in [("plain", secret), ("percent", percent), ("lower percent", lowerPercent), ("JSON", escaped)] {
            #expect(redactor.redact("before \(text) after") == "before [redacted] after", "\(form)")
        }
        // Base64 is replaced but for the character at either end that mixes in bits of what is
        // around the secret, and the padding (and here, the encoded "Basic user:" before it).
        for (form, text) in [("base64", base64), ("base64url", urlSafe), ("base64 inside", prefixed)] {
            let redacted = redactor.redact("before \(text) after")
            let kept = redacted.replacingOccurrences(of: "before ", with: "").replacingOccurrences(of: " after", with: "")
                .replacingOccurrences(of: "[redacted]", with: "")
            #expect(redacted.contains("[redacted]"), "\(form): \(redacted)")
            #expect(kept.count <= (form == "base64 inside" ? 20 : 4), "\(form): \(redacted)")
        }
        #expect(redactor.redact("nothing secret here") == "nothing secret here")
    }
}

@Suite struct AddressKeyTests {
    @Test(
        "IPv4 as it is, IPv4-mapped as IPv4, IPv6 by its /64",
        arguments: [
            ("192.0.2.7", "192.0.2.7"), ("::ffff:192.0.2.7", "192.0.2.7"), ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2::9", "2001:db8:1:2::/64"), ("2001:DB8:1:2:ffff::1", "2001:db8:1:2::/64"), ("::1", "0:0:0:0::/64"),
            ("unknown", "unknown"),
        ])
    func keys(_ address: String, _ key: String) {
        #expect(AddressKey.of(address) == key)
    }
}

extension Range where Bound == Int {
    func asyncMap<T>(_ transform: (Int) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for index in self { results.append(try await transform(index)) }
        return results
    }
}

extension ClosedRange where Bound == Int {
    func asyncMap<T>(_ transform: (Int) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for index in self { results.append(try await transform(index)) }
        return results
    }
}
