import FlowStackCore
import FlowStackEngine
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import Foundation

/// Workflows: versioned definitions in projects, activation (webhooks, schedules) and manual runs.
public struct Workflows: Sendable {
    let app: UseCases
    var store: Store { app.store }

    /// The workflow and the caller's access to it for `action`; another org's is not found.
    func load(_ workflowID: String, _ action: Action, by caller: Caller) async throws -> (StoredWorkflow, Access.ProjectAccess) {
        guard let workflow = try await store.workflow(id: workflowID) else { throw FlowStackError.notFound }
        let access = try await app.access.project(workflow.projectID, action, caller.identity)
        return (workflow, access)
    }

    /// Validates a definition against the node catalog; every problem is reported at once.
    func validated(_ workflow: Workflow) throws -> Workflow {
        guard workflow.nodes.count <= 500, workflow.edges.count <= 2000 else {
            throw FlowStackError.validation("A workflow has at most 500 nodes and 2000 edges.", field: "nodes")
        }
        _ = try Validate.name(workflow.name)
        var problems = WorkflowValidator.validate(workflow, catalog: app.engine.catalog.descriptors)
        problems += WebhookNode.problems(in: workflow) + RespondToWebhookNode.problems(in: workflow)
        guard problems.isEmpty else {
            var error = FlowStackError(
                status: 422, code: "invalid_workflow", message: problems.map(\.description).joined(separator: " "),
                field: problems.first.map { $0.node.map { "nodes[\($0)]" } ?? ($0.field ?? "workflow") })
            error.problems = problems
            throw error
        }
        return workflow
    }

    /// Checks the caller may edit workflows of the project (before the request body is read).
    public func authorizeCreate(projectID: String, by caller: Caller) async throws -> Permit<Project> {
        Permit(target: try await app.access.project(projectID, .workflowEdit, caller.identity).project, caller: caller)
    }

    /// Saves a new workflow; the warnings name nodes that hold a credential in their text.
    public func create(_ permit: Permit<Project>, definition: Workflow) async throws -> (StoredWorkflow, [CredentialFinding]) {
        let project = permit.target
        let caller = permit.caller
        let definition = try validated(definition)
        let actor = caller.auditActor
        let workflow = try await store.write { [store, creator = caller.user.id] db in
            let workflow = try await store.insertWorkflow(
                orgID: project.orgID, projectID: project.id, definition: definition, creator: creator, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: project.orgID, action: "workflow.created", resourceType: "workflow",
                    resourceID: workflow.id, details: ["name": definition.name]), actor: actor, on: db)
            return workflow
        }
        return (workflow, CredentialScanner.scan(definition))
    }

    /// A page of the project's workflows after `cursor`, and whether there are more.
    public func list(projectID: String, after cursor: String?, limit: Int, by caller: Caller) async throws -> (
        items: [StoredWorkflow], more: Bool
    ) {
        let project = try await app.access.project(projectID, .workflowRead, caller.identity).project
        let page = try await store.workflows(projectID: project.id, after: cursor, limit: limit + 1)
        return (Array(page.prefix(limit)), page.count > limit)
    }

    public func get(_ workflowID: String, by caller: Caller) async throws -> StoredWorkflow {
        try await load(workflowID, .workflowRead, by: caller).0
    }

    /// A workflow and the caller's access to its project, as an authorization check loaded them.
    public struct Loaded: Sendable {
        let workflow: StoredWorkflow
        let access: Access.ProjectAccess
    }

    /// Checks the caller may edit the workflow (before the request body is read).
    public func authorizeEdit(_ workflowID: String, by caller: Caller) async throws -> Permit<Loaded> {
        let (workflow, access) = try await load(workflowID, .workflowEdit, by: caller)
        return Permit(target: Loaded(workflow: workflow, access: access), caller: caller)
    }

    /// Saves a new version over `expectedVersionID`; an active workflow serves its new webhooks at once.
    public func update(_ permit: Permit<Loaded>, definition: Workflow, expectedVersionID: String?)
        async throws -> (StoredWorkflow, [CredentialFinding])
    {
        let (workflow, access, caller) = (permit.target.workflow, permit.target.access, permit.caller)
        guard let expected = expectedVersionID else {
            throw FlowStackError.validation("versionId is required: the version this change is based on.", field: "versionId")
        }
        let definition = try validated(definition)
        let actor = caller.auditActor
        var saved: StoredWorkflow
        do {
            saved = try await store.write(announcing: [.workflows]) { [store, creator = caller.user.id] db in
                var saved = try await store.saveWorkflowVersion(
                    workflow, definition: definition, expectedVersionID: expected, creator: creator, on: db)
                if saved.active {
                    try await store.setWorkflowActive(
                        id: saved.id, active: true, webhooks: try WebhookPaths.routes(of: saved),
                        schedules: Scheduler.triggers(of: saved.definition), on: db)
                    saved.active = true
                }
                try await store.appendAudit(
                    AuditRecord(
                        orgID: access.project.orgID, action: "workflow.updated", resourceType: "workflow",
                        resourceID: saved.id, details: ["version": "\(saved.version)"]), actor: actor, on: db)
                return saved
            }
        } catch WorkflowStoreError.staleVersion(let current) {
            throw FlowStackError.conflict(
                "stale_version",
                "The workflow was changed since version \(expected); the current version is \(current). Reload it and apply your change again.",
                field: "versionId")
        }
        saved.active = workflow.active
        return (saved, CredentialScanner.scan(definition))
    }

    public func delete(_ workflowID: String, by caller: Caller) async throws {
        let (workflow, access) = try await load(workflowID, .workflowEdit, by: caller)
        let actor = caller.auditActor
        try await store.write(announcing: [.workflows]) { [store] db in
            try await store.deleteWorkflow(id: workflow.id, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: access.project.orgID, action: "workflow.deleted", resourceType: "workflow",
                    resourceID: workflow.id, details: ["name": workflow.name]), actor: actor, on: db)
        }
    }

    public func versions(_ workflowID: String, by caller: Caller) async throws -> [WorkflowVersionInfo] {
        let (workflow, _) = try await load(workflowID, .workflowRead, by: caller)
        return try await store.workflowVersions(workflowID: workflow.id)
    }

    /// Activates or deactivates: its webhooks and schedules start or stop on every replica at once.
    public func setActive(_ workflowID: String, _ active: Bool, by caller: Caller) async throws -> StoredWorkflow {
        let (loaded, access) = try await load(workflowID, .workflowEdit, by: caller)
        var workflow = loaded
        let routes = try WebhookPaths.routes(of: workflow)
        let schedules = Scheduler.triggers(of: workflow.definition)
        let actor = caller.auditActor
        try await store.write(announcing: [.workflows]) { [store, id = workflow.id] db in
            try await store.setWorkflowActive(id: id, active: active, webhooks: routes, schedules: schedules, on: db)
            try await store.appendAudit(
                AuditRecord(
                    orgID: access.project.orgID, action: active ? "workflow.activated" : "workflow.deactivated",
                    resourceType: "workflow", resourceID: id, details: [:]), actor: actor, on: db)
        }
        workflow.active = active
        return workflow
    }

    /// What starting a run answers.
    public enum RunOutcome: Sendable {
        /// The run finished (or is waiting) within the request.
        case finished(ExecutionResult, replayed: Bool)
        /// The run was queued (or, replayed, is still going).
        case accepted(id: String, status: ExecutionStatus, replayed: Bool)
    }

    /// Checks the caller may run the workflow (before the request body is read).
    public func authorizeRun(_ workflowID: String, by caller: Caller) async throws -> Permit<StoredWorkflow> {
        Permit(target: try await load(workflowID, .workflowRun, by: caller).0, caller: caller)
    }

    /// Runs the workflow from its manual trigger (else its first trigger) with `items`: queued,
    /// or to the end when `wait`. An idempotency key seen before answers with its execution.
    public func run(_ permit: Permit<StoredWorkflow>, items given: [JSONValue]?, wait: Bool, idempotencyKey: String?) async throws
        -> RunOutcome
    {
        let workflow = permit.target
        let given = given ?? [.object([:])]
        if let index = given.firstIndex(where: { $0.objectValue == nil }) {
            throw FlowStackError.validation("Each item must be a JSON object.", field: "items[\(index)]")
        }
        guard given.count <= 10_000 else { throw FlowStackError.validation("At most 10000 items can be given.", field: "items") }
        let items = given.map { Item(json: $0) }
        let triggers = workflow.definition.nodes.filter { app.engine.driver.isTrigger($0) }
        guard let trigger = triggers.first(where: { $0.type == ManualTriggerNode.descriptor.type }) ?? triggers.first else {
            throw FlowStackError.validation("The workflow has no trigger to start from.", field: "nodes")
        }
        let start = try await idempotencyKey.asyncMap { try await app.executions.begin($0, workflowID: workflow.id) }
        if case .replay(let id) = start {
            guard let result = try await app.engine.result(of: id, waitingUpTo: wait ? 30 : 0) else {
                throw FlowStackError(status: 404, code: "not_found", message: "The execution this key started no longer exists.")
            }
            return wait && (result.record.status.isFinished || result.record.status == .waiting)
                ? .finished(result, replayed: true) : .accepted(id: id, status: result.record.status, replayed: true)
        }
        let executionID = start?.newExecutionID
        if wait {
            return .finished(
                try await app.engine.runNow(workflow, trigger: trigger.name, items: items, mode: .manual, task: .shared, id: executionID),
                replayed: false)
        }
        let record = try await app.engine.submit(workflow, trigger: trigger.name, items: items, mode: .manual, id: executionID)
        return .accepted(id: record.id, status: record.status, replayed: false)
    }

    /// The node types a workflow may use.
    public func nodeTypes(by caller: Caller) -> [NodeTypeDescriptor] {
        app.engine.catalog.descriptors.values.sorted { $0.type < $1.type }
    }
}

extension Optional {
    /// `map` with an asynchronous transform.
    public func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}

/// Webhook paths: what a Webhook node may serve, normalized.
public enum WebhookPaths {
    /// A path without its outer slashes, if it uses only ASCII letters, digits, `-`, `_`, `.` and
    /// `/`, has no empty, `.` or `..` segment, and is at most 200 bytes; otherwise nil.
    public static func normalize(_ raw: String) -> String? {
        let slash = UInt8(ascii: "/")
        let bytes = Array(raw.utf8)
        guard let first = bytes.firstIndex(where: { $0 != slash }), let last = bytes.lastIndex(where: { $0 != slash }) else { return nil }
        let trimmed = bytes[first...last]
        guard trimmed.count <= 200,
            trimmed.allSatisfy({ byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), slash:
                    true
                default: false
                }
            })
        else { return nil }
        let segments = trimmed.split(separator: slash, omittingEmptySubsequences: false)
        guard
            !segments.contains(where: {
                $0.isEmpty || $0.elementsEqual([UInt8(ascii: ".")]) || $0.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")])
            })
        else {
            return nil
        }
        return String(decoding: trimmed, as: UTF8.self)
    }

    public static func routes(of workflow: StoredWorkflow) throws -> [WebhookRoute] {
        try workflow.definition.nodes.filter { $0.type == WebhookNode.descriptor.type }.map { node in
            guard let path = node.parameters["path"]?.stringValue.flatMap(normalize) else {
                throw FlowStackError.validation(
                    "The webhook path of '\(node.name)' may use letters, digits, '-', '_', '.' and '/', up to 200 characters.",
                    field: "nodes[\(node.name)].parameters.path")
            }
            return WebhookRoute(
                path: path, method: (node.parameters["method"]?.stringValue ?? "POST").uppercased(), node: node.name,
                workflowID: workflow.id)
        }
    }
}
