import FlowStackCore
import FlowStackServer
import FlowStackStore
import FlowStackTesting
import Foundation
import Testing

/// Two replicas on one PostgreSQL: what one changes, the other enforces at once.
@Suite struct ReplicaTests {
    /// Polls `check` until it holds or `limit` has passed; how long it took, or nil.
    func elapsed(until check: () async throws -> Bool, limit: Duration = .seconds(1)) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            if try await check() { return ContinuousClock.now - start }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try await check() ? ContinuousClock.now - start : nil
    }

    @Test("a key revoked and a workflow deactivated on one replica are refused by the other within a second")
    func secondReplicaRefuses() async throws {
        // Caches that would serve for a minute: only the announcement can make the second replica refuse in time.
        let primary = try await TestApp.make(.postgres) {
            $0.app.apiKeyCacheLifetime = .seconds(60)
            $0.webhookCacheLifetime = .seconds(60)
        }
        let replica = try await primary.replica()
        try await primary.test { a in
            try await replica.test { b in
                let owner = try await a.setupOwner(primary)
                let auth = try await a.login(owner)
                let key = try await a.createAPIKey(auth, orgID: owner.orgID)
                let other = try await a.createAPIKey(auth, orgID: owner.orgID)
                let project = try await a.createProject(auth, orgID: owner.orgID)
                let workflowID = try await a.createActiveWebhook(auth, projectID: project, path: "on-both")
                try await replica.awaitListening()

                // The second replica has both keys and the webhook in its caches.
                #expect(try await b.get("/api/v1/me", auth: .apiKey(key)).status == 200)
                #expect(try await b.get("/api/v1/me", auth: .apiKey(other)).status == 200)
                #expect(try await b.post("/webhook/on-both", ["n": 1]).status == 200)

                // A change nobody announced (made behind FlowStack's back) is not seen: the cache is in effect.
                let otherPrefix = String(other.prefix(8))
                try await primary.store.write { db in
                    try await db.raw("UPDATE api_keys SET revoked_at = 1 WHERE prefix = \(bind: otherPrefix)").run()
                }
                #expect(try await b.get("/api/v1/me", auth: .apiKey(other)).status == 200)

                // Revoked through the API on the first replica: refused on the second within a second.
                let keys = try await a.get("/api/v1/orgs/\(owner.orgID)/api-keys", auth: auth).json["items"] as? [[String: Any]] ?? []
                let keyID = try #require(keys.first { $0["prefix"] as? String == String(key.prefix(8)) }?["id"] as? String)
                #expect(try await a.request(.delete, "/api/v1/orgs/\(owner.orgID)/api-keys/\(keyID)", auth: auth).status == 204)
                let revoked = try await elapsed { try await b.get("/api/v1/me", auth: .apiKey(key)).status == 401 }
                #expect(revoked != nil, "the second replica still accepted the revoked key after 1 s")

                // Deactivated on the first replica: the second stops serving its webhook within a second.
                #expect(try await a.post("/api/v1/workflows/\(workflowID)/deactivate", nil, auth: auth).status == 200)
                let stopped = try await elapsed { try await b.post("/webhook/on-both", ["n": 2]).status == 404 }
                #expect(stopped != nil, "the second replica still served the deactivated workflow's webhook after 1 s")
            }
        }
    }
}
