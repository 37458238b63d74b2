import FlowStackCore
import FlowStackStore
import Foundation

/// Active webhook routes and their workflows, kept for a second so a busy webhook does not read
/// (and decrypt) its workflow on every request. Every announced workflow change (`Change.workflows`,
/// from this replica or, through PostgreSQL, any other) clears it at once. A busy entry is read
/// again in the background before it expires (see `ExpiringCache`), so requests do not queue
/// behind the read.
final class WebhookCache: Sendable {
    private let cache: ExpiringCache<String, (route: WebhookRoute, workflow: StoredWorkflow)>

    init(changes: ChangeBus, lifetime: Duration) {
        let cache = ExpiringCache<String, (route: WebhookRoute, workflow: StoredWorkflow)>(lifetime: lifetime)
        self.cache = cache
        changes.subscribe { change in
            switch change {
            case .workflows, .everything: cache.removeAll()
            case .identities, .variables: break
            }
        }
    }

    func lookup(_ path: String, store: Store) async throws -> (WebhookRoute, StoredWorkflow)? {
        try await cache.value(for: path) {
            guard let route = try await store.webhook(path: path), let workflow = try await store.workflow(id: route.workflowID),
                workflow.active
            else {
                return nil
            }
            return (route, workflow)
        }
    }
}
