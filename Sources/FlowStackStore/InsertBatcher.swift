import Logging
import SQLKit
import Synchronization

/// Rows for one or more tables that must be inserted together (atomically), in the order their
/// foreign keys need: the parent table first.
struct RowInsert: Sendable {
    struct Table: Sendable, Equatable {
        let name: String
        let columns: [String]
    }

    let tables: [Table]
    /// `rows[t]` are the rows of `tables[t]`; each row has one value per column.
    let rows: [[[SQLiteValue]]]

    init(tables: [Table], rows: [[[SQLiteValue]]]) {
        precondition(
            tables.count == rows.count
                && zip(tables, rows).allSatisfy { table, rows in
                    rows.allSatisfy { $0.count == table.columns.count }
                }, "RowInsert: every row needs one value per column")
        self.tables = tables
        self.rows = rows
    }

    var valueCount: Int { rows.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } }

    /// Roughly how many bytes the values take in a statement.
    var byteCount: Int {
        rows.reduce(0) { total, table in
            table.reduce(total) { total, row in
                row.reduce(total) { total, value in
                    switch value {
                    case .null: total + 4
                    case .integer, .real: total + 8
                    case .text(let text): total + text.utf8.count
                    case .blob(let bytes): total + bytes.count
                    }
                }
            }
        }
    }

    /// Statements a table (for SQLite, which has no data-modifying `WITH`), parents first, to run
    /// in one transaction: one a table, or more where a table's rows have more values than a
    /// statement takes (`maximumStatementValues`).
    var statements: [BoundStatement] {
        tables.indices.flatMap { t -> [BoundStatement] in
            let rowsPerStatement = max(1, Self.maximumStatementValues / tables[t].columns.count)
            return stride(from: 0, to: rows[t].count, by: rowsPerStatement).map { start in
                let chunk = rows[t][start..<min(start + rowsPerStatement, rows[t].count)]
                return BoundStatement(sql: Self.insertSQL(tables[t], rows: chunk.count), values: chunk.flatMap { $0 })
            }
        }
    }

    /// The most values bound in one of `statements`: SQLite takes at most 32,766 parameters, and
    /// PostgreSQL 65,535.
    static let maximumStatementValues = 30_000

    private struct Shape: Hashable {
        let table: String
        let rows: Int
    }
    /// Statement texts by table and row count: SQLite's writer inserts the same few shapes over
    /// and over, and building the text took longer than looking it up.
    private static let texts = Mutex<[Shape: String]>([:])
    private static let maximumCachedRows = 64

    /// `INSERT INTO table (columns) VALUES (?1, …), …` for `rows` rows, as `statement(merging:)`
    /// writes it for one table.
    static func insertSQL(_ table: Table, rows: Int) -> String {
        let shape = Shape(table: table.name, rows: rows)
        if rows <= maximumCachedRows, let text = texts.withLock({ $0[shape] }) { return text }
        let dummy = Array(repeating: Array(repeating: SQLiteValue.null, count: table.columns.count), count: rows)
        let text = statement(merging: [RowInsert(tables: [table], rows: [dummy])]).sql
        if rows <= maximumCachedRows {
            texts.withLock { texts in
                // Tables are few and fixed; the bound only guards against a caller with many.
                if texts.count >= 1024 { texts.removeAll() }
                texts[shape] = text
            }
        }
        return text
    }

    /// One statement that inserts the rows of all `inserts` (which share one layout): the parent
    /// tables in data-modifying `WITH` clauses, so the statement is atomic without BEGIN and
    /// COMMIT, and foreign keys are checked when it ends.
    static func statement(merging inserts: [RowInsert]) -> BoundStatement {
        let tables = inserts[0].tables
        var sql = ""
        var values: [SQLiteValue] = []
        values.reserveCapacity(inserts.reduce(0) { $0 + $1.valueCount })
        var placeholder = 0
        let nonEmpty = tables.indices.filter { t in inserts.contains { !$0.rows[t].isEmpty } }
        for (position, t) in nonEmpty.enumerated() {
            let table = tables[t]
            let last = position == nonEmpty.count - 1
            if !last { sql += (position == 0 ? "WITH " : ", ") + "t\(position) AS (" } else if position > 0 { sql += " " }
            sql += "INSERT INTO \(table.name) (\(table.columns.joined(separator: ", "))) VALUES "
            var firstRow = true
            for insert in inserts {
                for row in insert.rows[t] {
                    sql += firstRow ? "(" : ", ("
                    firstRow = false
                    for (column, value) in row.enumerated() {
                        placeholder += 1
                        sql += (column == 0 ? "?" : ", ?") + String(placeholder)
                        values.append(value)
                    }
                    sql += ")"
                }
            }
            if !last { sql += ")" }
        }
        return BoundStatement(sql: sql, values: values)
    }
}

/// Group commit for PostgreSQL's hottest write: the insert of an execution with its journal.
///
/// Alone, each insert costs a statement, a round trip and a commit of its own; under load the
/// server spends more time on that overhead than on the rows. Here concurrent inserts queue, and
/// up to `maximumInFlight` statements at a time each insert everything that is queued (one
/// statement, one commit). An insert that arrives while the database is idle runs at once. When
/// the oldest queued insert has waited `overflowAfter` (statements in flight are slow or stuck),
/// a new arrival starts another statement, up to `overflowLimit` in all.
///
/// A merged statement is all or nothing. If it fails for a row's fault (`isRowError`: a
/// constraint or a bad value), its inserts run again one by one, so an insert fails only for a
/// fault of its own. Any other failure (the connection, the server) fails every insert in it
/// with that error, as it would have failed each alone. Statements run in tasks of their own: a
/// caller that is cancelled while it waits does not cancel an insert that was accepted.
final class InsertBatcher: Sendable {
    typealias Execute = @Sendable (BoundStatement) async throws -> Void

    private struct Waiter {
        let insert: RowInsert
        /// `insert.valueCount` and `insert.byteCount`, counted before taking the lock.
        let values: Int
        let bytes: Int
        let queuedAt: ContinuousClock.Instant
        let continuation: CheckedContinuation<Result<Void, any Error>, Never>
    }

    private struct State {
        var queue: [Waiter] = []
        var inFlight = 0
        var inserts = 0
        var statements = 0
    }

    /// PostgreSQL takes at most 65,535 parameters in a statement.
    static let maximumValues = RowInsert.maximumStatementValues
    static let maximumInserts = 256
    /// Large journals go in statements of their own rather than one huge message.
    static let maximumBytes = 8 << 20

    private let maximumInFlight: Int
    private let overflowLimit: Int
    private let overflowAfter: Duration
    private let execute: Execute
    private let isRowError: @Sendable (any Error) -> Bool
    private let now: @Sendable () -> ContinuousClock.Instant
    private let logger: Logger
    private let state = Mutex(State())

    init(
        maximumInFlight: Int, overflowLimit: Int = 8, overflowAfter: Duration = .milliseconds(200), logger: Logger,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
        isRowError: @escaping @Sendable (any Error) -> Bool, execute: @escaping Execute
    ) {
        precondition(maximumInFlight > 0 && overflowLimit >= maximumInFlight)
        self.maximumInFlight = maximumInFlight
        self.overflowLimit = overflowLimit
        self.overflowAfter = overflowAfter
        self.logger = logger
        self.now = now
        self.isRowError = isRowError
        self.execute = execute
    }

    /// Inserts committed so far and the statements that took (for tests and benchmarks).
    var statistics: (inserts: Int, statements: Int) {
        state.withLock { ($0.inserts, $0.statements) }
    }

    /// Inserts waiting for a statement (for tests).
    var queued: Int { state.withLock { $0.queue.count } }

    func insert(_ insert: RowInsert) async throws {
        let queuedAt = now()
        let (values, bytes) = (insert.valueCount, insert.byteCount)
        let result = await withCheckedContinuation { continuation in
            let start = state.withLock { state in
                state.queue.append(Waiter(insert: insert, values: values, bytes: bytes, queuedAt: queuedAt, continuation: continuation))
                let stalled = queuedAt - state.queue[0].queuedAt >= overflowAfter
                guard state.inFlight < maximumInFlight || (stalled && state.inFlight < overflowLimit) else { return false }
                state.inFlight += 1
                return true
            }
            if start {
                // Detached: a drainer serves many callers and must not carry one's priority or
                // task-local values.
                Task.detached { await self.drain() }
            }
        }
        try result.get()
    }

    /// Runs statements until the queue is empty.
    private func drain() async {
        while let batch = nextBatch() {
            let results = await run(batch.map(\.insert))
            for (waiter, result) in zip(batch, results) {
                waiter.continuation.resume(returning: result)
            }
        }
    }

    /// The longest prefix of the queue that shares the first insert's layout and fits one
    /// statement; nil (and one drainer fewer) when the queue is empty.
    private func nextBatch() -> [Waiter]? {
        state.withLock { state in
            guard let first = state.queue.first else {
                state.inFlight -= 1
                return nil
            }
            var count = 1
            var values = first.values
            var bytes = first.bytes
            while count < state.queue.count, count < Self.maximumInserts {
                let next = state.queue[count]
                guard next.insert.tables == first.insert.tables, values + next.values <= Self.maximumValues,
                    bytes + next.bytes <= Self.maximumBytes
                else { break }
                values += next.values
                bytes += next.bytes
                count += 1
            }
            let batch = Array(state.queue.prefix(count))
            state.queue.removeFirst(count)
            return batch
        }
    }

    private func run(_ inserts: [RowInsert]) async -> [Result<Void, any Error>] {
        do {
            try await execute(RowInsert.statement(merging: inserts))
            counted(inserts.count)
            return inserts.map { _ in .success(()) }
        } catch let error where inserts.count > 1 && isRowError(error) {
            logger.warning(
                "a merged insert was refused; inserting its rows one by one",
                metadata: ["inserts": "\(inserts.count)", "error": "\(String(describing: type(of: error)))"])
        } catch {
            return inserts.map { _ in .failure(error) }
        }
        var results: [Result<Void, any Error>] = []
        for insert in inserts {
            do {
                try await execute(RowInsert.statement(merging: [insert]))
                counted(1)
                results.append(.success(()))
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }

    private func counted(_ inserts: Int) {
        state.withLock { state in
            state.inserts += inserts
            state.statements += 1
        }
    }
}
