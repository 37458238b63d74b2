import FlowStackApp
import FlowStackCore
import FlowStackNodes
import FlowStackRuntime
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

    func addRoutes(to group: RouterGroup<APIContext>) {
        group.get("projects/:projectId/connections", use: list)
        group.post("projects/:projectId/connections", use: create)
        group.get("connections/:connectionId", use: get)
        group.patch("connections/:connectionId", use: update)
        group.delete("connections/:connectionId", use: delete)
        group.post("connections/:connectionId/test", use: test)
        group.get("connections/:connectionId/oauth2/authorize", use: authorize)
    }

    /// The provider's redirect back: its own route group, outside the API.
    func addCallbackRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.get("callback", use: callback)
    }

    var connections: Connections { api.app.connections }

    private func connectionID(_ context: APIContext) throws -> String {
        try context.parameters.id("connectionId", prefix: "con")
    }

    @Sendable func list(_ request: Request, context: APIContext) async throws -> Response {
        let list = try await connections.list(projectID: try context.parameters.id("projectId", prefix: "prj"), by: context.caller)
        return try JSON.response(.ok, ListDTO(items: list.map(ConnectionDTO.init), nextCursor: nil))
    }

    @Sendable func create(_ request: Request, context: APIContext) async throws -> Response {
        let projectID = try context.parameters.id("projectId", prefix: "prj")
        try await connections.authorizeEdit(projectID: projectID, by: context.caller)
        let body = try await api.decode(CreateRequest.self, request, context)
        let fields = Connections.Fields(
            name: body.name, type: body.type, data: body.data, testURL: body.testUrl, allowedHosts: body.allowedHosts)
        return try JSON.response(.created, ConnectionDTO(try await connections.create(projectID: projectID, fields, by: context.caller)))
    }

    @Sendable func get(_ request: Request, context: APIContext) async throws -> Response {
        try JSON.response(.ok, ConnectionDTO(try await connections.get(try connectionID(context), by: context.caller)))
    }

    @Sendable func update(_ request: Request, context: APIContext) async throws -> Response {
        let id = try connectionID(context)
        try await connections.authorizeEdit(id, by: context.caller)
        let body = try await api.decode(UpdateRequest.self, request, context)
        let fields = Connections.Fields(name: body.name, data: body.data, testURL: body.testUrl, allowedHosts: body.allowedHosts)
        return try JSON.response(.ok, ConnectionDTO(try await connections.update(id, fields, by: context.caller)))
    }

    @Sendable func delete(_ request: Request, context: APIContext) async throws -> Response {
        try await connections.delete(try connectionID(context), by: context.caller)
        return JSON.empty()
    }

    struct TestResult: Encodable {
        var ok: Bool
        var status: Int?
        var message: String
    }

    @Sendable func test(_ request: Request, context: APIContext) async throws -> Response {
        let id = try connectionID(context)
        try await connections.authorizeEdit(id, by: context.caller)
        let body = try await api.decodeOptional(TestRequest.self, request, context, empty: TestRequest())
        let result = try await connections.test(id, url: body.url, by: context.caller)
        return try JSON.response(.ok, TestResult(ok: result.ok, status: result.status, message: result.message))
    }

    /// Starts the OAuth2 authorization: a redirect to the provider, and the cookie that binds the
    /// state to this browser.
    @Sendable func authorize(_ request: Request, context: APIContext) async throws -> Response {
        let (location, binder) = try await connections.authorize(try connectionID(context), by: context.caller)
        var headers = HTTPFields()
        headers[.location] = location
        headers[.setCookie] =
            "\(Self.oauthCookie)=\(binder); Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=\(Int(Connections.stateLifetime))"
        headers[.cacheControl] = "no-store"
        return Response(status: .found, headers: headers)
    }

    @Sendable func callback(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let callback = Connections.Callback(
            state: request.query("state"), binder: request.cookies[Self.oauthCookie]?.value,
            code: request.query("code"), error: request.query("error"))
        let client = Client(ip: context.clientIP, userAgent: request.headers[.userAgent] ?? "")
        let connection = try await connections.callback(callback, from: client)
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
        secrets = Dictionary(
            uniqueKeysWithValues: connection.data.secrets.filter { !managed.contains($0.key) }.map {
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
