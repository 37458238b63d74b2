import FlowStackCore
import Foundation
import SQLKit

extension Store {
    /// Creates a session for `tokenHash` (the token itself is never stored).
    public func insertSession(
        userID: String, tokenHash: String, absoluteLifetime: TimeInterval, ip: String, userAgent: String, on db: any SQLDatabase
    ) async throws -> Session {
        let now = self.now
        let session = Session(
            id: Identifier.make("ses"), userID: userID, createdAt: now, lastSeenAt: now,
            expiresAt: now.addingTimeInterval(absoluteLifetime))
        try await db.raw(
            """
            INSERT INTO sessions (id, token_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent)
            VALUES (\(bind: session.id), \(bind: tokenHash), \(bind: userID), \(bind: now.millisecondsSince1970),
                    \(bind: now.millisecondsSince1970), \(bind: session.expiresAt.millisecondsSince1970),
                    \(bind: ip), \(bind: String(userAgent.encodingControlCharacters.prefix(512))))
            """
        ).run()
        return session
    }

    /// The session and its user for a token hash, if both exist and the user is not disabled.
    public func session(tokenHash: String) async throws -> (Session, User)? {
        try await read { db in
            guard
                let row = try await db.raw(
                    """
                    SELECT s.id AS session_id, s.created_at AS session_created_at, s.last_seen_at, s.expires_at,
                           u.id, u.email, u.name, u.password_hash, u.failed_logins, u.locked_until, u.disabled,
                           u.created_at, u.password_changed_at
                    FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = \(bind: tokenHash)
                    """
                ).first()
            else { return nil }
            let user = try Self.user(from: row)
            let session = Session(
                id: try row.string("session_id"), userID: user.id,
                createdAt: try row.date("session_created_at"), lastSeenAt: try row.date("last_seen_at"),
                expiresAt: try row.date("expires_at"))
            return (session, user)
        }
    }

    public func touchSession(id: String) async throws {
        let now = self.now.millisecondsSince1970
        try await write { db in
            try await db.raw("UPDATE sessions SET last_seen_at = \(bind: now) WHERE id = \(bind: id)").run()
        }
    }

    public func deleteSession(id: String, on db: any SQLDatabase) async throws {
        try await db.raw("DELETE FROM sessions WHERE id = \(bind: id)").run()
    }

    /// Ends every session of a user except `keeping`.
    public func deleteSessions(userID: String, keeping: String?, on db: any SQLDatabase) async throws {
        if let keeping {
            try await db.raw("DELETE FROM sessions WHERE user_id = \(bind: userID) AND id <> \(bind: keeping)").run()
        } else {
            try await db.raw("DELETE FROM sessions WHERE user_id = \(bind: userID)").run()
        }
    }

    public func deleteExpiredSessions(idleTimeout: TimeInterval) async throws {
        let now = self.now
        try await write { db in
            try await db.raw(
                """
                DELETE FROM sessions WHERE expires_at <= \(bind: now.millisecondsSince1970)
                OR last_seen_at <= \(bind: now.addingTimeInterval(-idleTimeout).millisecondsSince1970)
                """
            ).run()
        }
    }
}

extension Store {
    /// Whether session `id` of `userID` exists, has not expired and was used within `idleTimeout`.
    public func sessionIsLive(id: String, userID: String, idleTimeout: TimeInterval) async throws -> Bool {
        let now = self.now
        return try await read { db in
            guard
                let row = try await db.raw(
                    """
                    SELECT s.expires_at, s.last_seen_at, u.disabled FROM sessions s JOIN users u ON u.id = s.user_id
                    WHERE s.id = \(bind: id) AND s.user_id = \(bind: userID)
                    """
                ).first()
            else { return false }
            return try row.date("expires_at") > now && now.timeIntervalSince(try row.date("last_seen_at")) < idleTimeout
                && (try row.int("disabled")) == 0
        }
    }
}
