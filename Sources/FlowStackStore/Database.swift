import FlowStackCore
import Logging
import SQLKit

/// Which SQL engine a `Database` talks to.
public enum DatabaseKind: String, Sendable {
    case sqlite
    case postgres
}

/// The storage FlowStack runs on: SQLite (embedded default) or PostgreSQL, behind one interface
/// that the repositories are written against.
public protocol Database: Sendable {
    var kind: DatabaseKind { get }

    /// Runs `body` against a connection for reading; it sees committed data.
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T

    /// Runs `body` in a transaction: all of its changes are committed together, or none are when
    /// it throws.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T

    /// Runs `body`, which sends exactly one statement that changes data. A single statement is
    /// atomic on its own, so PostgreSQL runs it without BEGIN and COMMIT (two round trips fewer);
    /// on SQLite it is a `write`.
    func writeSingleStatement<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T

    /// Runs `body` in a transaction without the deadlines of ordinary calls (migrations).
    func maintenance<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T

    /// Checks that the database answers (readiness).
    func ping() async throws

    func close() async
}

extension Database {
    public func writeSingleStatement<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await write(body)
    }

    public func maintenance<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await write(body)
    }
}

/// How a `Database` is reached, parsed from `--database`.
public enum DatabaseLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(url: String)

    /// `postgres://…` or `postgresql://…` selects PostgreSQL; `sqlite:PATH` or a plain path, SQLite.
    public static func parse(_ value: String) -> DatabaseLocation {
        if value.hasPrefix("postgres://") || value.hasPrefix("postgresql://") {
            return .postgres(url: value)
        }
        if value.hasPrefix("sqlite:") {
            return .sqlite(path: String(value.dropFirst("sqlite:".count)))
        }
        return .sqlite(path: value)
    }

    /// A description safe to log (no password).
    public var redacted: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let url):
            if let at = url.lastIndex(of: "@"), let scheme = url.range(of: "://") {
                url[..<scheme.upperBound] + "…" + url[at...]
            } else {
                "postgres"
            }
        }
    }
}

public enum DatabaseFactory {
    public static func open(_ location: DatabaseLocation, timeouts: DatabaseTimeouts = .init(), logger: Logger) async throws -> any Database
    {
        switch location {
        case .sqlite(let path):
            try await SQLiteStore.open(path: path, logger: logger)
        case .postgres(let url):
            try await PostgresStore.open(url: url, timeouts: timeouts, logger: logger)
        }
    }
}

/// The database could not carry out a call for a reason of its own, not of the data: the
/// connection died, the server is restarting or shutting down, a statement or lock timeout ended
/// the call. Such a call may be retried; the HTTP answer is 503.
public struct DatabaseUnavailable: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
