import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Logging

/// The one-time owner setup token: made at start while the instance has no user, printed and
/// written to `<data-dir>/setup-token` (0600), stored only as a hash, and gone once used.
public struct SetupService: Sendable {
    public static let settingName = "setup_token_hash"
    let store: Store
    let tokenFile: String

    public init(store: Store, tokenFile: String) {
        self.store = store
        self.tokenFile = tokenFile
    }

    /// A fresh token when nobody has set the instance up yet (replacing any earlier one).
    public func prepare() async throws -> String? {
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
    func check(_ token: String) async throws {
        try Self.check(token, against: try await store.setting(Self.settingName))
    }

    /// Throws unless `token` hashes to `stored` (read inside the transaction that uses it).
    static func check(_ token: String, against stored: String?) throws {
        guard let stored else {
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
