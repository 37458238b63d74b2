import FlowStackCore
import FlowStackNodes
import FlowStackRuntime
import FlowStackStore
import Foundation
import Logging
import ServiceLifecycle

/// Starts executions of active workflows' Schedule triggers.
///
/// Each trigger's next due time is a row of the `schedules` table, kept up to date when a
/// workflow is activated, deactivated, saved or deleted; a pass reads only the rows that are due
/// (an index range), so an idle server's cost does not grow with its active workflows.
///
/// Each due time fires once: the fire is recorded in `schedule_fires` (primary key workflow,
/// node, due time) in the same transaction that accepts the execution and moves the trigger to
/// its next due time, so a restart or a second replica cannot fire it again. Catch-up policy:
/// after an outage, due times missed within `catchUpWindow` are collapsed into one execution for
/// the most recent of them; older ones are skipped. A trigger counts from when its workflow was
/// activated.
public struct Scheduler: Service {
    let engine: ExecutionEngine
    let logger: Logger
    public var tick: TimeInterval = 1
    public var catchUpWindow: TimeInterval = 3600
    /// Due triggers handled per pass at most; the rest wait for the next pass.
    public var batch = 500

    public init(engine: ExecutionEngine, logger: Logger) {
        self.engine = engine
        self.logger = logger
    }

    /// The Schedule triggers of a workflow definition (what `Store.setWorkflowActive` keeps).
    public static func triggers(of definition: Workflow) -> [ScheduleTrigger] {
        let zone = definition.settings.timezone.flatMap(TimeZone.init(identifier:)) ?? TimeZone(identifier: "UTC")!
        return definition.nodes.compactMap { node in
            guard node.type == ScheduleNode.descriptor.type, let rule = ScheduleRule(parameters: node.parameters) else { return nil }
            return ScheduleTrigger(node: node.name, rule: rule, timeZone: zone)
        }
    }

    public func run() async throws {
        do {
            try await addMissingSchedules()
        } catch {
            logger.warning("adding the due times of active schedules failed", metadata: ["error": "\(String(describing: type(of: error)))"])
        }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await fireDue()
            } catch {
                logger.warning("scheduler pass failed", metadata: ["error": "\(String(describing: type(of: error)))"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(tick)) }
        }
    }

    /// Gives active workflows saved before the `schedules` table existed their due times (once,
    /// at start: the only pass over every active workflow).
    public func addMissingSchedules() async throws {
        for workflow in try await engine.store.activeWorkflows() {
            let triggers = Self.triggers(of: workflow.definition)
            if !triggers.isEmpty { _ = try await engine.store.addMissingSchedules(workflowID: workflow.id, triggers: triggers) }
        }
    }

    /// One pass: fires every trigger whose due time has come. Returns the executions started.
    @discardableResult
    public func fireDue() async throws -> [ExecutionRecord] {
        let store = engine.store
        let now = store.now
        var started: [ExecutionRecord] = []
        for due in try await store.dueSchedules(at: now, limit: batch) {
            // One trigger that fails (a definition that does not open, a refused insert) is
            // logged and skipped: the due rows come earliest first, so throwing here would stop
            // every schedule behind it on every pass.
            do {
                if let inserted = try await fire(due, at: now) { started.append(inserted) }
            } catch {
                logger.warning(
                    "a scheduled trigger failed",
                    metadata: [
                        "workflow": "\(due.workflowID)", "node": "\(due.node)",
                        "error": "\(String(describing: type(of: error)))",
                    ])
            }
        }
        if !started.isEmpty { engine.wake.yield() }
        return started
    }

    /// Fires one due trigger and moves it to its next due time; nil when nothing was started.
    private func fire(_ due: Store.DueSchedule, at now: Date) async throws -> ExecutionRecord? {
        let store = engine.store
        let workflow = try await store.workflow(id: due.workflowID)
        let trigger = workflow.flatMap { $0.active ? Self.triggers(of: $0.definition).first { $0.node == due.node } : nil }
        guard let workflow, let trigger else {
            // The workflow or its trigger is gone: its row goes too.
            try await store.write { db in
                _ = try await store.moveSchedule(workflowID: due.workflowID, node: due.node, from: due.dueAt, to: nil, on: db)
            }
            return nil
        }
        let fire = trigger.rule.latest(from: max(due.dueAt, now.addingTimeInterval(-catchUpWindow)), upTo: now, in: trigger.timeZone)
        let next = trigger.rule.next(after: now, in: trigger.timeZone)
        let record = ExecutionRecord(
            orgID: workflow.orgID, projectID: workflow.projectID, workflowID: workflow.id,
            versionID: workflow.versionID, mode: .schedule, triggerNode: trigger.node, createdAt: now)
        let inserted: ExecutionRecord? = try await store.write { db in
            // Moved by another replica since it was read: that replica fires it.
            guard try await store.moveSchedule(workflowID: workflow.id, node: trigger.node, from: due.dueAt, to: next, on: db) else {
                return nil
            }
            guard let fire,
                try await store.claimScheduleFire(workflowID: workflow.id, node: trigger.node, dueAt: fire, executionID: record.id, on: db)
            else {
                return nil
            }
            let item = Item(json: .object(["timestamp": .string(RFC3339.format(fire)), "timezone": .string(trigger.timeZone.identifier)]))
            return try await store.insertExecution(
                record, start: .start(trigger: trigger.node, items: [item]), leaseOwner: nil, leaseUntil: nil, on: db)
        }
        return inserted
    }
}
