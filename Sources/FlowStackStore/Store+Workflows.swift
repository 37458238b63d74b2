import FlowStackCore
import FlowStackCrypto
import Foundation
import SQLKit

/// A workflow as stored: its current version's definition is sealed at rest.
public struct StoredWorkflow: Sendable, Equatable {
    public var id: String
    public var orgID: String
    public var projectID: String
    public var name: String
    public var active: Bool
    public var versionID: String
    public var version: Int
    public var definition: Workflow
    public var createdAt: Date
    public var updatedAt: Date
}

public struct WorkflowVersionInfo: Sendable, Equatable {
    public var id: String
    public var workflowID: String
    public var version: Int
    public var createdBy: String?
    public var createdAt: Date
}

/// A webhook route of an active workflow.
public struct WebhookRoute: Sendable, Equatable {
    public var path: String
    public var method: String
    public var node: String
    public var workflowID: String

    public init(path: String, method: String, node: String, workflowID: String) {
        self.path = path
        self.method = method
        self.node = node
        self.workflowID = workflowID
    }
}

public enum WorkflowStoreError: Error, Sendable, Equatable {
    /// The caller saved over a version that is no longer current.
    case staleVersion(current: String)
    /// Another active workflow already serves this webhook path.
    case webhookPathTaken(String)
}

extension Store {
    private func definitionContext(versionID: String, orgID: String) -> SealContext {
        SealContext(table: "workflow_versions", rowID: versionID, column: "definition", orgID: orgID)
    }

    private func sealDefinition(_ workflow: Workflow, versionID: String, orgID: String) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Data(
            try sealer.seal(try encoder.encode(workflow), purpose: .data, context: definitionContext(versionID: versionID, orgID: orgID)))
    }

    func openDefinition(_ sealed: [UInt8], versionID: String, orgID: String) throws -> Workflow {
        let bytes = try sealer.open(sealed, purpose: .data, context: definitionContext(versionID: versionID, orgID: orgID))
        return try JSONDecoder().decode(Workflow.self, from: Data(bytes))
    }

    private static let workflowColumns = """
        w.id, w.org_id, w.project_id, w.name, w.active, w.version_id, w.version, w.created_at, w.updated_at, v.definition_sealed
        """

    /// `cachingDefinition`: the definition comes from, or goes into, the cache of opened versions.
    private func workflow(from row: any SQLRow, cachingDefinition: Bool = false) throws -> StoredWorkflow {
        let orgID = try row.string("org_id")
        let versionID = try row.string("version_id")
        let definition: Workflow
        if cachingDefinition, let cached = versions.cached(orgID + "/" + versionID) {
            definition = cached
        } else {
            definition = try openDefinition(try row.bytes("definition_sealed"), versionID: versionID, orgID: orgID)
            if cachingDefinition { versions.insert(orgID + "/" + versionID, definition) }
        }
        return StoredWorkflow(
            id: try row.string("id"), orgID: orgID, projectID: try row.string("project_id"), name: try row.string("name"),
            active: try row.int("active") != 0, versionID: versionID, version: Int(try row.int("version")),
            definition: definition, createdAt: try row.date("created_at"), updatedAt: try row.date("updated_at"))
    }

    public func insertWorkflow(orgID: String, projectID: String, definition: Workflow, creator: String?, on db: any SQLDatabase)
        async throws -> StoredWorkflow
    {
        let id = Identifier.make("wf")
        let versionID = Identifier.make("wfv")
        let now = self.now.millisecondsSince1970
        try await db.raw(
            """
            INSERT INTO workflows (id, org_id, project_id, name, active, version_id, version, created_at, updated_at)
            VALUES (\(bind: id), \(bind: orgID), \(bind: projectID), \(bind: definition.name), 0, \(bind: versionID), 1, \(bind: now), \(bind: now))
            """
        ).run()
        try await db.raw(
            """
            INSERT INTO workflow_versions (id, workflow_id, version, definition_sealed, created_by, created_at)
            VALUES (\(bind: versionID), \(bind: id), 1, \(bind: try sealDefinition(definition, versionID: versionID, orgID: orgID)),
                    \(bind: creator), \(bind: now))
            """
        ).run()
        let at = Date(millisecondsSince1970: now)
        return StoredWorkflow(
            id: id, orgID: orgID, projectID: projectID, name: definition.name, active: false, versionID: versionID, version: 1,
            definition: definition, createdAt: at, updatedAt: at)
    }

    /// Saves `definition` as the next version, if `expectedVersionID` is still the current one.
    public func saveWorkflowVersion(
        _ workflow: StoredWorkflow, definition: Workflow, expectedVersionID: String, creator: String?,
        on db: any SQLDatabase
    ) async throws -> StoredWorkflow {
        let versionID = Identifier.make("wfv")
        let now = self.now.millisecondsSince1970
        let updated = try await db.raw(
            """
            UPDATE workflows SET version_id = \(bind: versionID), version = version + 1, name = \(bind: definition.name), updated_at = \(bind: now)
            WHERE id = \(bind: workflow.id) AND version_id = \(bind: expectedVersionID) RETURNING version
            """
        ).first()
        guard let updated else {
            let current = try await db.raw("SELECT version_id FROM workflows WHERE id = \(bind: workflow.id)").first()
            throw WorkflowStoreError.staleVersion(current: try current?.string("version_id") ?? "")
        }
        let version = try updated.int("version")
        try await db.raw(
            """
            INSERT INTO workflow_versions (id, workflow_id, version, definition_sealed, created_by, created_at)
            VALUES (\(bind: versionID), \(bind: workflow.id), \(bind: version),
                    \(bind: try sealDefinition(definition, versionID: versionID, orgID: workflow.orgID)), \(bind: creator), \(bind: now))
            """
        ).run()
        var saved = workflow
        saved.name = definition.name
        saved.definition = definition
        saved.versionID = versionID
        saved.version = Int(version)
        saved.updatedAt = Date(millisecondsSince1970: now)
        return saved
    }

    public func workflow(id: String) async throws -> StoredWorkflow? {
        let row = try await read { db in
            try await db.raw(
                """
                SELECT \(unsafeRaw: Self.workflowColumns) FROM workflows w JOIN workflow_versions v ON v.id = w.version_id
                WHERE w.id = \(bind: id)
                """
            ).first()
        }
        return try row.map { try workflow(from: $0) }
    }

    /// The workflows among `ids` that exist, by id, for the scheduler's pass: one query, and each
    /// definition opened once while the version is cached (the execution it starts reads the
    /// same entry when it is claimed).
    public func workflows(ids: [String]) async throws -> [String: StoredWorkflow] {
        guard !ids.isEmpty else { return [:] }
        let rows = try await read { db in
            var query: SQLQueryString = """
                SELECT \(unsafeRaw: Self.workflowColumns) FROM workflows w JOIN workflow_versions v ON v.id = w.version_id
                WHERE w.id IN (
                """
            for (index, id) in ids.enumerated() {
                query += index == 0 ? "\(bind: id)" : ", \(bind: id)"
            }
            query += ")"
            return try await db.raw(query).all()
        }
        var found: [String: StoredWorkflow] = [:]
        for row in rows {
            let workflow = try workflow(from: row, cachingDefinition: true)
            found[workflow.id] = workflow
        }
        return found
    }

    /// A page of a project's workflows, oldest first, after the cursor (a workflow id).
    public func workflows(projectID: String, after cursor: String?, limit: Int) async throws -> [StoredWorkflow] {
        let rows = try await read { db in
            var query: SQLQueryString = """
                SELECT \(unsafeRaw: Self.workflowColumns) FROM workflows w JOIN workflow_versions v ON v.id = w.version_id
                WHERE w.project_id = \(bind: projectID)
                """
            if let cursor {
                query += " AND w.id > \(bind: cursor)"
            }
            query += " ORDER BY w.id LIMIT \(bind: limit)"
            return try await db.raw(query).all()
        }
        return try rows.map { try workflow(from: $0) }
    }

    /// Every workflow of an organization (current versions), for reports.
    public func workflows(orgID: String) async throws -> [StoredWorkflow] {
        let rows = try await read { db in
            try await db.raw(
                """
                SELECT \(unsafeRaw: Self.workflowColumns) FROM workflows w JOIN workflow_versions v ON v.id = w.version_id
                WHERE w.org_id = \(bind: orgID) ORDER BY w.id
                """
            ).all()
        }
        return try rows.map { try workflow(from: $0) }
    }

    public func workflowVersions(workflowID: String) async throws -> [WorkflowVersionInfo] {
        try await read { db in
            try await db.raw(
                """
                SELECT id, workflow_id, version, created_by, created_at FROM workflow_versions
                WHERE workflow_id = \(bind: workflowID) ORDER BY version DESC
                """
            ).all().map { row in
                WorkflowVersionInfo(
                    id: try row.string("id"), workflowID: try row.string("workflow_id"), version: Int(try row.int("version")),
                    createdBy: try row.optionalString("created_by"), createdAt: try row.date("created_at"))
            }
        }
    }

    /// The definition of one version (what an execution runs, even after later saves).
    public func workflowDefinition(versionID: String, orgID: String) async throws -> Workflow? {
        try await versions.value(for: orgID + "/" + versionID) { [self] in
            let row = try await read { db in
                try await db.raw("SELECT definition_sealed FROM workflow_versions WHERE id = \(bind: versionID)").first()
            }
            return try row.map { try openDefinition(try $0.bytes("definition_sealed"), versionID: versionID, orgID: orgID) }
        }
    }

    /// Turns a workflow on or off and replaces its webhook routes; a path another workflow
    /// serves is refused.
    /// `schedules` are its Schedule triggers: their due times are kept in `schedules` while it is
    /// active. A trigger that was already due and has not fired yet keeps its due time (a save
    /// does not skip it); others count from now.
    public func setWorkflowActive(
        id: String, active: Bool, webhooks: [WebhookRoute], schedules: [ScheduleTrigger],
        on db: any SQLDatabase
    ) async throws {
        let now = self.now
        let pending = try await db.raw("SELECT node, next_due_at FROM schedules WHERE workflow_id = \(bind: id)").all()
            .reduce(into: [String: Date]()) { $0[try $1.string("node")] = try $1.date("next_due_at") }
        try await db.raw("DELETE FROM schedules WHERE workflow_id = \(bind: id)").run()
        if active {
            for trigger in schedules {
                let due = pending[trigger.node].flatMap { $0 <= now ? $0 : nil } ?? trigger.rule.next(after: now, in: trigger.timeZone)
                guard let due else { continue }
                try await db.raw(
                    """
                    INSERT INTO schedules (workflow_id, node, next_due_at) VALUES (\(bind: id), \(bind: trigger.node), \(bind: due.millisecondsSince1970))
                    """
                ).run()
            }
        }
        try await db.raw("DELETE FROM webhooks WHERE workflow_id = \(bind: id)").run()
        if active {
            for route in webhooks {
                let taken = try await db.raw("SELECT workflow_id FROM webhooks WHERE path = \(bind: route.path)").first()
                if taken != nil { throw WorkflowStoreError.webhookPathTaken(route.path) }
                try await db.raw(
                    """
                    INSERT INTO webhooks (path, method, node, workflow_id)
                    VALUES (\(bind: route.path), \(bind: route.method), \(bind: route.node), \(bind: id))
                    """
                ).run()
            }
        }
        try await db.raw(
            "UPDATE workflows SET active = \(bind: active ? 1 : 0), updated_at = \(bind: now.millisecondsSince1970) WHERE id = \(bind: id)"
        ).run()
    }

    public func webhook(path: String) async throws -> WebhookRoute? {
        try await read { db in
            try await db.raw("SELECT path, method, node, workflow_id FROM webhooks WHERE path = \(bind: path)").first().map { row in
                WebhookRoute(
                    path: try row.string("path"), method: try row.string("method"), node: try row.string("node"),
                    workflowID: try row.string("workflow_id"))
            }
        }
    }

    /// Every active workflow (for the scheduler).
    public func activeWorkflows() async throws -> [StoredWorkflow] {
        let rows = try await read { db in
            try await db.raw(
                """
                SELECT \(unsafeRaw: Self.workflowColumns) FROM workflows w JOIN workflow_versions v ON v.id = w.version_id
                WHERE w.active = 1 ORDER BY w.id
                """
            ).all()
        }
        return try rows.map { try workflow(from: $0) }
    }

    public func deleteWorkflow(id: String, on db: any SQLDatabase) async throws {
        try await db.raw("DELETE FROM schedules WHERE workflow_id = \(bind: id)").run()
        try await db.raw("DELETE FROM webhooks WHERE workflow_id = \(bind: id)").run()
        try await db.raw("DELETE FROM schedule_fires WHERE workflow_id = \(bind: id)").run()
        try await db.raw("DELETE FROM workflow_versions WHERE workflow_id = \(bind: id)").run()
        try await db.raw("DELETE FROM workflows WHERE id = \(bind: id)").run()
        // Rare enough to forget every cached version rather than look up the deleted ones.
        versions.removeAll()
    }

    /// Records that a schedule fired for `dueAt`; false when it already had (another replica,
    /// or before a restart), so each due time starts one execution.
    public func claimScheduleFire(workflowID: String, node: String, dueAt: Date, executionID: String, on db: any SQLDatabase) async throws
        -> Bool
    {
        let inserted = try await db.raw(
            """
            INSERT INTO schedule_fires (workflow_id, node, due_at, execution_id)
            VALUES (\(bind: workflowID), \(bind: node), \(bind: dueAt.millisecondsSince1970), \(bind: executionID))
            ON CONFLICT DO NOTHING RETURNING execution_id
            """
        ).first()
        return inserted != nil
    }

    /// Remembers a signed webhook request id; false when it was seen before (a replay).
    public func rememberWebhookRequest(workflowID: String, requestID: String) async throws -> Bool {
        let now = self.now.millisecondsSince1970
        return try await write { db in
            // Ids older than the signature tolerance can no longer be replayed (their timestamp is stale).
            try await db.raw("DELETE FROM webhook_replays WHERE seen_at < \(bind: now - 3_600_000)").run()
            return try await db.raw(
                """
                INSERT INTO webhook_replays (workflow_id, request_id, seen_at) VALUES (\(bind: workflowID), \(bind: requestID), \(bind: now))
                ON CONFLICT DO NOTHING RETURNING request_id
                """
            ).first() != nil
        }
    }

    /// The last due time a schedule fired for, if any.
    /// A Schedule trigger whose due time has come.
    public struct DueSchedule: Sendable, Equatable {
        public var workflowID: String
        public var node: String
        public var dueAt: Date
    }

    /// The triggers due at `now`, earliest first (through the index: nothing else is read), in
    /// one order for every replica, so replicas firing the same triggers in one transaction each
    /// lock their rows in the same order.
    public func dueSchedules(at now: Date, limit: Int) async throws -> [DueSchedule] {
        try await read { db in
            try await db.raw(
                """
                SELECT workflow_id, node, next_due_at FROM schedules WHERE next_due_at <= \(bind: now.millisecondsSince1970)
                ORDER BY next_due_at, workflow_id, node LIMIT \(bind: limit)
                """
            ).all().map {
                DueSchedule(workflowID: try $0.string("workflow_id"), node: try $0.string("node"), dueAt: try $0.date("next_due_at"))
            }
        }
    }

    /// Moves a trigger's due time from `from` to `to` (nil: drops the trigger); false when it was
    /// no longer at `from` (another replica moved it, or the workflow changed).
    public func moveSchedule(workflowID: String, node: String, from: Date, to: Date?, on db: any SQLDatabase) async throws -> Bool {
        let rows: [any SQLRow]
        if let to {
            rows = try await db.raw(
                """
                UPDATE schedules SET next_due_at = \(bind: to.millisecondsSince1970)
                WHERE workflow_id = \(bind: workflowID) AND node = \(bind: node) AND next_due_at = \(bind: from.millisecondsSince1970)
                RETURNING node
                """
            ).all()
        } else {
            rows = try await db.raw(
                """
                DELETE FROM schedules WHERE workflow_id = \(bind: workflowID) AND node = \(bind: node) AND next_due_at = \(bind: from.millisecondsSince1970)
                RETURNING node
                """
            ).all()
        }
        return !rows.isEmpty
    }

    /// Adds the due times of an active workflow's triggers that have none (for workflows
    /// activated before the table existed); returns how many it added.
    public func addMissingSchedules(workflowID: String, triggers: [ScheduleTrigger]) async throws -> Int {
        let now = self.now
        return try await write { db in
            var added = 0
            for trigger in triggers {
                guard let due = trigger.rule.next(after: now, in: trigger.timeZone) else { continue }
                let rows = try await db.raw(
                    """
                    INSERT INTO schedules (workflow_id, node, next_due_at) VALUES (\(bind: workflowID), \(bind: trigger.node), \(bind: due.millisecondsSince1970))
                    ON CONFLICT DO NOTHING RETURNING node
                    """
                ).all()
                added += rows.count
            }
            return added
        }
    }
}

/// What an `Idempotency-Key` names when a request carrying it arrives.
public enum IdempotencyClaim: Sendable, Equatable {
    /// The key is new: the request starts execution `executionID`.
    case claimed
    /// The key was used before, for `executionID`, `age` ago.
    case used(executionID: String, age: TimeInterval)
}

extension Store {
    /// How long an idempotency key answers with its first execution.
    public static let idempotencyKeyLifetime: TimeInterval = 24 * 3600

    static func idempotencyHash(_ key: String) -> String {
        Token.hash(key)
    }

    /// Claims `key` for `executionID` on `workflowID`, or says which execution already has it.
    public func claimIdempotencyKey(_ key: String, workflowID: String, executionID: String) async throws -> IdempotencyClaim {
        let now = self.now.millisecondsSince1970
        let hash = Self.idempotencyHash(key)
        let expired = now - Int64(Self.idempotencyKeyLifetime * 1000)
        return try await write { db in
            try await db.raw("DELETE FROM idempotency_keys WHERE created_at < \(bind: expired)").run()
            if try await db.raw(
                """
                INSERT INTO idempotency_keys (workflow_id, key_hash, execution_id, created_at)
                VALUES (\(bind: workflowID), \(bind: hash), \(bind: executionID), \(bind: now))
                ON CONFLICT DO NOTHING RETURNING execution_id
                """
            ).first() != nil {
                return .claimed
            }
            guard
                let row = try await db.raw(
                    """
                    SELECT execution_id, created_at FROM idempotency_keys WHERE workflow_id = \(bind: workflowID) AND key_hash = \(bind: hash)
                    """
                ).first()
            else {
                return .claimed
            }
            return .used(executionID: try row.string("execution_id"), age: Double(now - (try row.int("created_at"))) / 1000)
        }
    }

    /// Hands `key` from `previous` (an execution that was never accepted) to `executionID`; false
    /// when another request took it meanwhile.
    public func reassignIdempotencyKey(_ key: String, workflowID: String, from previous: String, to executionID: String) async throws
        -> Bool
    {
        let now = self.now.millisecondsSince1970
        let hash = Self.idempotencyHash(key)
        return try await write { db in
            try await db.raw(
                """
                UPDATE idempotency_keys SET execution_id = \(bind: executionID), created_at = \(bind: now)
                WHERE workflow_id = \(bind: workflowID) AND key_hash = \(bind: hash) AND execution_id = \(bind: previous) RETURNING execution_id
                """
            ).first() != nil
        }
    }
}
