import Crypto
import FlowStackCore
import FlowStackCrypto
import FlowStackEngine
import FlowStackNetwork
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import Foundation

/// Connections: credentials that workflows use by reference. Secrets are write-only: requests
/// may set them, no answer, log, error or audit event ever contains them.
public struct Connections: Sendable {
    let app: UseCases
    var store: Store { app.store }

    public static let stateLifetime: TimeInterval = 600

    private func checkedName(_ name: String) throws -> String {
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.utf8.count <= 100, !trimmed.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
        else {
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

    /// The connection and the caller's access to its project for `action`; not found when the
    /// caller cannot see it.
    private func load(_ connectionID: String, _ action: Action, by caller: Caller) async throws -> (Connection, Access.ProjectAccess) {
        guard let connection = try await store.connection(id: connectionID) else { throw FlowStackError.notFound }
        let access = try await app.access.project(connection.projectID, action, caller.identity)
        return (connection, access)
    }

    private func audit(
        _ action: String, _ connection: Connection, actor: AuditActor, details: [String: String] = [:],
        outcome: String = "success"
    ) async throws {
        var details = details
        details["name"] = connection.name
        details["type"] = connection.kind.rawValue
        try await store.audit(
            AuditRecord(
                orgID: connection.orgID, action: action, resourceType: "connection", resourceID: connection.id,
                outcome: outcome, details: details), actor: actor)
    }

    public func list(projectID: String, by caller: Caller) async throws -> [Connection] {
        let project = try await app.access.project(projectID, .workflowRead, caller.identity).project
        return try await store.connections(projectID: project.id)
    }

    public func get(_ connectionID: String, by caller: Caller) async throws -> Connection {
        try await load(connectionID, .workflowRead, by: caller).0
    }

    /// Checks the caller may change the project's connections (before the request body is read).
    public func authorizeEdit(projectID: String, by caller: Caller) async throws {
        try await app.access.project(projectID, .workflowEdit, caller.identity)
    }

    /// Checks the caller may change the connection (before the request body is read).
    public func authorizeEdit(_ connectionID: String, by caller: Caller) async throws {
        _ = try await load(connectionID, .workflowEdit, by: caller)
    }

    /// What a new connection or a change holds, as the API takes it.
    public struct Fields: Sendable {
        public var name: String?
        public var type: String?
        public var data: JSONValue?
        public var testURL: String?
        public var allowedHosts: [String]?

        public init(name: String?, type: String? = nil, data: JSONValue?, testURL: String?, allowedHosts: [String]?) {
            (self.name, self.type, self.data, self.testURL, self.allowedHosts) = (name, type, data, testURL, allowedHosts)
        }
    }

    public func create(projectID: String, _ fields: Fields, by caller: Caller) async throws -> Connection {
        let project = try await app.access.project(projectID, .workflowEdit, caller.identity).project
        let name = try checkedName(fields.name ?? "")
        guard let kind = fields.type.flatMap(ConnectionKind.init(rawValue:)) else {
            throw FlowStackError.validation(
                "type must be one of \(ConnectionKind.allCases.map(\.rawValue).joined(separator: ", ")).", field: "type")
        }
        let data = try ConnectionSchema.validate(kind, data: fields.data)
        let now = store.now
        var connection = Connection(
            id: Identifier.make("con"), orgID: project.orgID, projectID: project.id, name: name, kind: kind,
            data: data, testURL: try checkedTestURL(fields.testURL), status: "untested", statusMessage: nil,
            lastTestedAt: nil, tokenExpiresAt: nil, createdAt: now, updatedAt: now)
        connection.allowedHosts = try ConnectionSchema.checkHosts(fields.allowedHosts ?? [])
        let actor = caller.auditActor
        let created = try await store.write { [store, connection, creator = caller.user.id] db in
            guard try await store.insertConnection(connection, createdBy: creator, on: db) else { return false }
            // The audit trail names the connection and its type, never a value.
            try await store.appendAudit(
                AuditRecord(
                    orgID: connection.orgID, action: "connection.created", resourceType: "connection",
                    resourceID: connection.id, details: ["name": name, "type": kind.rawValue]),
                actor: actor, on: db)
            return true
        }
        guard created else {
            throw FlowStackError.conflict("connection_exists", "The project already has a connection '\(name)'.", field: "name")
        }
        return connection
    }

    public func update(_ connectionID: String, _ fields: Fields, by caller: Caller) async throws -> Connection {
        var (connection, _) = try await load(connectionID, .workflowEdit, by: caller)
        try requireSecretsForNewDestinations(connection, fields)
        var clearTokens = false
        if let name = fields.name { connection.name = try checkedName(name) }
        if let data = fields.data {
            let before = connection.data
            connection.data = try ConnectionSchema.validate(connection.kind, data: data, existing: connection.data)
            if connection.kind == .oauth2,
                before.config != connection.data.config || before.secrets["clientSecret"] != connection.data.secrets["clientSecret"]
            {
                // Tokens belong to the client and endpoints they were issued for.
                connection.data.secrets["accessToken"] = nil
                connection.data.secrets["refreshToken"] = nil
                connection.tokenExpiresAt = nil
                clearTokens = true
            }
            connection.status = "untested"
            connection.statusMessage = nil
        }
        if let testURL = fields.testURL { connection.testURL = try checkedTestURL(testURL) }
        if let hosts = fields.allowedHosts { connection.allowedHosts = try ConnectionSchema.checkHosts(hosts) }
        let updated = connection
        let actor = caller.auditActor
        var changed = Array((fields.data?.objectValue ?? [:]).keys).sorted()
        if fields.allowedHosts != nil { changed.append("allowedHosts") }
        if fields.testURL != nil { changed.append("testUrl") }
        if fields.name != nil { changed.append("name") }
        let changedFields = changed.joined(separator: ",")
        let clear = clearTokens
        let reset = fields.data != nil
        let saved = try await store.write { [store] db in
            guard try await store.updateConnection(updated, resetStatus: reset, clearTokens: clear, on: db) else { return false }
            try await store.appendAudit(
                AuditRecord(
                    orgID: updated.orgID, action: "connection.updated", resourceType: "connection",
                    resourceID: updated.id,
                    details: ["name": updated.name, "type": updated.kind.rawValue, "fields": changedFields]),
                actor: actor, on: db)
            return true
        }
        guard saved else {
            throw FlowStackError.conflict("connection_exists", "The project already has a connection '\(updated.name)'.", field: "name")
        }
        guard let current = try await store.connection(id: updated.id) else { throw FlowStackError.notFound }
        return current
    }

    /// Write-only must hold against editors too: a change that lets the stored secrets reach a
    /// new place (wider `allowedHosts`, another OAuth2 endpoint) needs the secrets entered again,
    /// or an editor could send them to a server of their own.
    private func requireSecretsForNewDestinations(_ connection: Connection, _ fields: Fields) throws {
        var widened: String?
        if let hosts = fields.allowedHosts, !connection.allowedHosts.isEmpty {
            let given = Set(hosts.map { $0.lowercased() })
            if given.isEmpty || !given.isSubset(of: Set(connection.allowedHosts)) { widened = "allowedHosts" }
        }
        if connection.kind == .oauth2, let data = fields.data?.objectValue {
            for field in ["tokenUrl", "authorizationUrl"]
            where data[field] != nil && data[field]?.stringValue != connection.data.config[field] {
                widened = "data.\(field)"
            }
        }
        guard let widened else { return }
        let managed = Set((ConnectionSchema.fields(connection.kind) ?? []).filter(\.managed).map(\.name))
        let given = Set((fields.data?.objectValue ?? [:]).filter { $0.value != .null }.keys)
        let missing = connection.data.secrets.keys.filter { !managed.contains($0) && !given.contains($0) }.sorted()
        guard missing.isEmpty else {
            throw FlowStackError.validation(
                "Changing \(widened) lets the stored secrets go somewhere new: enter them again (data.\(missing.joined(separator: ", data."))).",
                field: widened)
        }
    }

    public func delete(_ connectionID: String, by caller: Caller) async throws {
        let (connection, _) = try await load(connectionID, .workflowEdit, by: caller)
        let actor = caller.auditActor
        let deleted = try await store.write { [store] db in
            guard try await store.deleteConnection(id: connection.id, on: db) else { return false }
            try await store.appendAudit(
                AuditRecord(
                    orgID: connection.orgID, action: "connection.deleted", resourceType: "connection",
                    resourceID: connection.id, details: ["name": connection.name, "type": connection.kind.rawValue]),
                actor: actor, on: db)
            return true
        }
        guard deleted else { throw FlowStackError.notFound }
    }

    public struct TestResult: Sendable {
        public var ok: Bool
        public var status: Int?
        public var message: String
    }

    /// Tries the credential: a GET of the test URL with it applied (or, for OAuth2 client
    /// credentials, a token request). The outcome is kept on the connection.
    public func test(_ connectionID: String, url given: String?, by caller: Caller) async throws -> TestResult {
        let (connection, access) = try await load(connectionID, .workflowEdit, by: caller)
        let url = try checkedTestURL(given) ?? connection.testURL
        let broker = app.engine.connections
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
            var context = ExpressionContext()
            context.projectID = access.project.id
            context.redactor = Redactor()
            do {
                let response = try await broker.fetch(
                    OutboundRequest(method: "GET", url: url, timeout: 15, maxResponseBytes: 1 << 20),
                    connection: connection.id, caller: context)
                let ok = response.status < 400
                result = TestResult(
                    ok: ok, status: response.status,
                    message: ok
                        ? "The server accepted the request."
                        : response.status == 401 || response.status == 403
                            ? "The server refused the credential (\(response.status))." : "The server answered \(response.status).")
            } catch let error as NodeError {
                result = TestResult(ok: false, status: nil, message: context.redactor?.redact(error.message) ?? error.message)
            }
        }
        try await store.setConnectionStatus(
            id: connection.id, status: result.ok ? "ok" : "error", message: result.ok ? nil : result.message,
            tested: true)
        try await audit("connection.tested", connection, actor: caller.auditActor, outcome: result.ok ? "success" : "failure")
        return result
    }

    // MARK: OAuth2 authorization code with PKCE

    /// Starts the authorization: a one-time state bound to this user's session and to the
    /// browser (`binder`, which goes in a cookie), a PKCE verifier kept sealed on the server, and
    /// the provider's authorization URL to send the browser to.
    public func authorize(_ connectionID: String, by caller: Caller) async throws -> (location: String, binder: String) {
        let (connection, _) = try await load(connectionID, .workflowEdit, by: caller)
        guard case .session(let session, _) = caller.identity.method else {
            throw FlowStackError(
                status: 403, code: "session_required", message: "Connecting an OAuth2 account needs a signed-in browser session.")
        }
        guard connection.kind == .oauth2, connection.data.config["grantType"] == "authorizationCode",
            let authorizationURL = connection.data.config["authorizationUrl"], var components = URLComponents(string: authorizationURL),
            let clientID = connection.data.config["clientId"]
        else {
            throw FlowStackError.badRequest(
                "not_authorization_code", "Only OAuth2 connections with the authorization code grant are connected this way.")
        }
        let redirectURI = app.settings.oauthRedirectURI
        let state = Token.make(prefix: "")
        let binder = Token.make(prefix: "")
        let verifier = Token.make(prefix: "") + Token.make(prefix: "")
        let challenge = Data(SHA256.hash(data: Data(verifier.utf8))).base64URLEncoded
        try await store.insertOAuth2State(
            stateHash: Token.hash(state + "." + binder),
            OAuth2State(
                connectionID: connection.id, orgID: connection.orgID, userID: caller.user.id, sessionID: session.id, verifier: verifier,
                redirectURI: redirectURI, expiresAt: store.now.addingTimeInterval(Self.stateLifetime)))
        var query = components.queryItems ?? []
        query += [
            URLQueryItem(name: "response_type", value: "code"), URLQueryItem(name: "client_id", value: clientID),
            URLQueryItem(name: "redirect_uri", value: redirectURI), URLQueryItem(name: "state", value: state),
            URLQueryItem(name: "code_challenge", value: challenge), URLQueryItem(name: "code_challenge_method", value: "S256"),
        ]
        if let scope = connection.data.config["scope"] { query.append(URLQueryItem(name: "scope", value: scope)) }
        components.queryItems = query
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        guard let location = components.url?.absoluteString else {
            throw FlowStackError.validation("authorizationUrl is not a valid URL.", field: "data.authorizationUrl")
        }
        try await audit("connection.oauth2.authorize", connection, actor: caller.auditActor)
        return (location, binder)
    }

    /// What the provider's redirect back carries.
    public struct Callback: Sendable {
        public var state: String?
        public var binder: String?
        public var code: String?
        public var error: String?
        public init(state: String?, binder: String?, code: String?, error: String?) {
            (self.state, self.binder, self.code, self.error) = (state, binder, code, error)
        }
    }

    /// Completes the authorization. The state works once, only in the browser that started it
    /// (its cookie), and only while the session that started it is alive.
    public func callback(_ callback: Callback, from client: Client) async throws -> Connection {
        let invalid = FlowStackError.badRequest(
            "invalid_oauth2_state", "This authorization is unknown, expired or was started in another browser.")
        guard let state = callback.state, !state.isEmpty, state.utf8.count <= 256, let binder = callback.binder, binder.utf8.count <= 256
        else {
            throw invalid
        }
        guard let pending = try await store.takeOAuth2State(stateHash: Token.hash(state + "." + binder)),
            pending.expiresAt > store.now,
            try await store.sessionIsLive(id: pending.sessionID, userID: pending.userID, idleTimeout: app.settings.sessionIdleTimeout),
            let connection = try await store.connection(id: pending.connectionID)
        else {
            throw invalid
        }
        // The user who started it must still be allowed to edit the connection's project.
        let membership = try await store.access(orgID: connection.orgID, userID: pending.userID)
        let projectRole = try await store.projectRole(projectID: connection.projectID, userID: pending.userID)
        let allowed = AccessRequest(
            orgRole: membership?.role, projectRole: projectRole, credential: .session,
            plan: membership?.plan ?? .free, projectId: connection.projectID)
        guard Policy.decide(.workflowEdit, allowed).error == nil else { throw invalid }
        let actor = client.actor(user: pending.userID)
        if let error = callback.error {
            let code = String(error.prefix(64).filter { $0.isLetter || $0 == "_" })
            try await store.setConnectionStatus(
                id: connection.id, status: "error", message: "The provider answered \(code).", tested: false)
            try await store.audit(
                AuditRecord(
                    orgID: connection.orgID, action: "connection.oauth2.callback", resourceType: "connection",
                    resourceID: connection.id, outcome: "failure", details: ["error": code]), actor: actor)
            throw FlowStackError.badRequest("oauth2_denied", "The provider did not grant access (\(code)).")
        }
        guard let code = callback.code, !code.isEmpty, code.utf8.count <= 4096 else {
            throw FlowStackError.badRequest("invalid_oauth2_callback", "The provider's answer has no code.")
        }
        try await app.engine.connections.completeAuthorization(
            connection, code: code, verifier: pending.verifier, redirectURI: pending.redirectURI)
        try await store.audit(
            AuditRecord(
                orgID: connection.orgID, action: "connection.oauth2.callback", resourceType: "connection",
                resourceID: connection.id, details: ["name": connection.name]), actor: actor)
        return connection
    }
}

extension Data {
    var base64URLEncoded: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
            of: "=", with: "")
    }
}
