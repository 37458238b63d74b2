import FlowStackStore
import Foundation
import Synchronization

/// Active webhook routes and their workflows, kept for a second so a busy webhook does not read
/// (and decrypt) its workflow on every request. Changes made through this server clear it at
/// once; changes made through another replica are seen within `lifetime`.
final class WebhookCache: Sendable {
    private struct Entry {
        var route: WebhookRoute
        var workflow: StoredWorkflow
        var fetched: ContinuousClock.Instant
    }
    private let entries = Mutex<[String: Entry]>([:])
    let lifetime: Duration

    init(lifetime: Duration = .seconds(1)) {
        self.lifetime = lifetime
    }

    func lookup(_ path: String, store: Store) async throws -> (WebhookRoute, StoredWorkflow)? {
        let now = ContinuousClock.now
        if let entry = entries.withLock({ $0[path] }), now - entry.fetched < lifetime {
            return (entry.route, entry.workflow)
        }
        guard let route = try await store.webhook(path: path), let workflow = try await store.workflow(id: route.workflowID), workflow.active else {
            entries.withLock { _ = $0.removeValue(forKey: path) }
            return nil
        }
        entries.withLock { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[path] = Entry(route: route, workflow: workflow, fetched: now)
        }
        return (route, workflow)
    }

    func invalidate() {
        entries.withLock { $0.removeAll() }
    }
}
