import FlowStackCore
import ServiceLifecycle

extension Store {
    /// Calls `onPayload` with every announcement on `channel` and with nil whenever listening
    /// (re)starts, until the task is cancelled. Only PostgreSQL announces across processes; on
    /// SQLite (one process) this returns at once and the caller relies on its own polling.
    public func listen(_ channel: String, onPayload: @escaping @Sendable (String?) -> Void) async {
        guard let postgres = database as? PostgresStore else { return }
        await postgres.listen(channel: channel, onPayload: onPayload)
    }
}

/// Delivers the changes other replicas announce (`Store.write(announcing:_:)`) to this
/// process's caches. Each time it starts listening it delivers `.everything`, since what was
/// announced while it was not listening is unknown.
public struct ChangeListener: Service {
    let store: Store
    let onListening: @Sendable () -> Void

    /// `onListening` is called each time listening (re)starts, before `.everything` is delivered.
    public init(store: Store, onListening: @escaping @Sendable () -> Void = {}) {
        self.store = store
        self.onListening = onListening
    }

    /// Listens until the task is cancelled (returns at once on SQLite).
    public func listen() async {
        let changes = store.changes
        let onListening = self.onListening
        await store.listen(Store.changeChannel) { payload in
            if let payload {
                changes.deliver(Change(payload: payload))
            } else {
                onListening()
                changes.deliver(.everything)
            }
        }
    }

    /// Listens until graceful shutdown; ending then (listening cancelled) is a clean stop.
    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            await listen()
            // SQLite: nothing to listen to; stay up until shutdown like every other service.
            try await gracefulShutdown()
        }
    }
}
