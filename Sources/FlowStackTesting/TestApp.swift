import FlowStackCore
import FlowStackCrypto
import FlowStackEngine
import FlowStackNetwork
import FlowStackNodes
import FlowStackOperations
import FlowStackRuntime
import FlowStackServer
import FlowStackStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization

/// The public API over a fresh database, driven in-process through the real router and
/// middleware, with a clock the test moves.
public final class TestApp: @unchecked Sendable {
    // The router is only read, to build the application once per test.
    public let database: TestDatabase
    public let store: Store
    public let clock: ManualClock
    public let settings: ServerSettings
    public let router: Router<FlowStackRequestContext>
    public let engine: ExecutionEngine
    /// Whether `test` removes the database afterwards (a replica's database is its primary's).
    let ownsDatabase: Bool
    private let listening = Mutex(false)

    public static func make(
        _ backend: Backend, configure: (inout ServerSettings) -> Void = { _ in },
        codeRunner: (any CodeRunning)? = nil, fetcher: (any OutboundFetching)? = nil
    ) async throws -> TestApp {
        let database = try await TestDatabase.make(backend)
        let clock = ManualClock(Date())
        let store = try await database.openStore(clock: clock)
        var settings = ServerSettings()
        settings.dataDirectory = database.directory
        settings.engine.pollInterval = 0.05
        settings.engine.heartbeatInterval = 0.2
        // One test client makes many calls on a clock that does not move: a test of the limits sets its own.
        settings.edge = .unlimited
        configure(&settings)
        let engine = ExecutionEngine(
            store: store, configuration: settings.engineConfiguration, logger: Logger(label: "test"),
            codeRunner: codeRunner, fetcher: fetcher)
        let router = try await FlowStackApplication.makeRouter(
            store: store, settings: settings, logger: Logger(label: "test"), engine: engine)
        return TestApp(
            database: database, store: store, clock: clock, settings: settings, router: router, engine: engine, ownsDatabase: true)
    }

    /// A second replica: its own store (same keyring), engine, caches and router over this app's
    /// database, as another `flowstack serve` would be. Run its `test` inside this app's.
    public func replica() async throws -> TestApp {
        let store = try await database.openStore(keyring: self.store.sealer.keyring, clock: clock)
        var configuration = settings.engineConfiguration
        configuration.workerID = "replica-" + Identifier.make("w")
        let engine = ExecutionEngine(store: store, configuration: configuration, logger: Logger(label: "replica"))
        let router = try await FlowStackApplication.makeRouter(
            store: store, settings: settings, logger: Logger(label: "replica"), engine: engine)
        return TestApp(
            database: database, store: store, clock: clock, settings: settings, router: router, engine: engine, ownsDatabase: false)
    }

    init(
        database: TestDatabase, store: Store, clock: ManualClock, settings: ServerSettings, router: Router<FlowStackRequestContext>,
        engine: ExecutionEngine, ownsDatabase: Bool
    ) {
        self.database = database
        self.store = store
        self.clock = clock
        self.settings = settings
        self.router = router
        self.engine = engine
        self.ownsDatabase = ownsDatabase
    }

    /// Waits (up to `timeout`) until this app hears other replicas' announcements (PostgreSQL).
    public func awaitListening(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !listening.withLock({ $0 }) {
            guard ContinuousClock.now < deadline else { throw FixtureError("the change listener did not start within \(timeout)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Runs `body` with a client for the app (and the engine's worker running), then closes the database.
    public func test<T: Sendable>(worker: Bool = true, _ body: @Sendable (APIClient) async throws -> T) async throws -> T {
        let app = Application(router: router)
        let engine = self.engine
        let listener = ChangeListener(store: store) { [self] in self.listening.withLock { $0 = true } }
        do {
            let result = try await withThrowingTaskGroup(of: T?.self) { group in
                if worker {
                    group.addTask {
                        try await engine.run()
                        return nil
                    }
                }
                group.addTask {
                    await listener.listen()
                    return nil
                }
                let result = try await app.test(.router) { client in
                    try await body(APIClient(client: client))
                }
                group.cancelAll()
                return result
            }
            await store.database.close()
            if ownsDatabase { database.remove() }
            return result
        } catch {
            await store.database.close()
            if ownsDatabase { database.remove() }
            throw error
        }
    }

    /// The one-time setup token, as `flowstack serve` makes it.
    public func setupToken() async throws -> String {
        let token = Token.make(prefix: "fst_")
        let store = self.store
        try await store.write { db in try await store.setSetting("setup_token_hash", Token.hash(token), on: db) }
        return token
    }
}

/// A response with its JSON decoded loosely, for assertions.
public struct APIResponse: Sendable {
    public let status: Int
    public let headers: HTTPFields
    public let body: Data

    public var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }

    public var errorCode: String? {
        (json["error"] as? [String: Any])?["code"] as? String
    }

    public var errorMessage: String {
        (json["error"] as? [String: Any])?["message"] as? String ?? ""
    }

    public var errorField: String? {
        (json["error"] as? [String: Any])?["field"] as? String
    }

    public var text: String { String(decoding: body, as: UTF8.self) }

    public func header(_ name: String) -> String? { headers[HTTPField.Name(name)!] }
}

/// How a test request authenticates.
public enum Auth: Sendable {
    case none
    case apiKey(String)
    case session(token: String, csrf: String)
    /// The session cookie without the CSRF header.
    case sessionWithoutCSRF(token: String)
}

public struct APIClient: Sendable {
    let client: any TestClientProtocol

    public func request(
        _ method: HTTPRequest.Method, _ path: String, json: Any? = nil, rawBody: String? = nil,
        contentType: String? = "application/json", auth: Auth = .none, headers extra: [String: String] = [:]
    ) async throws -> APIResponse {
        var headers: HTTPFields = [:]
        var body: ByteBuffer?
        if let json {
            body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json))
        } else if let rawBody {
            body = ByteBuffer(string: rawBody)
        }
        if let body {
            headers[.contentLength] = String(body.readableBytes)
            if let contentType { headers[.contentType] = contentType }
        }
        switch auth {
        case .none: break
        case .apiKey(let key): headers[.authorization] = "Bearer \(key)"
        case .session(let token, let csrf):
            headers[.cookie] = "__Host-flowstack_session=\(token)"
            headers[HTTPField.Name("X-CSRF-Token")!] = csrf
        case .sessionWithoutCSRF(let token):
            headers[.cookie] = "__Host-flowstack_session=\(token)"
        }
        for (name, value) in extra { headers[HTTPField.Name(name)!] = value }
        return try await client.execute(uri: path, method: method, headers: headers, body: body) { response in
            APIResponse(status: Int(response.status.code), headers: response.headers, body: Data(response.body.readableBytesView))
        }
    }

    public func get(_ path: String, auth: Auth = .none, headers: [String: String] = [:]) async throws -> APIResponse {
        try await request(.get, path, auth: auth, headers: headers)
    }

    public func post(_ path: String, _ json: Any? = nil, auth: Auth = .none, headers: [String: String] = [:]) async throws -> APIResponse {
        try await request(.post, path, json: json, auth: auth, headers: headers)
    }

    // MARK: Fixtures

    public static let password = "Corr3ct-Horse-Battery"

    public struct Account: Sendable {
        public var userID: String
        public var orgID: String
        public var email: String
        public var password: String

        public init(userID: String, orgID: String, email: String, password: String) {
            self.userID = userID
            self.orgID = orgID
            self.email = email
            self.password = password
        }
    }

    /// Sets up the instance's owner with the setup token.
    public func setupOwner(_ app: TestApp, email: String = "owner@example.com") async throws -> Account {
        let token = try await app.setupToken()
        let response = try await post(
            "/api/v1/setup", ["token": token, "email": email, "password": Self.password, "name": "Owner", "organization": "Acme"])
        guard response.status == 201 else { throw FixtureError("setup failed: \(response.status) \(response.text)") }
        let user = response.json["user"] as! [String: Any]
        let org = response.json["organization"] as! [String: Any]
        return Account(userID: user["id"] as! String, orgID: org["id"] as! String, email: email, password: Self.password)
    }

    /// Creates another user with their own organization (directly in the store, as signup would).
    public func createAccount(_ app: TestApp, email: String, organization: String = "Other") async throws -> Account {
        let hash = try await PasswordHasher().hash(Self.password)
        let store = app.store
        let (user, org) = try await store.write { db in
            let user = try await store.insertUser(email: email, name: "User", passwordHash: hash, on: db)
            let org = try await store.insertOrganization(name: organization, owner: user.id, on: db)
            return (user, org)
        }
        return Account(userID: user.id, orgID: org.id, email: email, password: Self.password)
    }

    /// Adds an existing user to an organization with a role.
    public func addMember(_ app: TestApp, userID: String, orgID: String, role: OrgRole) async throws {
        let store = app.store
        try await store.write { db in try await store.insertMembership(orgID: orgID, userID: userID, role: role, on: db) }
    }

    public func login(_ account: Account) async throws -> Auth {
        let response = try await post("/api/v1/auth/login", ["email": account.email, "password": account.password])
        guard response.status == 200, let cookie = response.header("Set-Cookie"),
            let token = cookie.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last,
            let csrf = response.json["csrfToken"] as? String
        else { throw FixtureError("login failed: \(response.status) \(response.text)") }
        return .session(token: String(token), csrf: csrf)
    }

    public func createAPIKey(_ auth: Auth, orgID: String, scope: String = "write", projectID: String? = nil, expiresInDays: Int? = nil)
        async throws -> String
    {
        var body: [String: Any] = ["name": "test key", "scope": scope]
        if let projectID { body["projectId"] = projectID }
        if let expiresInDays { body["expiresInDays"] = expiresInDays }
        let response = try await post("/api/v1/orgs/\(orgID)/api-keys", body, auth: auth)
        guard response.status == 201, let key = response.json["key"] as? String else {
            throw FixtureError("API key creation failed: \(response.status) \(response.text)")
        }
        return key
    }

    public func createProject(_ auth: Auth, orgID: String, name: String = "Project") async throws -> String {
        let response = try await post("/api/v1/orgs/\(orgID)/projects", ["name": name, "description": "about \(name)"], auth: auth)
        guard response.status == 201, let id = response.json["id"] as? String else {
            throw FixtureError("project creation failed: \(response.status) \(response.text)")
        }
        return id
    }

    /// An active workflow whose Webhook node serves `path` (POST) and answers with its last node.
    public func createActiveWebhook(_ auth: Auth, projectID: String, path: String) async throws -> String {
        let hook: [String: Any] = [
            "name": "Hook " + path,
            "nodes": [
                [
                    "name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
                    "parameters": ["method": "POST", "path": path, "respond": "lastNode"],
                ]
            ],
        ]
        let created = try await post("/api/v1/projects/\(projectID)/workflows", hook, auth: auth)
        guard created.status == 201, let id = created.json["id"] as? String else {
            throw FixtureError("workflow creation failed: \(created.status) \(created.text)")
        }
        let activated = try await post("/api/v1/workflows/\(id)/activate", nil, auth: auth)
        guard activated.status == 200 else { throw FixtureError("activation failed: \(activated.status) \(activated.text)") }
        return id
    }
}

public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
