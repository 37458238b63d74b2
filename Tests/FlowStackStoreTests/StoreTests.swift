import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import FlowStackTesting
import Foundation
import Logging
import SQLKit
import Testing

/// The storage suite: every test runs on SQLite and on PostgreSQL.
@Suite struct StoreTests {
    @Test("migrations apply once and are recorded", arguments: Backend.allCases)
    func migrations(backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.openStore()
        try await Migrations.apply(to: store.database, logger: Logger(label: "test"))
        let versions = try await store.read { db in
            try await db.raw("SELECT version FROM schema_migrations ORDER BY version").all().map {
                try $0.decode(column: "version", as: Int.self)
            }
        }
        #expect(versions == Migrations.all.map(\.version))
        #expect(try await Migrations.isInitialized(store.database))
        await store.database.close()
    }

    @Test("the PostgreSQL pool starts no keep-alive timer and only a short idle timer per lease")
    func poolTimers() throws {
        // Each timer is a Task.sleep; cancelled, it still holds its task until its deadline, so
        // long timers per lease made memory grow with the lease rate (RELIABILITY.md, queued).
        let options = try PostgresStore.configuration(url: "postgres://u@127.0.0.1:5432/db").options
        #expect(options.keepAliveBehavior == nil)
        #expect(options.connectionIdleTimeout <= .seconds(5))
    }

    @Test("an opened workflow version is kept, for its org only, until its workflow is deleted", arguments: Backend.allCases)
    func versionCache(backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.openStore()
        try await Migrations.apply(to: store.database, logger: Logger(label: "test"))
        let definition = Workflow(
            name: "Cached", nodes: [WorkflowNode(name: "Manual", type: "flowstack.manualTrigger", parameters: [:])], edges: [])
        let workflow = try await store.write { db in
            let user = try await store.insertUser(email: "v@example.com", name: "V", passwordHash: "x", on: db)
            let org = try await store.insertOrganization(name: "Org", owner: user.id, on: db)
            let project = try await store.insertProject(orgID: org.id, name: "P", description: "", creator: user.id, on: db)
            return try await store.insertWorkflow(orgID: org.id, projectID: project.id, definition: definition, creator: user.id, on: db)
        }
        #expect(try await store.workflowDefinition(versionID: workflow.versionID, orgID: workflow.orgID) == definition)
        // Read from the cache: the row is no longer consulted (here it is made unreadable).
        try await store.write { db in
            try await db.raw(
                "UPDATE workflow_versions SET definition_sealed = \(bind: Data(repeating: 0, count: 40)) WHERE id = \(bind: workflow.versionID)"
            ).run()
        }
        #expect(try await store.workflowDefinition(versionID: workflow.versionID, orgID: workflow.orgID) == definition)
        // Another org's id is not served from the cache: it reads (and fails to open) the row.
        await #expect(throws: (any Error).self) {
            _ = try await store.workflowDefinition(versionID: workflow.versionID, orgID: "org_other")
        }
        try await store.write { db in try await store.deleteWorkflow(id: workflow.id, on: db) }
        #expect(try await store.workflowDefinition(versionID: workflow.versionID, orgID: workflow.orgID) == nil)
        await store.database.close()
    }

    @Test("a taken e-mail is a typed conflict and changes nothing", arguments: Backend.allCases)
    func uniqueEmail(backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.openStore()
        _ = try await store.write { db in try await store.insertUser(email: "a@example.com", name: "A", passwordHash: "h", on: db) }
        do {
            _ = try await store.write { db in try await store.insertUser(email: "a@example.com", name: "B", passwordHash: "h", on: db) }
            Issue.record("duplicate e-mail accepted")
        } catch let error as StoreError {
            #expect(error == .emailTaken)
        }
        #expect(try await store.countUsers() == 1)
        await store.database.close()
    }

    @Test("parallel login attempts each get a distinct slot, so none races past the limit", arguments: Backend.allCases)
    func loginSlots(backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.openStore()
        let user = try await store.write { db in try await store.insertUser(email: "a@example.com", name: "A", passwordHash: "h", on: db) }
        let slots = try await withThrowingTaskGroup(of: Store.LoginSlot.self) { group in
            for _ in 0..<50 { group.addTask { try await store.reserveLoginAttempt(userID: user.id, maxFailures: 10) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let allowed = slots.compactMap { if case .allowed(let n) = $0 { n } else { nil } }
        #expect(allowed.sorted() == Array(1...10))
        #expect(slots.count == 50)
        await store.database.close()
    }

    @Test("a cancelled writer neither fails the writes batched with it nor leaves a transaction open", arguments: Backend.allCases)
    func cancelledWriters(_ backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        let store = try await database.openStore()
        try await store.write { db in try await db.raw("CREATE TABLE t (n INTEGER)").run() }
        // Writers whose tasks are cancelled while they lead a batch, mixed with ordinary ones.
        let failures = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<200 {
                let task = Task {
                    try await store.write { db in try await db.raw("INSERT INTO t (n) VALUES (\(bind: index))").run() }
                }
                if index % 2 == 0 { task.cancel() }
                group.addTask {
                    do {
                        try await task.value
                        return false
                    } catch {
                        return index % 2 == 1
                    }
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(failures == 0)
        try await store.write { db in try await db.raw("INSERT INTO t (n) VALUES (-1)").run() }
        let count = try await store.read { db in
            try await db.raw("SELECT COUNT(*) AS c FROM t WHERE n % 2 = 1 OR n = -1").first()?.decode(column: "c", as: Int.self)
        }
        #expect(count == 101)
        await store.database.close()
        database.remove()
    }

    @Test("a failing transaction rolls back only itself; concurrent writes are group-committed on SQLite", arguments: Backend.allCases)
    func transactions(backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.openStore()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    do {
                        try await store.write { db in
                            try await store.setSetting("k\(i)", "v", on: db)
                            if i % 10 == 0 { throw FlowStackError.badRequest("boom", "planned failure") }
                        }
                    } catch let error as FlowStackError where error.code == "boom" {}
                }
            }
            try await group.waitForAll()
        }
        let count = try await store.read { db in
            try await db.raw("SELECT COUNT(*) AS n FROM instance_settings WHERE name LIKE 'k%'").first()!.decode(column: "n", as: Int.self)
        }
        #expect(count == 180)
        if let sqlite = store.database as? SQLiteStore {
            let stats = sqlite.writerStatistics
            #expect(
                stats.commits < stats.transactions, "group commit batched \(stats.transactions) transactions into \(stats.commits) commits")
        }
        await store.database.close()
    }

    @Test("the keyring must match the database", arguments: Backend.allCases)
    func keyringMismatch(backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let keyring = Keyring.generate()
        let store = try await database.openStore(keyring: keyring)
        await store.database.close()
        // Another keyring: refused.
        await #expect(throws: KeyringError.self) { try await database.openStore(keyring: .generate()) }
        // Same key ids, other key material: refused.
        var json = try JSONSerialization.jsonObject(with: keyring.json()) as! [String: Any]
        var data = json["data"] as! [[String: String]]
        data[0]["key"] = Data(Token.randomBytes(32)).base64EncodedString()
        json["data"] = data
        let tampered = try Keyring(json: try JSONSerialization.data(withJSONObject: json))
        await #expect(throws: KeyringError.self) { try await database.openStore(keyring: tampered) }
        // The right keyring still opens it.
        let again = try await database.openStore(keyring: keyring)
        await again.database.close()
    }
}

@Suite struct AuditChainTests {
    func seeded(_ backend: Backend) async throws -> (TestDatabase, Store) {
        let database = try await TestDatabase.make(backend)
        let store = try await database.openStore()
        for i in 0..<5 {
            try await store.audit(
                AuditRecord(
                    orgID: "org_a", action: "test.event", resourceType: "thing", resourceID: "r\(i)",
                    details: ["n": "\(i)"]), actor: AuditActor(kind: .user, id: "usr_a", ip: "10.0.0.1", userAgent: "ua"))
        }
        return (database, store)
    }

    @Test("an untouched chain verifies", arguments: Backend.allCases)
    func intact(backend: Backend) async throws {
        let (database, store) = try await seeded(backend)
        defer { database.remove() }
        let result = try await store.verifyAudit()
        #expect(result.isIntact)
        #expect(result.eventsChecked == 5)
        await store.database.close()
    }

    @Test("altering any field of an event is detected", arguments: Backend.allCases, ["action", "outcome", "ip", "actor_id", "created_at"])
    func altered(backend: Backend, column: String) async throws {
        let (database, store) = try await seeded(backend)
        defer { database.remove() }
        try await store.write { db in
            let value: SQLQueryString = column == "created_at" ? "created_at + 1" : "'forged'"
            try await db.raw("UPDATE audit_events SET \(ident: column) = \(value) WHERE seq = (SELECT MIN(seq) + 2 FROM audit_events)")
                .run()
        }
        let result = try await store.verifyAudit()
        #expect(!result.isIntact)
        #expect(result.problems.contains { $0.contains("altered") })
        await store.database.close()
    }

    @Test("control characters in audit details, IP and user agent are stored encoded", arguments: Backend.allCases)
    func controlCharacters(backend: Backend) async throws {
        let (database, store) = try await seeded(backend)
        defer { database.remove() }
        try await store.audit(
            AuditRecord(
                orgID: "org_a", action: "test.control", resourceType: "thing", resourceID: nil,
                details: ["email": "evil\nforged line\u{1B}[31m"]),
            actor: AuditActor(kind: .anonymous, id: nil, ip: "1.2.3.4\r\n", userAgent: "agent\u{7}\n"))
        let page = try await store.auditEvents(orgID: "org_a", filter: .init(action: "test.control"), cursor: nil, limit: 1)
        let event = try #require(page.items.first)
        for value in [event.details["email"] ?? "", event.ip, event.userAgent] {
            #expect(!value.unicodeScalars.contains { $0.properties.generalCategory == .control }, "\(value)")
        }
        #expect(event.details["email"] == "evil\\u{a}forged line\\u{1b}[31m")
        #expect(try await store.verifyAudit().isIntact)
        await store.database.close()
    }

    @Test("deleting an event is detected", arguments: Backend.allCases)
    func deleted(backend: Backend) async throws {
        let (database, store) = try await seeded(backend)
        defer { database.remove() }
        try await store.write { db in
            try await db.raw("DELETE FROM audit_events WHERE seq = (SELECT MIN(seq) + 1 FROM audit_events)").run()
        }
        let result = try await store.verifyAudit()
        #expect(!result.isIntact)
        #expect(result.problems.contains { $0.contains("deleted") })
        await store.database.close()
    }

    @Test("swapping sealed details between events is detected and does not open", arguments: Backend.allCases)
    func movedDetails(backend: Backend) async throws {
        let (database, store) = try await seeded(backend)
        defer { database.remove() }
        try await store.write { db in
            try await db.raw(
                """
                UPDATE audit_events SET details_sealed = (SELECT details_sealed FROM audit_events ORDER BY seq LIMIT 1)
                WHERE seq = (SELECT MAX(seq) FROM audit_events)
                """
            ).run()
        }
        #expect(try await !store.verifyAudit().isIntact)
        await #expect(throws: SealError.self) {
            _ = try await store.auditEvents(orgID: "org_a", filter: .init(), cursor: nil, limit: 10)
        }
        await store.database.close()
    }
}

@Suite struct EncryptionAtRestTests {
    @Test("marker secrets in sealed columns never appear in the database bytes", arguments: Backend.allCases)
    func byteSearch(backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.openStore()
        let marker = "MARKER-\(UUID().uuidString)"
        let user = try await store.write { db in try await store.insertUser(email: "a@example.com", name: "A", passwordHash: "h", on: db) }
        let org = try await store.write { db in try await store.insertOrganization(name: "Acme", owner: user.id, on: db) }
        try await store.write { db in
            _ = try await store.insertProject(orgID: org.id, name: "P", description: "project \(marker)", creator: user.id, on: db)
            _ = try await store.insertInvitation(
                orgID: org.id, email: "\(marker)@example.com", role: .member, invitedBy: user.id,
                tokenHash: Token.hash("t"), lifetime: 60, on: db)
            try await store.appendAudit(
                AuditRecord(orgID: org.id, action: "x", resourceType: "y", resourceID: nil, details: ["secret": marker]),
                actor: .system(), on: db)
        }
        let projects = try await store.projects(orgID: org.id, visibleTo: nil, restrictedTo: nil)
        #expect(projects.first?.description == "project \(marker)")
        let bytes = try database.rawBytes()
        #expect(bytes.count > 1000)
        #expect(bytes.contains(marker: "a@example.com"), "the search itself must see clear columns")
        #expect(!bytes.contains(marker: marker))
        // No key material is stored in the database (SECURITY-TESTS 17).
        let keyringJSON = try JSONSerialization.jsonObject(with: store.sealer.keyring.json()) as! [String: Any]
        for purpose in ["data", "connections"] {
            for entry in keyringJSON[purpose] as! [[String: String]] {
                let key = Data(base64Encoded: entry["key"]!)!
                #expect(bytes.range(of: key) == nil)
                #expect(!bytes.contains(marker: entry["key"]!))
            }
        }
        await store.database.close()
    }

    @Test("a sealed value copied to another row does not open", arguments: Backend.allCases)
    func movedRow(backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.openStore()
        let user = try await store.write { db in try await store.insertUser(email: "a@example.com", name: "A", passwordHash: "h", on: db) }
        let org = try await store.write { db in try await store.insertOrganization(name: "Acme", owner: user.id, on: db) }
        let (a, b) = try await store.write { db in
            (
                try await store.insertProject(orgID: org.id, name: "A", description: "alpha", creator: user.id, on: db),
                try await store.insertProject(orgID: org.id, name: "B", description: "beta", creator: user.id, on: db)
            )
        }
        try await store.write { db in
            try await db.raw(
                "UPDATE projects SET description_sealed = (SELECT description_sealed FROM projects WHERE id = \(bind: a.id)) WHERE id = \(bind: b.id)"
            ).run()
        }
        await #expect(throws: SealError.self) { _ = try await store.project(id: b.id) }
        #expect(try await store.project(id: a.id)?.description == "alpha")
        await store.database.close()
    }
}
