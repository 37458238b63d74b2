import FlowStackCore
import Foundation
import SQLKit

extension Store {
    static let userColumns = "id, email, name, password_hash, failed_logins, locked_until, disabled, created_at, password_changed_at"

    static func user(from row: any SQLRow) throws -> User {
        User(
            id: try row.string("id"), email: try row.string("email"), name: try row.string("name"),
            passwordHash: try row.string("password_hash"), failedLogins: Int(try row.int("failed_logins")),
            lockedUntil: try row.optionalDate("locked_until"), disabled: try row.int("disabled") != 0,
            createdAt: try row.date("created_at"), passwordChangedAt: try row.date("password_changed_at")
        )
    }

    public func countUsers() async throws -> Int {
        try await read { db in
            Int(try await db.raw("SELECT COUNT(*) AS n FROM users").first()?.int("n") ?? 0)
        }
    }

    /// Inserts a user; a taken e-mail address is a 409 `email_taken`.
    public func insertUser(email: String, name: String, passwordHash: String, on db: any SQLDatabase) async throws -> User {
        let now = self.now
        let user = User(
            id: Identifier.make("usr"), email: email, name: name, passwordHash: passwordHash,
            failedLogins: 0, lockedUntil: nil, disabled: false, createdAt: now, passwordChangedAt: now)
        do {
            try await db.raw(
                """
                INSERT INTO users (id, email, name, password_hash, failed_logins, disabled, created_at, password_changed_at)
                VALUES (\(bind: user.id), \(bind: email), \(bind: name), \(bind: passwordHash), 0, 0,
                        \(bind: now.millisecondsSince1970), \(bind: now.millisecondsSince1970))
                """
            ).run()
        } catch  where isUniqueViolation(error) {
            throw StoreError.emailTaken
        }
        return user
    }

    public func user(id: String) async throws -> User? {
        try await read { db in try await Self.user(id: id, on: db) }
    }

    static func user(id: String, on db: any SQLDatabase) async throws -> User? {
        try await db.raw("SELECT \(unsafeRaw: userColumns) FROM users WHERE id = \(bind: id)").first().map(user(from:))
    }

    public func user(email: String) async throws -> User? {
        try await read { db in
            try await db.raw("SELECT \(unsafeRaw: Self.userColumns) FROM users WHERE email = \(bind: email)").first().map(Self.user(from:))
        }
    }

    /// The outcome of reserving a login attempt.
    public enum LoginSlot: Sendable, Equatable {
        /// The attempt may check the password; `attempt` counts consecutive failures including this one.
        case allowed(attempt: Int)
        case locked(until: Date)
    }

    /// Atomically counts a login attempt before the password is checked, so parallel attempts
    /// cannot race past the limit: the counter is incremented first and reset on success. An
    /// expired lock starts a fresh count.
    public func reserveLoginAttempt(userID: String, maxFailures: Int, forgetAfter: TimeInterval = 30 * 60) async throws -> LoginSlot {
        let now = self.now.millisecondsSince1970
        let quiet = now - Int64(forgetAfter * 1000)
        return try await write { db in
            guard
                let row = try await db.raw(
                    """
                    UPDATE users SET
                        failed_logins = CASE WHEN locked_until IS NOT NULL AND locked_until <= \(bind: now) THEN 1
                                             WHEN locked_until IS NULL AND last_failed_login_at IS NOT NULL AND last_failed_login_at <= \(bind: quiet) THEN 1
                                             ELSE failed_logins + 1 END,
                        locked_until = CASE WHEN locked_until IS NOT NULL AND locked_until <= \(bind: now) THEN NULL ELSE locked_until END,
                        last_failed_login_at = \(bind: now)
                    WHERE id = \(bind: userID)
                    RETURNING failed_logins, locked_until
                    """
                ).first()
            else { throw StoreError.noRowReturned }
            let attempt = Int(try row.int("failed_logins"))
            if let until = try row.optionalDate("locked_until") {
                return .locked(until: until)
            }
            if attempt > maxFailures {
                // Only reachable by attempts racing the one that set the lock.
                return .locked(until: Date(millisecondsSince1970: now))
            }
            return .allowed(attempt: attempt)
        }
    }

    /// `reserveLoginAttempt` for an e-mail address no account has: the same counting and the
    /// same lock, keyed by the address's hash, so a locked unknown address answers like a
    /// locked account.
    public func reserveUnknownLoginAttempt(emailHash: String, maxFailures: Int, forgetAfter: TimeInterval = 30 * 60) async throws
        -> LoginSlot
    {
        let now = self.now.millisecondsSince1970
        let quiet = now - Int64(forgetAfter * 1000)
        return try await write { db in
            let row = try await db.raw(
                """
                INSERT INTO login_failures (email_hash, failures, locked_until, updated_at) VALUES (\(bind: emailHash), 1, NULL, \(bind: now))
                ON CONFLICT (email_hash) DO UPDATE SET
                    failures = CASE WHEN login_failures.locked_until IS NOT NULL AND login_failures.locked_until <= \(bind: now) THEN 1
                                    WHEN login_failures.locked_until IS NULL AND login_failures.updated_at <= \(bind: quiet) THEN 1
                                    ELSE login_failures.failures + 1 END,
                    locked_until = CASE WHEN login_failures.locked_until IS NOT NULL AND login_failures.locked_until <= \(bind: now)
                                   THEN NULL ELSE login_failures.locked_until END,
                    updated_at = \(bind: now)
                RETURNING failures, locked_until
                """
            ).first()
            guard let row else { throw StoreError.noRowReturned }
            let attempt = Int(try row.int("failures"))
            if let until = try row.optionalDate("locked_until") { return .locked(until: until) }
            if attempt > maxFailures { return .locked(until: Date(millisecondsSince1970: now)) }
            return .allowed(attempt: attempt)
        }
    }

    public func lockUnknownAddress(emailHash: String, until: Date) async throws {
        try await write { db in
            try await db.raw(
                "UPDATE login_failures SET locked_until = \(bind: until.millisecondsSince1970) WHERE email_hash = \(bind: emailHash)"
            ).run()
        }
    }

    /// Forgets unknown addresses that have not failed for `age` and are not locked.
    public func deleteStaleLoginFailures(olderThan age: TimeInterval) async throws {
        let now = self.now
        try await write { db in
            try await db.raw(
                """
                DELETE FROM login_failures WHERE updated_at <= \(bind: now.addingTimeInterval(-age).millisecondsSince1970)
                AND (locked_until IS NULL OR locked_until <= \(bind: now.millisecondsSince1970))
                """
            ).run()
        }
    }

    public func resetFailedLogins(userID: String, on db: any SQLDatabase) async throws {
        try await db.raw("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = \(bind: userID)").run()
    }

    public func lockUser(userID: String, until: Date, on db: any SQLDatabase) async throws {
        try await db.raw("UPDATE users SET locked_until = \(bind: until.millisecondsSince1970) WHERE id = \(bind: userID)").run()
    }

    public func setPassword(userID: String, passwordHash: String, on db: any SQLDatabase) async throws {
        try await db.raw(
            """
            UPDATE users SET password_hash = \(bind: passwordHash), password_changed_at = \(bind: now.millisecondsSince1970)
            WHERE id = \(bind: userID)
            """
        ).run()
    }

    /// Disables (or re-enables) an account; disabling ends every session at once.
    public func setDisabled(userID: String, _ disabled: Bool, on db: any SQLDatabase) async throws {
        try await db.raw("UPDATE users SET disabled = \(bind: disabled ? 1 : 0) WHERE id = \(bind: userID)").run()
        if disabled {
            try await db.raw("DELETE FROM sessions WHERE user_id = \(bind: userID)").run()
        }
    }
}

extension Store {
    public static func existsUser(email: String, on db: any SQLDatabase) async throws -> Bool {
        try await db.raw("SELECT id FROM users WHERE email = \(bind: email)").first() != nil
    }
}
