import FlowStackCore
import FlowStackNetwork
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

public struct EngineConfiguration: Sendable {
    /// How long a claimed execution stays leased without a heartbeat.
    public var leaseDuration: TimeInterval = 30
    public var heartbeatInterval: TimeInterval = 10
    /// How often the worker looks for due executions when nothing woke it.
    public var pollInterval: TimeInterval = 0.5
    /// Executions this worker runs at once from the queue.
    public var concurrency: Int = 32
    /// Waits up to this long are slept in place; longer ones put the execution to sleep in the database.
    public var inlineWaitLimit: TimeInterval = 2
    /// Identifies this worker in leases.
    public var workerID: String = Identifier.make("wrk")
    /// An inline run still going after this long is written to the database (see `StoreJournal`).
    public var flushAfter: TimeInterval = 0.25
    /// Sub-workflow nesting limit.
    public var maximumDepth: Int = 16
    /// A run whose journal has not moved for this long is stuck: its lease is no longer renewed,
    /// so another worker takes it over (and this one stops it).
    public var stallTimeout: TimeInterval = 900
    /// A journal write still unanswered after this long makes the run stuck at once (every
    /// database call has a deadline shorter than this; SQLite's are its busy timeout).
    public var writeStallTimeout: TimeInterval = 20
    /// The public base URL webhooks are reached at (`$execution.resumeUrl` is built from it).
    public var webhookBaseURL = "https://127.0.0.1:8443"

    public init() {}
}

/// Runs executions durably. An execution is accepted by writing it and its trigger items to the
/// database; every node's result is journaled (sealed) before the engine acts on it, under a lease
/// whose fence token must still match. A worker that dies leaves a lease that expires; whoever
/// claims it next replays the journal and re-runs only the node that had not completed.
public final class ExecutionEngine: Service, Sendable {
    public let store: Store
    public let catalog: NodeCatalog
    public let configuration: EngineConfiguration
    let logger: Logger
    let codeRunner: (any CodeRunning)?
    let fetcher: (any OutboundFetching)?
    /// Signs requests with connections and keeps OAuth2 tokens fresh.
    public let connections: ConnectionBroker
    let wake: AsyncStream<Void>.Continuation
    /// Flushes pending inline runs and renews the leases of running ones.
    let keeper: LeaseKeeper
    /// Project variables by project, kept for a second (changes through this server clear them).
    private let variableCache = ExpiringCache<String, [String: String]>(lifetime: .seconds(1))
    private let wakeStream: AsyncStream<Void>

    public init(
        store: Store, catalog: NodeCatalog = .standard, configuration: EngineConfiguration = .init(), logger: Logger,
        codeRunner: (any CodeRunning)? = nil, fetcher: (any OutboundFetching)? = nil
    ) {
        self.store = store
        self.catalog = catalog
        self.configuration = configuration
        self.logger = logger
        self.codeRunner = codeRunner
        self.fetcher = fetcher
        self.connections = ConnectionBroker(store: store, fetcher: fetcher, logger: logger)
        self.keeper = LeaseKeeper(flushAfter: configuration.flushAfter, heartbeat: configuration.heartbeatInterval)
        (wakeStream, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        store.changes.subscribe { [variableCache] change in
            switch change {
            case .variables(let projectID): variableCache.remove(projectID)
            case .everything: variableCache.removeAll()
            case .identities, .workflows: break
            }
        }
    }

    public var driver: WorkflowDriver {
        WorkflowDriver(catalog: catalog, services: EngineServices(engine: self), inlineWaitLimit: configuration.inlineWaitLimit)
    }

    // MARK: Accepting executions

    /// Accepts an execution into the queue and returns at once (202 semantics).
    /// `id` names the execution in advance (an idempotency key claimed it).
    public func submit(
        _ workflow: StoredWorkflow, trigger: String, items: [Item], mode: ExecutionMode, parentID: String? = nil,
        retryOf: String? = nil, id: String? = nil
    ) async throws -> ExecutionRecord {
        let record = ExecutionRecord(
            id: id ?? Identifier.makeOrdered("exe"), orgID: workflow.orgID, projectID: workflow.projectID,
            workflowID: workflow.id, versionID: workflow.versionID,
            mode: mode, triggerNode: trigger, createdAt: store.now, parentID: parentID, retryOf: retryOf)
        let inserted: ExecutionRecord
        do {
            inserted = try await store.write { [store] db in
                try await store.insertExecution(
                    record, start: .start(trigger: trigger, items: items), leaseOwner: nil, leaseUntil: nil, on: db)
            }
        } catch {
            // The connection may have died after the commit: the caller is told what happened.
            guard try await store.confirmAccepted(record.id, after: error, logger: logger) != nil else { throw error }
            inserted = record
        }
        wake.yield()
        return inserted
    }

    /// Accepts an execution and runs it, holding its lease; answers when it finishes or goes to
    /// sleep. If this process dies midway, another worker finishes it. `task` says where it
    /// drives (see `RunTask`).
    public func runNow(
        _ workflow: StoredWorkflow, trigger: String, items: [Item], mode: ExecutionMode, parentID: String? = nil,
        depth: Int = 0, reply: WebhookReply? = nil, task: RunTask = .own, id: String? = nil
    ) async throws -> ExecutionResult {
        let record = ExecutionRecord(
            id: id ?? Identifier.makeOrdered("exe"), orgID: workflow.orgID, projectID: workflow.projectID, workflowID: workflow.id,
            versionID: workflow.versionID,
            mode: mode, triggerNode: trigger, createdAt: store.now, parentID: parentID)
        let start = ExecutionEvent.start(trigger: trigger, items: items)
        var running = record
        running.status = .running
        running.fence = 1
        running.startedAt = record.createdAt
        running.events = 1
        return try await execute(
            running, definition: workflow.definition,
            journal: [ExecutionJournalEntry(seq: 0, node: nil, event: start, createdAt: record.createdAt)],
            depth: depth, pending: true, reply: reply, task: task)
    }

    /// Waits until execution `id` has finished or sleeps, and answers its record.
    func awaitFinished(_ id: String, timeout: TimeInterval) async throws -> ExecutionRecord? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let record = try await store.execution(id: id) else { return nil }
            if record.status.isFinished || record.status == .waiting { return record }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try await store.execution(id: id)
    }

    /// A project's variables (`$env`), from a one-second cache.
    func projectVariables(_ projectID: String) async throws -> [String: String] {
        try await variableCache.value(for: projectID) { [store] in try await store.variableMap(projectID: projectID) } ?? [:]
    }

    // MARK: The worker

    public func run() async throws {
        logger.info("execution worker started", metadata: ["worker": "\(configuration.workerID)"])
        let active = ActiveCount()
        // Whether claimable work may have been left behind: the last claim filled every slot it
        // asked for, failed, or a wake came with no slot free. Only then does a run that ends
        // claim again; otherwise the queue was empty at the last claim, and work queued since
        // wakes the loop itself (its notice, or the tick).
        let backlog = Flag(true)
        // Discarding: a finished run's task leaves nothing behind (a plain group keeps each
        // child's result until someone awaits it, which the worker never does).
        await withDiscardingTaskGroup { group in
            // New work is claimed the moment it is committed (PostgreSQL); the poll below is the safety net.
            group.addTask { [wake, store] in await store.listen(Store.executionChannel) { _ in wake.yield() } }
            group.addTask { [wake, configuration] in
                // A periodic tick, so leases that expire and waits that end are noticed.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(configuration.pollInterval))
                    wake.yield()
                }
            }
            for await _ in wakeStream.cancelOnGracefulShutdown() {
                health.workerCycled()
                let free = configuration.concurrency - active.value
                guard free > 0 else {
                    backlog.set(true)
                    continue
                }
                let claimed: [ExecutionRecord]
                // A claim sent at this instant holds its leases until this instant plus the
                // lease, however long the run then takes to load.
                let claimSent = ContinuousClock.now
                do {
                    // The claim has a deadline like every database call: a dead connection
                    // fails it, and the loop goes on at the next tick.
                    claimed = try await store.claimExecutions(
                        owner: configuration.workerID, limit: free,
                        leaseUntil: store.now.addingTimeInterval(configuration.leaseDuration))
                    health.claimSucceeded(logger: logger)
                } catch {
                    health.claimFailed(error, logger: logger)
                    backlog.set(true)
                    continue
                }
                backlog.set(claimed.count == free)
                for record in claimed {
                    active.add(1)
                    group.addTask {
                        await self.resume(record, claimSent: claimSent)
                        active.add(-1)
                        if backlog.value { self.wake.yield() }
                    }
                }
            }
            group.cancelAll()
        }
        logger.info("execution worker stopped")
    }

    /// Whether the worker loop is alive and its claims succeed (for `/readyz`).
    public let health = WorkerHealth()

    /// Runs a claimed execution from its journal.
    func resume(_ record: ExecutionRecord, claimSent: ContinuousClock.Instant) async {
        do {
            guard let definition = try await store.workflowDefinition(versionID: record.versionID, orgID: record.orgID) else {
                try await finishBroken(record, message: "The workflow version of this execution no longer exists.")
                return
            }
            let journal = try await store.journal(executionID: record.id, orgID: record.orgID)
            // Each claimed run has a task of its own in the worker's group.
            _ = try await execute(record, definition: definition, journal: journal, depth: 0, task: .caller, leaseSent: claimSent)
        } catch is LeaseLost {
            logger.info(
                "execution lease lost; another worker continues it", metadata: ["execution": "\(record.id)", "fence": "\(record.fence)"])
        } catch let error as RunStalled {
            logger.warning(
                "execution stalled; its lease is no longer renewed",
                metadata: [
                    "execution": "\(record.id)", "fence": "\(record.fence)",
                    "reason": "\(error.reason)",
                ])
        } catch {
            logger.error(
                "execution stopped by an error; another worker continues it after the lease",
                metadata: ["execution": "\(record.id)", "fence": "\(record.fence)", "error": "\(String(describing: error).prefix(300))"])
        }
    }

    private func finishBroken(_ record: ExecutionRecord, message: String) async throws {
        try await store.appendJournal(
            executionID: record.id, orgID: record.orgID, fence: record.fence, firstSeq: record.events, events: [],
            progress: ExecutionProgress(status: .failed, error: message), leaseUntil: store.now)
    }

    // MARK: Running

    func execute(
        _ record: ExecutionRecord, definition: Workflow, journal: [ExecutionJournalEntry], depth: Int,
        pending: Bool = false, reply: WebhookReply? = nil, task: RunTask = .own,
        leaseSent: ContinuousClock.Instant = .now
    ) async throws -> ExecutionResult {
        let driver = self.driver
        var machine = ExecutionStateMachine(workflow: definition, outputCounts: driver.outputCounts(definition))
        for entry in journal {
            _ = machine.handle(entry.event)
        }
        let storeJournal = StoreJournal(
            store: store, record: record, nextSeq: max(record.events, journal.count),
            leaseDuration: configuration.leaseDuration, pendingStart: pending ? journal.first?.event : nil,
            owner: configuration.workerID, reply: reply,
            respondNodes: RespondToWebhookNode.nodes(in: definition),
            limits: StoreJournal.Limits(configuration), logger: logger, leaseSent: leaseSent)
        var current = record
        if machine.status.isFinished {
            // The journal already holds the end (an earlier holder died before marking the row).
            try await storeJournal.mark(ExecutionProgress(status: machine.status, error: machine.error, failedNode: machine.failedNode))
            current.status = machine.status
            return ExecutionResult(record: current, machine: machine)
        }
        let timeZone = definition.settings.timezone.flatMap(TimeZone.init(identifier:)) ?? TimeZone(identifier: "UTC")!
        // `$env` is the project's variables, read when the execution (re)starts; never the server's environment.
        let variables = try await projectVariables(record.projectID)
        var base = ExpressionContext(
            variables: variables, timeZone: timeZone, executionID: record.id, workflowID: record.workflowID,
            workflowName: definition.name)
        base.projectID = record.projectID
        base.resumeURL = Self.resumeURL(
            base: configuration.webhookBaseURL, executionID: record.id, token: store.resumeToken(executionID: record.id))
        base.redactor = Redactor()
        var context = base
        context.callDepth = depth
        // The driver sleeps on the system clock; the time already spent is measured on the store's.
        let spent = store.now.timeIntervalSince(record.startedAt ?? store.now)
        let deadline = definition.settings.timeout.map { Date().addingTimeInterval($0 - max(0, spent)) }
        var actions = machine.resumeActions()
        if machine.status == .waiting, let due = record.waitUntil, due.millisecondsSince1970 <= store.now.millisecondsSince1970 {
            // Woken (its time came, or a resume call): continue the waiting nodes with their items,
            // or with what the resume call sent.
            actions = []
            let payload = try await store.resumePayload(record)
            for (node, items) in machine.waiting.sorted(by: { $0.key < $1.key }) {
                let event = ExecutionEvent.resumed(node: node, outputs: [payload.map { [Item(json: $0)] } ?? items])
                let next = machine.handle(event)
                try await storeJournal.record(event, node: nil, machine: machine, actions: next)
                actions += next
            }
        }
        let (initial, frozen, startActions) = (machine, context, actions)
        let drive: @Sendable () async throws -> (ExecutionStateMachine, DriveOutcome) = {
            var running = initial
            var summaries: [String: NodeRunSummary] = [:]
            // Every node start, outbound request and sandbox run first asks the journal whether
            // this worker still holds the lease.
            let outcome = try await RunFence.$current.withValue(storeJournal) {
                try await driver.drive(
                    &running, actions: startActions, base: frozen, deadline: deadline,
                    journal: storeJournal, summaries: &summaries)
            }
            return (running, outcome)
        }
        let (final, outcome): (ExecutionStateMachine, DriveOutcome)
        switch task {
        case .own:
            (final, outcome) = try await withThrowingTaskGroup(of: (ExecutionStateMachine, DriveOutcome).self) { [keeper] group in
                group.addTask { try await keeper.watch(storeJournal, pending: pending, cancelsTask: true, drive) }
                return try await group.next()!
            }
        case .caller:
            (final, outcome) = try await keeper.watch(storeJournal, pending: pending, cancelsTask: true, drive)
        case .shared:
            (final, outcome) = try await keeper.watch(storeJournal, pending: pending, cancelsTask: false, drive)
        }
        machine = final
        switch outcome {
        case .sleeping(let until):
            try await storeJournal.mark(ExecutionProgress(status: .waiting, waitUntil: until ?? .distantFuture))
            current.status = .waiting
            current.waitUntil = until
        case .finished:
            current.status = machine.status
            current.error = machine.error
            current.failedNode = machine.failedNode
            current.finishedAt = store.now
            switch (definition.settings.saveExecutionData ?? "all", machine.status) {
            case ("none", _), ("errors", .succeeded), ("errors", .cancelled):
                // The workflow keeps no node data for this outcome: only the execution's outline stays.
                try await store.deleteJournal(executionID: record.id)
            default:
                break
            }
            if machine.status == .failed, let errorWorkflow = definition.settings.errorWorkflowId {
                await startErrorWorkflow(errorWorkflow, failed: current, workflowName: definition.name)
            }
        }
        return ExecutionResult(record: current, machine: machine)
    }

    /// Starts a workflow's error workflow with what failed, if it is in the same project.
    private func startErrorWorkflow(_ id: String, failed: ExecutionRecord, workflowName: String) async {
        do {
            guard let target = try await store.workflow(id: id), target.projectID == failed.projectID,
                let trigger = target.definition.nodes.first(where: { $0.type == ErrorTriggerNode.descriptor.type })
            else {
                logger.warning(
                    "error workflow not started: not found in the project or without an Error Trigger",
                    metadata: ["execution": "\(failed.id)"])
                return
            }
            let item = Item(
                json: .object([
                    "execution": .object([
                        "id": .string(failed.id), "error": .string(failed.error ?? ""),
                        "lastNodeExecuted": .string(failed.failedNode ?? ""),
                        "mode": .string(failed.mode.rawValue),
                    ]),
                    "workflow": .object(["id": .string(failed.workflowID), "name": .string(workflowName)]),
                ]))
            _ = try await submit(
                target, trigger: trigger.name, items: [item], mode: .error,
                parentID: failed.id)
        } catch {
            logger.warning("error workflow not started", metadata: ["execution": "\(failed.id)"])
        }
    }
}

/// Where a run drives, and so what a lost lease (a cancel call, another worker taking over) stops.
public enum RunTask: Sendable {
    /// A child task of its own, cancelled with the lease: the node in flight stops. For runs
    /// inside another run (sub-workflows), whose caller must go on.
    case own
    /// The caller's task, which serves this run alone (a claimed run, a webhook run in the
    /// background): cancelled with the lease. Cheaper than a task of its own.
    case caller
    /// The caller's task, which also serves other work (a request handler: its task serves the
    /// whole keep-alive connection), so it is never cancelled: the run stops at its next step.
    case shared
}

final class ActiveCount: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func add(_ delta: Int) { count.withLock { $0 += delta } }
}

final class Flag: Sendable {
    private let state: Mutex<Bool>
    init(_ value: Bool) { state = Mutex(value) }
    var value: Bool { state.withLock { $0 } }
    func set(_ value: Bool) { state.withLock { $0 = value } }
}

/// Writes the journal of one execution under its fence.
///
/// An inline run (a webhook or `run?wait=true` whose caller is waiting for the answer) starts
/// *pending*: its row and journal are kept in memory and written in one transaction when it ends,
/// or as soon as it has run for `flushAfter` (or sleeps), whichever comes first. Until then the
/// caller has no answer, so nothing has been acknowledged that a crash could lose; from then on
/// every step is journaled before the engine acts on it.
actor StoreJournal: ExecutionJournal, SideEffectPermit {
    let store: Store
    let record: ExecutionRecord
    let leaseDuration: TimeInterval
    let limits: Limits
    let logger: Logger
    private var nextSeq: Int
    private var pending: (start: ExecutionEvent, owner: String, entries: [(event: ExecutionEvent, node: String?, run: NodeRunInfo?)])?
    /// Why the run may take no further step (its lease was lost, a flush or heartbeat failed).
    private nonisolated let abandoned = Mutex<(any Error)?>(nil)
    /// What this worker knows of its lease and of the run's progress, without asking the database.
    private nonisolated let lease: Mutex<LeaseView>

    struct Limits: Sendable {
        var stall: Duration
        var writeStall: Duration

        init(stall: TimeInterval = 900, writeStall: TimeInterval = 20) {
            self.stall = .milliseconds(Int64(stall * 1000))
            self.writeStall = .milliseconds(Int64(writeStall * 1000))
        }

        init(_ configuration: EngineConfiguration) {
            self.init(stall: configuration.stallTimeout, writeStall: configuration.writeStallTimeout)
        }
    }

    struct LeaseView {
        /// Until when the lease certainly holds: half the lease after the last write or renewal
        /// was sent (margin for the clocks of other replicas). `nil` while the run is pending:
        /// nobody else can hold an execution that is not written yet.
        var holdsUntil: ContinuousClock.Instant?
        /// The last step that reached the journal.
        var progressed: ContinuousClock.Instant
        /// A journal write under way since.
        var writingSince: ContinuousClock.Instant?
    }

    nonisolated func abandon(_ error: any Error) {
        abandoned.withLock { $0 = $0 ?? error }
    }

    private nonisolated func checkAbandoned() throws {
        if let error = abandoned.withLock({ $0 }) { throw error }
    }

    /// Where a Respond to Webhook node's answer goes (runs started by a webhook that waits for one).
    let reply: WebhookReply?
    let respondNodes: Set<String>

    init(
        store: Store, record: ExecutionRecord, nextSeq: Int, leaseDuration: TimeInterval, pendingStart: ExecutionEvent? = nil,
        owner: String = "",
        reply: WebhookReply? = nil, respondNodes: Set<String> = [], limits: Limits = Limits(),
        logger: Logger = Logger(label: "flowstack.journal"),
        leaseSent: ContinuousClock.Instant = .now
    ) {
        self.store = store
        self.record = record
        self.leaseDuration = leaseDuration
        self.nextSeq = nextSeq
        self.reply = reply
        self.respondNodes = respondNodes
        self.limits = limits
        self.logger = logger
        let now = ContinuousClock.now
        // A claimed run's lease holds from when its claim was sent (loading the run may have
        // taken long: the process may even have been stopped meanwhile).
        lease = Mutex(LeaseView(holdsUntil: pendingStart == nil ? leaseSent + Self.certainty(leaseDuration) : nil, progressed: now))
        if let pendingStart { pending = (pendingStart, owner, []) }
    }

    static func certainty(_ lease: TimeInterval) -> Duration { .milliseconds(Int64(lease * 500)) }

    /// Runs a database write of this run, keeping track of its progress and of the lease it
    /// renews: a write sent at `t` that succeeds proves the lease until `t + lease`.
    private func writing<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let sent = ContinuousClock.now
        lease.withLock { $0.writingSince = sent }
        do {
            let result = try await body()
            let certainty = Self.certainty(leaseDuration)
            lease.withLock {
                $0.writingSince = nil
                $0.progressed = .now
                $0.holdsUntil = sent + certainty
            }
            return result
        } catch {
            lease.withLock { $0.writingSince = nil }
            throw error
        }
    }

    /// Throws unless this worker still holds the execution. Costs nothing while the lease is
    /// known to hold; after a pause (the process was stopped, the machine was starved) it renews
    /// the lease first, and a worker that lost it stops before acting.
    nonisolated func permit() async throws {
        try checkAbandoned()
        guard let holdsUntil = lease.withLock({ $0.holdsUntil }), ContinuousClock.now >= holdsUntil else { return }
        let renewed: Bool
        do {
            renewed = try await heartbeat()
        } catch {
            abandon(error)
            throw error
        }
        guard renewed else {
            let lost = LeaseLost(executionID: record.id)
            abandon(lost)
            throw lost
        }
        try checkAbandoned()
    }

    nonisolated func record(_ event: ExecutionEvent, node: NodeRunSummary?, machine: ExecutionStateMachine, actions: [ExecutionAction])
        async throws
    {
        var progress: ExecutionProgress?
        for action in actions {
            if case .finish(let status, let error, let failedNode) = action {
                progress = ExecutionProgress(status: status, error: error, failedNode: failedNode)
            }
        }
        let run = node.map { NodeRunInfo(attempt: $0.attempts, milliseconds: $0.milliseconds, logs: $0.logs) }
        try await append((event, node?.node ?? event.nodeName, run), progress: progress)
        if let reply, case .nodeSucceeded(let name, let outputs) = event, respondNodes.contains(name),
            outputs.count > RespondToWebhookNode.responseOutput, let item = outputs[RespondToWebhookNode.responseOutput].first
        {
            // The caller is answered only once the execution is on disk: the rest of the run then survives a crash.
            try await flush()
            reply.send(item)
        }
    }

    /// A flush in progress: steps that come meanwhile wait for it (the actor is reentrant).
    private var flushing: Task<Void, any Error>?
    /// The execution has been written as finished or asleep: there is no lease left to renew.
    private var released = false

    private func note(_ progress: ExecutionProgress?) {
        if let progress, progress.status.isFinished || progress.status == .waiting { released = true }
    }

    private func append(_ entry: (event: ExecutionEvent, node: String?, run: NodeRunInfo?), progress: ExecutionProgress?) async throws {
        try checkAbandoned()
        try await flushing?.value
        if pending != nil {
            pending!.entries.append(entry)
            if progress != nil { try await flush(progress) }
            return
        }
        let seq = nextSeq
        nextSeq += 1
        try await writing {
            try await store.appendJournal(
                executionID: record.id, orgID: record.orgID, fence: record.fence, firstSeq: seq,
                events: [entry], progress: progress, leaseUntil: store.now.addingTimeInterval(leaseDuration))
        }
        note(progress)
    }

    /// Writes a pending run's row and journal (it is accepted from now on).
    func flush(_ progress: ExecutionProgress? = nil) async throws {
        if let flushing {
            try await flushing.value
            return
        }
        guard let buffered = pending else { return }
        pending = nil
        nextSeq = 1 + buffered.entries.count
        let (store, record, leaseDuration, logger) = (self.store, self.record, self.leaseDuration, self.logger)
        let task = Task {
            do {
                _ = try await store.insertExecutionWithJournal(
                    record, start: buffered.start, leaseOwner: buffered.owner,
                    leaseUntil: store.now.addingTimeInterval(leaseDuration), events: buffered.entries,
                    progress: progress)
            } catch {
                // The connection may have died after the commit: then it was written all the same.
                guard try await store.confirmAccepted(record.id, after: error, logger: logger) != nil else { throw error }
            }
        }
        flushing = task
        defer { flushing = nil }
        try await writing { try await task.value }
        note(progress)
    }

    func mark(_ progress: ExecutionProgress) async throws {
        try checkAbandoned()
        try await flushing?.value
        if pending != nil {
            try await flush(progress)
            return
        }
        try await writing {
            try await store.appendJournal(
                executionID: record.id, orgID: record.orgID, fence: record.fence, firstSeq: nextSeq, events: [],
                progress: progress, leaseUntil: store.now.addingTimeInterval(leaseDuration))
        }
        note(progress)
    }

    /// Extends the lease; false when another worker took the execution. Throws `RunStalled`,
    /// and renews nothing, when the run has stopped making progress: a journal write that has
    /// not come back, or no step for `limits.stall`. Another worker then takes it over.
    func heartbeat() async throws -> Bool {
        let view = lease.withLock { $0 }
        let now = ContinuousClock.now
        if let since = view.writingSince, now - since > limits.writeStall {
            throw RunStalled(
                executionID: record.id, reason: "a journal write has not come back for \(Int((now - since).components.seconds)) s")
        }
        if now - view.progressed > limits.stall {
            throw RunStalled(executionID: record.id, reason: "no step for \(Int((now - view.progressed).components.seconds)) s")
        }
        try await flushing?.value
        if pending != nil || released { return true }
        let sent = ContinuousClock.now
        if try await store.heartbeat(executionID: record.id, fence: record.fence, leaseUntil: store.now.addingTimeInterval(leaseDuration)) {
            let certainty = Self.certainty(leaseDuration)
            lease.withLock { $0.holdsUntil = max($0.holdsUntil ?? sent, sent + certainty) }
            return true
        }
        // Not renewed: either another worker took it (or it was cancelled), which moved the fence,
        // or this run's own last write (finished, asleep) landed just before. Only the first is a loss.
        return try await store.execution(id: record.id)?.fence == record.fence

    }
}

extension ExecutionEngine {
    public enum RetryError: Error, Sendable {
        case notFailed
        case workflowGone
    }

    /// Starts a new execution that continues a failed one from the node that failed: the nodes
    /// that completed keep their checkpointed output and do not run again.
    public func retry(_ failed: ExecutionRecord) async throws -> ExecutionRecord {
        guard failed.status == .failed else { throw RetryError.notFailed }
        guard let workflow = try await store.workflow(id: failed.workflowID) else { throw RetryError.workflowGone }
        let journal = try await store.journal(executionID: failed.id, orgID: failed.orgID)
        guard let first = journal.first, case .start(let trigger, let items) = first.event else { throw RetryError.notFailed }
        var events = journal.dropFirst().map(\.event)
        if let last = events.lastIndex(where: { event in
            switch event {
            case .nodeFailed, .timedOut: true
            default: false
            }
        }) {
            events.remove(at: last)
        }
        var record = ExecutionRecord(
            orgID: failed.orgID, projectID: failed.projectID, workflowID: failed.workflowID, versionID: failed.versionID,
            mode: .retry, triggerNode: trigger, createdAt: store.now, retryOf: failed.id)
        record.parentID = failed.parentID
        _ = workflow
        let inserted = try await store.write { [store, record, events] db in
            try await store.insertExecution(
                record, start: .start(trigger: trigger, items: items), replaying: events, leaseOwner: nil, leaseUntil: nil, on: db)
        }
        wake.yield()
        return inserted
    }

    /// Resumes an execution that waits for a resume call.
    public func wakeUp(_ id: String, payload: JSONValue? = nil) async throws -> Bool {
        guard let record = try await store.execution(id: id), record.status == .waiting,
            let until = record.waitUntil, until >= Date.distantFuture.addingTimeInterval(-86400)
        else { return false }
        let woke = try await store.wakeExecution(record, payload: payload)
        if woke { wake.yield() }
        return woke
    }
}

extension ExecutionEngine {
    /// `<base>/webhook-waiting/<execution id>/<resume token>`.
    public static func resumeURL(base: String, executionID: String, token: String) -> String {
        base.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/webhook-waiting/\(executionID)/\(token)"
    }

    /// An execution as its journal has it, waiting up to `timeout` for it to finish or sleep
    /// (what a repeated request with the same idempotency key is answered with).
    public func result(of id: String, waitingUpTo timeout: TimeInterval) async throws -> ExecutionResult? {
        guard var record = try await store.execution(id: id) else { return nil }
        if !(record.status.isFinished || record.status == .waiting), timeout > 0 {
            record = try await awaitFinished(id, timeout: timeout) ?? record
        }
        guard let definition = try await store.workflowDefinition(versionID: record.versionID, orgID: record.orgID) else {
            return ExecutionResult(
                record: record, machine: ExecutionStateMachine(workflow: Workflow(name: "", nodes: [], edges: []), outputCounts: [:]))
        }
        var machine = ExecutionStateMachine(workflow: definition, outputCounts: driver.outputCounts(definition))
        for entry in try await store.journal(executionID: record.id, orgID: record.orgID) {
            _ = machine.handle(entry.event)
        }
        return ExecutionResult(record: record, machine: machine)
    }
}
