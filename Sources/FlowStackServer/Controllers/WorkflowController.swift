import FlowStackCore
import FlowStackEngine
import FlowStackNodes
import FlowStackStore
import Foundation
import Hummingbird

/// Workflows: versioned definitions in projects, activation (webhooks, schedules) and manual runs.
struct WorkflowController {
    let api: API

    /// A workflow definition, plus the version it was based on when saving over one.
    struct SaveRequest: Decodable {
        var versionId: String?
        var workflow: Workflow

        enum CodingKeys: String, CodingKey { case versionId }

        init(from decoder: any Decoder) throws {
            workflow = try Workflow(from: decoder)
            versionId = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .versionId)
        }
    }

    struct RunRequest: Decodable {
        var items: [JSONValue]?
    }

    func addRoutes(to group: RouterGroup<FlowStackRequestContext>) {
        group.post("projects/:projectId/workflows", use: create)
        group.get("projects/:projectId/workflows", use: list)
        group.get("workflows/:workflowId", use: get)
        group.put("workflows/:workflowId", use: update)
        group.delete("workflows/:workflowId", use: delete)
        group.get("workflows/:workflowId/versions", use: versions)
        group.post("workflows/:workflowId/activate", use: activate)
        group.post("workflows/:workflowId/deactivate", use: deactivate)
        group.post("workflows/:workflowId/run", use: run)
        group.get("node-types", use: nodeTypes)
    }

    /// Validates a definition against the node catalog; every problem is reported at once.
    private func validated(_ workflow: Workflow) throws -> Workflow {
        guard workflow.nodes.count <= 500, workflow.edges.count <= 2000 else {
            throw FlowStackError.validation("A workflow has at most 500 nodes and 2000 edges.", field: "nodes")
        }
        _ = try Validate.name(workflow.name)
        var problems = WorkflowValidator.validate(workflow, catalog: api.engine.catalog.descriptors)
        for node in workflow.nodes where node.type == WebhookNode.descriptor.type {
            let mode = node.parameters["authentication"]?.stringValue ?? "none"
            if let inline = WebhookNode.inlineSecretParameters.first(where: { node.parameters[$0] != nil }) {
                problems.append(.init("webhook_secret_inline",
                                      "The Webhook node '\(node.name)' holds its credential in the parameter '\(inline)', which every project member can read: keep it in a connection and name it in 'connection'.",
                                      node: node.name, field: "parameters.\(inline)"))
            } else if mode != "none", (node.parameters["connection"]?.stringValue ?? "").isEmpty {
                problems.append(.init("webhook_connection_required",
                                      "The Webhook node '\(node.name)' authenticates with '\(mode)': name the connection that holds the credential in 'connection'.",
                                      node: node.name, field: "parameters.connection"))
            }
        }
        for node in workflow.nodes where node.type == RespondToWebhookNode.descriptor.type {
            if let refusal = WebhookResponseHeaders.refusal(headers: node.parameters["headers"]) {
                problems.append(.init("webhook_header_refused", refusal, node: node.name, field: "parameters.headers"))
            }
        }
        guard problems.isEmpty else {
            var error = FlowStackError(status: 422, code: "invalid_workflow", message: problems.map(\.description).joined(separator: " "),
                                       field: problems.first.map { $0.node.map { "nodes[\($0)]" } ?? ($0.field ?? "workflow") })
            error.problems = problems
            throw error
        }
        return workflow
    }

    /// The workflow at `workflowId` and the caller's access to it; another org's is 404.
    private func load(_ context: FlowStackRequestContext, _ action: Action) async throws -> (StoredWorkflow, Access.ProjectAccess) {
        let identity = try context.requireIdentity()
        let id = try context.parameters.id("workflowId", prefix: "wf")
        guard let workflow = try await api.store.workflow(id: id) else { throw FlowStackError.notFound }
        let access = try await api.access.project(workflow.projectID, action, identity)
        return (workflow, access)
    }

    @Sendable func create(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .workflowEdit, identity)
        let body = try await api.decode(SaveRequest.self, request, context)
        let definition = try validated(body.workflow)
        let project = access.project
        let actor = context.auditActor
        let workflow = try await api.store.write { [store = api.store] db in
            let workflow = try await store.insertWorkflow(orgID: project.orgID, projectID: project.id, definition: definition,
                                                          creator: identity.user.id, on: db)
            try await store.appendAudit(AuditRecord(orgID: project.orgID, action: "workflow.created", resourceType: "workflow",
                                                    resourceID: workflow.id, details: ["name": definition.name]), actor: actor, on: db)
            return workflow
        }
        // Saved anyway; the warnings tell the editor which node and line hold a credential.
        return try JSON.response(.created, WorkflowDTO(workflow, warnings: CredentialScanner.scan(definition)))
    }

    @Sendable func list(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let identity = try context.requireIdentity()
        let access = try await api.access.project(try context.parameters.id("projectId", prefix: "prj"), .workflowRead, identity)
        let limit = try Paging.limit(request)
        var cursor: String?
        if let given = request.query("cursor") {
            guard Identifier.isValid(given, prefix: "wf") else { throw FlowStackError.validation("The cursor is not valid.", field: "cursor") }
            cursor = given
        }
        let page = try await api.store.workflows(projectID: access.project.id, after: cursor, limit: limit + 1)
        let items = Array(page.prefix(limit))
        return try JSON.response(.ok, ListDTO(items: items.map { WorkflowDTO($0) }, nextCursor: page.count > limit ? items.last?.id : nil))
    }

    @Sendable func get(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (workflow, _) = try await load(context, .workflowRead)
        return try JSON.response(.ok, WorkflowDTO(workflow))
    }

    @Sendable func update(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (workflow, access) = try await load(context, .workflowEdit)
        let body = try await api.decode(SaveRequest.self, request, context)
        guard let expected = body.versionId else {
            throw FlowStackError.validation("versionId is required: the version this change is based on.", field: "versionId")
        }
        let definition = try validated(body.workflow)
        let actor = context.auditActor
        let creator = try context.requireIdentity().user.id
        var saved: StoredWorkflow
        do {
            saved = try await api.store.write { [store = api.store] db in
                var saved = try await store.saveWorkflowVersion(workflow, definition: definition, expectedVersionID: expected, creator: creator, on: db)
                if saved.active {
                    // An active workflow serves its new webhooks at once.
                    try await store.setWorkflowActive(id: saved.id, active: true, webhooks: try WebhookPaths.routes(of: saved),
                                                      schedules: Scheduler.triggers(of: saved.definition), on: db)
                    saved.active = true
                }
                try await store.appendAudit(AuditRecord(orgID: access.project.orgID, action: "workflow.updated", resourceType: "workflow",
                                                        resourceID: saved.id, details: ["version": "\(saved.version)"]), actor: actor, on: db)
                return saved
            }
        } catch WorkflowStoreError.staleVersion(let current) {
            throw FlowStackError.conflict("stale_version", "The workflow was changed since version \(expected); the current version is \(current). Reload it and apply your change again.", field: "versionId")
        } catch WorkflowStoreError.webhookPathTaken(let path) {
            throw FlowStackError.conflict("webhook_path_taken", "Another active workflow already serves /webhook/\(path).", field: "nodes")
        }
        saved.active = workflow.active
        api.webhooks.invalidate()
        return try JSON.response(.ok, WorkflowDTO(saved, warnings: CredentialScanner.scan(definition)))
    }

    @Sendable func delete(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (workflow, access) = try await load(context, .workflowEdit)
        let actor = context.auditActor
        try await api.store.write { [store = api.store] db in
            try await store.deleteWorkflow(id: workflow.id, on: db)
            try await store.appendAudit(AuditRecord(orgID: access.project.orgID, action: "workflow.deleted", resourceType: "workflow",
                                                    resourceID: workflow.id, details: ["name": workflow.name]), actor: actor, on: db)
        }
        api.webhooks.invalidate()
        return JSON.empty()
    }

    @Sendable func versions(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (workflow, _) = try await load(context, .workflowRead)
        let versions = try await api.store.workflowVersions(workflowID: workflow.id)
        return try JSON.response(.ok, ListDTO(items: versions.map(WorkflowVersionDTO.init), nextCursor: nil))
    }

    @Sendable func activate(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        try await setActive(true, context)
    }

    @Sendable func deactivate(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        try await setActive(false, context)
    }

    private func setActive(_ active: Bool, _ context: FlowStackRequestContext) async throws -> Response {
        let (loaded, access) = try await load(context, .workflowEdit)
        var workflow = loaded
        let routes = try WebhookPaths.routes(of: workflow)
        let schedules = Scheduler.triggers(of: workflow.definition)
        let actor = context.auditActor
        do {
            try await api.store.write { [store = api.store, id = workflow.id] db in
                try await store.setWorkflowActive(id: id, active: active, webhooks: routes, schedules: schedules, on: db)
                try await store.appendAudit(AuditRecord(orgID: access.project.orgID, action: active ? "workflow.activated" : "workflow.deactivated",
                                                        resourceType: "workflow", resourceID: id, details: [:]), actor: actor, on: db)
            }
        } catch WorkflowStoreError.webhookPathTaken(let path) {
            throw FlowStackError.conflict("webhook_path_taken", "Another active workflow already serves /webhook/\(path).", field: "nodes")
        }
        workflow.active = active
        api.webhooks.invalidate()
        return try JSON.response(.ok, WorkflowDTO(workflow))
    }

    @Sendable func run(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        let (workflow, _) = try await load(context, .workflowRun)
        let body = try await api.decodeOptional(RunRequest.self, request, context, empty: RunRequest(items: nil))
        let given = body.items ?? [.object([:])]
        if let index = given.firstIndex(where: { $0.objectValue == nil }) {
            throw FlowStackError.validation("Each item must be a JSON object.", field: "items[\(index)]")
        }
        let items = given.map { Item(json: $0) }
        guard items.count <= 10_000 else { throw FlowStackError.validation("At most 10000 items can be given.", field: "items") }
        let triggers = workflow.definition.nodes.filter { api.engine.driver.isTrigger($0) }
        guard let trigger = triggers.first(where: { $0.type == "flowstack.manualTrigger" }) ?? triggers.first else {
            throw FlowStackError.validation("The workflow has no trigger to start from.", field: "nodes")
        }
        let wait = request.query("wait").map { $0 == "true" || $0 == "1" } ?? false
        let start = try await Idempotency.begin(request, workflowID: workflow.id, api: api)
        if case .replay(let id) = start {
            guard let result = try await api.engine.result(of: id, waitingUpTo: wait ? 30 : 0) else {
                throw FlowStackError(status: 404, code: "not_found", message: "The execution this key started no longer exists.")
            }
            let response = wait && (result.record.status.isFinished || result.record.status == .waiting)
                ? try JSON.response(.ok, RunResultDTO(result))
                : try JSON.response(.accepted, RunAcceptedDTO(id: id, status: result.record.status.rawValue))
            return Idempotency.markReplayed(response)
        }
        let executionID = start?.newExecutionID
        if wait {
            let result = try await api.engine.runNow(workflow, trigger: trigger.name, items: items, mode: .manual, task: .shared, id: executionID)
            return try JSON.response(.ok, RunResultDTO(result))
        }
        let record = try await api.engine.submit(workflow, trigger: trigger.name, items: items, mode: .manual, id: executionID)
        return try JSON.response(.accepted, RunAcceptedDTO(id: record.id, status: record.status.rawValue))
    }

    @Sendable func nodeTypes(_ request: Request, context: FlowStackRequestContext) async throws -> Response {
        _ = try context.requireIdentity()
        let types = api.engine.catalog.descriptors.values.sorted { $0.type < $1.type }
        return try JSON.response(.ok, ListDTO(items: types.map(NodeTypeDTO.init), nextCursor: nil))
    }
}

/// Webhook paths: what a Webhook node may serve, normalized.
enum WebhookPaths {
    /// A path without its outer slashes, if it uses only ASCII letters, digits, `-`, `_`, `.` and
    /// `/`, has no empty, `.` or `..` segment, and is at most 200 bytes; otherwise nil.
    static func normalize(_ raw: String) -> String? {
        let slash = UInt8(ascii: "/")
        let bytes = Array(raw.utf8)
        guard let first = bytes.firstIndex(where: { $0 != slash }), let last = bytes.lastIndex(where: { $0 != slash }) else { return nil }
        let trimmed = bytes[first...last]
        guard trimmed.count <= 200, trimmed.allSatisfy({ byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), slash: true
            default: false
            }
        }) else { return nil }
        let segments = trimmed.split(separator: slash, omittingEmptySubsequences: false)
        guard !segments.contains(where: { $0.isEmpty || $0.elementsEqual([UInt8(ascii: ".")]) || $0.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) }) else {
            return nil
        }
        return String(decoding: trimmed, as: UTF8.self)
    }

    static func routes(of workflow: StoredWorkflow) throws -> [WebhookRoute] {
        try workflow.definition.nodes.filter { $0.type == "flowstack.webhook" }.map { node in
            guard let path = node.parameters["path"]?.stringValue.flatMap(normalize) else {
                throw FlowStackError.validation("The webhook path of '\(node.name)' may use letters, digits, '-', '_', '.' and '/', up to 200 characters.",
                                                field: "nodes[\(node.name)].parameters.path")
            }
            return WebhookRoute(path: path, method: (node.parameters["method"]?.stringValue ?? "POST").uppercased(), node: node.name, workflowID: workflow.id)
        }
    }
}

enum Paging {
    static func limit(_ request: Request) throws -> Int {
        guard let text = request.query("limit") else { return 50 }
        guard let value = Int(text), (1...200).contains(value) else {
            throw FlowStackError.validation("limit must be a whole number from 1 to 200.", field: "limit")
        }
        return value
    }
}
