import FlowStackCore
import Foundation
import SQLKit

extension Store {
    static let apiKeyColumns =
        "id, org_id, project_id, created_by, name, prefix, last4, scope, created_at, last_used_at, expires_at, revoked_at"

    static func apiKey(from row: any SQLRow) throws -> APIKey {
        APIKey(
            id: try row.string("id"), orgID: try row.string("org_id"), projectID: try row.optionalString("project_id"),
            createdBy: try row.string("created_by"), name: try row.string("name"), prefix: try row.string("prefix"),
            last4: try row.string("last4"), scope: APIKeyScope(rawValue: try row.string("scope")) ?? .read,
            createdAt: try row.date("created_at"), lastUsedAt: try row.optionalDate("last_used_at"),
            expiresAt: try row.optionalDate("expires_at"), revokedAt: try row.optionalDate("revoked_at")
        )
    }

    public func insertAPIKey(_ key: APIKey, keyHash: String, on db: any SQLDatabase) async throws {
        try await db.raw(
            """
            INSERT INTO api_keys (id, org_id, project_id, created_by, name, key_hash, prefix, last4, scope, created_at, expires_at)
            VALUES (\(bind: key.id), \(bind: key.orgID), \(bind: key.projectID), \(bind: key.createdBy), \(bind: key.name),
                    \(bind: keyHash), \(bind: key.prefix), \(bind: key.last4), \(bind: key.scope.rawValue),
                    \(bind: key.createdAt.millisecondsSince1970), \(bind: key.expiresAt.ms))
            """
        ).run()
    }

    public func apiKeys(orgID: String, createdBy: String?) async throws -> [APIKey] {
        try await read { db in
            var query: SQLQueryString =
                "SELECT \(unsafeRaw: Self.apiKeyColumns) FROM api_keys WHERE org_id = \(bind: orgID) AND revoked_at IS NULL"
            if let createdBy { query += " AND created_by = \(bind: createdBy)" }
            query += " ORDER BY created_at, id"
            return try await db.raw(query).all().map(Self.apiKey(from:))
        }
    }

    public func apiKey(id: String, orgID: String) async throws -> APIKey? {
        try await read { db in
            try await db.raw("SELECT \(unsafeRaw: Self.apiKeyColumns) FROM api_keys WHERE id = \(bind: id) AND org_id = \(bind: orgID)")
                .first().map(Self.apiKey(from:))
        }
    }

    /// What authenticating with an API key needs, in one query: the key, its creator, and the
    /// creator's current membership of the key's organization (nil once they left it).
    public struct APIKeyIdentity: Sendable {
        public var key: APIKey
        public var user: User
        public var organization: Organization?
        public var role: OrgRole?
    }

    public func apiKey(hash: String) async throws -> APIKeyIdentity? {
        try await read { db in
            // The hot path of every API-key request: one short statement (SQLite parses it each
            // time), only the columns authentication needs.
            guard
                let row = try await db.raw(
                    """
                    SELECT k.id, k.org_id, k.project_id, k.created_by, k.prefix, k.last4, k.scope, k.created_at, k.last_used_at,
                           k.expires_at, k.revoked_at, u.email, u.name, u.disabled, u.created_at AS uc, o.name AS o_name, o.plan,
                           o.created_at AS oc, m.role
                    FROM api_keys k JOIN users u ON u.id = k.created_by JOIN organizations o ON o.id = k.org_id
                    LEFT JOIN memberships m ON m.org_id = k.org_id AND m.user_id = k.created_by
                    WHERE k.key_hash = \(bind: hash)
                    """
                ).first()
            else { return nil }
            let key = APIKey(
                id: try row.string("id"), orgID: try row.string("org_id"), projectID: try row.optionalString("project_id"),
                createdBy: try row.string("created_by"), name: "", prefix: try row.string("prefix"),
                last4: try row.string("last4"), scope: APIKeyScope(rawValue: try row.string("scope")) ?? .read,
                createdAt: try row.date("created_at"), lastUsedAt: try row.optionalDate("last_used_at"),
                expiresAt: try row.optionalDate("expires_at"), revokedAt: try row.optionalDate("revoked_at")
            )
            // The password hash is not loaded: an API key can never change the password.
            let user = User(
                id: key.createdBy, email: try row.string("email"), name: try row.string("name"), passwordHash: "",
                failedLogins: 0, lockedUntil: nil, disabled: try row.int("disabled") != 0,
                createdAt: try row.date("uc"), passwordChangedAt: try row.date("uc"))
            let role = try row.optionalString("role").flatMap(OrgRole.init(rawValue:))
            let organization = Organization(
                id: key.orgID, name: try row.string("o_name"),
                plan: Plan(rawValue: try row.string("plan")) ?? .free, createdAt: try row.date("oc"))
            return APIKeyIdentity(key: key, user: user, organization: role == nil ? nil : organization, role: role)
        }
    }

    public func revokeAPIKey(id: String, on db: any SQLDatabase) async throws {
        try await db.raw(
            "UPDATE api_keys SET revoked_at = \(bind: now.millisecondsSince1970) WHERE id = \(bind: id) AND revoked_at IS NULL"
        ).run()
    }

    public func touchAPIKey(id: String) async throws {
        let now = self.now.millisecondsSince1970
        try await write { db in
            try await db.raw("UPDATE api_keys SET last_used_at = \(bind: now) WHERE id = \(bind: id)").run()
        }
    }
}
