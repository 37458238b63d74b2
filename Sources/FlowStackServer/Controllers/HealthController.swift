import FlowStackCore
import FlowStackEngine
import FlowStackStore
import Hummingbird
import Logging
import Synchronization

/// Liveness and readiness probes. `/readyz` answers 503 while the database does not answer
/// within a few seconds or the execution worker has stalled, so a load balancer stops sending
/// work to a replica that cannot carry it.
struct HealthController {
    let store: Store
    let engine: ExecutionEngine
    /// How long the database may take to answer the readiness check.
    var pingDeadline: Duration = .seconds(3)
    /// How long the worker may go without a turn of its loop (or with failing claims).
    var workerStall: Duration = .seconds(20)
    let transitions = ReadinessLog()

    struct Status: Encodable {
        var status: String
        var database: String?
        var worker: String?
    }

    func addRoutes(to router: Router<FlowStackRequestContext>) {
        router.get("healthz") { _, _ in try JSON.response(.ok, Status(status: "ok")) }
        router.get("readyz") { _, context in
            var problems: [String] = []
            var failing: [String] = []
            let status = Status(status: "ready", database: "ok", worker: "ok")
            do {
                try await DeadlineRunner.shared.run(within: pingDeadline) { [store] in try await store.database.ping() }
            } catch {
                failing.append("database")
                problems.append("the database did not answer: \(String(describing: error).prefix(200))")
            }
            if let problem = engine.health.problem(stall: workerStall) {
                failing.append("worker")
                problems.append(problem)
            }
            transitions.report(failing, problems, logger: context.logger)
            guard problems.isEmpty else {
                let error = FlowStackError(status: 503, code: "not_ready", message: "Not ready: \(problems.joined(separator: "; ")).")
                return try JSON.response(.serviceUnavailable, ErrorBody(error))
            }
            return try JSON.response(.ok, status)
        }
    }
}

/// Logs readiness once per change of what fails (not once per probe).
final class ReadinessLog: Sendable {
    private let last = Mutex<[String]>([])

    func report(_ failing: [String], _ problems: [String], logger: Logger) {
        let changed = last.withLock { last -> Bool in
            defer { last = failing }
            return last != failing
        }
        guard changed else { return }
        if problems.isEmpty {
            logger.notice("ready again")
        } else {
            logger.error("not ready", metadata: ["problems": "\(problems.joined(separator: "; "))"])
        }
    }
}
