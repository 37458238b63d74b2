import FlowStackCore
import Foundation
import Logging
import SQLKit
import Synchronization

/// SQLite in WAL mode: several reader connections and one writer whose transactions are
/// group-committed (see `GroupCommitWriter`). Every connection runs on a thread of its own, so a
/// transaction's statements execute back to back without a hop per statement.
public final class SQLiteStore: Database {
    public let kind = DatabaseKind.sqlite
    private let readers: [SQLiteConnection]
    private let readerSQL: [SQLiteDatabase]
    private let writerConnection: SQLiteConnection
    private let writer: GroupCommitWriter
    private let nextReader = Atomic<Int>(0)
    private let path: String
    private let logger: Logger

    private init(path: String, readers: [SQLiteConnection], writer: SQLiteConnection, logger: Logger) {
        self.path = path
        self.logger = logger
        self.readers = readers
        self.readerSQL = readers.map { SQLiteDatabase(connection: $0, logger: logger) }
        self.writerConnection = writer
        self.writer = GroupCommitWriter(database: SQLiteDatabase(connection: writer, logger: logger), executor: writer.executor, logger: logger)
    }

    public static func open(path: String, readerCount: Int = Int(ProcessInfo.processInfo.environment["FLOWSTACK_SQLITE_READERS"] ?? "") ?? 2, logger: Logger) async throws -> SQLiteStore {
        func connect(_ label: String) throws -> SQLiteConnection {
            let connection = try SQLiteConnection(path: path, label: "flowstack.sqlite.\(label)")
            _ = try connection.query("PRAGMA busy_timeout = 5000", [])
            _ = try connection.query("PRAGMA foreign_keys = ON", [])
            _ = try connection.query("PRAGMA synchronous = NORMAL", [])
            return connection
        }
        let writer = try connect("writer")
        let modeRows = try writer.query("PRAGMA journal_mode = WAL", [])
        let mode = try modeRows.first?.decode(column: "journal_mode", as: String.self)
        guard mode?.lowercased() == "wal" else {
            writer.close()
            throw DatabaseError("SQLite did not switch to WAL mode (got \(mode ?? "nothing"))")
        }
        var readers: [SQLiteConnection] = []
        for index in 0..<readerCount {
            let reader = try connect("reader\(index)")
            _ = try reader.query("PRAGMA query_only = ON", [])
            readers.append(reader)
        }
        return SQLiteStore(path: path, readers: readers, writer: writer, logger: logger)
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        let index = nextReader.wrappingAdd(1, ordering: .relaxed).oldValue % readerSQL.count
        let reader = readerSQL[index]
        return try await withTaskExecutorPreference(reader.connection.executor) { try await body(reader) }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await writer.submit(body)
    }

    /// Writes a consistent copy of the database to `destination` (`VACUUM INTO`: one read
    /// transaction, so the copy is a snapshot even while the server writes; the WAL is folded in).
    public func snapshot(to destination: String) async throws {
        let connection = try SQLiteConnection(path: path, label: "flowstack.sqlite.snapshot")
        defer { connection.close() }
        try await withTaskExecutorPreference(connection.executor) {
            _ = try connection.query("PRAGMA busy_timeout = 5000", [])
            _ = try connection.query("VACUUM INTO ?1", [.text(destination)])
        }
    }

    public func ping() async throws {
        try await read { db in try await db.raw("SELECT 1 AS one").run() }
    }

    public func close() async {
        await writer.drain()
        for reader in readers { reader.close() }
        writerConnection.close()
    }

    /// Number of transactions the writer has committed and how many COMMITs that took
    /// (for tests and benchmarks of group commit).
    public var writerStatistics: (transactions: Int, commits: Int) {
        get async { await writer.statistics }
    }
}

/// The single SQLite writer with group commit.
///
/// Callers submit transaction bodies; whichever caller finds the writer idle becomes the leader
/// and runs everything queued so far in one `BEGIN IMMEDIATE … COMMIT`, each body inside its own
/// savepoint so one failure rolls back only that body. The leader then hands leadership to the
/// next waiting caller. Throughput therefore grows with concurrency instead of paying one commit
/// per request.
actor GroupCommitWriter {
    private typealias Body = @Sendable (any SQLDatabase) async throws -> any Sendable

    private enum Outcome {
        case done(Result<any Sendable, any Error>)
        case lead
    }

    private struct Waiter {
        let body: Body
        let continuation: CheckedContinuation<Outcome, Never>
    }

    private let database: any SQLDatabase
    private let logger: Logger
    private var queue: [Waiter] = []
    private var leading = false
    private var transactions = 0
    private var commits = 0
    private let maximumBatch = 512
    private let executor: SerialQueueTaskExecutor

    init(database: any SQLDatabase, executor: SerialQueueTaskExecutor, logger: Logger) {
        self.database = database
        self.executor = executor
        self.logger = logger
    }

    /// Waits until no batch runs (before the connection closes).
    func drain() async {
        while leading {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    var statistics: (transactions: Int, commits: Int) { (transactions, commits) }

    func submit<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        let erased: Body = { db in try await body(db) }
        if leading {
            let outcome = await withCheckedContinuation { continuation in
                queue.append(Waiter(body: erased, continuation: continuation))
            }
            if case .done(let result) = outcome {
                return try result.get() as! T
            }
        } else {
            leading = true
        }
        // This caller leads: run its own body with everything queued so far.
        let batch = Array(queue.prefix(maximumBatch - 1))
        queue.removeFirst(batch.count)
        // The batch runs in a task of its own: the leader's task may be cancelled (a finished run
        // stops its heartbeat), and cancellation must neither fail the other callers' bodies nor
        // interrupt COMMIT or ROLLBACK and leave the transaction open.
        let bodies = [erased] + batch.map(\.body)
        // It runs on the writer's own thread: under load the shared cooperative pool is busy with
        // requests, and every statement's continuation would queue behind them.
        let results = await Task(executorPreference: executor) { await self.runBatch(bodies) }.value
        for (waiter, result) in zip(batch, results.dropFirst()) {
            waiter.continuation.resume(returning: .done(result))
        }
        if queue.isEmpty {
            leading = false
        } else {
            queue.removeFirst().continuation.resume(returning: .lead)
        }
        return try results[0].get() as! T
    }

    /// Runs the batch optimistically in one transaction without savepoints (each savepoint costs
    /// two more round trips to the SQLite thread). If any body fails, that transaction is rolled
    /// back and the batch runs again with each body in its own savepoint, so one failure still
    /// rolls back only its own body.
    private func runBatch(_ bodies: [Body]) async -> [Result<any Sendable, any Error>] {
        do {
            try await database.raw("BEGIN IMMEDIATE").run()
        } catch {
            return bodies.map { _ in .failure(error) }
        }
        var results: [Result<any Sendable, any Error>] = []
        results.reserveCapacity(bodies.count)
        var failed = false
        for body in bodies {
            do {
                results.append(.success(try await body(database)))
            } catch {
                failed = true
                break
            }
        }
        if !failed {
            do {
                try await database.raw("COMMIT").run()
                transactions += bodies.count
                commits += 1
                return results
            } catch {
                logger.warning("SQLite batch commit failed; retrying with savepoints", metadata: ["error": "\(error)"])
            }
        }
        try? await database.raw("ROLLBACK").run()
        return await runBatchWithSavepoints(bodies)
    }

    private func runBatchWithSavepoints(_ bodies: [Body]) async -> [Result<any Sendable, any Error>] {
        do {
            try await database.raw("BEGIN IMMEDIATE").run()
        } catch {
            return bodies.map { _ in .failure(error) }
        }
        var results: [Result<any Sendable, any Error>] = []
        results.reserveCapacity(bodies.count)
        for body in bodies {
            do {
                try await database.raw("SAVEPOINT job").run()
                let value = try await body(database)
                try await database.raw("RELEASE job").run()
                results.append(.success(value))
            } catch {
                do {
                    try await database.raw("ROLLBACK TO job").run()
                    try await database.raw("RELEASE job").run()
                    results.append(.failure(error))
                } catch let rollbackError {
                    // The transaction is unusable; give up on the whole batch.
                    logger.error("SQLite savepoint rollback failed", metadata: ["error": "\(rollbackError)"])
                    try? await database.raw("ROLLBACK").run()
                    return bodies.map { _ in .failure(rollbackError) }
                }
            }
        }
        do {
            try await database.raw("COMMIT").run()
            transactions += bodies.count
            commits += 1
            return results
        } catch {
            try? await database.raw("ROLLBACK").run()
            return bodies.map { _ in .failure(error) }
        }
    }
}

/// A storage failure with a message for operators.
public struct DatabaseError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
