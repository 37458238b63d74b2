import CSQLite
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
    private let checkpointer: Checkpointer
    private let nextReader = Atomic<Int>(0)
    private let path: String
    private let logger: Logger

    private init(path: String, readers: [SQLiteConnection], writer: SQLiteConnection, checkpointer: Checkpointer, logger: Logger) {
        self.path = path
        self.checkpointer = checkpointer
        self.logger = logger
        self.readers = readers
        self.readerSQL = readers.map { SQLiteDatabase(connection: $0, logger: logger) }
        self.writerConnection = writer
        self.writer = GroupCommitWriter(
            database: SQLiteDatabase(connection: writer, logger: logger), executor: writer.executor, logger: logger)
    }

    public static func open(
        path: String, readerCount: Int = Int(ProcessInfo.processInfo.environment["FLOWSTACK_SQLITE_READERS"] ?? "") ?? 2,
        logger: Logger
    ) async throws -> SQLiteStore {
        try await open(path: path, readerCount: readerCount, checkpointFrames: Checkpointer.defaultFrames, logger: logger)
    }

    static func open(path: String, readerCount: Int, checkpointFrames: (background: Int, restart: Int), logger: Logger) async throws
        -> SQLiteStore
    {
        try await open(path: path, readerCount: readerCount, checkpointFrames: checkpointFrames, logger: logger) { label in
            try SQLiteConnection(path: path, label: "flowstack.sqlite.\(label)")
        }
    }

    /// Opens the store's connections with `openConnection`; if any step fails, the connections
    /// opened so far are closed again before the error is thrown.
    static func open(
        path: String, readerCount: Int, checkpointFrames: (background: Int, restart: Int), logger: Logger,
        openConnection: (_ label: String) throws -> SQLiteConnection
    ) async throws -> SQLiteStore {
        var opened: [SQLiteConnection] = []
        func connect(_ label: String) throws -> SQLiteConnection {
            let connection = try openConnection(label)
            opened.append(connection)
            _ = try connection.query("PRAGMA busy_timeout = 5000", [])
            _ = try connection.query("PRAGMA foreign_keys = ON", [])
            _ = try connection.query("PRAGMA synchronous = NORMAL", [])
            return connection
        }
        do {
            let writer = try connect("writer")
            let modeRows = try writer.query("PRAGMA journal_mode = WAL", [])
            let mode = try modeRows.first?.decode(column: "journal_mode", as: String.self)
            guard mode?.lowercased() == "wal" else {
                throw DatabaseError("SQLite did not switch to WAL mode (got \(mode ?? "nothing"))")
            }
            var readers: [SQLiteConnection] = []
            for index in 0..<readerCount {
                let reader = try connect("reader\(index)")
                _ = try reader.query("PRAGMA query_only = ON", [])
                readers.append(reader)
            }
            let checkpointer = Checkpointer(connection: try connect("checkpoint"), frames: checkpointFrames, logger: logger)
            writer.setWALHook(WALHook { handle, frames in checkpointer.committed(handle, frames: frames) })
            return SQLiteStore(path: path, readers: readers, writer: writer, checkpointer: checkpointer, logger: logger)
        } catch {
            for connection in opened { connection.close() }
            throw error
        }
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
        await checkpointer.drain()
        for reader in readers { reader.close() }
        checkpointer.connection.close()
        writerConnection.close()
    }

    /// Background checkpoints so far that copied frames into the database file (for tests).
    var backgroundCheckpoints: Int { checkpointer.completed }

    /// Waits until no background checkpoint runs (for tests).
    func checkpointsDrained() async { await checkpointer.drain() }

    /// Number of transactions the writer has committed and how many COMMITs that took
    /// (for tests and benchmarks of group commit).
    public var writerStatistics: (transactions: Int, commits: Int) {
        writer.statistics
    }
}

/// Checkpoints the WAL off the writer's thread.
///
/// SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1000 frames: it
/// copies pages into the database file and syncs it while every queued write waits. Here that
/// COMMIT only asks a connection of its own to run a PASSIVE checkpoint, which copies what it can
/// without blocking the writer or the readers. Under continuous writes a passive checkpoint never
/// reaches the WAL's end, and only a complete checkpoint lets the writer start the WAL over; so
/// once the WAL passes `restart` frames the committing writer checkpoints in place, as SQLite
/// would. By then nearly every frame is copied, and that checkpoint is short.
final class Checkpointer: Sendable {
    static let defaultFrames = (background: 1000, restart: 8000)

    let connection: SQLiteConnection
    private let frames: (background: Int, restart: Int)
    private let running = Atomic<Bool>(false)
    private let count = Atomic<Int>(0)
    private let logger: Logger

    init(connection: SQLiteConnection, frames: (background: Int, restart: Int), logger: Logger) {
        self.connection = connection
        self.frames = frames
        self.logger = logger
    }

    /// Background checkpoints that copied at least one frame.
    var completed: Int { count.load(ordering: .relaxed) }

    /// Called on the writer's thread after each commit, with the WAL's length in frames.
    func committed(_ handle: OpaquePointer, frames walFrames: Int) {
        if walFrames >= frames.restart {
            // Returns SQLITE_BUSY at once if the background checkpoint runs: the next commit tries again.
            sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
        } else if walFrames >= frames.background, running.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            Task(executorPreference: connection.executor) { [self] in
                defer { running.store(false, ordering: .releasing) }
                do {
                    // One row: busy (0 or 1), log (frames in the WAL), checkpointed (frames copied).
                    let row = try connection.query("PRAGMA wal_checkpoint(PASSIVE)", []).first
                    if let copied = try row?.decode(column: "checkpointed", as: Int.self), copied > 0 {
                        count.add(1, ordering: .relaxed)
                    }
                } catch {
                    logger.warning("SQLite background checkpoint failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// Waits until no checkpoint runs (before the connection closes).
    func drain() async {
        while running.load(ordering: .acquiring) {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// The single SQLite writer with group commit.
///
/// Callers queue transaction bodies. One drain loop runs on the writer's own thread while anything
/// is queued: it takes everything queued so far (up to `maximumBatch`), runs it in one
/// `BEGIN IMMEDIATE … COMMIT`, resumes those callers, and goes straight on to the next batch.
/// Throughput therefore grows with concurrency instead of paying one commit per request, and the
/// next batch never waits for a caller's task to be scheduled on the shared cooperative pool: under
/// load that pool is busy with requests, and a hand-off through it left the writer idle between
/// batches while every request waited for it.
final class GroupCommitWriter: Sendable {
    private typealias Body = @Sendable (any SQLDatabase) async throws -> any Sendable

    private struct Waiter {
        let body: Body
        let continuation: CheckedContinuation<Result<any Sendable, any Error>, Never>
    }

    private struct State {
        var queue: [Waiter] = []
        var running = false
        var transactions = 0
        var commits = 0
    }

    private let database: any SQLDatabase
    private let logger: Logger
    private let state = Mutex(State())
    private let maximumBatch = 512
    private let executor: SerialQueueTaskExecutor

    init(database: any SQLDatabase, executor: SerialQueueTaskExecutor, logger: Logger) {
        self.database = database
        self.executor = executor
        self.logger = logger
    }

    /// Waits until no batch runs (before the connection closes).
    func drain() async {
        while state.withLock({ $0.running }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    var statistics: (transactions: Int, commits: Int) {
        state.withLock { ($0.transactions, $0.commits) }
    }

    func submit<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        let erased: Body = { db in try await body(db) }
        // The drain loop runs in a task of its own: a caller's task may be cancelled (a finished
        // run stops its heartbeat), and cancellation must neither fail the other callers' bodies
        // nor interrupt COMMIT or ROLLBACK and leave the transaction open.
        let result = await withCheckedContinuation { continuation in
            let start = state.withLock { state in
                state.queue.append(Waiter(body: erased, continuation: continuation))
                defer { state.running = true }
                return !state.running
            }
            if start {
                Task(executorPreference: executor) { await self.drainQueue() }
            }
        }
        return try result.get() as! T
    }

    /// Runs batches until the queue is empty, on the writer's thread.
    private func drainQueue() async {
        while true {
            let batch: [Waiter]? = state.withLock { state in
                if state.queue.isEmpty {
                    state.running = false
                    return nil
                }
                let batch = Array(state.queue.prefix(maximumBatch))
                state.queue.removeFirst(batch.count)
                return batch
            }
            guard let batch else { return }
            let results = await runBatch(batch.map(\.body))
            for (waiter, result) in zip(batch, results) {
                waiter.continuation.resume(returning: result)
            }
        }
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
                counted(bodies.count)
                return results
            } catch {
                logger.warning("SQLite batch commit failed; retrying with savepoints", metadata: ["error": "\(error)"])
            }
        }
        try? await database.raw("ROLLBACK").run()
        return await runBatchWithSavepoints(bodies)
    }

    private func counted(_ bodies: Int) {
        state.withLock { state in
            state.transactions += bodies
            state.commits += 1
        }
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
            counted(bodies.count)
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
