import Crypto
import FlowStackCore
import FlowStackCrypto
import FlowStackEngine
import FlowStackNetwork
import FlowStackNodes
import FlowStackRuntime
import FlowStackSandbox
import FlowStackStore
import FlowStackTesting
import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

/// A small OAuth2 provider and API on loopback: authorization code with PKCE, refresh tokens,
/// client credentials, and a protected `/api`. Tests revoke tokens through `state`.
final class LocalProvider: Sendable {
    struct State {
        var codes: [String: (challenge: String, redirect: String)] = [:]
        var accessTokens: Set<String> = []
        var refreshTokens: Set<String> = []
        var expiresIn = 3600
        var tokenRequests: [String] = []
        /// What `/echo` saw last: headers and query.
        var lastEcho: [String: String] = [:]
    }
    let state = Mutex(State())
    static let clientID = "flowstack-test"
    static let clientSecret = "provider-client-secret-" + String(repeating: "s", count: 8)

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("authorize") { request, _ -> Response in
            let query = request.uri.queryParameters
            guard query["client_id"].map(String.init) == Self.clientID, query["response_type"] == "code",
                query["code_challenge_method"] == "S256", let challenge = query["code_challenge"].map(String.init),
                let redirect = query["redirect_uri"].map(String.init), let state = query["state"].map(String.init)
            else {
                return Response(status: .badRequest)
            }
            let code = "code-" + UUID().uuidString
            self.state.withLock { $0.codes[code] = (challenge, redirect) }
            var components = URLComponents(string: redirect)!
            components.queryItems = [URLQueryItem(name: "code", value: code), URLQueryItem(name: "state", value: state)]
            return Response(status: .found, headers: [.location: components.url!.absoluteString])
        }
        router.post("token") { request, context -> Response in
            let body = try await request.body.collect(upTo: 65536)
            var form: [String: String] = [:]
            for pair in String(buffer: body).split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? "" }
                if parts.count == 2 { form[parts[0]] = parts[1] }
            }
            let basic = "Basic " + Data("\(Self.clientID):\(Self.clientSecret)".utf8).base64EncodedString()
            let authenticated = request.headers[.authorization] == basic
            func issue(_ state: inout State, refresh: Bool) -> Response {
                let access = "access-" + UUID().uuidString
                state.accessTokens.insert(access)
                var answer: [String: Any] = ["access_token": access, "token_type": "Bearer", "expires_in": state.expiresIn]
                if refresh {
                    let token = "refresh-" + UUID().uuidString
                    state.refreshTokens.insert(token)
                    answer["refresh_token"] = token
                }
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: answer))))
            }
            func refuse(_ error: String) -> Response {
                Response(
                    status: .badRequest, headers: [.contentType: "application/json"],
                    body: .init(
                        byteBuffer: ByteBuffer(string: #"{"error":"\#(error)","error_description":"echo \#(form["refresh_token"] ?? "")"}"#)
                    ))
            }
            return self.state.withLock { state in
                state.tokenRequests.append(form["grant_type"] ?? "")
                guard authenticated else { return refuse("invalid_client") }
                switch form["grant_type"] {
                case "authorization_code":
                    guard let code = form["code"], let pending = state.codes.removeValue(forKey: code),
                        let verifier = form["code_verifier"],
                        pending.redirect == form["redirect_uri"]
                    else { return refuse("invalid_grant") }
                    let computed = Data(SHA256.hash(data: Data(verifier.utf8))).base64EncodedString()
                        .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
                            of: "=", with: "")
                    guard computed == pending.challenge else { return refuse("invalid_grant") }
                    return issue(&state, refresh: true)
                case "refresh_token":
                    guard let token = form["refresh_token"], state.refreshTokens.remove(token) != nil else {
                        return refuse("invalid_grant")
                    }
                    return issue(&state, refresh: true)
                case "client_credentials":
                    return issue(&state, refresh: false)
                default:
                    return refuse("unsupported_grant_type")
                }
            }
        }
        router.get("api") { request, _ -> Response in
            let token = request.headers[.authorization].map { String($0.dropFirst("Bearer ".count)) } ?? ""
            let valid = self.state.withLock { $0.accessTokens.contains(token) }
            return Response(
                status: valid ? .ok : .unauthorized, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: valid ? #"{"ok":true}"# : #"{"ok":false}"#)))
        }
        // Fails with the credential in its answer: the node's error message must not keep it.
        router.get("fail-echo") { request, _ -> Response in
            Response(
                status: .internalServerError,
                body: .init(byteBuffer: ByteBuffer(string: "denied for \(request.headers[.authorization] ?? "")")))
        }
        // Echoes what it received, credential included: redaction must take it out again.
        router.get("echo") { request, _ -> Response in
            var seen: [String: String] = [:]
            for field in request.headers { seen[field.name.canonicalName.lowercased()] = field.value }
            seen["query"] = request.uri.query ?? ""
            self.state.withLock { $0.lastEcho = seen }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: seen))))
        }
        return router
    }

    /// Runs `body` with the provider listening on a loopback port.
    func run(_ body: @Sendable @escaping (Int) async throws -> Void) async throws {
        let app = Application(router: router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in try await body(try #require(client.port)) }
    }
}

func loopbackFetcher() throws -> GuardedHTTPClient {
    GuardedHTTPClient(policy: try AddressPolicy(allow: ["127.0.0.1/32"]))
}

func httpWorkflow(url: String, connection: String) -> [String: Any] {
    [
        "name": "Call",
        "nodes": [
            ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
            [
                "name": "Call", "type": "flowstack.httpRequest", "typeVersion": 1,
                "parameters": ["url": url, "connection": connection],
            ],
        ],
        "edges": [["from": "Manual", "to": "Call"]],
    ]
}

/// Connections (issue 4): write-only secrets sealed with their own key, applied by the platform,
/// redacted from everything an execution keeps (SECURITY-TESTS 13, 15, 30).
@Suite struct ConnectionTests {
    @Test("CRUD: secrets are write-only, shown as hints; sealed at rest; audited without values", arguments: Backend.allCases)
    func crud(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        let marker = "CONN-MARKER-\(UUID().uuidString)"
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let base = "/api/v1/projects/\(project)/connections"
            let created = try await client.post(base, ["name": "crm", "type": "bearer", "data": ["token": marker]], auth: auth)
            #expect(created.status == 201, "\(created.text)")
            #expect(!created.text.contains(marker))
            let id = try #require(created.json["id"] as? String)
            #expect((created.json["secrets"] as? [String: Any])?["token"] as? [String: Any] != nil)
            #expect(
                ((created.json["secrets"] as? [String: Any])?["token"] as? [String: Any])?["last4"] as? String == String(marker.suffix(4)))
            #expect(created.json["status"] as? String == "untested")
            // Bad input: typed errors, nothing stored.
            #expect(try await client.post(base, ["name": "crm", "type": "bearer", "data": ["token": "x"]], auth: auth).status == 409)
            #expect(try await client.post(base, ["name": "n", "type": "nope", "data": [:]], auth: auth).status == 422)
            #expect(try await client.post(base, ["name": "n", "type": "bearer", "data": [:]], auth: auth).status == 422)
            #expect(
                try await client.post(base, ["name": "n", "type": "bearer", "data": ["token": "t", "extra": "x"]], auth: auth).status == 422
            )
            #expect(try await client.post(base, ["name": "n", "type": "basic", "data": ["username": "u"]], auth: auth).status == 422)
            #expect(
                try await client.post(base, ["name": "n", "type": "apiKey", "data": ["key": "k", "in": "cookie"]], auth: auth).status == 422
            )
            #expect(try await client.post(base, ["name": "n", "type": "headers", "data": ["bad header": "v"]], auth: auth).status == 422)
            // Control characters (a pasted trailing newline) never reach a header, or an error quoting it.
            #expect(try await client.post(base, ["name": "n", "type": "bearer", "data": ["token": "abc\n"]], auth: auth).status == 422)
            #expect(
                try await client.post(base, ["name": "n", "type": "apiKey", "data": ["key": "k", "name": "X Key"]], auth: auth).status
                    == 422)
            #expect(
                try await client.post(
                    base,
                    [
                        "name": "n", "type": "oauth2",
                        "data": [
                            "grantType": "clientCredentials", "tokenUrl": "http://auth.example.com/t",
                            "clientId": "c", "clientSecret": "s",
                        ],
                    ], auth: auth
                ).status == 422)
            #expect(
                try await client.post(
                    base,
                    [
                        "name": "n", "type": "oauth2",
                        "data": [
                            "grantType": "authorizationCode", "tokenUrl": "ftp://x",
                            "clientId": "c",
                        ],
                    ], auth: auth
                ).status == 422)
            #expect(
                try await client.post(
                    base,
                    [
                        "name": "n", "type": "oauth2",
                        "data": [
                            "grantType": "clientCredentials", "tokenUrl": "https://x.test/t",
                            "clientId": "c", "accessToken": "a",
                        ],
                    ], auth: auth
                ).status == 422)
            let list = try await client.get(base, auth: auth)
            #expect((list.json["items"] as? [Any])?.count == 1)
            #expect(!list.text.contains(marker))
            // PATCH: a new secret replaces the old; omitted secrets are kept.
            // A rename leaves the state alone, even one written after the editor's copy was read
            // (a test or token refresh racing the PATCH); new data makes it untested again.
            let stale = try #require(try await app.store.connection(id: id))
            try await app.store.setConnectionStatus(id: id, status: "error", message: "refresh failed", tested: true)
            let store = app.store
            let renamedStale = try await store.write { db in try await store.updateConnection(stale, resetStatus: false, on: db) }
            #expect(renamedStale)
            let afterStale = try #require(try await app.store.connection(id: id))
            #expect(afterStale.status == "error" && afterStale.statusMessage == "refresh failed" && afterStale.lastTestedAt != nil)
            let renamed = try await client.request(.patch, "/api/v1/connections/\(id)", json: ["name": "crm2"], auth: auth)
            #expect(renamed.json["name"] as? String == "crm2")
            #expect(renamed.json["status"] as? String == "error")
            let rotated = try await client.request(
                .patch, "/api/v1/connections/\(id)", json: ["data": ["token": marker + "-v2"]], auth: auth)
            #expect(rotated.status == 200)
            #expect(rotated.json["status"] as? String == "untested")
            #expect(!rotated.text.contains(marker))
            let stored = try #require(try await app.store.connection(id: id))
            #expect(stored.data.secrets["token"] == marker + "-v2")
            // Sealed at rest: the marker is nowhere in the database's bytes (file and WAL, or a dump).
            #expect(!(try app.database.rawBytes().contains(marker: marker)))
            // The audit trail names the connection, never the value.
            let events = try await app.store.read { db in
                try await db.raw("SELECT action, resource_id FROM audit_events WHERE action LIKE 'connection.%'").all()
            }
            #expect(events.count == 3)
            let audited = try await app.store.auditEvents(
                orgID: try await orgID(app, project), filter: Store.AuditFilter(), cursor: nil, limit: 100)
            #expect(audited.items.contains { $0.action == "connection.created" })
            #expect(!String(describing: audited.items.map(\.details)).contains(marker))
            #expect(try await client.request(.delete, "/api/v1/connections/\(id)", auth: auth).status == 204)
            #expect(try await client.get("/api/v1/connections/\(id)", auth: auth).status == 404)
        }
    }

    @Test("a connection is only visible and usable in its own project", arguments: Backend.allCases)
    func projectBoundary(_ backend: Backend) async throws {
        let provider = LocalProvider()
        try await provider.run { port in
            let app = try await TestApp.make(backend, configure: { _ in }, fetcher: try loopbackFetcher())
            try await app.test { client in
                let (auth, project, owner) = try await setUp(client, app)
                let other = try await client.createProject(auth, orgID: owner.orgID, name: "Other")
                let id =
                    try await client.post(
                        "/api/v1/projects/\(project)/connections",
                        ["name": "crm", "type": "bearer", "data": ["token": "tok-\(UUID())"]], auth: auth
                    ).json["id"] as! String
                // A workflow in another project that names the connection (by id or name) cannot use it.
                for reference in [id, "crm"] {
                    let wf =
                        try await client.post(
                            "/api/v1/projects/\(other)/workflows",
                            httpWorkflow(url: "http://127.0.0.1:\(port)/echo", connection: reference),
                            auth: auth
                        ).json["id"] as! String
                    let run = try await client.post("/api/v1/workflows/\(wf)/run?wait=true", nil, auth: auth)
                    #expect(run.json["status"] as? String == "failed")
                    #expect((run.json["error"] as? String ?? "").contains("No connection"))
                }
                #expect(provider.state.withLock { $0.lastEcho.isEmpty })
                // Another organization's member cannot see it at all.
                let stranger = try await client.createAccount(app, email: "stranger@example.com")
                let strangerAuth = try await client.login(stranger)
                #expect(try await client.get("/api/v1/connections/\(id)", auth: strangerAuth).status == 404)
                #expect(
                    try await client.request(.patch, "/api/v1/connections/\(id)", json: ["name": "x"], auth: strangerAuth).status == 404)
            }
        }
    }

    @Test("the HTTP Request node applies each kind of credential; an echoed secret is stored as [redacted]", arguments: Backend.allCases)
    func applyAndRedact(_ backend: Backend) async throws {
        let provider = LocalProvider()
        try await provider.run { port in
            let app = try await TestApp.make(backend, fetcher: try loopbackFetcher())
            try await app.test { client in
                let (auth, project, _) = try await setUp(client, app)
                let secret = "SECRET-\(UUID().uuidString)"
                let kinds: [(String, [String: Any], (([String: String]) -> Bool))] = [
                    ("bearer", ["token": secret], { $0["authorization"] == "Bearer \(secret)" }),
                    ("apiKey", ["key": secret, "name": "X-Key"], { $0["x-key"] == secret }),
                    ("apiKey", ["key": secret, "name": "api_key", "in": "query"], { $0["query"] == "api_key=\(secret)" }),
                    (
                        "basic", ["username": "ann", "password": secret],
                        { $0["authorization"] == "Basic " + Data("ann:\(secret)".utf8).base64EncodedString() }
                    ),
                    (
                        "headers", ["X-One": secret, "X-Two": "second-\(secret)"],
                        { $0["x-one"] == secret && $0["x-two"] == "second-\(secret)" }
                    ),
                ]
                for (index, (kind, data, check)) in kinds.enumerated() {
                    let name = "c\(index)"
                    let made = try await client.post(
                        "/api/v1/projects/\(project)/connections", ["name": name, "type": kind, "data": data], auth: auth)
                    #expect(made.status == 201, "\(made.text)")
                    let wf =
                        try await client.post(
                            "/api/v1/projects/\(project)/workflows",
                            httpWorkflow(url: "http://127.0.0.1:\(port)/echo", connection: name), auth: auth
                        ).json["id"] as! String
                    let run = try await client.post("/api/v1/workflows/\(wf)/run?wait=true", nil, auth: auth)
                    #expect(run.json["status"] as? String == "succeeded", "\(kind): \(run.text)")
                    #expect(check(provider.state.withLock { $0.lastEcho }), "\(kind)")
                    // The server echoed the credential back; the output and the stored execution hold [redacted].
                    #expect(!run.text.contains(secret), "\(kind)")
                    #expect(run.text.contains("[redacted]"), "\(kind)")
                    let execution = try await client.get("/api/v1/executions/\(run.json["id"] as! String)", auth: auth)
                    #expect(!execution.text.contains(secret), "\(kind)")
                }
                #expect(!(try app.database.rawBytes().contains(marker: secret)))
            }
        }
    }

    @Test("a secret in a node's error message is redacted too", arguments: [Backend.sqlite])
    func redactedErrors(_ backend: Backend) async throws {
        let provider = LocalProvider()
        try await provider.run { port in
            let app = try await TestApp.make(backend, fetcher: try loopbackFetcher())
            try await app.test { client in
                let (auth, project, _) = try await setUp(client, app)
                let secret = "ERR-\(UUID().uuidString)"
                _ = try await client.post(
                    "/api/v1/projects/\(project)/connections", ["name": "k", "type": "bearer", "data": ["token": secret]], auth: auth)
                let workflow = httpWorkflow(url: "http://127.0.0.1:\(port)/fail-echo", connection: "k")
                let wf = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth)
                #expect(wf.status == 201, "\(wf.text)")
                let run = try await client.post("/api/v1/workflows/\(wf.json["id"] as! String)/run?wait=true", nil, auth: auth)
                #expect(run.json["status"] as? String == "failed")
                #expect((run.json["error"] as? String ?? "").contains("Bearer [redacted]"), "\(run.text)")
                #expect(!run.text.contains(secret))
                let execution = try await client.get("/api/v1/executions/\(run.json["id"] as! String)", auth: auth)
                #expect(!execution.text.contains(secret))
            }
        }
    }

    @Test("a Code node's $http.request is signed outside the sandbox; nothing inside it holds the secret", arguments: Backend.allCases)
    func codeBroker(_ backend: Backend) async throws {
        let provider = LocalProvider()
        try await provider.run { port in
            let pool = SandboxPool(executable: sandboxExecutable)
            let app = try await TestApp.make(backend, codeRunner: pool, fetcher: try loopbackFetcher())
            try await app.test { client in
                let (auth, project, _) = try await setUp(client, app)
                let secret = "BROKER-\(UUID().uuidString)"
                _ = try await client.post(
                    "/api/v1/projects/\(project)/connections", ["name": "crm", "type": "bearer", "data": ["token": secret]], auth: auth)
                let code = """
                    const response = await $http.request({connection: "crm", url: "http://127.0.0.1:\(port)/echo", method: "GET"});
                    const seen = {};
                    for (const name of Object.getOwnPropertyNames(globalThis)) {
                      try { seen[name] = JSON.stringify(globalThis[name]); } catch (e) { seen[name] = String(e); }
                    }
                    seen.items = JSON.stringify(items);
                    seen.$env = JSON.stringify($env);
                    seen.response = JSON.stringify(response);
                    seen.http = String($http.request);
                    console.log(JSON.stringify(response));
                    return [{json: {status: response.status, auth: response.json.authorization, everything: JSON.stringify(seen)}}];
                    """
                let workflow: [String: Any] = [
                    "name": "Broker",
                    "nodes": [
                        ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                        ["name": "Code", "type": "flowstack.code", "typeVersion": 1, "parameters": ["code": code]],
                    ],
                    "edges": [["from": "Manual", "to": "Code"]],
                ]
                let wf = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as! String
                let run = try await client.post("/api/v1/workflows/\(wf)/run?wait=true", nil, auth: auth)
                #expect(run.json["status"] as? String == "succeeded", "\(run.text)")
                // The remote server got the credential…
                #expect(provider.state.withLock { $0.lastEcho["authorization"] } == "Bearer \(secret)")
                // …while everything the code could see, return or log holds none of it.
                let output = try #require((run.json["output"] as? [[String: Any]])?.first)
                #expect(output["status"] as? Double == 200)
                #expect(output["auth"] as? String == "Bearer [redacted]")
                // What the code saw holds the echoed answer, redacted before it entered the sandbox.
                let everything = output["everything"] as? String ?? ""
                #expect(everything.contains("\\\"items\\\"") || everything.contains("\"items\""))
                #expect(everything.contains("Bearer [redacted]"))
                #expect(!run.text.contains(secret))
                let execution = try await client.get("/api/v1/executions/\(run.json["id"] as! String)", auth: auth)
                #expect(!execution.text.contains(secret))
                #expect(!(try app.database.rawBytes().contains(marker: secret)))
                // A connection of another project is not reachable from the sandbox either.
                let other = try await client.createProject(auth, orgID: try await orgID(app, project), name: "Other")
                let wf2 = try await client.post("/api/v1/projects/\(other)/workflows", workflow, auth: auth).json["id"] as! String
                let denied = try await client.post("/api/v1/workflows/\(wf2)/run?wait=true", nil, auth: auth)
                #expect(denied.json["status"] as? String == "failed")
                #expect((denied.json["error"] as? String ?? "").contains("No connection 'crm'"))
            }
            await pool.shutdown()
        }
    }

    @Test(
        "allowedHosts keeps a credential to its hosts; a secrets connection fills $secret(name) outside the sandbox, never forged text",
        arguments: [Backend.sqlite])
    func hostsAndPlaceholders(_ backend: Backend) async throws {
        let provider = LocalProvider()
        try await provider.run { port in
            let pool = SandboxPool(executable: sandboxExecutable)
            let app = try await TestApp.make(backend, codeRunner: pool, fetcher: try loopbackFetcher())
            try await app.test { client in
                let (auth, project, _) = try await setUp(client, app)
                let secret = "PLACEHOLDER-\(UUID().uuidString)"
                let pinned = try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "pinned", "type": "bearer", "data": ["token": secret], "allowedHosts": ["api.example.com"]],
                    auth: auth)
                #expect(pinned.json["allowedHosts"] as? [String] == ["api.example.com"])
                #expect(
                    try await client.post(
                        "/api/v1/projects/\(project)/connections",
                        ["name": "bad", "type": "bearer", "data": ["token": "x"], "allowedHosts": ["not a host"]], auth: auth
                    ).status == 422)
                // Widening the hosts needs the secret entered again (an editor cannot redirect the stored one).
                let pinnedID = pinned.json["id"] as! String
                let widen = try await client.request(
                    .patch, "/api/v1/connections/\(pinnedID)", json: ["allowedHosts": ["evil.example.net"]], auth: auth)
                #expect(widen.status == 422)
                #expect(widen.errorField == "allowedHosts")
                #expect(
                    try await client.request(.patch, "/api/v1/connections/\(pinnedID)", json: ["allowedHosts": []], auth: auth).status
                        == 422)
                #expect(
                    try await client.request(
                        .patch, "/api/v1/connections/\(pinnedID)", json: ["allowedHosts": ["api.example.com"], "name": "pinned"],
                        auth: auth
                    ).status == 200)
                #expect(
                    try await client.request(
                        .patch, "/api/v1/connections/\(pinnedID)",
                        json: ["allowedHosts": ["api.example.com", "b.example.com"], "data": ["token": secret]], auth: auth
                    ).status == 200)
                let wf =
                    try await client.post(
                        "/api/v1/projects/\(project)/workflows", httpWorkflow(url: "http://127.0.0.1:\(port)/echo", connection: "pinned"),
                        auth: auth
                    ).json["id"] as! String
                let refused = try await client.post("/api/v1/workflows/\(wf)/run?wait=true", nil, auth: auth)
                #expect((refused.json["error"] as? String ?? "").contains("may only be sent to api.example.com, b.example.com"))
                #expect(provider.state.withLock { $0.lastEcho.isEmpty })

                _ = try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "vault", "type": "secrets", "data": ["apiToken": secret]], auth: auth)
                let code = """
                    const r = await $http.request({connection: "vault", url: "http://127.0.0.1:\(port)/echo", headers: {"X-Token": $secret("apiToken")}});
                    let missing = "";
                    try { await $http.request({connection: "vault", url: "http://127.0.0.1:\(port)/echo", headers: {"X-Token": $secret("nope")}}); }
                    catch (e) { missing = e.message; }
                    // Text from outside the run (here: a literal, as a webhook payload would be) is never filled.
                    const forged = await $http.request({connection: "vault", url: "http://127.0.0.1:\(port)/echo", headers: {"X-Token": "{{secret:apiToken}}"}});
                    return [{json: {seen: r.json["x-token"], missing, forged: forged.json["x-token"]}}];
                    """
                let workflow: [String: Any] = [
                    "name": "Vault",
                    "nodes": [
                        ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                        ["name": "Code", "type": "flowstack.code", "typeVersion": 1, "parameters": ["code": code]],
                    ],
                    "edges": [["from": "Manual", "to": "Code"]],
                ]
                let id = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as! String
                let run = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth)
                #expect(run.json["status"] as? String == "succeeded", "\(run.text)")
                let output = try #require((run.json["output"] as? [[String: Any]])?.first)
                #expect(output["seen"] as? String == "[redacted]")
                #expect((output["missing"] as? String ?? "").contains("has no secret 'nope'"))
                #expect(output["forged"] as? String == "{{secret:apiToken}}")
                #expect(!run.text.contains(secret))
            }
            await pool.shutdown()
        }
    }

    @Test(
        "OAuth2: authorization code with PKCE, refresh before expiry and on 401, a revoked refresh token surfaced",
        arguments: Backend.allCases)
    func oauth2(_ backend: Backend) async throws {
        let provider = LocalProvider()
        try await provider.run { port in
            let fetcher = try loopbackFetcher()
            let app = try await TestApp.make(backend, configure: { $0.publicURL = "https://flowstack.test" }, fetcher: fetcher)
            try await app.test { client in
                let (auth, project, _) = try await setUp(client, app)
                let made = try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    [
                        "name": "provider", "type": "oauth2",
                        "data": [
                            "grantType": "authorizationCode", "authorizationUrl": "http://127.0.0.1:\(port)/authorize",
                            "tokenUrl": "http://127.0.0.1:\(port)/token", "clientId": LocalProvider.clientID,
                            "clientSecret": LocalProvider.clientSecret, "scope": "read write",
                        ],
                    ], auth: auth)
                #expect(made.status == 201, "\(made.text)")
                let id = try #require(made.json["id"] as? String)
                #expect(made.json["authorized"] as? Bool == false)
                // Not authorized yet: a run fails with a clear message.
                let wf =
                    try await client.post(
                        "/api/v1/projects/\(project)/workflows", httpWorkflow(url: "http://127.0.0.1:\(port)/api", connection: "provider"),
                        auth: auth
                    ).json["id"] as! String
                let early = try await client.post("/api/v1/workflows/\(wf)/run?wait=true", nil, auth: auth)
                #expect((early.json["error"] as? String ?? "").contains("not authorized"))
                // An API key is no browser session: the flow needs one.
                let start = try await client.get("/api/v1/connections/\(id)/oauth2/authorize", auth: auth)
                #expect(start.status == 302)
                let location = try #require(start.header("Location"))
                #expect(location.contains("code_challenge_method=S256") && location.contains("state="))
                #expect(!location.contains(LocalProvider.clientSecret))
                let binder = try #require(start.header("Set-Cookie")?.split(separator: ";").first.map(String.init))
                // The provider (a real HTTP server) consents and redirects back with a code.
                let consent = try await fetcher.fetch(OutboundRequest(method: "GET", url: location, followRedirects: false))
                let back = try #require(consent.headers.first { $0.0.lowercased() == "location" }?.1)
                #expect(back.hasPrefix("https://flowstack.test/oauth2/callback?"))
                let callbackPath = String(back.dropFirst("https://flowstack.test".count))
                // Without the browser's cookie the state does not work; with it, exactly once.
                #expect(try await client.get(callbackPath).status == 400)
                // The binder is a __Host- cookie: only this origin, over TLS, with Path=/ and no
                // Domain, can set it. The same value under a name anyone could plant is refused.
                let cookie = try #require(start.header("Set-Cookie"))
                #expect(binder.hasPrefix("__Host-flowstack_oauth2="))
                #expect(cookie.contains("; Path=/;") && cookie.contains("Secure") && !cookie.lowercased().contains("domain="))
                let tossed = "flowstack_oauth2=" + binder.dropFirst("__Host-flowstack_oauth2=".count)
                #expect(try await client.get(callbackPath, headers: ["Cookie": tossed]).status == 400)
                let done = try await client.get(callbackPath, headers: ["Cookie": binder])
                #expect(done.status == 200, "\(done.text)")
                #expect(try await client.get(callbackPath, headers: ["Cookie": binder]).status == 400)
                let connected = try await client.get("/api/v1/connections/\(id)", auth: auth)
                #expect(connected.json["authorized"] as? Bool == true)
                #expect(!connected.text.contains("access-") && !connected.text.contains("refresh-"))
                #expect(provider.state.withLock { $0.tokenRequests } == ["authorization_code"])

                let ok = try await client.post("/api/v1/workflows/\(wf)/run?wait=true", nil, auth: auth)
                #expect(ok.json["status"] as? String == "succeeded", "\(ok.text)")

                // Close to expiry: the broker refreshes first.
                app.clock.advance(by: 3600 - 30)
                let refreshed = try await client.post("/api/v1/workflows/\(wf)/run?wait=true", nil, auth: auth)
                #expect(refreshed.json["status"] as? String == "succeeded")
                #expect(provider.state.withLock { $0.tokenRequests } == ["authorization_code", "refresh_token"])

                // Renaming the connection keeps the tokens the refresh just stored.
                #expect(
                    try await client.request(.patch, "/api/v1/connections/\(id)", json: ["name": "provider2"], auth: auth).status == 200)
                let wf2 =
                    try await client.post(
                        "/api/v1/projects/\(project)/workflows", httpWorkflow(url: "http://127.0.0.1:\(port)/api", connection: "provider2"),
                        auth: auth
                    ).json["id"] as! String
                let renamed = try await client.post("/api/v1/workflows/\(wf2)/run?wait=true", nil, auth: auth)
                #expect(renamed.json["status"] as? String == "succeeded", "\(renamed.text)")
                #expect(provider.state.withLock { $0.tokenRequests.count } == 2)
                // The provider revokes access tokens early: a 401 triggers one refresh and a retry.
                provider.state.withLock { $0.accessTokens.removeAll() }
                let retried = try await client.post("/api/v1/workflows/\(wf2)/run?wait=true", nil, auth: auth)
                #expect(retried.json["status"] as? String == "succeeded", "\(retried.text)")
                #expect(provider.state.withLock { $0.tokenRequests.count } == 3)

                // Revoked refresh token: the run fails naming the refresh, the connection shows the error.
                provider.state.withLock {
                    $0.accessTokens.removeAll()
                    $0.refreshTokens.removeAll()
                }
                let failed = try await client.post("/api/v1/workflows/\(wf2)/run?wait=true", nil, auth: auth)
                #expect(failed.json["status"] as? String == "failed")
                #expect((failed.json["error"] as? String ?? "").contains("could not refresh its OAuth2 token"))
                #expect((failed.json["error"] as? String ?? "").contains("invalid_grant"))
                let broken = try await client.get("/api/v1/connections/\(id)", auth: auth)
                #expect(broken.json["status"] as? String == "error")
                #expect((broken.json["statusMessage"] as? String ?? "").contains("invalid_grant"))
                // No token ever reached the database in clear.
                let raw = try app.database.rawBytes()
                for token in provider.state.withLock({ Array($0.tokenRequests) }) where token.hasPrefix("access-") {
                    #expect(!raw.contains(marker: token))
                }
                #expect(!raw.contains(marker: LocalProvider.clientSecret))
            }
        }
    }

    @Test("an OAuth2 authorization started by an editor who has since lost access does not complete", arguments: [Backend.sqlite])
    func callbackAfterAccessLost(_ backend: Backend) async throws {
        let provider = LocalProvider()
        try await provider.run { port in
            let fetcher = try loopbackFetcher()
            let app = try await TestApp.make(backend, configure: { $0.publicURL = "https://flowstack.test" }, fetcher: fetcher)
            try await app.test { client in
                let (auth, project, owner) = try await setUp(client, app)
                let id =
                    try await client.post(
                        "/api/v1/projects/\(project)/connections",
                        [
                            "name": "provider", "type": "oauth2",
                            "data": [
                                "grantType": "authorizationCode", "authorizationUrl": "http://127.0.0.1:\(port)/authorize",
                                "tokenUrl": "http://127.0.0.1:\(port)/token", "clientId": LocalProvider.clientID,
                                "clientSecret": LocalProvider.clientSecret,
                            ],
                        ], auth: auth
                    ).json["id"] as! String
                let editor = try await client.createAccount(app, email: "editor@example.com")
                try await client.addMember(app, userID: editor.userID, orgID: owner.orgID, role: .member)
                #expect(
                    try await client.request(
                        .put, "/api/v1/projects/\(project)/members/\(editor.userID)", json: ["role": "editor"], auth: auth
                    ).status == 200)
                let editorAuth = try await client.login(editor)
                let start = try await client.get("/api/v1/connections/\(id)/oauth2/authorize", auth: editorAuth)
                #expect(start.status == 302, "\(start.text)")
                let binder = try #require(start.header("Set-Cookie")?.split(separator: ";").first.map(String.init))
                let consent = try await fetcher.fetch(
                    OutboundRequest(method: "GET", url: try #require(start.header("Location")), followRedirects: false))
                let back = try #require(consent.headers.first { $0.0.lowercased() == "location" }?.1)
                // Demoted to viewer meanwhile: the callback refuses, nothing is stored.
                #expect(
                    try await client.request(
                        .put, "/api/v1/projects/\(project)/members/\(editor.userID)", json: ["role": "viewer"], auth: auth
                    ).status == 200)
                let refused = try await client.get(String(back.dropFirst("https://flowstack.test".count)), headers: ["Cookie": binder])
                #expect(refused.status == 400)
                #expect(try await client.get("/api/v1/connections/\(id)", auth: auth).json["authorized"] as? Bool == false)
                #expect(provider.state.withLock { $0.tokenRequests }.isEmpty)
            }
        }
    }

    @Test("OAuth2 client credentials: tested through the token endpoint, used by the HTTP Request node", arguments: [Backend.sqlite])
    func clientCredentials(_ backend: Backend) async throws {
        let provider = LocalProvider()
        try await provider.run { port in
            let app = try await TestApp.make(backend, fetcher: try loopbackFetcher())
            try await app.test { client in
                let (auth, project, _) = try await setUp(client, app)
                let id =
                    try await client.post(
                        "/api/v1/projects/\(project)/connections",
                        [
                            "name": "machine", "type": "oauth2",
                            "data": [
                                "grantType": "clientCredentials", "tokenUrl": "http://127.0.0.1:\(port)/token",
                                "clientId": LocalProvider.clientID,
                                "clientSecret": LocalProvider.clientSecret,
                            ],
                        ], auth: auth
                    ).json["id"] as! String
                let tested = try await client.post("/api/v1/connections/\(id)/test", nil, auth: auth)
                #expect(tested.json["ok"] as? Bool == true, "\(tested.text)")
                #expect(try await client.get("/api/v1/connections/\(id)", auth: auth).json["lastTestedAt"] != nil)
                let wf =
                    try await client.post(
                        "/api/v1/projects/\(project)/workflows", httpWorkflow(url: "http://127.0.0.1:\(port)/api", connection: id),
                        auth: auth
                    ).json["id"] as! String
                let run = try await client.post("/api/v1/workflows/\(wf)/run?wait=true", nil, auth: auth)
                #expect(run.json["status"] as? String == "succeeded", "\(run.text)")
                // A wrong client secret: the test reports the provider's refusal, not the secret.
                _ = try await client.request(
                    .patch, "/api/v1/connections/\(id)", json: ["data": ["clientSecret": "wrong-secret-value-123"]], auth: auth)
                let refused = try await client.post("/api/v1/connections/\(id)/test", nil, auth: auth)
                #expect(refused.json["ok"] as? Bool == false)
                #expect((refused.json["message"] as? String ?? "").contains("invalid_client"))
                #expect(!refused.text.contains("wrong-secret-value-123"))
            }
        }
    }

    @Test(
        "a sealed secret moved to another connection, field or organization does not open (SECURITY-TESTS 15)", arguments: Backend.allCases)
    func movedCiphertext(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, owner) = try await setUp(client, app)
            let a =
                try await client.post(
                    "/api/v1/projects/\(project)/connections", ["name": "a", "type": "bearer", "data": ["token": "token-of-a-123456"]],
                    auth: auth
                )
                .json["id"] as! String
            let b =
                try await client.post(
                    "/api/v1/projects/\(project)/connections", ["name": "b", "type": "bearer", "data": ["token": "token-of-b-123456"]],
                    auth: auth
                )
                .json["id"] as! String
            let store = app.store
            // Move a's ciphertext into b.
            try await store.write { db in
                try await db.raw(
                    """
                    UPDATE connection_secrets SET sealed = (SELECT sealed FROM connection_secrets WHERE connection_id = \(bind: a) AND field = 'token')
                    WHERE connection_id = \(bind: b)
                    """
                ).run()
            }
            await #expect(throws: SealError.self) { _ = try await store.connection(id: b) }
            // SECURITY-TESTS 14: one flipped byte is a typed error, never plaintext or a crash.
            let c =
                try await client.post(
                    "/api/v1/projects/\(project)/connections", ["name": "c", "type": "bearer", "data": ["token": "token-of-c-123456"]],
                    auth: auth
                )
                .json["id"] as! String
            try await store.write { db in
                let row = try await db.raw("SELECT sealed FROM connection_secrets WHERE connection_id = \(bind: c)").first()
                var bytes = try row!.decode(column: "sealed", as: Data.self)
                bytes[bytes.count - 20] ^= 0x01
                try await db.raw("UPDATE connection_secrets SET sealed = \(bind: bytes) WHERE connection_id = \(bind: c)").run()
            }
            await #expect(throws: SealError(code: .authenticationFailed)) { _ = try await store.connection(id: c) }
            #expect(try await store.connection(id: a)?.data.secrets["token"] == "token-of-a-123456")
            // SECURITY-TESTS 17: no key material is stored in the database.
            for material in keyMaterial(store.sealer.keyring) { #expect(!(try app.database.rawBytes().contains(marker: material))) }
            #expect(try await client.get("/api/v1/connections/\(b)", auth: auth).status == 500)
            // The same ciphertext claimed by another organization does not open either.
            let other = try await client.createAccount(app, email: "other@example.com")
            try await store.write { db in
                try await db.raw("UPDATE connection_secrets SET org_id = \(bind: other.orgID) WHERE connection_id = \(bind: a)").run()
            }
            await #expect(throws: SealError.self) { _ = try await store.connection(id: a) }
            _ = owner
        }
    }
}

/// The organization of a project.
func orgID(_ app: TestApp, _ project: String) async throws -> String {
    try #require(try await app.store.project(id: project)).orgID
}
