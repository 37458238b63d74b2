import FlowStackCore
import FlowStackCrypto
import FlowStackOperations
import FlowStackServer
import FlowStackStore
import FlowStackTesting
import Foundation
import Logging
import Testing

@Suite struct StartupTests {
    /// The sessions other than the caller's on the test database.
    func otherSessions(_ store: Store) async throws -> Int {
        try await store.read { db in
            try await db.raw("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
                .first()?.decode(column: "n", as: Int.self) ?? -1
        }
    }

    @Test("a start that fails after the database opened leaves no connection behind")
    func failedStartCloses() async throws {
        let database = try await TestDatabase.make(.postgres)
        defer { database.remove() }
        let keyring = Keyring.generate()
        let probe = try await database.openStore(keyring: keyring)
        var settings = ServerSettings()
        settings.dataDirectory = database.directory
        settings.database = database.location
        settings.keyringJSON = String(decoding: keyring.json(), as: UTF8.self)
        settings.port = 0
        settings.sandboxPath = "/nonexistent/flowstack-sandbox"
        // Refused only after the store is open (and migrated): an allowlist entry that is not a host or range.
        settings.httpAllow = ["not a host!"]
        await #expect(throws: StartupError.self) {
            _ = try await FlowStackApplication.build(settings: settings, logger: Logger(label: "test"))
        }
        var remaining = try await otherSessions(probe)
        // Well within the pool's 5 s idle timeout, which would otherwise close a leaked pool's connections too.
        let deadline = ContinuousClock.now + .seconds(2)
        while remaining > 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            remaining = try await otherSessions(probe)
        }
        #expect(remaining == 0, "the failed start left \(remaining) connection(s) open")
        await probe.database.close()
    }
}
