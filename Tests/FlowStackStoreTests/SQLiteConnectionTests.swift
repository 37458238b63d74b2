import Foundation
import Logging
import NIOCore
import SQLKit
import Testing

@testable import FlowStackStore

/// FlowStack's own SQLite binding: what it binds, what it decodes, and what it refuses.
@Suite struct SQLiteConnectionTests {
    private func open() async throws -> (SQLiteStore, String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = try await SQLiteStore.open(path: directory.appendingPathComponent("test.db").path, logger: Logger(label: "test"))
        try await store.write { db in
            try await db.raw("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, n INTEGER, r REAL, b BLOB, u TEXT UNIQUE)").run()
        }
        return (store, directory.path)
    }

    @Test("when opening fails part way, every connection opened so far is closed again", arguments: [1, 2, 3, 4])
    func openFailureClosesConnections(failingAt failing: Int) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("test.db").path
        struct Refused: Error {}
        var opened: [SQLiteConnection] = []
        // Connections: the writer, two readers, the checkpointer; the `failing`th one is refused.
        await #expect(throws: Refused.self) {
            _ = try await SQLiteStore.open(
                path: path, readerCount: 2, checkpointFrames: Checkpointer.defaultFrames, logger: Logger(label: "test")
            ) { label in
                guard opened.count + 1 < failing || failing == 0 else { throw Refused() }
                let connection = try SQLiteConnection(path: path, label: label)
                opened.append(connection)
                return connection
            }
        }
        #expect(opened.count == failing - 1)
        #expect(opened.allSatisfy { !$0.isOpen })
        // A connection that opens but then fails (here: its first PRAGMA) is closed with the rest.
        var all: [SQLiteConnection] = []
        await #expect(throws: SQLiteError.self) {
            _ = try await SQLiteStore.open(
                path: path, readerCount: 2, checkpointFrames: Checkpointer.defaultFrames, logger: Logger(label: "test")
            ) { label in
                let connection = try SQLiteConnection(path: path, label: label)
                all.append(connection)
                if label == "reader1" { connection.close() }
                return connection
            }
        }
        #expect(all.count == 3 && all.allSatisfy { !$0.isOpen })
    }

    @Test("values round-trip by type, and nulls decode only as optionals")
    func roundTrip() async throws {
        let (store, directory) = try await open()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let blob = Data([0, 1, 2, 255, 0])
        let text = "naïve \u{0} zero ✓"
        try await store.write { db in
            try await db.raw(
                """
                INSERT INTO t (id, s, n, r, b) VALUES (1, \(bind: text), \(bind: Int64.max), \(bind: 2.5), \(bind: blob))
                """
            ).run()
            try await db.raw(
                "INSERT INTO t (id, s, n, r, b) VALUES (2, \(bind: String?.none), \(bind: true), \(bind: Double?.none), \(bind: Data?.none))"
            ).run()
        }
        let rows = try await store.read { db in try await db.raw("SELECT id, s, n, r, b FROM t ORDER BY id").all() }
        #expect(rows.count == 2)
        #expect(try rows[0].decode(column: "s", as: String.self) == text)
        #expect(try rows[0].decode(column: "n", as: Int64.self) == Int64.max)
        #expect(try rows[0].decode(column: "r", as: Double.self) == 2.5)
        #expect(try rows[0].decode(column: "b", as: Data.self) == blob)
        #expect(try rows[0].decode(column: "s", as: String?.self) == text)
        #expect(try rows[1].decode(column: "s", as: String?.self) == nil)
        #expect(try rows[1].decode(column: "n", as: Bool.self) == true)
        #expect(try rows[1].decodeNil(column: "b"))
        #expect(rows[0].allColumns == ["id", "s", "n", "r", "b"])
        #expect(rows[0].contains(column: "b") && !rows[0].contains(column: "missing"))
        // A null is not a String, and a text is neither an integer nor an optional integer.
        #expect(throws: SQLiteError.self) { try rows[1].decode(column: "s", as: String.self) }
        #expect(throws: SQLiteError.self) { try rows[0].decode(column: "s", as: Int64.self) }
        #expect(throws: SQLiteError.self) { try rows[0].decode(column: "s", as: Int64?.self) }
        #expect(throws: SQLiteError.self) { try rows[0].decode(column: "missing", as: String.self) }
        // Int64.max does not fit an Int32.
        #expect(throws: SQLiteError.self) { try rows[0].decode(column: "n", as: Int32.self) }
        await store.close()
    }

    @Test("optionals bind as their value or NULL; an optional of an unbindable type is still refused")
    func optionals() throws {
        #expect(try SQLiteValue(binding: String?.some("x")) == .text("x"))
        #expect(try SQLiteValue(binding: Int64?.some(7)) == .integer(7))
        #expect(try SQLiteValue(binding: Int?.none) == .null)
        #expect(try SQLiteValue(binding: Data??.some(.none)) == .null)
        #expect(try SQLiteValue(binding: [UInt8]?.some([1, 2])) == .blob([1, 2]))
        struct Point: Encodable, Sendable { let x = 1 }
        #expect(throws: SQLiteError.self) { try SQLiteValue(binding: Point?.some(Point())) }
    }

    @Test("a bound statement runs as it is on SQLite, and serializes as ordinary binds for another dialect")
    func boundStatements() async throws {
        let (store, directory) = try await open()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let statement = BoundStatement(
            sql: "INSERT INTO t (id, s, n, r, b) VALUES (?1, ?2, ?3, ?4, ?5)",
            values: [.integer(1), .text("a?b"), .null, .real(1.5), .blob([9])])
        try await store.write { db in try await db.execute(sql: statement) { _ in } }
        let row = try #require(try await store.read { db in try await db.raw("SELECT s, n, r, b FROM t WHERE id = 1").first() })
        #expect(try row.decode(column: "s", as: String.self) == "a?b")
        #expect(try row.decodeNil(column: "n"))
        #expect(try row.decode(column: "r", as: Double.self) == 1.5)
        #expect(try row.decode(column: "b", as: Data.self) == Data([9]))
        // Another dialect numbers its own placeholders; a null is a literal NULL (untyped).
        struct Dollar: SQLDialect {
            var name: String { "dollar" }
            var identifierQuote: any SQLExpression { SQLRaw("\"") }
            var literalStringQuote: any SQLExpression { SQLRaw("'") }
            func bindPlaceholder(at position: Int) -> any SQLExpression { SQLRaw("$\(position)") }
            func literalBoolean(_ value: Bool) -> any SQLExpression { SQLRaw(value ? "true" : "false") }
            var literalDefault: any SQLExpression { SQLRaw("DEFAULT") }
            var supportsAutoIncrement: Bool { false }
            var autoIncrementClause: any SQLExpression { SQLRaw("") }
        }
        struct Serializing: SQLDatabase {
            var logger: Logger { Logger(label: "test") }
            var eventLoop: any EventLoop { fatalError("not used") }
            var dialect: any SQLDialect { Dollar() }
            func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
                fatalError("not used")
            }
        }
        let wrapped: SQLQueryString = "WITH x AS (\(statement)) \(BoundStatement(sql: "SELECT ?1", values: [.text("z")]))"
        let (sql, binds) = Serializing().serialize(wrapped)
        #expect(sql == "WITH x AS (INSERT INTO t (id, s, n, r, b) VALUES ($1, $2, NULL, $3, $4)) SELECT $5")
        #expect(binds.count == 5)
        #expect(binds[1] as? String == "a?b" && binds[4] as? String == "z")
        await store.close()
    }

    @Test("unbindable values, several statements in one query and constraint violations are typed errors that change nothing")
    func refusals() async throws {
        let (store, directory) = try await open()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        struct Point: Encodable, Sendable { let x = 1 }
        await #expect(throws: SQLiteError.self) {
            try await store.write { db in try await db.raw("INSERT INTO t (id, s) VALUES (1, \(bind: Point()))").run() }
        }
        await #expect(throws: SQLiteError.self) {
            try await store.write { db in try await db.raw("INSERT INTO t (id) VALUES (2); DELETE FROM t").run() }
        }
        try await store.write { db in try await db.raw("INSERT INTO t (id, u) VALUES (3, 'x')").run() }
        do {
            try await store.write { db in try await db.raw("INSERT INTO t (id, u) VALUES (4, 'x')").run() }
            Issue.record("a duplicate unique value was accepted")
        } catch {
            #expect(isUniqueViolation(error), "\(error)")
        }
        // Readers are read-only connections.
        await #expect(throws: SQLiteError.self) {
            try await store.read { db in try await db.raw("DELETE FROM t").run() }
        }
        let ids = try await store.read { db in try await db.raw("SELECT id FROM t").all().map { try $0.decode(column: "id", as: Int.self) }
        }
        #expect(ids == [3])
        await store.close()
    }

    @Test("a prepared statement is reused with fresh bindings, and a failed step leaves it usable")
    func statementReuse() async throws {
        let (store, directory) = try await open()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for id in 1...20 {
            do {
                try await store.write { db in try await db.raw("INSERT INTO t (id, u) VALUES (\(bind: id), \(bind: "v\(id % 10)"))").run() }
            } catch {
                #expect(id > 10 && isUniqueViolation(error))
            }
        }
        let values = try await store.read { db in
            try await db.raw("SELECT u FROM t WHERE id > \(bind: 0) ORDER BY id").all().map { try $0.decode(column: "u", as: String.self) }
        }
        #expect(values == (1...10).map { "v\($0 % 10)" })
        await store.close()
    }

    /// Writes 400 rows of 3,000 bytes, one commit each, with the given checkpoint limits; returns
    /// the largest WAL seen, the background checkpoints that copied frames, and the database size.
    private func writeRows(checkpointFrames: (background: Int, restart: Int)) async throws -> (
        largestWAL: Int, background: Int, databaseSize: Int
    ) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("test.db").path
        let store = try await SQLiteStore.open(
            path: path, readerCount: 1, checkpointFrames: checkpointFrames, logger: Logger(label: "test"))
        try await store.write { db in try await db.raw("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL)").run() }
        let blob = Data(repeating: 7, count: 3000)
        var largestWAL = 0
        for id in 1...400 {
            try await store.write { db in try await db.raw("INSERT INTO t (id, b) VALUES (\(bind: id), \(bind: blob))").run() }
            let size = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
            largestWAL = max(largestWAL, size)
        }
        await store.checkpointsDrained()
        let background = store.backgroundCheckpoints
        let databaseSize = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        await store.close()
        let reopened = try await SQLiteStore.open(path: path, logger: Logger(label: "test"))
        let count = try await reopened.read { db in
            try await db.raw("SELECT COUNT(*) AS n FROM t").first()!.decode(column: "n", as: Int.self)
        }
        #expect(count == 400)
        await reopened.close()
        return (largestWAL, background, databaseSize)
    }

    @Test("past the restart limit the writer checkpoints in place, so the WAL starts over")
    func checkpointInPlace() async throws {
        // No background checkpoints: only the writer's own keep the WAL near 100 frames. SQLite's
        // automatic checkpoint (1000 frames) would let it grow to about 1000.
        let result = try await writeRows(checkpointFrames: (background: Int.max, restart: 100))
        #expect(result.background == 0)
        #expect(result.largestWAL > 0)
        #expect(result.largestWAL < 120 * (4096 + 24), "the WAL grew to \(result.largestWAL) bytes")
        #expect(result.databaseSize > 300 * 3000, "checkpoints copied the rows into the database file")
    }

    @Test("the WAL is checkpointed by a connection of its own")
    func checkpointInBackground() async throws {
        // The writer never checkpoints itself here: every copied row was copied by the other connection.
        let result = try await writeRows(checkpointFrames: (background: 20, restart: Int.max))
        #expect(result.background > 0)
        #expect(result.databaseSize > 300 * 3000, "checkpoints copied the rows into the database file")
    }

    @Test("with neither limit reached nothing checkpoints before close (the control for the two above)")
    func checkpointBaseline() async throws {
        // The hook replaces SQLite's automatic checkpoint: the database file keeps only its first pages.
        let result = try await writeRows(checkpointFrames: (background: Int.max, restart: Int.max))
        #expect(result.background == 0)
        #expect(result.databaseSize < 100 * 4096)
        #expect(result.largestWAL > 400 * 3000)
    }
}
