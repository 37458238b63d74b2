import Foundation
import SQLKit

extension Store {
    /// One key check row: proof, sealed with a key, that the keyring holds it.
    public struct KeyCheckRecord: Sendable {
        public var keyID: String
        public var purpose: String
        public var sealed: Data
    }

    /// Every key check, by key id (for a backup's manifest).
    public func keyChecks() async throws -> [KeyCheckRecord] {
        try await read { db in
            try await db.raw("SELECT key_id, purpose, sealed FROM key_checks ORDER BY key_id").all().map { row in
                KeyCheckRecord(
                    keyID: try row.string("key_id"), purpose: try row.string("purpose"),
                    sealed: try row.decode(column: "sealed", as: Data.self))
            }
        }
    }

    /// The highest migration applied.
    public func schemaVersion() async throws -> Int {
        try await read { db in
            try await db.raw("SELECT MAX(version) AS v FROM schema_migrations").first()?.decode(column: "v", as: Int?.self) ?? 0
        }
    }

    /// Writes a consistent copy of an SQLite database to `path`; other databases are backed up
    /// with their own tools.
    public func snapshot(to path: String) async throws {
        guard let sqlite = database as? SQLiteStore else { throw DatabaseError("the database is not SQLite") }
        try await sqlite.snapshot(to: path)
    }
}
