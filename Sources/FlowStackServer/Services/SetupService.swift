import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Logging
import SQLKit

/// The one-time owner setup token: made at start while the instance has no user, printed and
/// written to `<data-dir>/setup-token` (0600), stored only as a hash, and gone once used.
struct SetupService: Sendable {
    static let settingName = "setup_token_hash"
    let store: Store
    let tokenFile: String

    /// A fresh token when nobody has set the instance up yet (replacing any earlier one).
    func prepare() async throws -> String? {
        guard try await store.countUsers() == 0 else {
            try? FileManager.default.removeItem(atPath: tokenFile)
            return nil
        }
        let token = Token.make(prefix: "fst_")
        try await store.write { db in try await store.setSetting(Self.settingName, Token.hash(token), on: db) }
        try SecureFile.write(Data(token.utf8), to: tokenFile)
        return token
    }

    /// Throws unless `token` is the current setup token (constant-time comparison of hashes).
    func check(_ token: String, on db: any SQLDatabase) async throws {
        let row = try await db.raw("SELECT value FROM instance_settings WHERE name = \(bind: Self.settingName)").first()
        guard let stored = try row?.decode(column: "value", as: String.self) else {
            throw FlowStackError.conflict("already_set_up", "This FlowStack instance has already been set up.")
        }
        guard Token.constantTimeEquals(Token.hash(token), stored) else {
            throw FlowStackError(status: 403, code: "invalid_setup_token", message: "The setup token is not valid.", field: "token")
        }
    }

    func consumed() {
        try? FileManager.default.removeItem(atPath: tokenFile)
    }
}

