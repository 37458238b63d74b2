import FlowStackCore
import FlowStackCrypto
import Foundation
import SQLKit

extension Store {
    private static let checkPlaintext = "flowstack key check v1"

    /// Proves the keyring matches the database before anything else runs.
    ///
    /// Each key-encryption key that has ever sealed data leaves a sealed check value in
    /// `key_checks` (the value, not the key). At start every recorded key must be present in the
    /// keyring and open its check; new keys get a check recorded. A mismatch refuses to start.
    public func verifyKeyring() async throws {
        let sealer = self.sealer
        let now = self.now.millisecondsSince1970
        try await write { db in
            let rows = try await db.raw("SELECT key_id, purpose, sealed FROM key_checks").all()
            var known = Set<String>()
            for row in rows {
                let keyID = try row.string("key_id")
                guard let purpose = KeyPurpose(rawValue: try row.string("purpose")) else { continue }
                known.insert(keyID)
                guard sealer.keyring.key(id: keyID, purpose: purpose) != nil else {
                    throw KeyringError(
                        "this database was encrypted with the \(purpose.rawValue) key '\(keyID)', which the keyring does not contain; "
                            + "start FlowStack with the keyring that belongs to this database (FLOWSTACK_KEYRING_FILE or <data-dir>/keyring.json)"
                    )
                }
                let context = SealContext(table: "key_checks", rowID: keyID, column: "sealed", orgID: nil)
                do {
                    _ = try sealer.open(try row.bytes("sealed"), purpose: purpose, context: context)
                } catch {
                    throw KeyringError(
                        "the keyring's \(purpose.rawValue) key '\(keyID)' does not match this database (its key material is different)")
                }
            }
            for (purpose, kek) in sealer.keyring.allKeys where !known.contains(kek.id) {
                guard kek.id == sealer.keyring.active(purpose).id else { continue }
                let context = SealContext(table: "key_checks", rowID: kek.id, column: "sealed", orgID: nil)
                let sealed = try sealer.seal(Self.checkPlaintext, purpose: purpose, context: context)
                try await db.raw(
                    """
                    INSERT INTO key_checks (key_id, purpose, sealed, created_at)
                    VALUES (\(bind: kek.id), \(bind: purpose.rawValue), \(bind: Data(sealed)), \(bind: now))
                    """
                ).run()
            }
        }
    }

    // MARK: Instance settings

    public func setting(_ name: String) async throws -> String? {
        try await read { [self] db in try await setting(name, on: db) }
    }

    public func setting(_ name: String, on db: any SQLDatabase) async throws -> String? {
        try await db.raw("SELECT value FROM instance_settings WHERE name = \(bind: name)").first()?.string("value")
    }

    public func setSetting(_ name: String, _ value: String?, on db: any SQLDatabase) async throws {
        try await db.raw("DELETE FROM instance_settings WHERE name = \(bind: name)").run()
        if let value {
            try await db.raw("INSERT INTO instance_settings (name, value) VALUES (\(bind: name), \(bind: value))").run()
        }
    }
}

extension Store {
    /// When each key-encryption key was first used with this database.
    public func keyCheckDates() async throws -> [String: Date] {
        let rows = try await read { db in try await db.raw("SELECT key_id, created_at FROM key_checks").all() }
        var dates: [String: Date] = [:]
        for row in rows { dates[try row.string("key_id")] = try row.date("created_at") }
        return dates
    }
}

extension Store {
    /// Whether `keyring` has every key the database recorded and each opens its check value.
    public func keyringOpensChecks(_ keyring: Keyring) async throws -> Bool {
        let rows = try await read { db in try await db.raw("SELECT key_id, purpose, sealed FROM key_checks").all() }
        let sealer = Sealer(keyring: keyring)
        for row in rows {
            guard let purpose = KeyPurpose(rawValue: try row.string("purpose")) else { return false }
            let keyID = try row.string("key_id")
            let context = SealContext(table: "key_checks", rowID: keyID, column: "sealed", orgID: nil)
            guard (try? sealer.open(try row.bytes("sealed"), purpose: purpose, context: context)) != nil else { return false }
        }
        return true
    }
}
