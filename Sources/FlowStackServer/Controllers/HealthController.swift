import FlowStackCore
import FlowStackStore
import Hummingbird

/// Liveness and readiness probes.
struct HealthController {
    let store: Store

    struct Status: Encodable { var status: String }

    func addRoutes(to router: Router<FlowStackRequestContext>) {
        router.get("healthz") { _, _ in try JSON.response(.ok, Status(status: "ok")) }
        router.get("readyz") { _, context in
            do {
                try await store.database.ping()
                return try JSON.response(.ok, Status(status: "ready"))
            } catch {
                context.logger.warning("readiness check failed", metadata: ["error": "\(String(describing: error).prefix(300))"])
                throw FlowStackError(status: 503, code: "database_unavailable", message: "The database is not reachable.")
            }
        }
    }
}
