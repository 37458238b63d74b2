import Crypto
import FlowStackCore
import FlowStackCrypto
import Foundation
import Logging
import SQLKit

/// The execution's lease was taken over (expired and reclaimed, or the execution was cancelled):
/// the holder must stop without writing anything more.
public struct LeaseLost: Error, Sendable, Equatable {
    public let executionID: String
    public init(executionID: String) { self.executionID = executionID }
}

extension ExecutionEvent {
    fileprivate var isResumed: Bool {
        if case .resumed = self { return true }
        return false
    }
}

/// A journal entry as sealed: the event and how its node ran.
struct SealedEvent: Codable, Equatable, Sendable {
    var event: ExecutionEvent
    var run: NodeRunInfo?

    /// The entry as JSON. The events that carry items (start, node results, resumes) and node
    /// failures are written by hand — the same JSON `Codable` writes, which reads them back —
    /// because `JSONEncoder` cost more than everything else a quick run does; other events go
    /// through `JSONEncoder`.
    func jsonBytes() throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out += #"{"event":"#.utf8
        guard Self.write(event, to: &out), run?.milliseconds.isFinite ?? true else {
            return Array(try JSONEncoder().encode(self))
        }
        if let run {
            out += #","run":{"attempt":"#.utf8
            out += String(run.attempt).utf8
            out += #","milliseconds":"#.utf8
            JSONValue.write(number: run.milliseconds, to: &out)
            if let logs = run.logs {
                out += #","logs":["#.utf8
                for (index, line) in logs.enumerated() {
                    if index > 0 { out.append(UInt8(ascii: ",")) }
                    JSONValue.write(string: line, to: &out)
                }
                out.append(UInt8(ascii: "]"))
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Writes the event as synthesized `Codable` does (`{"case":{"label":value,…}}`); false for
    /// the cases left to `JSONEncoder`.
    private static func write(_ event: ExecutionEvent, to out: inout [UInt8]) -> Bool {
        func items(_ items: [Item]) {
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                out += #"{"json":"#.utf8
                item.json.write(to: &out)
                if let binary = item.binary {
                    out += #","binary":"#.utf8
                    JSONValue.object(JSONObject(binary)).write(to: &out)
                }
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "]"))
        }
        func outputs(_ outputs: [[Item]]) {
            out.append(UInt8(ascii: "["))
            for (index, output) in outputs.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                items(output)
            }
            out.append(UInt8(ascii: "]"))
        }
        /// `{"case":{"label":"value"` — the common start of every case written here.
        func open(_ name: String, _ label: String, _ value: String) {
            out += "{\"\(name)\":{\"\(label)\":".utf8
            JSONValue.write(string: value, to: &out)
        }
        switch event {
        case .start(let trigger, let triggerItems):
            open("start", "trigger", trigger)
            out += #","items":"#.utf8
            items(triggerItems)
        case .nodeSucceeded(let node, let nodeOutputs), .resumed(let node, let nodeOutputs):
            open(event.isResumed ? "resumed" : "nodeSucceeded", "node", node)
            out += #","outputs":"#.utf8
            outputs(nodeOutputs)
        case .nodeFailed(let node, let error):
            open("nodeFailed", "node", node)
            out += #","error":"#.utf8
            JSONValue.write(string: error, to: &out)
        default:
            return false
        }
        out += "}}".utf8
        return true
    }
}

extension Store {
    private func eventContext(_ executionID: String, _ seq: Int, _ orgID: String) -> SealContext {
        SealContext(table: "execution_events", rowID: "\(executionID)/\(seq)", column: "event", orgID: orgID)
    }

    private func errorContext(_ executionID: String, _ orgID: String) -> SealContext {
        SealContext(table: "executions", rowID: executionID, column: "error", orgID: orgID)
    }

    private static let executionColumns = """
        id, org_id, project_id, workflow_id, version_id, mode, status, trigger_node, created_at, started_at, finished_at,
        failed_node, error_sealed, fence, wait_until, events, parent_id, retry_of
        """

    private func execution(from row: any SQLRow) throws -> ExecutionRecord {
        let id = try row.string("id")
        let orgID = try row.string("org_id")
        var record = ExecutionRecord(
            id: id, orgID: orgID, projectID: try row.string("project_id"), workflowID: try row.string("workflow_id"),
            versionID: try row.string("version_id"), mode: ExecutionMode(rawValue: try row.string("mode")) ?? .manual,
            status: ExecutionStatus(rawValue: try row.string("status")) ?? .failed,
            triggerNode: try row.string("trigger_node"), createdAt: try row.date("created_at"),
            parentID: try row.optionalString("parent_id"), retryOf: try row.optionalString("retry_of"))
        record.startedAt = try row.optionalDate("started_at")
        record.finishedAt = try row.optionalDate("finished_at")
        record.failedNode = try row.optionalString("failed_node")
        if let sealed = try row.optionalBytes("error_sealed") {
            record.error = try sealer.openString(sealed, context: errorContext(id, orgID))
        }
        record.fence = Int(try row.int("fence"))
        record.waitUntil = try row.optionalDate("wait_until")
        record.events = Int(try row.int("events"))
        return record
    }

    private func sealEvent(_ event: ExecutionEvent, run: NodeRunInfo?, executionID: String, seq: Int, orgID: String) throws -> Data {
        Data(
            try sealer.seal(
                try SealedEvent(event: event, run: run).jsonBytes(), purpose: .data,
                context: eventContext(executionID, seq, orgID)))
    }

    /// Accepts an execution with its first journal entry (the trigger's items). With `leaseOwner`
    /// the caller runs it at once and holds its lease (fence 1); otherwise it waits in the queue.
    /// `notify: false` leaves telling the workers to the caller (`notifyQueued(on:)` once for many).
    public func insertExecution(
        _ record: ExecutionRecord, start: ExecutionEvent, replaying later: [ExecutionEvent] = [], leaseOwner: String?,
        leaseUntil: Date?, notify: Bool = true, on db: any SQLDatabase
    ) async throws -> ExecutionRecord {
        var inserted = record
        let now = self.now
        if leaseOwner != nil {
            inserted.status = .running
            inserted.fence = 1
            inserted.startedAt = now
        }
        inserted.events = 1 + later.count
        try await db.raw(
            """
            INSERT INTO executions (id, org_id, project_id, workflow_id, version_id, mode, status, trigger_node, created_at, started_at,
                                    fence, lease_owner, lease_expires, events, parent_id, retry_of)
            VALUES (\(bind: record.id), \(bind: record.orgID), \(bind: record.projectID), \(bind: record.workflowID), \(bind: record.versionID),
                    \(bind: record.mode.rawValue), \(bind: inserted.status.rawValue), \(bind: record.triggerNode),
                    \(bind: record.createdAt.millisecondsSince1970), \(bind: inserted.startedAt.ms), \(bind: inserted.fence),
                    \(bind: leaseOwner), \(bind: leaseUntil.ms), \(bind: inserted.events), \(bind: record.parentID), \(bind: record.retryOf))
            """
        ).run()
        for (offset, event) in later.enumerated() {
            try await db.raw(
                """
                INSERT INTO execution_events (execution_id, seq, node, event_sealed, created_at)
                VALUES (\(bind: record.id), \(bind: offset + 1), \(bind: event.nodeName),
                        \(bind: try sealEvent(event, run: nil, executionID: record.id, seq: offset + 1, orgID: record.orgID)), \(bind: now.millisecondsSince1970))
                """
            ).run()
        }
        try await db.raw(
            """
            INSERT INTO execution_events (execution_id, seq, node, event_sealed, created_at)
            VALUES (\(bind: record.id), 0, NULL, \(bind: try sealEvent(start, run: nil, executionID: record.id, seq: 0, orgID: record.orgID)),
                    \(bind: now.millisecondsSince1970))
            """
        ).run()
        if leaseOwner == nil, notify { try await notifyQueued(on: db) }
        return inserted
    }

    /// The channel workers LISTEN on (PostgreSQL) to claim new work at once instead of at the next poll.
    public static let executionChannel = "flowstack_executions"

    /// Tells listening workers that an execution became claimable; delivered when the transaction commits.
    public func notifyQueued(on db: any SQLDatabase) async throws {
        guard database.kind == .postgres else { return }
        try await db.raw("SELECT pg_notify(\(literal: Self.executionChannel), '')").run()
    }

    /// Appends journal entries and updates the execution, if `fence` still holds the lease;
    /// otherwise nothing is written and `LeaseLost` is thrown. One transaction.
    public func appendJournal(
        executionID: String, orgID: String, fence: Int, firstSeq: Int,
        events: [(event: ExecutionEvent, node: String?, run: NodeRunInfo?)],
        progress: ExecutionProgress?, leaseUntil: Date
    ) async throws {
        let append = try prepareJournal(
            executionID: executionID, orgID: orgID, fence: fence, firstSeq: firstSeq, events: events,
            progress: progress, leaseUntil: leaseUntil)
        try await write { db in try await append(db) }
    }

    /// Accepts an execution and its journal so far in one transaction: what an inline run that
    /// finished quickly writes (one commit instead of one per step).
    public func insertExecutionWithJournal(
        _ record: ExecutionRecord, start: ExecutionEvent, leaseOwner: String, leaseUntil: Date,
        events: [(event: ExecutionEvent, node: String?, run: NodeRunInfo?)],
        progress: ExecutionProgress?
    ) async throws -> ExecutionRecord {
        var inserted = record
        let now = self.now
        inserted.status = progress?.status ?? .running
        inserted.fence = 1
        inserted.startedAt = record.startedAt ?? record.createdAt
        inserted.events = 1 + events.count
        let holds = !(inserted.status.isFinished || inserted.status == .waiting)
        if inserted.status.isFinished {
            inserted.finishedAt = now
            inserted.error = progress?.error
            inserted.failedNode = progress?.failedNode
        }
        inserted.waitUntil = progress?.waitUntil
        let entries = [(event: start, node: String?.none, run: NodeRunInfo?.none)] + events
        let sealed = try entries.enumerated().map { seq, entry in
            (entry.node, try sealEvent(entry.event, run: entry.run, executionID: record.id, seq: seq, orgID: record.orgID))
        }
        let errorSealed = try inserted.error.map { Data(try sealer.seal($0, context: errorContext(record.id, record.orgID))) }
        let row = inserted
        let values: [SQLiteValue] = [
            .text(row.id), .text(row.orgID), .text(row.projectID), .text(row.workflowID), .text(row.versionID), .text(row.mode.rawValue),
            .text(row.status.rawValue), .text(row.triggerNode), .integer(row.createdAt.millisecondsSince1970), .optional(row.startedAt.ms),
            .optional(row.finishedAt.ms), .optional(row.failedNode), errorSealed.map { .blob(Array($0)) } ?? .null, .integer(1),
            holds ? .text(leaseOwner) : .null, holds ? .integer(leaseUntil.millisecondsSince1970) : .null, .optional(row.waitUntil.ms),
            .integer(Int64(row.events)), .optional(row.parentID), .optional(row.retryOf),
        ]
        let eventRows: [[SQLiteValue]] = sealed.enumerated().map { seq, entry in
            [.text(row.id), .integer(Int64(seq)), .optional(entry.0), .blob(Array(entry.1)), .integer(now.millisecondsSince1970)]
        }
        // The execution and all its entries at once: on PostgreSQL group-committed with
        // concurrent inserts in one statement, on SQLite (and for a journal too long for one
        // statement) in a transaction of their own.
        let insert = RowInsert(tables: Self.executionInsertTables, rows: [[values], eventRows])
        if let postgres = database as? PostgresStore, insert.valueCount <= InsertBatcher.maximumValues {
            try await postgres.insert(insert)
        } else {
            let statements = insert.statements
            try await write { db in
                for statement in statements { try await db.execute(sql: statement) { _ in } }
            }
        }
        return inserted
    }

    static let executionInsertTables: [RowInsert.Table] = [
        RowInsert.Table(
            name: "executions",
            columns: [
                "id", "org_id", "project_id", "workflow_id", "version_id", "mode", "status", "trigger_node", "created_at", "started_at",
                "finished_at", "failed_node", "error_sealed", "fence", "lease_owner", "lease_expires", "wait_until", "events",
                "parent_id", "retry_of",
            ]),
        RowInsert.Table(name: "execution_events", columns: ["execution_id", "seq", "node", "event_sealed", "created_at"]),
    ]

    /// Seals the entries now (outside the writer) and returns the statements to run in a transaction.
    private func prepareJournal(
        executionID: String, orgID: String, fence: Int, firstSeq: Int,
        events: [(event: ExecutionEvent, node: String?, run: NodeRunInfo?)],
        progress: ExecutionProgress?, leaseUntil: Date
    ) throws -> @Sendable (any SQLDatabase) async throws -> Void {
        let now = self.now
        let sealed = try events.enumerated().map { offset, entry in
            try sealEvent(entry.event, run: entry.run, executionID: executionID, seq: firstSeq + offset, orgID: orgID)
        }
        let nodes = events.map(\.node)
        let errorSealed = try progress?.error.map { Data(try sealer.seal($0, context: errorContext(executionID, orgID))) }
        return { db in
            var update: SQLQueryString = "UPDATE executions SET events = events + \(bind: nodes.count)"
            if let progress {
                update += ", status = \(bind: progress.status.rawValue), wait_until = \(bind: progress.waitUntil.ms)"
                if progress.status.isFinished {
                    update +=
                        ", finished_at = \(bind: now.millisecondsSince1970), failed_node = \(bind: progress.failedNode), error_sealed = \(bind: errorSealed)"
                }
            }
            if let progress, progress.status.isFinished || progress.status == .waiting {
                // Finished or asleep: nobody holds it now.
                update += ", lease_owner = NULL, lease_expires = NULL"
            } else {
                update += ", lease_expires = \(bind: leaseUntil.millisecondsSince1970)"
            }
            update += " WHERE id = \(bind: executionID) AND fence = \(bind: fence) AND status IN ('running', 'waiting') RETURNING id"
            guard try await db.raw(update).first() != nil else { throw LeaseLost(executionID: executionID) }
            for (offset, node) in nodes.enumerated() {
                try await db.raw(
                    """
                    INSERT INTO execution_events (execution_id, seq, node, event_sealed, created_at)
                    VALUES (\(bind: executionID), \(bind: firstSeq + offset), \(bind: node), \(bind: sealed[offset]),
                            \(bind: now.millisecondsSince1970))
                    """
                ).run()
            }
        }
    }

    /// Extends a lease; false when it was lost.
    public func heartbeat(executionID: String, fence: Int, leaseUntil: Date) async throws -> Bool {
        try await write { db in
            try await db.raw(
                """
                UPDATE executions SET lease_expires = \(bind: leaseUntil.millisecondsSince1970)
                WHERE id = \(bind: executionID) AND fence = \(bind: fence) AND status = 'running' RETURNING id
                """
            ).first() != nil
        }
    }

    /// Takes up to `limit` executions that are due: queued, running with an expired lease (its
    /// holder died or stalled), or waiting past their wake-up time. Each gets a new fence, so a
    /// stalled former holder can no longer write. PostgreSQL skips rows other claimers hold.
    public func claimExecutions(owner: String, limit: Int, leaseUntil: Date) async throws -> [ExecutionRecord] {
        let now = self.now.millisecondsSince1970
        let kind = database.kind
        let rows = try await database.writeSingleStatement { db in
            try await db.raw(
                """
                UPDATE executions SET status = 'running', fence = fence + 1, lease_owner = \(bind: owner),
                    lease_expires = \(bind: leaseUntil.millisecondsSince1970), started_at = COALESCE(started_at, \(bind: now))
                WHERE id IN (
                    SELECT id FROM executions
                    WHERE status = 'queued' OR (status = 'running' AND lease_expires < \(bind: now))
                       OR (status = 'waiting' AND wait_until IS NOT NULL AND wait_until <= \(bind: now))
                    ORDER BY created_at LIMIT \(bind: limit) \(unsafeRaw: kind == .postgres ? "FOR UPDATE SKIP LOCKED" : ""))
                RETURNING \(unsafeRaw: Self.executionColumns)
                """
            ).all()
        }
        return try rows.map(execution(from:))
    }

    static let resumeTokenInfo = "flowstack.resume-token.v1"

    /// The secret part of an execution's resume URL: `<data key id>.<HMAC>` of the execution id,
    /// from a MAC key derived from the data key. Nothing is stored, so nothing can leak from
    /// the database; it works as long as that data key is in the keyring (as sealed data does).
    public func resumeToken(executionID: String) -> String {
        let keyID = sealer.keyring.active(.data).id
        let key = sealer.keyring.macKey(id: keyID, info: Self.resumeTokenInfo)!
        return keyID + "." + Token.base64url(HMAC<SHA256>.authenticationCode(for: Array(executionID.utf8), using: key))
    }

    /// Whether `token` is the resume token of the execution (compared in constant time).
    public func verifyResumeToken(_ token: String, executionID: String) -> Bool {
        // Key ids may hold '.', base64url never does: the MAC starts after the last one.
        guard token.utf8.count <= 200, let dot = token.lastIndex(of: "."),
            let key = sealer.keyring.macKey(id: String(token[..<dot]), info: Self.resumeTokenInfo)
        else { return false }
        let expected =
            String(token[..<dot]) + "." + Token.base64url(HMAC<SHA256>.authenticationCode(for: Array(executionID.utf8), using: key))
        return Token.constantTimeEquals(token, expected)
    }

    /// The resume payload is bound to the wait it ends (the execution and its journal length), so
    /// a payload left over from one wait can never be read as the answer to a later one.
    static func resumeContext(_ record: ExecutionRecord) -> SealContext {
        SealContext(table: "executions", rowID: "\(record.id)/\(record.events)", column: "resume", orgID: record.orgID)
    }

    /// What a resume call sent to `record`'s current wait, if anything.
    public func resumePayload(_ record: ExecutionRecord) async throws -> JSONValue? {
        let row = try await read { db in
            try await db.raw("SELECT resume_sealed FROM executions WHERE id = \(bind: record.id)").first()
        }
        guard let sealed = try row?.optionalBytes("resume_sealed"),
            let bytes = try? sealer.open(sealed, purpose: .data, context: Self.resumeContext(record))
        else { return nil }
        return try? JSONValue(parsing: bytes)
    }

    /// Wakes a waiting execution now (a resume webhook or API call), keeping what the call sent;
    /// false when it isn't waiting (or its journal moved on since `record` was read).
    public func wakeExecution(_ record: ExecutionRecord, payload: JSONValue? = nil) async throws -> Bool {
        let now = self.now.millisecondsSince1970
        let sealed = try payload.map { Data(try sealer.seal(Array($0.jsonText.utf8), purpose: .data, context: Self.resumeContext(record))) }
        let id = record.id
        return try await write { db in
            let woken =
                try await db.raw(
                    """
                    UPDATE executions SET wait_until = \(bind: now), resume_sealed = \(bind: sealed)
                    WHERE id = \(bind: id) AND status = 'waiting' AND events = \(bind: record.events) RETURNING id
                    """
                ).first() != nil
            if woken { try await self.notifyQueued(on: db) }
            return woken
        }
    }

    public func execution(id: String) async throws -> ExecutionRecord? {
        let row = try await read { db in
            try await db.raw("SELECT \(unsafeRaw: Self.executionColumns) FROM executions WHERE id = \(bind: id)").first()
        }
        return try row.map(execution(from:))
    }

    /// The journal, in order.
    public func journal(executionID: String, orgID: String) async throws -> [ExecutionJournalEntry] {
        let rows = try await read { db in
            try await db.raw(
                """
                SELECT seq, node, event_sealed, created_at FROM execution_events WHERE execution_id = \(bind: executionID) ORDER BY seq
                """
            ).all()
        }
        return try rows.map { row in
            let seq = Int(try row.int("seq"))
            let bytes = try sealer.open(try row.bytes("event_sealed"), purpose: .data, context: eventContext(executionID, seq, orgID))
            let sealed = try JSONDecoder().decode(SealedEvent.self, from: Data(bytes))
            return ExecutionJournalEntry(
                seq: seq, node: try row.optionalString("node"), event: sealed.event, createdAt: try row.date("created_at"),
                run: sealed.run)
        }
    }

    /// A page of a project's executions, newest first; the cursor is the last one's id.
    public func executions(projectID: String, filter: ExecutionFilter, before cursor: ExecutionRecord?, limit: Int) async throws
        -> [ExecutionRecord]
    {
        let rows = try await read { db in
            var query: SQLQueryString = "SELECT \(unsafeRaw: Self.executionColumns) FROM executions WHERE project_id = \(bind: projectID)"
            if let status = filter.status { query += " AND status = \(bind: status.rawValue)" }
            if let workflowID = filter.workflowID { query += " AND workflow_id = \(bind: workflowID)" }
            if let mode = filter.mode { query += " AND mode = \(bind: mode.rawValue)" }
            if let cursor {
                let at = cursor.createdAt.millisecondsSince1970
                query += " AND (created_at < \(bind: at) OR (created_at = \(bind: at) AND id < \(bind: cursor.id)))"
            }
            query += " ORDER BY created_at DESC, id DESC LIMIT \(bind: limit)"
            return try await db.raw(query).all()
        }
        return try rows.map(execution(from:))
    }

    /// Cancels an unfinished execution. The fence moves on, so a worker still running it can no
    /// longer write. False when it had already finished.
    public func cancelExecution(id: String) async throws -> Bool {
        let now = self.now.millisecondsSince1970
        return try await write { db in
            try await db.raw(
                """
                UPDATE executions SET status = 'cancelled', fence = fence + 1, finished_at = \(bind: now), lease_owner = NULL,
                    lease_expires = NULL, wait_until = NULL
                WHERE id = \(bind: id) AND status IN ('queued', 'running', 'waiting') RETURNING id
                """
            ).first() != nil
        }
    }

    /// Drops an execution's node data (its journal), keeping the row: for workflows whose
    /// `saveExecutionData` says not to keep it.
    public func deleteJournal(executionID: String) async throws {
        try await write { db in
            try await db.raw("DELETE FROM execution_events WHERE execution_id = \(bind: executionID)").run()
        }
    }

    public func deleteExecution(id: String) async throws {
        try await write { db in
            try await db.raw("DELETE FROM execution_events WHERE execution_id = \(bind: id)").run()
            try await db.raw("DELETE FROM executions WHERE id = \(bind: id)").run()
        }
    }
}

/// The database could not be asked whether an execution was accepted: the caller must not be
/// told either way.
public struct AcceptanceUnknown: Error, Sendable, CustomStringConvertible {
    public let executionID: String
    public var description: String { "whether execution \(executionID) was accepted is not known: the database did not answer" }
}

extension Store {
    /// After a write of execution `id` failed: whether it was committed all the same (the
    /// connection died after the server committed, before the answer arrived). Answers the row
    /// when it is there, nil when it is not, and throws `AcceptanceUnknown` when the database
    /// cannot be asked within `patience`.
    public func confirmAccepted(_ id: String, after error: any Error, patience: Duration = .seconds(30), logger: Logger) async throws
        -> ExecutionRecord?
    {
        if error is LeaseLost || isUniqueViolation(error) || error is CancellationError { return nil }
        let deadline = ContinuousClock.now + patience
        // A commit the server received just before the connection died may still be landing.
        try? await Task.sleep(for: .milliseconds(100))
        while true {
            do {
                let found = try await execution(id: id)
                logger.warning(
                    "an execution's write failed; checked whether it was committed",
                    metadata: ["execution": "\(id)", "committed": "\(found != nil)", "error": "\(String(describing: error).prefix(200))"])
                if found == nil, error is DatabaseTimeout {
                    // The abandoned call may still be under way on its connection and commit
                    // later: absence now proves nothing.
                    throw AcceptanceUnknown(executionID: id)
                }
                return found
            } catch let unknown as AcceptanceUnknown {
                throw unknown
            } catch {
                if ContinuousClock.now >= deadline || Task.isCancelled {
                    logger.error(
                        "an execution's write failed and the database cannot say whether it was committed", metadata: ["execution": "\(id)"]
                    )
                    throw AcceptanceUnknown(executionID: id)
                }
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }
}
