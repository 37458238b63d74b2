import FlowStackCore
import FlowStackNetwork
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import Foundation
import Logging

/// Makes requests with a connection's credential: finds the connection in the caller's project,
/// registers its secrets with the execution's redactor, applies the credential, and for OAuth2
/// keeps the access token fresh (before expiry and once more on a 401).
///
/// The credential is added here, outside any sandbox, after the request was built; it is never
/// part of a node's parameters, output or logs.
public final class ConnectionBroker: Sendable {
    let store: Store
    let fetcher: (any OutboundFetching)?
    let logger: Logger
    private let refresher = RefreshGate()
    /// Tokens are refreshed when they expire within this many seconds.
    static let refreshMargin: TimeInterval = 60

    public init(store: Store, fetcher: (any OutboundFetching)?, logger: Logger) {
        self.store = store
        self.fetcher = fetcher
        self.logger = logger
    }

    /// A connection of the caller's project, by id or name; anything else is "not found".
    public func resolve(_ reference: String, projectID: String) async throws -> Connection {
        guard !reference.isEmpty, !projectID.isEmpty,
            let connection = try await store.connection(reference: reference, projectID: projectID)
        else {
            throw NodeError("No connection '\(reference)' in this project.", field: "connection")
        }
        return connection
    }

    /// The secret values of a connection, and the encodings of them a request carries.
    static func secretValues(_ connection: Connection) -> [String] {
        var values = Array(connection.data.secrets.values)
        if connection.kind == .basic, let user = connection.data.config["username"], let password = connection.data.secrets["password"] {
            values.append(Data("\(user):\(password)".utf8).base64EncodedString())
        }
        return values
    }

    public func fetch(_ request: OutboundRequest, connection reference: String, caller: ExpressionContext) async throws -> OutboundResponse
    {
        guard let fetcher else { throw NodeError("HTTP requests are not available here.") }
        var connection = try await resolve(reference, projectID: caller.projectID)
        caller.redactor?.register(Self.secretValues(connection))
        guard let host = URLComponents(string: request.url)?.host, ConnectionSchema.hostAllowed(host, connection.allowedHosts) else {
            throw NodeError(
                "The connection '\(connection.name)' may only be sent to \(connection.allowedHosts.joined(separator: ", ")).",
                field: "connection")
        }
        if connection.kind == .oauth2 {
            connection = try await freshToken(connection, caller: caller)
        }
        let response = try await fetcher.fetch(try Self.apply(connection, to: request))
        guard response.status == 401, connection.kind == .oauth2 else { return response }
        // The provider may have revoked the token early: refresh once and try again.
        connection = try await refresh(connection, caller: caller, rejected: connection.data.secrets["accessToken"])
        return try await fetcher.fetch(try Self.apply(connection, to: request))
    }

    /// `request` with the connection's credential added.
    static func apply(_ connection: Connection, to request: OutboundRequest) throws -> OutboundRequest {
        var request = request
        func setHeader(_ name: String, _ value: String) {
            request.headers.removeAll { $0.0.lowercased() == name.lowercased() }
            request.headers.append((name, value))
            request.credentialHeaders.insert(name.lowercased())
        }
        let data = connection.data
        switch connection.kind {
        case .apiKey:
            let key = data.secrets["key"] ?? ""
            let name = data.config["name"] ?? "X-API-Key"
            if data.config["in"] == "query" {
                guard var components = URLComponents(string: request.url) else { throw NodeError("url is not a valid URL.", field: "url") }
                var items = (components.queryItems ?? []).filter { $0.name != name }
                items.append(URLQueryItem(name: name, value: key))
                components.queryItems = items
                // '+' is a space in many servers' query parsing: keep it literal.
                components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
                guard let url = components.url?.absoluteString else { throw NodeError("url is not a valid URL.", field: "url") }
                request.url = url
            } else {
                setHeader(name, key)
            }
        case .bearer:
            setHeader("Authorization", "Bearer " + (data.secrets["token"] ?? ""))
        case .basic:
            let pair = (data.config["username"] ?? "") + ":" + (data.secrets["password"] ?? "")
            setHeader("Authorization", "Basic " + Data(pair.utf8).base64EncodedString())
        case .headers:
            for (name, value) in data.secrets.sorted(by: { $0.key < $1.key }) { setHeader(name, value) }
        case .oauth2:
            guard let token = data.secrets["accessToken"] else {
                throw NodeError("The connection '\(connection.name)' is not authorized yet: connect it first.", field: "connection")
            }
            setHeader("Authorization", "Bearer " + token)
        case .secrets:
            // A Code node names the secrets it needs with `$secret("NAME")` placeholders (in header
            // values and the body); they are filled in here, after the request left the sandbox.
            // This is a literal substitution, not a template: nothing in the request is evaluated.
            let nonce = request.secretNonce
            request.url = try fill(request.url, connection, nonce: nonce, encode: formEncode)
            request.headers = try request.headers.map { name, value in
                let filled = try fill(value, connection, nonce: nonce, encode: { $0 })
                guard HeaderCheck.isValue(filled) else { throw NodeError("A secret cannot be sent in the header '\(name)'.") }
                if filled != value { request.credentialHeaders.insert(name.lowercased()) }
                return (name, filled)
            }
            if let body = request.body {
                let text = String(decoding: body, as: UTF8.self)
                if text.contains(placeholderStart) {
                    // In a JSON body a secret is written as the inside of a JSON string (escaped).
                    let json = request.headers.contains { $0.0.lowercased() == "content-type" && $0.1.lowercased().contains("json") }
                    request.body = Array(try fill(text, connection, nonce: nonce, encode: json ? jsonEscaped : { $0 }).utf8)
                    request.credentialInBody = true
                }
            }
        }
        return request
    }

    /// `text` escaped for the inside of a JSON string.
    static func jsonEscaped(_ text: String) -> String {
        let encoded = JSONValue.string(text).jsonText
        return String(encoded.dropFirst().dropLast())
    }

    static let placeholderStart = "{{secret:"

    /// `text` with each `$secret(NAME)` placeholder (`{{secret:NAME:NONCE}}`, NONCE this run's)
    /// replaced by the connection's secret NAME (encoded). Placeholders without this run's nonce
    /// are left as they are: they did not come from the run's own `$secret` calls.
    static func fill(_ text: String, _ connection: Connection, nonce: String?, encode: (String) -> String) throws -> String {
        guard let nonce, !nonce.isEmpty, text.contains(placeholderStart) else { return text }
        var result = ""
        var rest = Substring(text)
        while let start = rest.range(of: placeholderStart) {
            result += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].range(of: "}}") else { break }
            let inner = rest[start.upperBound..<end.lowerBound]
            guard let colon = inner.lastIndex(of: ":"), inner[inner.index(after: colon)...] == nonce else {
                result += rest[start.lowerBound..<end.upperBound]
                rest = rest[end.upperBound...]
                continue
            }
            let name = String(inner[..<colon])
            guard let value = connection.data.secrets[name] else {
                throw NodeError("The connection '\(connection.name)' has no secret '\(name)'.", field: "connection")
            }
            result += encode(value)
            rest = rest[end.upperBound...]
        }
        return result + rest
    }

    // MARK: OAuth2

    /// The connection with an access token that is valid for at least `refreshMargin` more seconds.
    func freshToken(_ connection: Connection, caller: ExpressionContext?) async throws -> Connection {
        if connection.data.secrets["accessToken"] != nil {
            guard let expiry = connection.tokenExpiresAt, expiry.timeIntervalSince(store.now) < Self.refreshMargin else {
                return connection
            }
        } else if connection.data.config["grantType"] != "clientCredentials" {
            throw NodeError("The connection '\(connection.name)' is not authorized yet: connect it first.", field: "connection")
        }
        return try await refresh(connection, caller: caller, rejected: connection.data.secrets["accessToken"])
    }

    /// Gets a new access token (refresh token grant, or client credentials). Concurrent callers for
    /// one connection share one refresh; a caller whose token was already replaced uses the new one.
    public func refresh(_ connection: Connection, caller: ExpressionContext?, rejected: String?) async throws -> Connection {
        let refreshed = try await refresher.run(connection.id) { [self] in
            guard let current = try await store.connection(id: connection.id) else {
                throw NodeError("The connection '\(connection.name)' no longer exists.", field: "connection")
            }
            if let token = current.data.secrets["accessToken"], token != rejected,
                current.tokenExpiresAt.map({ $0.timeIntervalSince(store.now) >= Self.refreshMargin }) ?? true
            {
                return current
            }
            let grant: [(String, String)]
            if current.data.config["grantType"] == "clientCredentials" {
                grant = [("grant_type", "client_credentials")] + (current.data.config["scope"].map { [("scope", $0)] } ?? [])
            } else if let refreshToken = current.data.secrets["refreshToken"] {
                grant = [("grant_type", "refresh_token"), ("refresh_token", refreshToken)]
            } else {
                let message = "The access token expired and the provider gave no refresh token: connect the connection again."
                try await store.setConnectionStatus(id: current.id, status: "error", message: message, tested: false)
                throw NodeError("The connection '\(current.name)' could not refresh its OAuth2 token: \(message)", field: "connection")
            }
            do {
                let tokens = try await requestToken(current, grant: grant)
                try await store.storeTokens(
                    connectionID: current.id, orgID: current.orgID, accessToken: tokens.accessToken,
                    refreshToken: tokens.refreshToken, expiresAt: tokens.expiresAt(now: store.now))
            } catch let error as TokenError {
                // Another server may have refreshed first (providers that rotate refresh tokens then
                // refuse ours): its fresh token is as good as ours would have been.
                if let latest = try await store.connection(id: current.id), let token = latest.data.secrets["accessToken"],
                    token != current.data.secrets["accessToken"], token != rejected
                {
                    return latest
                }
                // Surfaced on the connection (for its owners) and in the execution (as the node's error).
                try await store.setConnectionStatus(id: current.id, status: "error", message: error.message, tested: false)
                logger.warning("OAuth2 token refresh failed", metadata: ["connection": "\(current.id)"])
                throw NodeError(
                    "The connection '\(current.name)' could not refresh its OAuth2 token: \(error.message)", field: "connection")
            }
            guard let updated = try await store.connection(id: current.id) else {
                throw NodeError("The connection '\(current.name)' no longer exists.", field: "connection")
            }
            return updated
        }
        caller?.redactor?.register(Self.secretValues(refreshed))
        return refreshed
    }

    struct TokenError: Error {
        var message: String
    }

    struct Tokens: Sendable {
        var accessToken: String
        var refreshToken: String?
        var expiresIn: Double?
        func expiresAt(now: Date) -> Date? { expiresIn.map { now.addingTimeInterval($0) } }
    }

    /// Posts a grant to the token endpoint (through the SSRF guard) and reads the answer. The
    /// provider's error code is kept; its other text is not (it may echo what was sent).
    func requestToken(_ connection: Connection, grant: [(String, String)]) async throws -> Tokens {
        guard let fetcher else { throw TokenError(message: "HTTP requests are not available here.") }
        guard let tokenURL = connection.data.config["tokenUrl"], let clientID = connection.data.config["clientId"] else {
            throw TokenError(message: "the connection has no token URL or client id")
        }
        var fields = grant
        var headers: [(String, String)] = [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")]
        let secret = connection.data.secrets["clientSecret"]
        if let secret, connection.data.config["clientAuth"] != "body" {
            let pair = Self.formEncode(clientID) + ":" + Self.formEncode(secret)
            headers.append(("Authorization", "Basic " + Data(pair.utf8).base64EncodedString()))
        } else {
            fields.append(("client_id", clientID))
            if let secret { fields.append(("client_secret", secret)) }
        }
        let body = fields.map { Self.formEncode($0.0) + "=" + Self.formEncode($0.1) }.joined(separator: "&")
        let response: OutboundResponse
        do {
            response = try await fetcher.fetch(
                OutboundRequest(
                    method: "POST", url: tokenURL, headers: headers, body: Array(body.utf8),
                    timeout: 30, followRedirects: false, maxResponseBytes: 1 << 20))
        } catch let error as NodeError {
            throw TokenError(message: "the token endpoint could not be reached: \(error.message)")
        }
        let json = try? JSONValue(parsing: response.body)
        guard (200..<300).contains(response.status) else {
            let code = json?["error"]?.stringValue.map { " (\($0.prefix(64)))" } ?? ""
            throw TokenError(message: "the token endpoint answered \(response.status)\(code)")
        }
        guard let token = json?["access_token"]?.stringValue, !token.isEmpty else {
            throw TokenError(message: "the token endpoint's answer has no access_token")
        }
        return Tokens(accessToken: token, refreshToken: json?["refresh_token"]?.stringValue, expiresIn: json?["expires_in"]?.numberValue)
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens and stores them.
    public func completeAuthorization(_ connection: Connection, code: String, verifier: String, redirectURI: String)
        async throws(FlowStackError)
    {
        do {
            let tokens = try await requestToken(
                connection,
                grant: [
                    ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI), ("code_verifier", verifier),
                ])
            try await store.storeTokens(
                connectionID: connection.id, orgID: connection.orgID, accessToken: tokens.accessToken,
                refreshToken: tokens.refreshToken, expiresAt: tokens.expiresAt(now: store.now))
        } catch let error as TokenError {
            try? await store.setConnectionStatus(id: connection.id, status: "error", message: error.message, tested: false)
            throw FlowStackError(
                status: 502, code: "oauth2_exchange_failed", message: "The provider refused the authorization: \(error.message).")
        } catch {
            throw FlowStackError(status: 502, code: "oauth2_exchange_failed", message: "The authorization could not be completed.")
        }
    }

    static func formEncode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}

/// One refresh at a time per connection; callers arriving meanwhile wait for its result.
actor RefreshGate {
    private var running: [String: Task<Connection, any Error>] = [:]

    func run(_ id: String, _ body: @escaping @Sendable () async throws -> Connection) async throws -> Connection {
        if let task = running[id] { return try await task.value }
        let task = Task { try await body() }
        running[id] = task
        defer { running[id] = nil }
        return try await task.value
    }
}
