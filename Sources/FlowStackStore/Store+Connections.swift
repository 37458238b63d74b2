import FlowStackCore
import FlowStackCrypto
import Foundation
import SQLKit

/// A stored connection with its secrets opened. Only the engine uses `data.secrets`; the API
/// shows hints of them and nothing more.
public struct Connection: Sendable, Equatable {
    public var id: String
    public var orgID: String
    public var projectID: String
    public var name: String
    public var kind: ConnectionKind
    public var data: ConnectionData
    public var testURL: String?
    /// Hosts the credential may be sent to (exact names, or `*.example.com` for subdomains);
    /// empty means any host the SSRF guard allows.
    public var allowedHosts: [String] = []
    /// "ok", "untested" or "error" (with `statusMessage`): a failing OAuth2 refresh shows here.
    public var status: String
    public var statusMessage: String?
    public var lastTestedAt: Date?
    public var tokenExpiresAt: Date?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, orgID: String, projectID: String, name: String, kind: ConnectionKind, data: ConnectionData, testURL: String?,
        status: String, statusMessage: String?, lastTestedAt: Date?, tokenExpiresAt: Date?, createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.orgID = orgID
        self.projectID = projectID
        self.name = name
        self.kind = kind
        self.data = data
        self.testURL = testURL
        self.status = status
        self.statusMessage = statusMessage
        self.lastTestedAt = lastTestedAt
        self.tokenExpiresAt = tokenExpiresAt
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// An OAuth2 authorization in flight: bound to the user and session that started it.
public struct OAuth2State: Sendable {
    public var connectionID: String
    public var orgID: String
    public var userID: String
    public var sessionID: String
    public var verifier: String
    public var redirectURI: String
    public var expiresAt: Date

    public init(
        connectionID: String, orgID: String, userID: String, sessionID: String, verifier: String, redirectURI: String, expiresAt: Date
    ) {
        self.connectionID = connectionID
        self.orgID = orgID
        self.userID = userID
        self.sessionID = sessionID
        self.verifier = verifier
        self.redirectURI = redirectURI
        self.expiresAt = expiresAt
    }
}

extension Store {
    private struct Config: Codable {
        var config: [String: String]
        var testUrl: String?
        var allowedHosts: [String]?
    }

    static func secretContext(connectionID: String, field: String, orgID: String) -> SealContext {
        SealContext(table: "connection_secrets", rowID: connectionID, column: field, orgID: orgID)
    }

    static func configContext(connectionID: String, orgID: String) -> SealContext {
        SealContext(table: "connections", rowID: connectionID, column: "config", orgID: orgID)
    }

    private func sealConfig(_ connection: Connection) throws -> Data {
        let json = try JSONEncoder().encode(
            Config(
                config: connection.data.config, testUrl: connection.testURL,
                allowedHosts: connection.allowedHosts.isEmpty ? nil : connection.allowedHosts))
        return Data(
            try sealer.seal(json, purpose: .data, context: Self.configContext(connectionID: connection.id, orgID: connection.orgID)))
    }

    /// Rewrites the secret rows. OAuth2 tokens are the server's: an update keeps the stored ones
    /// (a refresh may have replaced them since the caller read the connection) unless `clearTokens`.
    private func writeSecrets(_ connection: Connection, clearTokens: Bool = true, on db: any SQLDatabase) async throws {
        let managed = Set((ConnectionSchema.fields(connection.kind) ?? []).filter(\.managed).map(\.name))
        if clearTokens || managed.isEmpty {
            try await db.raw("DELETE FROM connection_secrets WHERE connection_id = \(bind: connection.id)").run()
        } else {
            try await db.select().column("field").from("connection_secrets").where("connection_id", .equal, connection.id).all()
                .map { try $0.decode(column: "field", as: String.self) }.filter { !managed.contains($0) }
                .asyncForEach { field in
                    try await db.raw(
                        "DELETE FROM connection_secrets WHERE connection_id = \(bind: connection.id) AND field = \(bind: field)"
                    ).run()
                }
        }
        for (field, value) in connection.data.secrets.sorted(by: { $0.key < $1.key }) where clearTokens || !managed.contains(field) {
            let sealed = try sealer.seal(
                Array(value.utf8), purpose: .connections,
                context: Self.secretContext(connectionID: connection.id, field: field, orgID: connection.orgID))
            try await db.raw(
                """
                INSERT INTO connection_secrets (connection_id, field, org_id, sealed)
                VALUES (\(bind: connection.id), \(bind: field), \(bind: connection.orgID), \(bind: Data(sealed)))
                """
            ).run()
        }
    }

    /// Creates a connection; false when its project already has one by that name.
    public func insertConnection(_ connection: Connection, createdBy: String?, on db: any SQLDatabase) async throws -> Bool {
        let inserted =
            try await db.raw(
                """
                INSERT INTO connections (id, org_id, project_id, name, type, config_sealed, status, status_message, last_tested_at,
                                         token_expires_at, created_by, created_at, updated_at)
                VALUES (\(bind: connection.id), \(bind: connection.orgID), \(bind: connection.projectID), \(bind: connection.name),
                        \(bind: connection.kind.rawValue), \(bind: try sealConfig(connection)), \(bind: connection.status),
                        \(bind: connection.statusMessage), \(bind: connection.lastTestedAt.ms), \(bind: connection.tokenExpiresAt.ms),
                        \(bind: createdBy), \(bind: connection.createdAt.millisecondsSince1970), \(bind: connection.updatedAt.millisecondsSince1970))
                ON CONFLICT DO NOTHING RETURNING id
                """
            ).first() != nil
        if inserted { try await writeSecrets(connection, on: db) }
        return inserted
    }

    /// Replaces a connection's name and data; false when the name is taken. Its state (status,
    /// last test) is left as it is in the database — a test or token refresh may have changed it
    /// since `connection` was read — unless `resetStatus` (new data: untested again). Stored OAuth2
    /// tokens stay unless `clearTokens` (the client or endpoints changed).
    public func updateConnection(_ connection: Connection, resetStatus: Bool, clearTokens: Bool = false, on db: any SQLDatabase)
        async throws -> Bool
    {
        do {
            try await db.raw(
                """
                UPDATE connections SET name = \(bind: connection.name), config_sealed = \(bind: try sealConfig(connection)),
                    status = \(unsafeRaw: resetStatus ? "'untested'" : "status"), status_message = \(unsafeRaw: resetStatus ? "NULL" : "status_message"),
                    token_expires_at = \(unsafeRaw: clearTokens ? "NULL" : "token_expires_at"),
                    updated_at = \(bind: now.millisecondsSince1970)
                WHERE id = \(bind: connection.id)
                """
            ).run()
        } catch  where isUniqueViolation(error) {
            return false
        }
        try await writeSecrets(connection, clearTokens: clearTokens, on: db)
        return true
    }

    /// Records a test or refresh outcome without touching the data.
    public func setConnectionStatus(id: String, status: String, message: String?, tested: Bool) async throws {
        let now = self.now.millisecondsSince1970
        try await write { db in
            if tested {
                try await db.raw(
                    """
                    UPDATE connections SET status = \(bind: status), status_message = \(bind: message), last_tested_at = \(bind: now)
                    WHERE id = \(bind: id)
                    """
                ).run()
            } else {
                try await db.raw(
                    "UPDATE connections SET status = \(bind: status), status_message = \(bind: message) WHERE id = \(bind: id)"
                ).run()
            }
        }
    }

    /// Stores fresh OAuth2 tokens (a refresh token is kept when the provider sends none).
    public func storeTokens(connectionID: String, orgID: String, accessToken: String, refreshToken: String?, expiresAt: Date?) async throws
    {
        let access = try sealer.seal(
            Array(accessToken.utf8), purpose: .connections,
            context: Self.secretContext(connectionID: connectionID, field: "accessToken", orgID: orgID))
        let refresh = try refreshToken.map {
            try sealer.seal(
                Array($0.utf8), purpose: .connections,
                context: Self.secretContext(connectionID: connectionID, field: "refreshToken", orgID: orgID))
        }
        let now = self.now.millisecondsSince1970
        try await write { db in
            for (field, sealed) in [("accessToken", access), ("refreshToken", refresh)] {
                guard let sealed else { continue }
                try await db.raw("DELETE FROM connection_secrets WHERE connection_id = \(bind: connectionID) AND field = \(bind: field)")
                    .run()
                try await db.raw(
                    """
                    INSERT INTO connection_secrets (connection_id, field, org_id, sealed)
                    VALUES (\(bind: connectionID), \(bind: field), \(bind: orgID), \(bind: Data(sealed)))
                    """
                ).run()
            }
            try await db.raw(
                """
                UPDATE connections SET token_expires_at = \(bind: expiresAt.ms), status = 'ok', status_message = NULL, updated_at = \(bind: now)
                WHERE id = \(bind: connectionID)
                """
            ).run()
        }
    }

    public func deleteConnection(id: String, on db: any SQLDatabase) async throws -> Bool {
        try await db.raw("DELETE FROM connections WHERE id = \(bind: id) RETURNING id").first() != nil
    }

    private static let columns = """
        id, org_id, project_id, name, type, config_sealed, status, status_message, last_tested_at, token_expires_at, created_at, updated_at
        """

    private func connections(where condition: SQLQueryString) async throws -> [Connection] {
        let (rows, secretRows) = try await read { db in
            let rows = try await db.raw("SELECT \(unsafeRaw: Self.columns) FROM connections WHERE " + condition + " ORDER BY name").all()
            let ids = try rows.map { try $0.string("id") }
            guard !ids.isEmpty else { return (rows, [any SQLRow]()) }
            let secrets = try await db.select().columns("connection_id", "field", "org_id", "sealed").from("connection_secrets")
                .where("connection_id", .in, ids).all()
            return (rows, secrets)
        }
        var secrets: [String: [String: String]] = [:]
        for row in secretRows {
            let id = try row.string("connection_id")
            let field = try row.string("field")
            let orgID = try row.string("org_id")
            let value = try sealer.open(
                try row.bytes("sealed"), purpose: .connections,
                context: Self.secretContext(connectionID: id, field: field, orgID: orgID))
            secrets[id, default: [:]][field] = String(decoding: value, as: UTF8.self)
        }
        return try rows.map { row in
            let id = try row.string("id")
            let orgID = try row.string("org_id")
            let configJSON = try sealer.open(
                try row.bytes("config_sealed"), purpose: .data, context: Self.configContext(connectionID: id, orgID: orgID))
            let config = try JSONDecoder().decode(Config.self, from: Data(configJSON))
            guard let kind = ConnectionKind(rawValue: try row.string("type")) else { throw DatabaseError("unknown connection type") }
            var connection = Connection(
                id: id, orgID: orgID, projectID: try row.string("project_id"), name: try row.string("name"), kind: kind,
                data: ConnectionData(config: config.config, secrets: secrets[id] ?? [:]), testURL: config.testUrl,
                status: try row.string("status"), statusMessage: try row.optionalString("status_message"),
                lastTestedAt: try row.optionalDate("last_tested_at"), tokenExpiresAt: try row.optionalDate("token_expires_at"),
                createdAt: try row.date("created_at"), updatedAt: try row.date("updated_at"))
            connection.allowedHosts = config.allowedHosts ?? []
            return connection
        }
    }

    public func connection(id: String) async throws -> Connection? {
        try await connections(where: "id = \(bind: id)").first
    }

    public func connections(projectID: String) async throws -> [Connection] {
        try await connections(where: "project_id = \(bind: projectID)")
    }

    public func connections(orgID: String) async throws -> [Connection] {
        try await connections(where: "org_id = \(bind: orgID)")
    }

    /// A connection of `projectID` by id or by name; a connection of another project is not found.
    public func connection(reference: String, projectID: String) async throws -> Connection? {
        try await connections(where: "project_id = \(bind: projectID) AND (id = \(bind: reference) OR name = \(bind: reference))").first
    }

    // MARK: OAuth2 authorizations in flight

    private static func verifierContext(_ stateHash: String, orgID: String) -> SealContext {
        SealContext(table: "oauth2_states", rowID: stateHash, column: "verifier", orgID: orgID)
    }

    public func insertOAuth2State(stateHash: String, _ state: OAuth2State) async throws {
        let sealed = try sealer.seal(state.verifier, context: Self.verifierContext(stateHash, orgID: state.orgID))
        let now = self.now.millisecondsSince1970
        try await write { db in
            try await db.raw("DELETE FROM oauth2_states WHERE expires_at < \(bind: now)").run()
            try await db.raw(
                """
                INSERT INTO oauth2_states (state_hash, connection_id, org_id, user_id, session_id, verifier_sealed, redirect_uri, expires_at)
                VALUES (\(bind: stateHash), \(bind: state.connectionID), \(bind: state.orgID), \(bind: state.userID), \(bind: state.sessionID),
                        \(bind: Data(sealed)), \(bind: state.redirectURI), \(bind: state.expiresAt.millisecondsSince1970))
                """
            ).run()
        }
    }

    /// Takes (and deletes) an authorization in flight: a state works once.
    public func takeOAuth2State(stateHash: String) async throws -> OAuth2State? {
        let row = try await write { db in
            try await db.raw(
                """
                DELETE FROM oauth2_states WHERE state_hash = \(bind: stateHash)
                RETURNING connection_id, org_id, user_id, session_id, verifier_sealed, redirect_uri, expires_at
                """
            ).first()
        }
        guard let row else { return nil }
        let orgID = try row.string("org_id")
        return OAuth2State(
            connectionID: try row.string("connection_id"), orgID: orgID, userID: try row.string("user_id"),
            sessionID: try row.string("session_id"),
            verifier: try sealer.openString(try row.bytes("verifier_sealed"), context: Self.verifierContext(stateHash, orgID: orgID)),
            redirectURI: try row.string("redirect_uri"), expiresAt: try row.date("expires_at"))
    }
}

extension Sequence {
    func asyncForEach(_ body: (Element) async throws -> Void) async rethrows {
        for element in self { try await body(element) }
    }
}
