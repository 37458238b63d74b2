import FlowStackCore
import FlowStackEngine
import FlowStackNetwork
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import FlowStackTesting
import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing

/// A fetcher that records each request and can hold the first `holding` calls for `hold`.
final class RecordingFetcher: OutboundFetching {
    private let requests = Mutex<[OutboundRequest]>([])
    let hold: Duration
    let holding: Int
    init(hold: Duration = .zero, holding: Int = 0) {
        self.hold = hold
        self.holding = holding
    }
    var seen: [OutboundRequest] { requests.withLock { $0 } }

    func fetch(_ request: OutboundRequest) async throws -> OutboundResponse {
        let n = requests.withLock { list in
            list.append(request)
            return list.count
        }
        if n <= holding {
            // Not cancellable, like a remote call already on the wire (and without spinning: a
            // sleep in a cancelled task returns at once).
            await Task.detached { [hold] in try? await Task.sleep(for: hold) }.value
        }
        return OutboundResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array(#"{"call":\#(n)}"#.utf8))
    }
}

/// Issue "Reliability under faults": deadlines on database calls, fencing before side effects,
/// stalled runs given up, Wait timing and idempotency keys.
@Suite struct ReliabilityTests {
    static func node(_ name: String, _ type: String, _ parameters: [String: Any] = [:]) -> [String: Any] {
        ["name": name, "type": type, "typeVersion": 1, "parameters": parameters]
    }

    static func chain(_ nodes: [[String: Any]]) -> [String: Any] {
        let names = nodes.map { $0["name"] as! String }
        return [
            "name": "Chain " + Identifier.make("w"), "nodes": nodes,
            "edges": zip(names, names.dropFirst()).map { ["from": $0, "to": $1] },
        ]
    }

    @Test("a call whose body never returns fails at its deadline, and its task is cancelled")
    func deadline() async throws {
        let cancelled = Atomic<Bool>(false)
        let started = ContinuousClock.now
        await #expect(throws: DatabaseTimeout.self) {
            try await DeadlineRunner.shared.run(within: .milliseconds(300)) {
                // Ignores cancellation for a while, as a driver stuck on a dead connection does
                // (a detached sleep: a sleep in a cancelled task would return at once and spin).
                await Task.detached { try? await Task.sleep(for: .seconds(8)) }.value
                if Task.isCancelled { cancelled.store(true, ordering: .relaxed) }
            }
        }
        let took = ContinuousClock.now - started
        // Well before the body ends (the margin is for a machine busy with the whole suite).
        #expect(took < .seconds(6), "the caller waited for the body (\(took))")
        for _ in 0..<240 where !cancelled.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(50)) }
        let sawCancellation = cancelled.load(ordering: .relaxed)
        #expect(sawCancellation)
        // A body that answers in time is answered, and a failing one fails with its own error.
        #expect(try await DeadlineRunner.shared.run(within: .seconds(5)) { 42 } == 42)
        await #expect(throws: LeaseLost.self) {
            try await DeadlineRunner.shared.run(within: .seconds(5)) { throw LeaseLost(executionID: "exe_x") }
        }
    }

    @Test("PostgreSQL sessions carry statement, lock and idle-in-transaction timeouts; a call past its deadline fails")
    func postgresSessionTimeouts() async throws {
        let database = try await TestDatabase.make(.postgres)
        guard case .postgres(let url) = database.location else { return }
        var timeouts = DatabaseTimeouts()
        timeouts.statement = .milliseconds(1500)
        timeouts.lock = .milliseconds(700)
        timeouts.idleInTransaction = .seconds(3)
        timeouts.call = .seconds(20)
        let store = try await PostgresStore.open(url: url, timeouts: timeouts, logger: Logger(label: "test"))
        defer { Task { await store.close() } }
        let settings = try await store.read { db in
            try await db.raw(
                "SELECT current_setting('statement_timeout') AS s, current_setting('lock_timeout') AS l, current_setting('idle_in_transaction_session_timeout') AS i"
            ).first()
        }
        #expect(try settings?.decode(column: "s", as: String.self) == "1500ms")
        #expect(try settings?.decode(column: "l", as: String.self) == "700ms")
        #expect(try settings?.decode(column: "i", as: String.self) == "3s")
        // The server ends a statement past statement_timeout (SQLSTATE 57014): the database is
        // unavailable for that call, which the API answers with 503.
        await #expect(throws: DatabaseUnavailable.self) {
            try await store.read { db in try await db.raw("SELECT pg_sleep(5)").run() }
        }
        // And the client gives up at its own deadline, whatever the server does.
        timeouts.call = .seconds(3)
        timeouts.statement = .seconds(60)
        let impatient = try await PostgresStore.open(url: url, timeouts: timeouts, logger: Logger(label: "test"))
        defer { Task { await impatient.close() } }
        let started = ContinuousClock.now
        await #expect(throws: DatabaseTimeout.self) {
            try await impatient.read { db in try await db.raw("SELECT pg_sleep(10)").run() }
        }
        #expect(ContinuousClock.now - started < .seconds(7))
    }

    @Test("a worker that was paused past its lease sends no further request", arguments: Backend.allCases)
    func fencedBeforeSideEffect(_ backend: Backend) async throws {
        // The first request takes 2 s: meanwhile the 1 s lease runs out and another worker takes
        // the execution. The node's second item must then not be sent by this worker.
        let fetcher = RecordingFetcher(hold: .seconds(2), holding: 1)
        let app = try await TestApp.make(
            backend,
            configure: {
                $0.engine.leaseDuration = 1
                // No heartbeats: only the check before each side effect can notice the loss.
                $0.engine.heartbeatInterval = 3600
            }, fetcher: fetcher)
        try await app.test(worker: false) { client in
            let (auth, project, _) = try await setUp(client, app)
            let definition = Self.chain([
                Self.node("Manual", "flowstack.manualTrigger"),
                Self.node("Call", "flowstack.httpRequest", ["url": "https://api.example.com/{{ $json.n }}"]),
            ])
            let id = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", definition, auth: auth).json["id"] as? String)
            let workflow = try #require(try await app.store.workflow(id: id))
            let run = Task {
                try await app.engine.runNow(
                    workflow, trigger: "Manual", items: [Item(json: ["n": 1]), Item(json: ["n": 2])], mode: .manual, task: .own)
            }
            var taken: ExecutionRecord?
            for _ in 0..<100 where taken == nil {
                try await Task.sleep(for: .milliseconds(50))
                app.clock.advance(by: 5)
                taken = try await app.store.claimExecutions(owner: "other", limit: 1, leaseUntil: app.store.now.addingTimeInterval(60))
                    .first
            }
            #expect(taken != nil, "the run was never written")
            await #expect(throws: LeaseLost.self) { _ = try await run.value }
            #expect(
                fetcher.seen.map(\.url) == ["https://api.example.com/1"], "the fenced-out worker still called \(fetcher.seen.map(\.url))")
        }
    }

    @Test("a run that makes no progress stops renewing its lease and another worker finishes it", arguments: Backend.allCases)
    func stalledRunIsTakenOver(_ backend: Backend) async throws {
        // The first request hangs for 12 s (not cancellable); the stall limit is 1 s.
        let fetcher = RecordingFetcher(hold: .seconds(12), holding: 1)
        let app = try await TestApp.make(
            backend,
            configure: {
                $0.engine.leaseDuration = 1.5
                $0.engine.heartbeatInterval = 0.2
                $0.engine.stallTimeout = 1
            }, fetcher: fetcher)
        try await app.test(worker: false) { client in
            let (auth, project, _) = try await setUp(client, app)
            let definition = Self.chain([
                Self.node("Manual", "flowstack.manualTrigger"),
                Self.node("Call", "flowstack.httpRequest", ["url": "https://api.example.com/slow"]),
            ])
            let id = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", definition, auth: auth).json["id"] as? String)
            let workflow = try #require(try await app.store.workflow(id: id))
            let accepted = try await app.engine.submit(workflow, trigger: "Manual", items: [Item(json: [:])], mode: .manual)
            let started = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await app.engine.run() }
                // Once the stalled run has let its lease go, time passes for the database too.
                group.addTask {
                    var last = ContinuousClock.now
                    while !Task.isCancelled {
                        try await Task.sleep(for: .milliseconds(100))
                        let now = ContinuousClock.now
                        app.clock.advance(by: (now - last).inSeconds)
                        last = now
                    }
                }
                defer { group.cancelAll() }
                var finished: ExecutionRecord?
                while finished == nil, ContinuousClock.now - started < .seconds(20) {
                    try await Task.sleep(for: .milliseconds(100))
                    if let record = try await app.store.execution(id: accepted.id) {
                        if record.status.isFinished { finished = record }
                    }
                }
                #expect(finished?.status == .succeeded)
                #expect((finished?.fence ?? 0) >= 2, "the execution was not taken over")
                // Finished by the takeover, long before the stuck call returns.
                #expect(ContinuousClock.now - started < .seconds(9), "it waited for the stuck call instead of taking over")
            }
        }
    }

    @Test("a Wait counts from when it starts, not from when the run started", arguments: [Backend.sqlite])
    func waitCountsFromItsStart(_ backend: Backend) async throws {
        let fetcher = RecordingFetcher(hold: .milliseconds(800), holding: 1)
        let app = try await TestApp.make(backend, configure: { $0.engine.inlineWaitLimit = 10 }, fetcher: fetcher)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let definition = Self.chain([
                Self.node("Manual", "flowstack.manualTrigger"),
                Self.node("Slow", "flowstack.httpRequest", ["url": "https://api.example.com/slow"]),
                Self.node("Pause", "flowstack.wait", ["resume": "timeInterval", "seconds": 1]),
                Self.node("Done", "flowstack.set", ["fields": ["done": true]]),
            ])
            let id = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", definition, auth: auth).json["id"] as? String)
            let started = ContinuousClock.now
            let answer = try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth)
            let took = ContinuousClock.now - started
            #expect(answer.json["status"] as? String == "succeeded", "\(answer.text)")
            #expect(took >= .milliseconds(1750), "the 1 s Wait after an 0.8 s node ended after \(took) in all")
        }
    }

    @Test("an Idempotency-Key answers a repeat with the first execution, per workflow", arguments: Backend.allCases)
    func idempotencyKeys(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let hookPath = "idem-" + Identifier.make("p").dropFirst(2).lowercased()
            let hooked = Self.chain([
                Self.node("Hook", "flowstack.webhook", ["method": "POST", "path": hookPath, "respond": "immediately"]),
                Self.node("Shape", "flowstack.set", ["fields": ["seen": "{{ $json.body.n }}"]]),
            ])
            let hookID = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", hooked, auth: auth).json["id"] as? String)
            #expect(try await client.post("/api/v1/workflows/\(hookID)/activate", nil, auth: auth).status == 200)
            let first = try await client.post("/webhook/\(hookPath)", ["n": 1], headers: ["Idempotency-Key": "order-17"])
            let repeated = try await client.post("/webhook/\(hookPath)", ["n": 1], headers: ["Idempotency-Key": "order-17"])
            let other = try await client.post("/webhook/\(hookPath)", ["n": 2], headers: ["Idempotency-Key": "order-18"])
            let firstID = try #require(first.json["executionId"] as? String, "\(first.text)")
            #expect(first.header("Idempotent-Replayed") == nil)
            #expect(repeated.json["executionId"] as? String == firstID)
            #expect(repeated.header("Idempotent-Replayed") == "true")
            #expect(other.json["executionId"] as? String != firstID)
            #expect(try await client.post("/webhook/\(hookPath)", ["n": 3], headers: ["Idempotency-Key": "bad key"]).status == 400)

            let manual = Self.chain([
                Self.node("Manual", "flowstack.manualTrigger"), Self.node("Shape", "flowstack.set", ["fields": ["ok": true]]),
            ])
            let runID = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", manual, auth: auth).json["id"] as? String)
            let ran = try await client.post(
                "/api/v1/workflows/\(runID)/run?wait=true", nil, auth: auth, headers: ["Idempotency-Key": "order-17"])
            let again = try await client.post(
                "/api/v1/workflows/\(runID)/run?wait=true", nil, auth: auth, headers: ["Idempotency-Key": "order-17"])
            let queued = try await client.post("/api/v1/workflows/\(runID)/run", nil, auth: auth, headers: ["Idempotency-Key": "order-17"])
            // The same key on another workflow is a key of its own.
            #expect(ran.json["id"] as? String != firstID)
            #expect(ran.json["status"] as? String == "succeeded", "\(ran.text)")
            #expect(again.json["id"] as? String == ran.json["id"] as? String)
            #expect(again.header("Idempotent-Replayed") == "true")
            #expect((again.json["output"] as? [[String: Any]])?.first?["ok"] as? Bool == true, "\(again.text)")
            #expect(queued.status == 202 && queued.json["id"] as? String == ran.json["id"] as? String, "\(queued.text)")

            let hookRuns = try await app.store.executions(projectID: project, filter: .init(), before: nil, limit: 100)
            #expect(hookRuns.filter { $0.workflowID == hookID }.count == 2)
            #expect(hookRuns.filter { $0.workflowID == runID }.count == 1)
            // Keys are stored hashed.
            let stored = try await app.store.read { db in try await db.raw("SELECT key_hash FROM idempotency_keys").all() }
            #expect(stored.count == 3)
            #expect(try stored.allSatisfy { try $0.decode(column: "key_hash", as: String.self) != "order-17" })
        }
    }

    @Test("the HTTP Request node sends the same idempotency key for the same execution, node, item and page", arguments: [Backend.sqlite])
    func httpNodeIdempotencyKey(_ backend: Backend) async throws {
        let fetcher = RecordingFetcher()
        let app = try await TestApp.make(backend, fetcher: fetcher)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let definition = Self.chain([
                Self.node("Manual", "flowstack.manualTrigger"),
                Self.node(
                    "Call", "flowstack.httpRequest", ["url": "https://api.example.com/charge", "method": "POST", "idempotencyKey": true]),
            ])
            let id = try #require(
                try await client.post("/api/v1/projects/\(project)/workflows", definition, auth: auth).json["id"] as? String)
            let body: [String: Any] = ["items": [["n": 1], ["n": 2]]]
            #expect(
                try await client.post("/api/v1/workflows/\(id)/run?wait=true", body, auth: auth).json["status"] as? String == "succeeded")
            let keys = fetcher.seen.map { request in request.headers.first { $0.0 == "Idempotency-Key" }?.1 }
            #expect(keys.count == 2)
            #expect(Set(keys.compactMap { $0 }).count == 2, "\(keys)")
            #expect(keys.allSatisfy { $0?.hasPrefix("fs-") == true && $0?.count == 35 }, "\(keys)")
            // Another execution of the same request gets other keys.
            #expect(
                try await client.post("/api/v1/workflows/\(id)/run?wait=true", body, auth: auth).json["status"] as? String == "succeeded")
            let later = fetcher.seen.dropFirst(2).compactMap { request in request.headers.first { $0.0 == "Idempotency-Key" }?.1 }
            #expect(Set(later).isDisjoint(with: Set(keys.compactMap { $0 })))
        }
    }
}
