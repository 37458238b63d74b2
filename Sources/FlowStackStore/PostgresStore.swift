import FlowStackCore
import Foundation
import Logging
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

    private init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
        self.batcher = InsertBatcher(maximumInFlight: Self.insertStatementsInFlight, logger: logger, isRowError: Self.isRowError) { statement in
            try await client.withConnection { connection in try await connection.sql().execute(sql: statement) { _ in } }
        }
        // The pool's run loop must live as long as the store; it ends when `close` cancels it.
        self.runner = Task { await client.run() }
    }

    public static func configuration(url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
            throw DatabaseError("the PostgreSQL URL is not valid (expected postgres://user:password@host:port/database)")
        }
        let user = components.user ?? "postgres"
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let sslmode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        let tls: PostgresClient.Configuration.TLS
        switch sslmode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        default: tls = .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: user,
            password: components.password, database: database.isEmpty ? nil : database, tls: tls
        )
        configuration.options.maximumConnections = 16
        return configuration
    }

    public static func open(url: String, logger: Logger) async throws -> PostgresStore {
        let store = PostgresStore(client: PostgresClient(configuration: try configuration(url: url), backgroundLogger: logger), logger: logger)
        do {
            try await store.ping()
        } catch {
            await store.close()
            throw DatabaseError("cannot reach PostgreSQL at \(DatabaseLocation.postgres(url: url).redacted): \(String(reflecting: error).prefix(300))")
        }
        return store
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            try await body(connection.sql())
        }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
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

    public func ping() async throws {
        try await read { db in try await db.raw("SELECT 1 AS one").run() }
    }

    public func close() async {
        runner.cancel()
        _ = await runner.value
    }
}
