import Crypto
import FlowStackCore
import FlowStackCrypto
import FlowStackEngine
import FlowStackNodes
import FlowStackStore
import Foundation
import HTTPTypes
import Hummingbird

/// Connections: credentials that workflows use by reference. Secrets are write-only: requests
/// may set them, no response, log, error or audit event ever contains them.
struct ConnectionController {
    let api: API

    struct CreateRequest: Decodable {
        var name: String
        var type: String
        var data: JSONValue?
        var testUrl: String?
        var allowedHosts: [String]?
    }

    struct UpdateRequest: Decodable {
        var name: String?
        var data: JSONValue?
        var testUrl: String?
        var allowedHosts: [String]?
    }

    struct TestRequest: Decodable {
        var url: String?
    }

    static let oauthCookie = "__Host-flowstack_oauth2"
    static let stateLifetime: TimeInterval = 600

    func addRoutes(to group: RouterGroup<FlowStackRequestContext>, root: Router<FlowStackRequestContext>) {
        group.get("projects/:projectId/connections", use: list)
        group.post("projects/:projectId/connections", use: create)
        group.get("connections/:connectionId", use: get)
        group.patch("connections/:connectionId", use: update)
        group.delete("connections/:connectionId", use: delete)
        group.post("connections/:connectionId/test", use: test)
        group.get("connections/:connectionId/oauth2/authorize", use: authorize)
        root.get("oauth2/callback", use: callback)
    }

    private func checkedName(_ name: String) throws -> String {
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.utf8.count <= 100, !trimmed.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw FlowStackError.validation("A name is 1 to 100 characters without control characters.", field: "name")
        }
        guard !Identifier.isValid(trimmed, prefix: "con") else {
            throw FlowStackError.validation("A name cannot look like a connection id.", field: "name")
        }
        return trimmed
    }

    private func checkedTestURL(_ url: String?) throws -> String? {
        guard let url, !url.isEmpty else { return nil }
        guard url.utf8.count <= 2048 else { throw FlowStackError.validation("testUrl is at most 2048 bytes.", field: "testUrl") }
        try ConnectionSchema.checkURL(url, field: "testUrl")
        return url
    }

    /// The connection and the caller's access to its project for `action`; 404 when the caller
    /// cannot see it.
    private func connection(_ context: FlowStackRequestContext, _ action: Action) async throws -> (Connection, Access.ProjectAccess) {
        let identity = try context.requireIdentity()
        let id = try context.parameters.id("connectionId", prefix: "con")
        guard let connection = try await api.store.connection(id: id) else { throw FlowStackError.notFound }
        let access = try await api.access.project(connection.projectID, action, identity)
        return (connection, access)
    }

    private func audit(_ action: String, _ connection: Connection, _ context: FlowStackRequestContext, details: [String: String] = [:],
                       outcome: String = "success") async throws {
        var details = details
        details["name"] = connection.name
        details["type"] = connection.kind.rawValue
        try await api.store.audit(AuditRecord(orgID: connection.orgID, action: action, resourceType: "connection", resourceID: connection.id,
                                              outcome: outcome, details: details), actor: context.auditActor)
    }

    @Sendable func list(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .workflowRead, identity)
        let connections = try await api.store.connections(projectID: access.project.id)
        return try JSON.response(.ok, ListDTO(items: connections.map(ConnectionDTO.init), nextCursor: nil))
    }

    @Sendable func create(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .workflowEdit, identity)
        let body = try await api.decode(CreateRequest.self, request, context)
        let name = try checkedName(body.name)
        guard let kind = ConnectionKind(rawValue: body.type) else {
            throw FlowStackError.validation("type must be one of \(ConnectionKind.allCases.map(\.rawValue).joined(separator: ", ")).", field: "type")
        }
        let data = try ConnectionSchema.validate(kind, data: body.data)
        let now = api.now
        var connection = Connection(id: Identifier.make("con"), orgID: access.project.orgID, projectID: access.project.id, name: name, kind: kind,
                                    data: data, testURL: try checkedTestURL(body.testUrl), status: "untested", statusMessage: nil,
                                    lastTestedAt: nil, tokenExpiresAt: nil, createdAt: now, updatedAt: now)
        connection.allowedHosts = try ConnectionSchema.checkHosts(body.allowedHosts ?? [])
        let actor = context.auditActor
        let created = try await api.store.write { [store = api.store, connection] db in
            guard try await store.insertConnection(connection, createdBy: identity.user.id, on: db) else { return false }
            // The audit trail names the connection and its type, never a value.
            try await store.appendAudit(AuditRecord(orgID: connection.orgID, action: "connection.created", resourceType: "connection",
                                                    resourceID: connection.id, details: ["name": name, "type": kind.rawValue]),
                                        actor: actor, on: db)
            return true
        }
        guard created else { throw FlowStackError.conflict("connection_exists", "The project already has a connection '\(name)'.", field: "name") }
        return try JSON.response(.created, ConnectionDTO(connection))
    }

    @Sendable func get(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (connection, _) = try await self.connection(context, .workflowRead)
        return try JSON.response(.ok, ConnectionDTO(connection))
    }

    @Sendable func update(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        var (connection, _) = try await self.connection(context, .workflowEdit)
        let body = try await api.decode(UpdateRequest.self, request, context)
        try requireSecretsForNewDestinations(connection, body)
        var clearTokens = false
        if let name = body.name { connection.name = try checkedName(name) }
        if let data = body.data {
            let before = connection.data
            connection.data = try ConnectionSchema.validate(connection.kind, data: data, existing: connection.data)
            if connection.kind == .oauth2, before.config != connection.data.config || before.secrets["clientSecret"] != connection.data.secrets["clientSecret"] {
                // Tokens belong to the client and endpoints they were issued for.
                connection.data.secrets["accessToken"] = nil
                connection.data.secrets["refreshToken"] = nil
                connection.tokenExpiresAt = nil
                clearTokens = true
            }
            connection.status = "untested"
            connection.statusMessage = nil
        }
        if let testUrl = body.testUrl { connection.testURL = try checkedTestURL(testUrl) }
        if let hosts = body.allowedHosts { connection.allowedHosts = try ConnectionSchema.checkHosts(hosts) }
        let updated = connection
        let actor = context.auditActor
        var changed = Array((body.data?.objectValue ?? [:]).keys).sorted()
        if body.allowedHosts != nil { changed.append("allowedHosts") }
        if body.testUrl != nil { changed.append("testUrl") }
        if body.name != nil { changed.append("name") }
        let changedFields = changed.joined(separator: ",")
        let clear = clearTokens
        let reset = body.data != nil
        let saved = try await api.store.write { [store = api.store] db in
            guard try await store.updateConnection(updated, resetStatus: reset, clearTokens: clear, on: db) else { return false }
            try await store.appendAudit(AuditRecord(orgID: updated.orgID, action: "connection.updated", resourceType: "connection",
                                                    resourceID: updated.id,
                                                    details: ["name": updated.name, "type": updated.kind.rawValue, "fields": changedFields]),
                                        actor: actor, on: db)
            return true
        }
        guard saved else { throw FlowStackError.conflict("connection_exists", "The project already has a connection '\(updated.name)'.", field: "name") }
        return try JSON.response(.ok, ConnectionDTO(try await api.store.connection(id: updated.id).unwrap()))
    }

    /// Write-only must hold against editors too: a change that lets the stored secrets reach a
    /// new place (wider `allowedHosts`, another OAuth2 endpoint) needs the secrets entered again,
    /// or an editor could send them to a server of their own.
    private func requireSecretsForNewDestinations(_ connection: Connection, _ body: UpdateRequest) throws {
        var widened: String?
        if let hosts = body.allowedHosts, !connection.allowedHosts.isEmpty {
            let given = Set(hosts.map { $0.lowercased() })
            if given.isEmpty || !given.isSubset(of: Set(connection.allowedHosts)) { widened = "allowedHosts" }
        }
        if connection.kind == .oauth2, let data = body.data?.objectValue {
            for field in ["tokenUrl", "authorizationUrl"] where data[field] != nil && data[field]?.stringValue != connection.data.config[field] {
                widened = "data.\(field)"
            }
        }
        guard let widened else { return }
        let managed = Set((ConnectionSchema.fields(connection.kind) ?? []).filter(\.managed).map(\.name))
        let given = Set((body.data?.objectValue ?? [:]).filter { $0.value != .null }.keys)
        let missing = connection.data.secrets.keys.filter { !managed.contains($0) && !given.contains($0) }.sorted()
        guard missing.isEmpty else {
            throw FlowStackError.validation(
                "Changing \(widened) lets the stored secrets go somewhere new: enter them again (data.\(missing.joined(separator: ", data."))).",
                field: widened)
        }
    }

    @Sendable func delete(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (connection, _) = try await self.connection(context, .workflowEdit)
        let actor = context.auditActor
        let deleted = try await api.store.write { [store = api.store] db in
            guard try await store.deleteConnection(id: connection.id, on: db) else { return false }
            try await store.appendAudit(AuditRecord(orgID: connection.orgID, action: "connection.deleted", resourceType: "connection",
                                                    resourceID: connection.id, details: ["name": connection.name, "type": connection.kind.rawValue]),
                                        actor: actor, on: db)
            return true
        }
        guard deleted else { throw FlowStackError.notFound }
        return JSON.empty()
    }

    struct TestResult: Encodable {
        var ok: Bool
        var status: Int?
        var message: String
    }

    /// Tries the credential: a GET of the test URL with it applied (or, for OAuth2 client
    /// credentials, a token request). The outcome is kept on the connection.
    @Sendable func test(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (connection, access) = try await self.connection(context, .workflowEdit)
        let body = try await api.decodeOptional(TestRequest.self, request, context, empty: TestRequest())
        let url = try checkedTestURL(body.url) ?? connection.testURL
        let broker = api.engine.connections
        var result: TestResult
        if connection.kind == .secrets {
            throw FlowStackError.validation("A secrets connection has nothing to test against.", field: "type")
        }
        if connection.kind == .oauth2, connection.data.config["grantType"] == "clientCredentials", url == nil {
            do {
                _ = try await broker.refresh(connection, caller: nil, rejected: connection.data.secrets["accessToken"])
                result = TestResult(ok: true, status: nil, message: "The provider issued a token.")
            } catch let error as NodeError {
                result = TestResult(ok: false, status: nil, message: error.message)
            }
        } else {
            guard let url else {
                throw FlowStackError.validation("Give a url to test against (or set the connection's testUrl).", field: "url")
            }
            var caller = ExpressionContext()
            caller.projectID = access.project.id
            caller.redactor = Redactor()
            do {
                let response = try await broker.fetch(OutboundRequest(method: "GET", url: url, timeout: 15, maxResponseBytes: 1 << 20),
                                                      connection: connection.id, caller: caller)
                let ok = response.status < 400
                result = TestResult(ok: ok, status: response.status,
                                    message: ok ? "The server accepted the request." : response.status == 401 || response.status == 403
                                        ? "The server refused the credential (\(response.status))." : "The server answered \(response.status).")
            } catch let error as NodeError {
                result = TestResult(ok: false, status: nil, message: caller.redactor?.redact(error.message) ?? error.message)
            }
        }
        try await api.store.setConnectionStatus(id: connection.id, status: result.ok ? "ok" : "error", message: result.ok ? nil : result.message,
                                                tested: true)
        try await audit("connection.tested", connection, context, outcome: result.ok ? "success" : "failure")
        return try JSON.response(.ok, result)
    }

    // MARK: OAuth2 authorization code with PKCE

    var redirectURI: String {
        let base = api.settings.publicURL ?? "https://\(api.settings.host):\(api.settings.port)"
        return base.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/oauth2/callback"
    }

    /// Starts the authorization: a one-time state bound to this user's session (and to this
    /// browser by a cookie), a PKCE verifier kept sealed on the server, and a redirect to the provider.
    @Sendable func authorize(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (connection, _) = try await self.connection(context, .workflowEdit)
        guard let identity = context.identity, case .session(let session, _) = identity.method else {
            throw FlowStackError(status: 403, code: "session_required", message: "Connecting an OAuth2 account needs a signed-in browser session.")
        }
        guard connection.kind == .oauth2, connection.data.config["grantType"] == "authorizationCode",
              let authorizationURL = connection.data.config["authorizationUrl"], var components = URLComponents(string: authorizationURL),
              let clientID = connection.data.config["clientId"] else {
            throw FlowStackError.badRequest("not_authorization_code", "Only OAuth2 connections with the authorization code grant are connected this way.")
        }
        let state = Token.make(prefix: "")
        let binder = Token.make(prefix: "")
        let verifier = Token.make(prefix: "") + Token.make(prefix: "")
        let challenge = Data(SHA256.hash(data: Data(verifier.utf8))).base64URLEncoded
        try await api.store.insertOAuth2State(stateHash: Token.hash(state + "." + binder), OAuth2State(
            connectionID: connection.id, orgID: connection.orgID, userID: identity.user.id, sessionID: session.id, verifier: verifier,
            redirectURI: redirectURI, expiresAt: api.now.addingTimeInterval(Self.stateLifetime)))
        var query = components.queryItems ?? []
        query += [URLQueryItem(name: "response_type", value: "code"), URLQueryItem(name: "client_id", value: clientID),
                  URLQueryItem(name: "redirect_uri", value: redirectURI), URLQueryItem(name: "state", value: state),
                  URLQueryItem(name: "code_challenge", value: challenge), URLQueryItem(name: "code_challenge_method", value: "S256")]
        if let scope = connection.data.config["scope"] { query.append(URLQueryItem(name: "scope", value: scope)) }
        components.queryItems = query
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        guard let location = components.url?.absoluteString else { throw FlowStackError.validation("authorizationUrl is not a valid URL.", field: "data.authorizationUrl") }
        try await audit("connection.oauth2.authorize", connection, context)
        var headers = HTTPFields()
        headers[.location] = location
        headers[.setCookie] = "\(Self.oauthCookie)=\(binder); Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=\(Int(Self.stateLifetime))"
        headers[.cacheControl] = "no-store"
        return Response(status: .found, headers: headers)
    }

    /// The provider's redirect back. The state works once, only in the browser that started it
    /// (its cookie), and only while the session that started it is alive.
    @Sendable func callback(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        guard let state = request.query("state"), !state.isEmpty, state.utf8.count <= 256,
              let binder = request.cookies[Self.oauthCookie]?.value, binder.utf8.count <= 256 else {
            throw FlowStackError.badRequest("invalid_oauth2_state", "This authorization is unknown, expired or was started in another browser.")
        }
        guard let pending = try await api.store.takeOAuth2State(stateHash: Token.hash(state + "." + binder)),
              pending.expiresAt > api.now,
              try await api.store.sessionIsLive(id: pending.sessionID, userID: pending.userID, idleTimeout: api.settings.sessionIdleTimeout),
              let connection = try await api.store.connection(id: pending.connectionID) else {
            throw FlowStackError.badRequest("invalid_oauth2_state", "This authorization is unknown, expired or was started in another browser.")
        }
        // The user who started it must still be allowed to edit the connection's project.
        let membership = try await api.store.access(orgID: connection.orgID, userID: pending.userID)
        let projectRole = try await api.store.projectRole(projectID: connection.projectID, userID: pending.userID)
        let allowed = AccessRequest(orgRole: membership?.role, projectRole: projectRole, credential: .session,
                                    plan: membership?.plan ?? .free, projectId: connection.projectID)
        guard Policy.decide(.workflowEdit, allowed).error == nil else {
            throw FlowStackError.badRequest("invalid_oauth2_state", "This authorization is unknown, expired or was started in another browser.")
        }
        let actor = AuditActor(kind: .user, id: pending.userID, ip: context.clientIP, userAgent: request.headers[.userAgent] ?? "")
        if let error = request.query("error") {
            let code = String(error.prefix(64).filter { $0.isLetter || $0 == "_" })
            try await api.store.setConnectionStatus(id: connection.id, status: "error", message: "The provider answered \(code).", tested: false)
            try await api.store.audit(AuditRecord(orgID: connection.orgID, action: "connection.oauth2.callback", resourceType: "connection",
                                                  resourceID: connection.id, outcome: "failure", details: ["error": code]), actor: actor)
            throw FlowStackError.badRequest("oauth2_denied", "The provider did not grant access (\(code)).")
        }
        guard let code = request.query("code"), !code.isEmpty, code.utf8.count <= 4096 else {
            throw FlowStackError.badRequest("invalid_oauth2_callback", "The provider's answer has no code.")
        }
        try await api.engine.connections.completeAuthorization(connection, code: code, verifier: pending.verifier, redirectURI: pending.redirectURI)
        try await api.store.audit(AuditRecord(orgID: connection.orgID, action: "connection.oauth2.callback", resourceType: "connection",
                                              resourceID: connection.id, details: ["name": connection.name]), actor: actor)
        var headers = HTTPFields()
        headers[.setCookie] = "\(Self.oauthCookie)=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
        return try JSON.response(.ok, ["connected": connection.id], headers: headers)
    }
}

struct ConnectionDTO: Encodable {
    struct SecretHint: Encodable {
        var set = true
        var last4: String
    }
    var id: String
    var projectId: String
    var name: String
    var type: String
    var data: [String: String]
    var secrets: [String: SecretHint]
    var testUrl: String?
    var allowedHosts: [String]
    var authorized: Bool?
    var status: String
    var statusMessage: String?
    var lastTestedAt: Date?
    var tokenExpiresAt: Date?
    var createdAt: Date
    var updatedAt: Date

    init(_ connection: Connection) {
        id = connection.id
        projectId = connection.projectID
        name = connection.name
        type = connection.kind.rawValue
        data = connection.data.config
        let managed = Set((ConnectionSchema.fields(connection.kind) ?? []).filter(\.managed).map(\.name))
        secrets = Dictionary(uniqueKeysWithValues: connection.data.secrets.filter { !managed.contains($0.key) }.map {
            ($0.key, SecretHint(last4: ConnectionSchema.hint($0.value)))
        })
        testUrl = connection.testURL
        allowedHosts = connection.allowedHosts
        authorized = connection.kind == .oauth2 ? connection.data.secrets["accessToken"] != nil : nil
        status = connection.status
        statusMessage = connection.statusMessage
        lastTestedAt = connection.lastTestedAt
        tokenExpiresAt = connection.tokenExpiresAt
        createdAt = connection.createdAt
        updatedAt = connection.updatedAt
    }
}

extension Data {
    var base64URLEncoded: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
