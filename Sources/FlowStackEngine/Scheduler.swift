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
    ///
    /// The due triggers are fired in groups of `group`: one read of their workflows, and one
    /// transaction that moves them, records their fires and accepts their executions, with one
    /// notice to the workers. A group whose transaction fails for a reason other than the
    /// database being unreachable is fired again one trigger at a time, so one trigger that
    /// fails (a definition that does not open, a refused insert) stops only itself: the due rows
    /// come earliest first, and throwing here would stop every schedule behind it on every pass.
    @discardableResult
    public func fireDue() async throws -> [ExecutionRecord] {
        let now = engine.store.now
        let due = try await engine.store.dueSchedules(at: now, limit: batch)
        var started: [ExecutionRecord] = []
        for first in stride(from: 0, to: due.count, by: group) {
            let triggers = Array(due[first..<min(first + group, due.count)])
            do {
                started += try await fire(triggers, at: now)
            } catch let error as DatabaseUnavailable {
                // Nothing would get through: the next pass tries again.
                if !started.isEmpty { engine.wake.yield() }
                throw error
            } catch {
                for trigger in triggers {
                    do {
                        started += try await fire([trigger], at: now)
                    } catch {
                        logger.warning(
                            "a scheduled trigger failed",
                            metadata: [
                                "workflow": "\(trigger.workflowID)", "node": "\(trigger.node)",
                                "error": "\(String(describing: type(of: error)))",
                            ])
                    }
                }
            }
        }
        if !started.isEmpty { engine.wake.yield() }
        return started
    }

    /// Due triggers fired in one transaction at most.
    public var group = 100

    /// What firing one due trigger does.
    private enum Step {
        /// The workflow or its trigger is gone: its row goes too.
        case drop(Store.DueSchedule)
        /// Moved to `next`; an execution for the due time `fire`, unless it is nil (older than
        /// the catch-up window).
        case fire(Store.DueSchedule, next: Date?, fire: Date?, record: ExecutionRecord, timeZone: String)
    }

    /// Fires due triggers in one transaction and moves them to their next due times; returns the
    /// executions started.
    private func fire(_ due: [Store.DueSchedule], at now: Date) async throws -> [ExecutionRecord] {
        let store = engine.store
        let workflows = try await store.workflows(ids: Array(Set(due.map(\.workflowID))))
        let steps: [Step] = due.map { due in
            let workflow = workflows[due.workflowID]
            let trigger = workflow.flatMap { $0.active ? Self.triggers(of: $0.definition).first { $0.node == due.node } : nil }
            guard let workflow, let trigger else { return .drop(due) }
            return .fire(
                due,
                next: trigger.rule.next(after: now, in: trigger.timeZone),
                fire: trigger.rule.latest(from: max(due.dueAt, now.addingTimeInterval(-catchUpWindow)), upTo: now, in: trigger.timeZone),
                record: ExecutionRecord(
                    orgID: workflow.orgID, projectID: workflow.projectID, workflowID: workflow.id,
                    versionID: workflow.versionID, mode: .schedule, triggerNode: trigger.node, createdAt: now),
                timeZone: trigger.timeZone.identifier)
        }
        return try await store.write { db in
            var inserted: [ExecutionRecord] = []
            for step in steps {
                switch step {
                case .drop(let due):
                    _ = try await store.moveSchedule(workflowID: due.workflowID, node: due.node, from: due.dueAt, to: nil, on: db)
                case .fire(let due, let next, let fire, let record, let timeZone):
                    // Moved by another replica since it was read: that replica fires it.
                    guard try await store.moveSchedule(workflowID: due.workflowID, node: due.node, from: due.dueAt, to: next, on: db),
                        let fire,
                        try await store.claimScheduleFire(
                            workflowID: due.workflowID, node: due.node, dueAt: fire, executionID: record.id, on: db)
                    else { continue }
                    let item = Item(json: .object(["timestamp": .string(RFC3339.format(fire)), "timezone": .string(timeZone)]))
                    inserted.append(
                        try await store.insertExecution(
                            record, start: .start(trigger: due.node, items: [item]), leaseOwner: nil, leaseUntil: nil, notify: false,
                            on: db))
                }
            }
            if !inserted.isEmpty { try await store.notifyQueued(on: db) }
            return inserted
        }
    }
}
