import FlowStackCore
import FlowStackEngine
import FlowStackServer
import FlowStackTesting
import Foundation
import Logging
import Testing

/// On PostgreSQL, workers LISTEN for new executions: another process's worker claims a queued
/// execution at once, not at its next poll.
@Suite struct NotifyTests {
    @Test("a worker in another process claims new work on NOTIFY, long before its poll")
    func listenNotify() async throws {
        let app = try await TestApp.make(.postgres)
        var configuration = app.settings.engine
        configuration.pollInterval = 60
        let worker = ExecutionEngine(store: app.store, configuration: configuration, logger: Logger(label: "worker"))
        // The API's own engine runs no worker: only the separate one can run the execution.
        try await app.test(worker: false) { client in
            let (auth, project, _) = try await setUp(client, app)
            let workflow: [String: Any] = [
                "name": "N", "nodes": [["name": "M", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]]],
            ]
            let id = try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as! String
            let running = Task { try await worker.run() }
            // Let the worker do its first claim pass and start listening.
            try await Task.sleep(for: .milliseconds(500))
            let started = ContinuousClock.now
            let accepted = try await client.post("/api/v1/workflows/\(id)/run", nil, auth: auth)
            var done = try await waitForStatus(client, accepted.json["id"] as! String, auth: auth, until: ["succeeded"])
            while done.json["status"] as? String != "succeeded", ContinuousClock.now - started < .seconds(20) {
                done = try await waitForStatus(client, accepted.json["id"] as! String, auth: auth, until: ["succeeded"])
            }
            #expect(done.json["status"] as? String == "succeeded")
            // Far inside the 60 s poll, with room for a machine busy with the rest of the suite.
            #expect(ContinuousClock.now - started < .seconds(20))
            running.cancel()
        }
    }

    @Test("a backlog larger than the worker's slots, announced by one notice, is run to the end without a poll")
    func backlogDrains() async throws {
        let app = try await TestApp.make(.postgres)
        var configuration = app.settings.engine
        configuration.pollInterval = 60
        configuration.concurrency = 2
        let worker = ExecutionEngine(store: app.store, configuration: configuration, logger: Logger(label: "worker"))
        try await app.test(worker: false) { client in
            let (auth, project, _) = try await setUp(client, app)
            let definition: [String: Any] = [
                "name": "N", "nodes": [["name": "M", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]]],
            ]
            let id = try await client.post("/api/v1/projects/\(project)/workflows", definition, auth: auth).json["id"] as! String
            let workflow = try #require(try await app.store.workflow(id: id))
            let running = Task { try await worker.run() }
            try await Task.sleep(for: .milliseconds(500))
            // As a scheduler pass queues them: many in one transaction, one notice.
            let store = app.store
            let queued = try await store.write { db in
                var queued: [String] = []
                for _ in 0..<20 {
                    let record = ExecutionRecord(
                        orgID: workflow.orgID, projectID: workflow.projectID, workflowID: workflow.id, versionID: workflow.versionID,
                        mode: .manual, triggerNode: "M", createdAt: store.now)
                    queued.append(
                        try await store.insertExecution(
                            record, start: .start(trigger: "M", items: [Item(json: .object([:]))]), leaseOwner: nil, leaseUntil: nil,
                            notify: false, on: db
                        ).id)
                }
                try await store.notifyQueued(on: db)
                return queued
            }
            let started = ContinuousClock.now
            var finished = 0
            while ContinuousClock.now - started < .seconds(20) {
                finished = 0
                for id in queued where try await store.execution(id: id)?.status == .succeeded { finished += 1 }
                if finished == queued.count { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            // Ten times the slots, all run well inside the 60 s poll: each run that ends claims the next.
            #expect(finished == queued.count)
            running.cancel()
        }
    }
}
