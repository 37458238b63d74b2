import FlowStackCore
import Foundation
import Logging
import NIOSSL
import PostgresKit
import PostgresNIO
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

    /// How `listen` connects: a connection of its own per channel, outside the pool, so listening
    /// takes no connection from the work.
    private let listenConfiguration: PostgresConnection.Configuration

    private init(client: PostgresClient, listenConfiguration: PostgresConnection.Configuration, timeouts: DatabaseTimeouts, logger: Logger)
    {
        self.client = client
        self.listenConfiguration = listenConfiguration
        self.logger = logger
        self.timeouts = timeouts
        let deadline = timeouts.call
        self.batcher = InsertBatcher(maximumInFlight: Self.insertStatementsInFlight, logger: logger, isRowError: Self.isRowError) {
            statement in
            try await DeadlineRunner.shared.run(within: deadline) {
                try await client.withConnection { connection in
                    try Self.checkOpen(connection)
                    try await connection.sql().execute(sql: statement) { _ in }
                }
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
        // Every time a pooled connection goes idle, PostgresNIO's pool starts a keep-alive timer
        // (30 s) and an idle timer (60 s), and cancels them when the connection is leased again.
        // A cancelled `Task.sleep` on Linux still holds its task and dispatch timer until the
        // deadline it was set for, so at ~2,000 leases a second the server held ~170,000 sleeping
        // timers (RSS +147 MiB, flat only once the first ones expired). No keep-alive query (a
        // dead connection fails its call at once or at the call deadline) and a short idle
        // timeout keep that to seconds' worth of leases.
        configuration.options.keepAliveBehavior = nil
        configuration.options.connectionIdleTimeout = .seconds(5)
        configuration.options.connectTimeout = min(.seconds(10), timeouts.call)
        // Sent in the start-up message: a session of FlowStack's that stalls (a frozen process
        // inside a transaction, a statement stuck on a lock) is ended by the server.
        configuration.options.additionalStartupParameters = timeouts.startupParameters
        return configuration
    }

    public static func open(url: String, timeouts: DatabaseTimeouts = .init(), logger: Logger) async throws -> PostgresStore {
        let client = PostgresClient(configuration: try configuration(url: url, timeouts: timeouts), backgroundLogger: logger)
        let store = PostgresStore(
            client: client, listenConfiguration: try connectionConfiguration(url: url, timeouts: timeouts), timeouts: timeouts,
            logger: logger)
        do {
            // The first check uses a connection of its own, not the pool: it reports why
            // PostgreSQL cannot be reached at once (the pool would retry), and by the time it has
            // connected, the pool's run loop, started above, is running before anything leases
            // from it.
            try await checkReachable(url: url, timeouts: timeouts, logger: logger)
            try await store.ping()
        } catch {
            await store.close()
            throw DatabaseError(
                "cannot reach PostgreSQL at \(DatabaseLocation.postgres(url: url).redacted): \(String(reflecting: error).prefix(300))")
        }
        return store
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            return try await DeadlineRunner.shared.run(within: timeouts.call) { [client] in
                try await client.withConnection { connection in
                    try Self.checkOpen(connection)
                    return try await body(connection.sql())
                }
            }
        } catch {
            throw Self.unavailable(error) ?? error
        }
    }

    /// A pooled connection in autocommit mode, as `read`: the one statement is its own transaction.
    public func writeSingleStatement<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await read(body)
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
        if let error = error as? DatabaseUnavailable { return error }
        guard let error = error as? PSQLError else { return nil }
        if error.code == .server {
            guard let state = error.serverInfo?[.sqlState] else { return nil }
            if state.hasPrefix("08") || state.hasPrefix("53") || state.hasPrefix("57") || state == "55P03" || state == "25P03" {
                return DatabaseUnavailable("PostgreSQL refused the call (SQLSTATE \(state))")
            }
            return nil
        }
        let connection: Set<PSQLError.Code> = [
            .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown, .poolClosed,
            .queryCancelled, .sslUnsupported,
        ]
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

    /// BEGIN, the body, COMMIT on one pooled connection; ROLLBACK when the body throws, and then the
    /// body's own error, as on SQLite.
    ///
    /// Not PostgresNIO's `withTransaction`: after a statement failed because the connection closed,
    /// it sends ROLLBACK on that closed connection. PostgresNIO writes a query to its channel without
    /// a write promise, so a query written to a closed channel is dropped and its answer never comes:
    /// the call hung until its deadline, and its task never ended. A closed connection has no
    /// transaction left to roll back (PostgreSQL ends it with the session), so none is sent.
    private func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await client.withConnection { [logger] connection in
            try Self.checkOpen(connection)
            try await connection.query("BEGIN", logger: logger)
            let value: T
            do {
                value = try await body(connection.sql())
            } catch {
                if !connection.isClosed {
                    do {
                        try await connection.query("ROLLBACK", logger: logger)
                    } catch {
                        // A session whose ROLLBACK failed may still be inside the transaction: it
                        // must not go back to the pool.
                        try? await connection.close()
                    }
                }
                throw error
            }
            try Self.checkOpen(connection)
            try await connection.query("COMMIT", logger: logger)
            return value
        }
    }

    /// Fails at once on a connection that has closed: a statement written to it would never be
    /// answered (see `transaction`).
    static func checkOpen(_ connection: PostgresConnection) throws {
        if connection.isClosed { throw DatabaseUnavailable("the connection to PostgreSQL closed") }
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

    /// Calls `onPayload` with each NOTIFY's payload on `channel`, and with nil each time listening
    /// (re)starts: whatever was sent while not listening is unknown. Reconnects after a failure.
    func listen(channel: String, onPayload: @escaping @Sendable (String?) -> Void) async {
        let configuration = listenConfiguration
        while !Task.isCancelled {
            do {
                let connection = try await DeadlineRunner.shared.run(within: max(timeouts.call, .seconds(10))) { [logger] in
                    try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
                }
                do {
                    try await connection.listen(on: channel) { notifications in
                        onPayload(nil)
                        for try await notification in notifications { onPayload(notification.payload) }
                    }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch {
                if Task.isCancelled { return }
                logger.warning("listening on \(channel) failed; retrying", metadata: ["error": "\(String(describing: type(of: error)))"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// A single connection's configuration (outside the pool), with FlowStack's session settings.
    private static func connectionConfiguration(url: String, timeouts: DatabaseTimeouts) throws -> PostgresConnection.Configuration {
        let location = try Location(url: url)
        let tls: PostgresConnection.Configuration.TLS
        switch location.sslmode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        default: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user,
            password: location.password, database: location.database, tls: tls)
        configuration.options.additionalStartupParameters = timeouts.startupParameters
        return configuration
    }

    private static func checkReachable(url: String, timeouts: DatabaseTimeouts, logger: Logger) async throws {
        let configuration = try connectionConfiguration(url: url, timeouts: timeouts)
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
