import FlowStackCore
import FlowStackStore
import Foundation
import Logging
import ServiceLifecycle

/// Starts executions of active workflows' Schedule triggers.
///
/// Each due time fires once: the fire is recorded in `schedule_fires` (primary key workflow,
/// node, due time) in the same transaction that accepts the execution, so a restart or a second
/// replica cannot fire it again. Catch-up policy: after an outage, due times missed within
/// `catchUpWindow` are collapsed into one execution for the most recent of them; older ones are
/// skipped. A schedule that never fired starts counting from when the scheduler first saw it.
public struct Scheduler: Service {
    let engine: ExecutionEngine
    let logger: Logger
    public var tick: TimeInterval = 1
    public var catchUpWindow: TimeInterval = 3600

    public init(engine: ExecutionEngine, logger: Logger) {
        self.engine = engine
        self.logger = logger
    }

    public func run() async throws {
        var firstSeen: [String: Date] = [:]
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await fireDue(firstSeen: &firstSeen)
            } catch {
                logger.warning("scheduler pass failed", metadata: ["error": "\(String(describing: type(of: error)))"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(tick)) }
        }
    }

    /// One pass: fires every schedule whose due time has come. Returns the executions started.
    @discardableResult
    public func fireDue(firstSeen: inout [String: Date]) async throws -> [ExecutionRecord] {
        let store = engine.store
        let now = store.now
        var started: [ExecutionRecord] = []
        for workflow in try await store.activeWorkflows() {
            let zone = workflow.definition.settings.timezone.flatMap(TimeZone.init(identifier:)) ?? TimeZone(identifier: "UTC")!
            for node in workflow.definition.nodes where node.type == "flowstack.schedule" {
                let key = "\(workflow.id)/\(node.name)"
                let last = try await store.lastScheduleFire(workflowID: workflow.id, node: node.name)
                let from = max(last ?? firstSeen[key, default: now], now.addingTimeInterval(-catchUpWindow))
                if last == nil, firstSeen[key] == nil { firstSeen[key] = now }
                guard let due = latestDue(node, after: from, upTo: now, in: zone) else { continue }
                let record = ExecutionRecord(orgID: workflow.orgID, projectID: workflow.projectID, workflowID: workflow.id,
                                             versionID: workflow.versionID, mode: .schedule, triggerNode: node.name, createdAt: now)
                let item = Item(json: .object(["timestamp": .string(ISO8601.format(due)), "timezone": .string(zone.identifier)]))
                let inserted: ExecutionRecord? = try await store.write { db in
                    guard try await store.claimScheduleFire(workflowID: workflow.id, node: node.name, dueAt: due, executionID: record.id, on: db) else {
                        return nil
                    }
                    return try await store.insertExecution(record, start: .start(trigger: node.name, items: [item]), leaseOwner: nil, leaseUntil: nil, on: db)
                }
                if let inserted { started.append(inserted) }
            }
        }
        if !started.isEmpty { engine.wake.yield() }
        return started
    }

    /// The latest due time in (from, now], if any.
    func latestDue(_ node: WorkflowNode, after from: Date, upTo now: Date, in zone: TimeZone) -> Date? {
        if let text = node.parameters["cron"]?.stringValue, let cron = try? CronExpression(text) {
            var latest: Date?
            var cursor = from
            var steps = 0
            while let next = cron.next(after: cursor, in: zone), next <= now, steps < 10_000 {
                latest = next
                cursor = next
                steps += 1
            }
            return latest
        }
        if let seconds = node.parameters["intervalSeconds"]?.numberValue, seconds >= 1 {
            // Interval schedules are aligned to the epoch so every replica agrees on the due times.
            let due = (now.timeIntervalSince1970 / seconds).rounded(.down) * seconds
            let date = Date(timeIntervalSince1970: due)
            return date > from ? date : nil
        }
        return nil
    }
}
