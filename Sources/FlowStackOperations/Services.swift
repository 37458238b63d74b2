import FlowStackStore
import Logging
import ServiceLifecycle

/// Deletes expired sessions, and failed-login counts of unknown addresses gone quiet, periodically.
public struct HousekeepingService: Service {
    let store: Store
    let settings: ServerSettings
    let logger: Logger

    public init(store: Store, settings: ServerSettings, logger: Logger) {
        (self.store, self.settings, self.logger) = (store, settings, logger)
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await store.deleteExpiredSessions(idleTimeout: settings.app.sessionIdleTimeout)
                try await store.deleteStaleLoginFailures(olderThan: settings.app.lockoutDuration)
            } catch {
                logger.warning("housekeeping failed", metadata: ["error": "\(String(describing: error).prefix(300))"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(600)) }
        }
    }
}

/// Closes the database after the listeners have stopped.
public struct StoreCloser: Service {
    let store: Store

    public init(store: Store) {
        self.store = store
    }
    public func run() async throws {
        try? await gracefulShutdown()
        await store.database.close()
    }
}
