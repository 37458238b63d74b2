import FlowStackCore
import Foundation
import Logging
import PostgresKit
import PostgresNIO
import NIOSSL
import SQLKit
import ServiceLifecycle

/// PostgreSQL through PostgresNIO's connection pool. The pool runs as a `Service`; `open` starts
/// it in a task group member owned by this store until `close`.
public final class PostgresStore: Database, @unchecked Sendable {
    public let kind = DatabaseKind.postgres
    public let client: PostgresClient
    private let logger: Logger
    private let runner: Task<Void, Never>
    private let batcher: InsertBatcher
    /// Deadlines for every call, and the session settings that release a stalled session's locks.
    public let timeouts: DatabaseTimeouts

    private init(client: PostgresClient, timeouts: DatabaseTimeouts, logger: Logger) {
        self.client = client
        self.logger = logger
        self.timeouts = timeouts
        let deadline = timeouts.call
        self.batcher = InsertBatcher(maximumInFlight: Self.insertStatementsInFlight, logger: logger, isRowError: Self.isRowError) { statement in
            try await DeadlineRunner.shared.run(within: deadline) {
                try await client.withConnection { connection in try await connection.sql().execute(sql: statement) { _ in } }
            }
        }
        // The pool's run loop must live as long as the store; it ends when `close` cancels it.
        self.runner = Task { await client.run() }
    }

    /// The parts of a `postgres://user:password@host:port/database?sslmode=…` URL.
    struct Location {
        var host: String
        var port: Int
        var user: String
        var password: String?
        var database: String?
        /// `disable`, `prefer`, or anything else: require.
        var sslmode: String

        init(url: String) throws {
            guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
                throw DatabaseError("the PostgreSQL URL is not valid (expected postgres://user:password@host:port/database)")
            }
            self.host = host
            port = components.port ?? 5432
            user = components.user ?? "postgres"
            password = components.password
            let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            database = path.isEmpty ? nil : path
            sslmode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        }
    }

    public static func configuration(url: String, timeouts: DatabaseTimeouts = .init()) throws -> PostgresClient.Configuration {
        let location = try Location(url: url)
        let tls: PostgresClient.Configuration.TLS
        switch location.sslmode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        default: tls = .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.user,
            password: location.password, database: location.database, tls: tls
        )
        configuration.options.maximumConnections = 16
        configuration.options.connectTimeout = min(.seconds(10), timeouts.call)
        // Sent in the start-up message: a session of FlowStack's that stalls (a frozen process
        // inside a transaction, a statement stuck on a lock) is ended by the server.
        configuration.options.additionalStartupParameters = timeouts.startupParameters
        return configuration
    }

    public static func open(url: String, timeouts: DatabaseTimeouts = .init(), logger: Logger) async throws -> PostgresStore {
        let client = PostgresClient(configuration: try configuration(url: url, timeouts: timeouts), backgroundLogger: logger)
        let store = PostgresStore(client: client, timeouts: timeouts, logger: logger)
        do {
            // The first check uses a connection of its own, not the pool: it reports why
            // PostgreSQL cannot be reached at once (the pool would retry), and by the time it has
            // connected, the pool's run loop, started above, is running before anything leases
            // from it.
            try await checkReachable(url: url, timeouts: timeouts, logger: logger)
            try await store.ping()
        } catch {
            await store.close()
            throw DatabaseError("cannot reach PostgreSQL at \(DatabaseLocation.postgres(url: url).redacted): \(String(reflecting: error).prefix(300))")
        }
        return store
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            return try await DeadlineRunner.shared.run(within: timeouts.call) { [client] in
                try await client.withConnection { connection in
                    try await body(connection.sql())
                }
            }
        } catch {
            throw Self.unavailable(error) ?? error
        }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            return try await DeadlineRunner.shared.run(within: timeouts.call) { [self] in
                try await transaction(body)
            }
        } catch {
            throw Self.unavailable(error) ?? error
        }
    }

    /// `error` as `DatabaseUnavailable` when the connection or the server, not the data, made the
    /// call fail; nil otherwise. SQLSTATE classes 08 (connection), 53 (resources) and 57
    /// (operator intervention: shutdown, restart, statement timeout), lock and idle-in-transaction
    /// timeouts, and the driver's own connection errors.
    static func unavailable(_ error: any Error) -> DatabaseUnavailable? {
        if let transaction = error as? PostgresTransactionError {
            for inner in [transaction.beginError, transaction.commitError, transaction.closureError, transaction.rollbackError].compactMap({ $0 }) {
                if let found = unavailable(inner) { return found }
            }
            return nil
        }
        guard let error = error as? PSQLError else { return nil }
        if error.code == .server {
            guard let state = error.serverInfo?[.sqlState] else { return nil }
            if state.hasPrefix("08") || state.hasPrefix("53") || state.hasPrefix("57") || state == "55P03" || state == "25P03" {
                return DatabaseUnavailable("PostgreSQL refused the call (SQLSTATE \(state))")
            }
            return nil
        }
        let connection: Set<PSQLError.Code> = [.serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown, .poolClosed,
                                               .queryCancelled, .sslUnsupported]
        return connection.contains(error.code) ? DatabaseUnavailable("the connection to PostgreSQL failed (\(error.code))") : nil
    }

    public func maintenance<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await transaction { db in
            // Migrations may rebuild large tables: no statement limit for this transaction.
            try await db.raw("SET LOCAL statement_timeout = 0").run()
            try await db.raw("SET LOCAL lock_timeout = 0").run()
            return try await body(db)
        }
    }

    private func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            return try await client.withTransaction(logger: logger) { connection in
                try await body(connection.sql())
            }
        } catch let error as PostgresTransactionError {
            // The transaction was rolled back cleanly: report the body's own error, as SQLite does.
            if let bodyError = error.closureError, error.rollbackError == nil, error.beginError == nil, error.commitError == nil {
                throw bodyError
            }
            throw error
        }
    }

    /// How many merged inserts may run at once (the pool has `maximumConnections`).
    static let insertStatementsInFlight = 2

    /// Whether PostgreSQL refused a statement for what a row holds (integrity constraint or data
    /// exception, SQLSTATE classes 23 and 22), rather than for the connection or the server.
    static func isRowError(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError, error.code == .server, let state = error.serverInfo?[.sqlState] else { return false }
        return state.hasPrefix("23") || state.hasPrefix("22")
    }

    /// Inserts the rows atomically, group-committed with concurrent inserts (`InsertBatcher`). At
    /// most `InsertBatcher.maximumValues` values.
    func insert(_ rows: RowInsert) async throws {
        try await batcher.insert(rows)
    }

    /// Inserts committed so far and the statements that took (for tests and benchmarks).
    var insertStatistics: (inserts: Int, statements: Int) { batcher.statistics }

    /// Calls `onNotification` for every NOTIFY on `channel` (and once each time listening starts, so
    /// nothing sent while the connection was down is missed), until the task is cancelled.
    /// Reconnects after a failure; polling covers the gap.
    public func listen(channel: String, onNotification: @escaping @Sendable () -> Void) async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: channel) { notifications in
                        onNotification()
                        for try await _ in notifications { onNotification() }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("listening for new executions failed; retrying", metadata: ["error": "\(String(describing: type(of: error)))"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private static func checkReachable(url: String, timeouts: DatabaseTimeouts, logger: Logger) async throws {
        let location = try Location(url: url)
        let tls: PostgresConnection.Configuration.TLS
        switch location.sslmode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        default: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var configuration = PostgresConnection.Configuration(host: location.host, port: location.port, username: location.user,
                                                             password: location.password, database: location.database, tls: tls)
        configuration.options.additionalStartupParameters = timeouts.startupParameters
        try await DeadlineRunner.shared.run(within: max(timeouts.call, .seconds(10))) { [configuration] in
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
            do {
                _ = try await connection.query("SELECT 1", logger: logger)
            } catch {
                try? await connection.close()
                throw error
            }
            try await connection.close()
        }
    }

    public func ping() async throws {
        try await read { db in try await db.raw("SELECT 1 AS one").run() }
    }

    public func close() async {
        runner.cancel()
        _ = await runner.value
    }
}
