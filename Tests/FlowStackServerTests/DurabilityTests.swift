import FlowStackCore
import FlowStackEngine
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import FlowStackTesting
import Foundation
import Testing

/// SECURITY-TESTS 35–36 at the engine level: a worker that loses its lease cannot write, and a
/// crashed execution resumes at the node that was running without re-running completed nodes.
@Suite struct DurabilityTests {
    static let chain = Workflow(
        name: "Chain",
        nodes: [
            WorkflowNode(name: "Manual", type: "flowstack.manualTrigger"),
            WorkflowNode(name: "First", type: "flowstack.httpRequest", parameters: ["url": "https://api.example.com/1"]),
            WorkflowNode(name: "Second", type: "flowstack.httpRequest", parameters: ["url": "https://api.example.com/2"]),
            WorkflowNode(name: "Third", type: "flowstack.httpRequest", parameters: ["url": "https://api.example.com/3"]),
        ], edges: [Edge(from: "Manual", to: "First"), Edge(from: "First", to: "Second"), Edge(from: "Second", to: "Third")])

    func workflow(_ app: TestApp) async throws -> StoredWorkflow {
        let store = app.store
        return try await store.write { db in
            let user = try await store.insertUser(email: "o@example.com", name: "O", passwordHash: "x", on: db)
            let org = try await store.insertOrganization(name: "Org", owner: user.id, on: db)
            let project = try await store.insertProject(orgID: org.id, name: "P", description: "", creator: user.id, on: db)
            return try await store.insertWorkflow(orgID: org.id, projectID: project.id, definition: Self.chain, creator: user.id, on: db)
        }
    }

    @Test("a worker paused past its lease cannot commit once another worker took the execution (fencing)", arguments: Backend.allCases)
    func fencing(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test(worker: false) { _ in
            let store = app.store
            let workflow = try await workflow(app)
            let accepted = try await app.engine.submit(workflow, trigger: "Manual", items: [Item(json: [:])], mode: .manual)
            let first = try #require(
                try await store.claimExecutions(owner: "A", limit: 10, leaseUntil: store.now.addingTimeInterval(30)).first)
            #expect(first.id == accepted.id)
            // Still leased: nobody else gets it.
            #expect(try await store.claimExecutions(owner: "B", limit: 10, leaseUntil: store.now.addingTimeInterval(30)).isEmpty)
            // A stalls past its lease; B takes over with a new fence.
            app.clock.advance(by: 31)
            let second = try #require(
                try await store.claimExecutions(owner: "B", limit: 10, leaseUntil: store.now.addingTimeInterval(30)).first)
            #expect(second.fence == first.fence + 1)
            let event = ExecutionEvent.nodeSucceeded(node: "First", outputs: [[Item(json: ["from": "A"])]])
            await #expect(throws: LeaseLost.self) {
                try await store.appendJournal(
                    executionID: first.id, orgID: first.orgID, fence: first.fence, firstSeq: 1,
                    events: [(event, "First", nil)], progress: nil, leaseUntil: store.now.addingTimeInterval(30))
            }
            #expect(
                try await store.heartbeat(executionID: first.id, fence: first.fence, leaseUntil: store.now.addingTimeInterval(30)) == false)
            try await store.appendJournal(
                executionID: second.id, orgID: second.orgID, fence: second.fence, firstSeq: 1,
                events: [(ExecutionEvent.nodeSucceeded(node: "First", outputs: [[Item(json: ["from": "B"])]]), "First", nil)],
                progress: nil, leaseUntil: store.now.addingTimeInterval(30))
            let journal = try await store.journal(executionID: first.id, orgID: first.orgID)
            #expect(journal.count == 2)
            #expect(journal.last?.event == .nodeSucceeded(node: "First", outputs: [[Item(json: ["from": "B"])]]))
        }
    }

    @Test(
        "an inline run is written once it outlives flushAfter; a cancel call stops it, mid-node when its task serves it alone",
        arguments: Backend.allCases)
    func inlineRunKeeper(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend, configure: { $0.engine.inlineWaitLimit = 60 })
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            func pause(_ seconds: Int) -> [String: Any] {
                [
                    "name": "Slow",
                    "nodes": [
                        ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                        [
                            "name": "Pause", "type": "flowstack.wait", "typeVersion": 1,
                            "parameters": ["resume": "timeInterval", "seconds": seconds],
                        ],
                        ["name": "After", "type": "flowstack.set", "typeVersion": 1, "parameters": ["fields": ["done": true]]],
                    ],
                    "edges": [["from": "Manual", "to": "Pause"], ["from": "Pause", "to": "After"]],
                ]
            }
            /// The execution that is running, once it has been written (pending runs live in memory until flushAfter).
            func running() async throws -> String {
                for _ in 0..<200 {
                    let list = try await client.get("/api/v1/projects/\(project)/executions?status=running", auth: auth)
                    if let id = (list.json["items"] as? [[String: Any]])?.first?["id"] as? String { return id }
                    try await Task.sleep(for: .milliseconds(25))
                }
                throw CancellationError()
            }
            func cancel(_ id: String) async throws {
                #expect(try await client.post("/api/v1/executions/\(id)/cancel", nil, auth: auth).json["status"] as? String == "cancelled")
            }

            // A request handler's task serves its whole connection, so it is not cancelled: the run
            // stops at its next step (After never runs).
            // Long enough that a busy machine still finds it running and cancels it first.
            let short = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", pause(6), auth: auth).json["id"] as? String)
            let call = Task { try await client.post("/api/v1/workflows/\(short)/run?wait=true", nil, auth: auth) }
            let first = try await running()
            try await cancel(first)
            let answer = try await call.value
            #expect(answer.status >= 400 || answer.json["status"] as? String == "cancelled", "\(answer.text)")
            let stored = try await client.get("/api/v1/executions/\(first)", auth: auth)
            #expect(stored.json["status"] as? String == "cancelled")
            #expect(!stored.text.contains("\"done\""))

            // In a task of its own (or one that serves the run alone), the lost lease cancels the
            // node in flight: the 30 s wait ends at the next heartbeat (0.2 s here).
            let longID = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", pause(30), auth: auth).json["id"] as? String)
            let long = try #require(try await app.store.workflow(id: longID))
            for task in [RunTask.own, .caller] {
                let started = ContinuousClock.now
                let run = Task { try await app.engine.runNow(long, trigger: "Manual", items: [Item(json: [:])], mode: .manual, task: task) }
                try await cancel(try await running())
                await #expect(throws: LeaseLost.self) { _ = try await run.value }
                #expect(ContinuousClock.now - started < .seconds(15), "the cancelled run went on (\(task))")
            }
        }
    }

    @Test("a cancelled sub-workflow fails only its Execute Workflow node; the calling run goes on", arguments: Backend.allCases)
    func cancelledSubWorkflow(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend, configure: { $0.engine.inlineWaitLimit = 60 })
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let child: [String: Any] = [
                "name": "Child",
                "nodes": [
                    ["name": "Called", "type": "flowstack.executeWorkflowTrigger", "typeVersion": 1, "parameters": [:]],
                    ["name": "Hold", "type": "flowstack.wait", "typeVersion": 1, "parameters": ["resume": "timeInterval", "seconds": 30]],
                ],
                "edges": [["from": "Called", "to": "Hold"]],
            ]
            let childID = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", child, auth: auth).json["id"] as? String)
            // After the call, a wait: in a cancelled task it would fail at once.
            let parent: [String: Any] = [
                "name": "Parent",
                "nodes": [
                    ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                    [
                        "name": "Call", "type": "flowstack.executeWorkflow", "typeVersion": 1, "parameters": ["workflowId": childID],
                        "onError": "continue",
                    ],
                    [
                        "name": "Breathe", "type": "flowstack.wait", "typeVersion": 1,
                        "parameters": ["resume": "timeInterval", "seconds": 0.3],
                    ],
                    ["name": "Done", "type": "flowstack.set", "typeVersion": 1, "parameters": ["fields": ["done": true]]],
                ],
                "edges": [["from": "Manual", "to": "Call"], ["from": "Call", "to": "Breathe"], ["from": "Breathe", "to": "Done"]],
            ]
            let parentID = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", parent, auth: auth).json["id"] as? String)
            let started = ContinuousClock.now
            let call = Task { try await client.post("/api/v1/workflows/\(parentID)/run?wait=true", nil, auth: auth) }
            var sub: String?
            for _ in 0..<200 where sub == nil {
                try await Task.sleep(for: .milliseconds(25))
                let list = try await client.get("/api/v1/projects/\(project)/executions?mode=sub-workflow&status=running", auth: auth)
                sub = (list.json["items"] as? [[String: Any]])?.first?["id"] as? String
            }
            let running = try #require(sub, "the sub-workflow was never written")
            #expect(try await client.post("/api/v1/executions/\(running)/cancel", nil, auth: auth).json["status"] as? String == "cancelled")
            let answer = try await call.value
            #expect(ContinuousClock.now - started < .seconds(15), "the cancelled sub-workflow went on")
            #expect(answer.json["status"] as? String == "succeeded", "\(answer.text)")
            #expect((answer.json["output"] as? [[String: Any]])?.first?["done"] as? Bool == true, "\(answer.text)")
        }
    }

    @Test("a crashed execution resumes at the node that was running; completed nodes do not run again", arguments: Backend.allCases)
    func resumeAfterCrash(_ backend: Backend) async throws {
        let fetcher = ScriptedFetcher()
        let app = try await TestApp.make(backend, fetcher: fetcher)
        try await app.test(worker: false) { _ in
            let store = app.store
            let workflow = try await workflow(app)
            // What a worker that died during Second leaves behind: First checkpointed, the row running under its lease.
            let record = ExecutionRecord(
                orgID: workflow.orgID, projectID: workflow.projectID, workflowID: workflow.id, versionID: workflow.versionID,
                mode: .manual, triggerNode: "Manual", createdAt: store.now)
            let done = ExecutionEvent.nodeSucceeded(node: "First", outputs: [[Item(json: ["call": 0])]])
            _ = try await store.write { db in
                try await store.insertExecution(
                    record, start: .start(trigger: "Manual", items: [Item(json: [:])]), replaying: [done],
                    leaseOwner: "dead-worker", leaseUntil: store.now.addingTimeInterval(30), on: db)
            }
            // Not taken while the dead worker's lease lasts; taken after it expires.
            #expect(try await store.claimExecutions(owner: "probe", limit: 1, leaseUntil: store.now.addingTimeInterval(1)).isEmpty)
            app.clock.advance(by: 31)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await app.engine.run() }
                let finished = try await app.engine.result(of: record.id, waitingUpTo: 20)?.record
                group.cancelAll()
                #expect(finished?.status == .succeeded)
            }
            // Only Second and Third ran: First's checkpoint was reused.
            #expect(fetcher.count == 2)
            let journal = try await store.journal(executionID: record.id, orgID: record.orgID)
            let ran = journal.compactMap { entry -> String? in
                if case .nodeSucceeded(let node, _) = entry.event { return node }
                return nil
            }
            #expect(ran == ["First", "Second", "Third"])
        }
    }

    @Test("schedules fire once per due time, also across restarts and replicas", arguments: Backend.allCases)
    func scheduleOnce(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test(worker: false) { _ in
            let store = app.store
            let scheduled = Workflow(
                name: "Tick",
                nodes: [
                    WorkflowNode(name: "Every minute", type: "flowstack.schedule", parameters: ["cron": "* * * * *"]),
                    WorkflowNode(name: "Do", type: "flowstack.noOp"),
                ], edges: [Edge(from: "Every minute", to: "Do")])
            let workflow = try await store.write { db in
                let user = try await store.insertUser(email: "o@example.com", name: "O", passwordHash: "x", on: db)
                let org = try await store.insertOrganization(name: "Org", owner: user.id, on: db)
                let project = try await store.insertProject(orgID: org.id, name: "P", description: "", creator: user.id, on: db)
                let workflow = try await store.insertWorkflow(
                    orgID: org.id, projectID: project.id, definition: scheduled, creator: user.id, on: db)
                try await store.setWorkflowActive(
                    id: workflow.id, active: true, webhooks: [], schedules: Scheduler.triggers(of: scheduled), on: db)
                return workflow
            }
            let replicaA = Scheduler(engine: app.engine, logger: .init(label: "a"))
            let replicaB = Scheduler(engine: app.engine, logger: .init(label: "b"))
            #expect(try await replicaA.fireDue().isEmpty)
            app.clock.advance(by: 61)
            let fired = try await replicaA.fireDue()
            #expect(fired.count == 1)
            #expect(try await replicaB.fireDue().isEmpty)
            #expect(try await replicaA.fireDue().isEmpty)
            // An outage of five minutes: caught up with one execution, not five.
            app.clock.advance(by: 300)
            #expect(try await Scheduler(engine: app.engine, logger: .init(label: "restarted")).fireDue().count == 1)
            let executions = try await store.executions(
                projectID: workflow.projectID, filter: .init(mode: .schedule), before: nil, limit: 10)
            #expect(executions.count == 2)
        }
    }

    @Test("a trigger whose workflow cannot be read does not stop the other schedules", arguments: Backend.allCases)
    func schedulePoison(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test(worker: false) { _ in
            let store = app.store
            let every10 = Workflow(
                name: "Ten",
                nodes: [
                    WorkflowNode(name: "Every 10 s", type: ScheduleNode.descriptor.type, parameters: ["intervalSeconds": 10])
                ], edges: [])
            let (broken, healthy) = try await store.write { db in
                let user = try await store.insertUser(email: "o@example.com", name: "O", passwordHash: "x", on: db)
                let org = try await store.insertOrganization(name: "Org", owner: user.id, on: db)
                let project = try await store.insertProject(orgID: org.id, name: "P", description: "", creator: user.id, on: db)
                let broken = try await store.insertWorkflow(
                    orgID: org.id, projectID: project.id, definition: every10, creator: user.id, on: db)
                let healthy = try await store.insertWorkflow(
                    orgID: org.id, projectID: project.id, definition: every10, creator: user.id, on: db)
                for workflow in [broken, healthy] {
                    try await store.setWorkflowActive(
                        id: workflow.id, active: true, webhooks: [], schedules: Scheduler.triggers(of: every10), on: db)
                }
                // A definition that no longer opens (as after a lost key).
                try await db.raw(
                    "UPDATE workflow_versions SET definition_sealed = \(bind: Data(repeating: 0, count: 40)) WHERE id = \(bind: broken.versionID)"
                ).run()
                return (broken, healthy)
            }
            app.clock.advance(by: 11)
            let fired = try await Scheduler(engine: app.engine, logger: .init(label: "s")).fireDue()
            #expect(fired.map(\.workflowID) == [healthy.id])
            _ = broken
        }
    }

    @Test("two replicas firing the same 250 due triggers in groups start each exactly once", arguments: Backend.allCases)
    func scheduleGroups(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test(worker: false) { _ in
            let store = app.store
            let every10 = Workflow(
                name: "Ten",
                nodes: [WorkflowNode(name: "Every 10 s", type: ScheduleNode.descriptor.type, parameters: ["intervalSeconds": 10])],
                edges: [])
            let (org, project, user) = try await store.write { db in
                let user = try await store.insertUser(email: "o@example.com", name: "O", passwordHash: "x", on: db)
                let org = try await store.insertOrganization(name: "Org", owner: user.id, on: db)
                let project = try await store.insertProject(orgID: org.id, name: "P", description: "", creator: user.id, on: db)
                return (org.id, project.id, user.id)
            }
            var ids: [String] = []
            // In transactions of 25 workflows, each well inside a call's deadline on a busy machine.
            for _ in 0..<10 {
                ids += try await store.write { db in
                    var ids: [String] = []
                    for _ in 0..<25 {
                        let workflow = try await store.insertWorkflow(
                            orgID: org, projectID: project, definition: every10, creator: user, on: db)
                        try await store.setWorkflowActive(
                            id: workflow.id, active: true, webhooks: [], schedules: Scheduler.triggers(of: every10), on: db)
                        ids.append(workflow.id)
                    }
                    return ids
                }
            }
            app.clock.advance(by: 11)
            let replicaA = Scheduler(engine: app.engine, logger: .init(label: "a"))
            let replicaB = Scheduler(engine: app.engine, logger: .init(label: "b"))
            async let firedA = replicaA.fireDue()
            async let firedB = replicaB.fireDue()
            let fired = try await firedA + firedB
            #expect(fired.count == 250)
            #expect(Set(fired.map(\.workflowID)) == Set(ids))
            // Every trigger moved on: the next pass has nothing to do until the next due time.
            #expect(try await store.dueSchedules(at: store.now, limit: 1_000).isEmpty)
            let count = try await store.read { db in
                try await db.raw("SELECT count(*) AS n FROM executions WHERE mode = 'schedule'").first()!.decode(column: "n", as: Int.self)
            }
            #expect(count == 250)
        }
    }

    @Test("the due times follow activation, saves and deletion; a pass reads only the triggers that are due", arguments: Backend.allCases)
    func scheduleTable(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test(worker: false) { _ in
            let store = app.store
            let scheduled = Workflow(
                name: "Tick",
                nodes: [
                    // Once a year (New Year's midnight), so within this test only the other one is due.
                    WorkflowNode(name: "Yearly", type: ScheduleNode.descriptor.type, parameters: ["cron": "0 0 1 1 *"]),
                    WorkflowNode(name: "Every 10 s", type: ScheduleNode.descriptor.type, parameters: ["intervalSeconds": 10]),
                    WorkflowNode(name: "Do", type: NoOpNode.descriptor.type),
                ], edges: [Edge(from: "Yearly", to: "Do"), Edge(from: "Every 10 s", to: "Do")])
            let hookOnly = Workflow(
                name: "Hook", nodes: [WorkflowNode(name: "Hook", type: WebhookNode.descriptor.type, parameters: ["path": "only"])],
                edges: [])
            func rows() async throws -> [String] {
                try await store.read { db in
                    try await db.raw("SELECT node FROM schedules ORDER BY node").all().map {
                        try $0.decode(column: "node", as: String.self)
                    }
                }
            }
            let (workflow, hook) = try await store.write { db in
                let user = try await store.insertUser(email: "o@example.com", name: "O", passwordHash: "x", on: db)
                let org = try await store.insertOrganization(name: "Org", owner: user.id, on: db)
                let project = try await store.insertProject(orgID: org.id, name: "P", description: "", creator: user.id, on: db)
                let workflow = try await store.insertWorkflow(
                    orgID: org.id, projectID: project.id, definition: scheduled, creator: user.id, on: db)
                let hook = try await store.insertWorkflow(
                    orgID: org.id, projectID: project.id, definition: hookOnly, creator: user.id, on: db)
                try await store.setWorkflowActive(
                    id: workflow.id, active: true, webhooks: [], schedules: Scheduler.triggers(of: scheduled), on: db)
                try await store.setWorkflowActive(
                    id: hook.id, active: true, webhooks: [], schedules: Scheduler.triggers(of: hookOnly), on: db)
                return (workflow, hook)
            }
            // An active workflow without schedules has no row: the scheduler never reads it.
            #expect(try await rows() == ["Every 10 s", "Yearly"])
            #expect(try await store.dueSchedules(at: store.now, limit: 10).isEmpty)
            app.clock.advance(by: 11)
            #expect(try await store.dueSchedules(at: store.now, limit: 10).map(\.node) == ["Every 10 s"])
            // A save while a trigger is due keeps its due time: the save does not skip it.
            let saved = try await store.write { db in
                let saved = try await store.saveWorkflowVersion(
                    workflow, definition: scheduled, expectedVersionID: workflow.versionID, creator: nil, on: db)
                try await store.setWorkflowActive(
                    id: saved.id, active: true, webhooks: [], schedules: Scheduler.triggers(of: scheduled), on: db)
                return saved
            }
            let scheduler = Scheduler(engine: app.engine, logger: .init(label: "s"))
            #expect(try await scheduler.fireDue().map(\.triggerNode) == ["Every 10 s"])
            #expect(try await store.dueSchedules(at: store.now, limit: 10).isEmpty)
            // Deactivated: no row, nothing fires however long it waits.
            try await store.write { db in
                try await store.setWorkflowActive(
                    id: saved.id, active: false, webhooks: [], schedules: Scheduler.triggers(of: scheduled), on: db)
            }
            #expect(try await rows().isEmpty)
            app.clock.advance(by: 120)
            #expect(try await scheduler.fireDue().isEmpty)
            // A workflow active before the table existed gets its rows when the scheduler starts.
            try await store.write { db in
                try await store.setWorkflowActive(
                    id: saved.id, active: true, webhooks: [], schedules: Scheduler.triggers(of: scheduled), on: db)
                try await db.raw("DELETE FROM schedules").run()
            }
            try await scheduler.addMissingSchedules()
            #expect(try await rows() == ["Every 10 s", "Yearly"])
            try await store.write { db in try await store.deleteWorkflow(id: saved.id, on: db) }
            #expect(try await rows().isEmpty)
            _ = hook
        }
    }
}
