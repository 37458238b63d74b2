import FlowStackCore
import FlowStackTesting
import Foundation
import Logging
import SQLKit
import Synchronization
import Testing

@testable import FlowStackStore

@Suite(.timeLimit(.minutes(1))) struct InsertBatcherTests {
    static let layout = [
        RowInsert.Table(name: "parent", columns: ["id", "name"]),
        RowInsert.Table(name: "child", columns: ["parent_id", "n"]),
    ]

    static func insert(_ id: String, children: Int = 1) -> RowInsert {
        RowInsert(tables: layout, rows: [[[.text(id), .null]], (0..<children).map { [.text(id), .integer(Int64($0))] }])
    }

    /// An `execute` that records each statement and holds the first one until `release`.
    final class GatedDatabase: Sendable {
        let statements = Mutex<[BoundStatement]>([])
        private let gate = Mutex<(held: Bool, waiter: CheckedContinuation<Void, Never>?)>((true, nil))
        let failing: String?

        init(failing: String? = nil) { self.failing = failing }

        func execute(_ statement: BoundStatement) async throws {
            let first = statements.withLock {
                $0.append(statement)
                return $0.count == 1
            }
            if first {
                await withCheckedContinuation { continuation in
                    let held = gate.withLock { gate in
                        if gate.held { gate.waiter = continuation }
                        return gate.held
                    }
                    if !held { continuation.resume() }
                }
            }
            if let failing, statement.values.contains(.text(failing)) {
                throw DatabaseError("refused \(failing)")
            }
        }

        func release() {
            gate.withLock { gate in
                gate.held = false
                gate.waiter?.resume()
                gate.waiter = nil
            }
        }

        var count: Int { statements.withLock { $0.count } }
    }

    /// Waits for `condition`; on a timeout opens the gate (so the held statement cannot hang the
    /// test) and fails.
    static func waitUntil(_ database: GatedDatabase, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                database.release()
                throw DatabaseError("timed out")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Holds a first statement, queues inserts of `ids` behind it (so they merge), lets it go, and
    /// answers the ids whose insert failed.
    static func failedInserts(_ ids: [String], batcher: InsertBatcher, database: GatedDatabase) async throws -> [String] {
        try await withThrowingTaskGroup(of: String?.self) { group in
            group.addTask {
                try await batcher.insert(Self.insert("first"))
                return nil
            }
            try await Self.waitUntil(database) { database.count == 1 }
            for id in ids {
                group.addTask {
                    do {
                        try await batcher.insert(Self.insert(id))
                        return nil
                    } catch {
                        return id
                    }
                }
            }
            try await Self.waitUntil(database) { batcher.queued == ids.count }
            database.release()
            return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
        }
    }

    @Test("merged rows form one statement: parent tables in WITH clauses, empty tables left out")
    func mergedStatement() {
        let merged = RowInsert.statement(merging: [Self.insert("a", children: 2), Self.insert("b", children: 0)])
        #expect(
            merged.sql == "WITH t0 AS (INSERT INTO parent (id, name) VALUES (?1, ?2), (?3, ?4)) "
                + "INSERT INTO child (parent_id, n) VALUES (?5, ?6), (?7, ?8)")
        #expect(merged.values == [.text("a"), .null, .text("b"), .null, .text("a"), .integer(0), .text("a"), .integer(1)])
        let alone = RowInsert.statement(merging: [Self.insert("c", children: 0)])
        #expect(alone.sql == "INSERT INTO parent (id, name) VALUES (?1, ?2)")
        // SQLite has no data-modifying WITH: one statement a table, each numbered from 1.
        #expect(
            Self.insert("d", children: 1).statements.map(\.sql) == [
                "INSERT INTO parent (id, name) VALUES (?1, ?2)", "INSERT INTO child (parent_id, n) VALUES (?1, ?2)",
            ])
    }

    @Test("SQLite's statements, texts kept or not, are what merging writes for each table alone", arguments: [1, 3, 64, 65, 130])
    func sqliteStatements(children: Int) {
        for _ in 0..<2 {
            let insert = Self.insert("e", children: children)
            let statements = insert.statements
            #expect(statements.count == 2)
            for (t, statement) in statements.enumerated() {
                let alone = RowInsert.statement(merging: [RowInsert(tables: [insert.tables[t]], rows: [insert.rows[t]])])
                #expect(statement.sql == alone.sql)
                #expect(statement.values == alone.values)
            }
        }
    }

    @Test("a table's rows with more values than a statement takes are split, parents first, in order")
    func statementsSplit() {
        // Two values a row: 15,000 rows a statement.
        let insert = Self.insert("f", children: 31_000)
        let statements = insert.statements
        #expect(statements.map(\.values.count) == [2, 30_000, 30_000, 2_000])
        #expect(statements.allSatisfy { $0.values.count <= RowInsert.maximumStatementValues })
        #expect(statements[0].sql.hasPrefix("INSERT INTO parent"))
        #expect(statements.dropFirst().allSatisfy { $0.sql.hasPrefix("INSERT INTO child") })
        #expect(statements.flatMap(\.values) == insert.rows.flatMap { $0.flatMap { $0 } })
    }

    @Test("inserts that arrive while a statement runs are committed together in the next one")
    func groupCommit() async throws {
        let database = GatedDatabase()
        let batcher = InsertBatcher(maximumInFlight: 1, logger: Logger(label: "test"), isRowError: { $0 is DatabaseError }) {
            try await database.execute($0)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await batcher.insert(Self.insert("first")) }
            try await Self.waitUntil(database) { database.count == 1 }
            for index in 0..<20 {
                group.addTask { try await batcher.insert(Self.insert("row\(index)")) }
            }
            try await Self.waitUntil(database) { batcher.queued == 20 }
            database.release()
            try await group.waitForAll()
        }
        let statements = database.statements.withLock { $0 }
        #expect(statements.count == 2)
        #expect(Set(statements.last!.values.compactMap { if case .text(let id) = $0, id.hasPrefix("row") { id } else { nil } }).count == 20)
        #expect(batcher.statistics == (inserts: 21, statements: 2))
    }

    @Test("an insert while the database is idle runs at once, up to the limit of statements in flight")
    func idleStartsAtOnce() async throws {
        let database = GatedDatabase()
        let batcher = InsertBatcher(maximumInFlight: 2, logger: Logger(label: "test"), isRowError: { $0 is DatabaseError }) {
            try await database.execute($0)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await batcher.insert(Self.insert("first")) }
            try await Self.waitUntil(database) { database.count == 1 }
            // The first statement is held: the second insert starts a statement of its own.
            group.addTask { try await batcher.insert(Self.insert("second")) }
            try await Self.waitUntil(database) { batcher.statistics.statements == 1 }
            #expect(batcher.statistics == (inserts: 1, statements: 1))
            database.release()
            try await group.waitForAll()
        }
        #expect(batcher.statistics == (inserts: 2, statements: 2))
        // Both drainers stopped with the queue empty; the next insert starts one again.
        try await batcher.insert(Self.insert("third"))
        #expect(batcher.statistics == (inserts: 3, statements: 3))
        #expect(batcher.queued == 0)
    }

    @Test("when queued inserts wait too long behind a stuck statement, a new arrival starts another")
    func overflowPastStall() async throws {
        let database = GatedDatabase()
        let clock = Mutex(ContinuousClock.now)
        let batcher = InsertBatcher(
            maximumInFlight: 1, overflowAfter: .milliseconds(200), logger: Logger(label: "test"),
            now: { clock.withLock { $0 } }, isRowError: { _ in false }
        ) { try await database.execute($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await batcher.insert(Self.insert("stuck")) }
            try await Self.waitUntil(database) { database.count == 1 }
            group.addTask { try await batcher.insert(Self.insert("waiting")) }
            try await Self.waitUntil(database) { batcher.queued == 1 }
            // Not yet stalled: a second arrival just queues.
            clock.withLock { $0 += .milliseconds(100) }
            group.addTask { try await batcher.insert(Self.insert("early")) }
            try await Self.waitUntil(database) { batcher.queued == 2 }
            #expect(database.count == 1)
            // The oldest has now waited 200 ms: the next arrival starts a statement for all three.
            clock.withLock { $0 += .milliseconds(100) }
            group.addTask { try await batcher.insert(Self.insert("late")) }
            try await Self.waitUntil(database) { batcher.statistics.statements == 1 }
            #expect(batcher.statistics == (inserts: 3, statements: 1))
            database.release()
            try await group.waitForAll()
        }
        #expect(batcher.statistics == (inserts: 4, statements: 2))
    }

    @Test("a failed merged statement is retried insert by insert, so only the faulty insert fails")
    func failureIsolated() async throws {
        let database = GatedDatabase(failing: "bad")
        let batcher = InsertBatcher(maximumInFlight: 1, logger: Logger(label: "test"), isRowError: { $0 is DatabaseError }) {
            try await database.execute($0)
        }
        let failed = try await Self.failedInserts(["a", "b", "bad", "c"], batcher: batcher, database: database)
        #expect(failed == ["bad"])
        // first, the merged four (failed), then each of the four again.
        #expect(database.count == 6)
        #expect(batcher.statistics == (inserts: 4, statements: 4))
    }

    @Test("a merged statement that fails for the connection fails all its inserts at once, without retrying them")
    func connectionFailure() async throws {
        let database = GatedDatabase(failing: "b")
        let batcher = InsertBatcher(maximumInFlight: 1, logger: Logger(label: "test"), isRowError: { _ in false }) {
            try await database.execute($0)
        }
        let failed = try await Self.failedInserts(["a", "b", "c"], batcher: batcher, database: database)
        #expect(failed.sorted() == ["a", "b", "c"])
        #expect(database.count == 2)
    }

    @Test("PostgreSQL's constraint and data errors count as a row's fault; others do not")
    func rowErrors() async throws {
        let database = try await TestDatabase.make(.postgres)
        defer { database.remove() }
        let store = try await database.openStore()
        let postgres = try #require(store.database as? PostgresStore)
        try await store.write { db in try await db.raw("CREATE TABLE t (n INTEGER PRIMARY KEY)").run() }
        try await store.write { db in try await db.raw("INSERT INTO t (n) VALUES (1)").run() }
        // Through the batcher's own path, as an insert alone meets them.
        func failure(_ table: String, _ n: Int64) async -> (any Error)? {
            do {
                try await postgres.insert(RowInsert(tables: [RowInsert.Table(name: table, columns: ["n"])], rows: [[[.integer(n)]]]))
                return nil
            } catch {
                return error
            }
        }
        #expect(await failure("t", 2) == nil)
        let duplicate = try #require(await failure("t", 1))
        #expect(PostgresStore.isRowError(duplicate))
        let badValue = try #require(await failure("t", 99_999_999_999))
        #expect(PostgresStore.isRowError(badValue))
        let noTable = try #require(await failure("missing", 1))
        #expect(!PostgresStore.isRowError(noTable))
        #expect(!PostgresStore.isRowError(DatabaseError("not PostgreSQL's")))
        await store.database.close()
    }

    @Test("concurrent executions with their journals are all stored; a duplicate fails alone", arguments: Backend.allCases)
    func executionsStored(_ backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.openStore()
        let records = (0..<120).map { _ in
            ExecutionRecord(
                orgID: "org", projectID: "project", workflowID: "workflow", versionID: "v1", mode: .webhook,
                triggerNode: "Hook", createdAt: store.now)
        }
        let finished = ExecutionProgress(status: .succeeded)
        @Sendable func insert(_ index: Int) async throws {
            _ = try await store.insertExecutionWithJournal(
                records[index], start: .start(trigger: "Hook", items: [Item(json: ["n": .number(Double(index))])]),
                leaseOwner: "test", leaseUntil: store.now,
                events: [
                    (event: .nodeSucceeded(node: "Hook", outputs: [[Item(json: ["n": .number(Double(index))])]]), node: "Hook", run: nil)
                ],
                progress: finished)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<60 { group.addTask { try await insert(index) } }
            try await group.waitForAll()
        }
        // The second half, with five of the first half again among them: the repeats must fail
        // without taking the inserts merged with them along.
        let duplicates = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 60..<120 {
                group.addTask {
                    try await insert(index)
                    return false
                }
                if index % 12 == 0 {
                    group.addTask {
                        do {
                            try await insert(index - 60)
                            return false
                        } catch {
                            return true
                        }
                    }
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(duplicates == 5)
        for (index, record) in records.enumerated() {
            let stored = try #require(try await store.execution(id: record.id))
            #expect(stored.status == .succeeded)
            let journal = try await store.journal(executionID: record.id, orgID: record.orgID)
            #expect(journal.map(\.seq) == [0, 1])
            guard case .nodeSucceeded(_, let outputs) = journal.last?.event else {
                Issue.record("no node output for execution \(index)")
                continue
            }
            #expect(outputs.first?.first?.json["n"] == .number(Double(index)))
        }
        if let postgres = store.database as? PostgresStore {
            let statistics = postgres.insertStatistics
            #expect(statistics.inserts == 120, "every insert but the repeats committed once")
            #expect(
                statistics.statements < statistics.inserts,
                "group commit merged \(statistics.inserts) inserts into \(statistics.statements) statements")
        }
        await store.database.close()
    }

    @Test("an execution whose journal has more values than one statement takes is stored whole", arguments: Backend.allCases)
    func longJournal(_ backend: Backend) async throws {
        let database = try await TestDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.openStore()
        let record = ExecutionRecord(
            orgID: "org", projectID: "project", workflowID: "workflow", versionID: "v1", mode: .webhook,
            triggerNode: "Hook", createdAt: store.now)
        // 5 values an entry: 75,000 in all, past SQLite's 32,766 and PostgreSQL's 65,535 parameters.
        let count = 15_000
        let events = (0..<count).map { index in
            (
                event: ExecutionEvent.nodeSucceeded(node: "N\(index)", outputs: [[Item(json: ["n": .number(Double(index))])]]),
                node: String?.some("N\(index)"), run: NodeRunInfo?.none
            )
        }
        _ = try await store.insertExecutionWithJournal(
            record, start: .start(trigger: "Hook", items: [Item(json: [:])]), leaseOwner: "test",
            leaseUntil: store.now, events: events, progress: ExecutionProgress(status: .succeeded))
        let stored = try #require(try await store.execution(id: record.id))
        #expect(stored.status == .succeeded)
        #expect(stored.events == count + 1)
        let journal = try await store.journal(executionID: record.id, orgID: record.orgID)
        #expect(journal.map(\.seq) == Array(0...count))
        guard case .nodeSucceeded(let node, let outputs) = journal.last?.event else {
            Issue.record("no last node output")
            return
        }
        #expect(node == "N\(count - 1)")
        #expect(outputs.first?.first?.json["n"] == .number(Double(count - 1)))
        await store.database.close()
    }
}
