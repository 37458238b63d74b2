import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Logging
import PostgresNIO

/// The storage engines every storage-touching test runs on.
public enum Backend: String, Sendable, CaseIterable, CustomStringConvertible {
    case sqlite
    case postgres

    public var description: String { rawValue }
}

/// A fresh, empty database for one test: a SQLite file in a new temporary directory, or a new
/// PostgreSQL database in the cluster named by `FLOWSTACK_TEST_POSTGRES_URL` (which
/// `make test` starts). A missing PostgreSQL is a test failure, never a silent skip.
public struct TestDatabase: Sendable {
    public let backend: Backend
    public let directory: String
    public let location: DatabaseLocation

    public static let postgresURLVariable = "FLOWSTACK_TEST_POSTGRES_URL"

    public struct MissingPostgres: Error, CustomStringConvertible {
        public var description: String {
            "\(TestDatabase.postgresURLVariable) is not set: run the suite with `make test`, which starts a throwaway PostgreSQL"
        }
    }

    public static func make(_ backend: Backend) async throws -> TestDatabase {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flowstack-test-\(Identifier.make("t"))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        switch backend {
        case .sqlite:
            return TestDatabase(backend: backend, directory: directory, location: .sqlite(path: directory + "/flowstack.sqlite"))
        case .postgres:
            guard let admin = ProcessInfo.processInfo.environment[postgresURLVariable] else { throw MissingPostgres() }
            let name = "fs_" + Identifier.make("t").dropFirst(2).lowercased()
            let client = PostgresClient(configuration: try PostgresStore.configuration(url: admin))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
                group.cancelAll()
            }
            var components = URLComponents(string: admin)!
            components.path = "/" + name
            return TestDatabase(backend: backend, directory: directory, location: .postgres(url: components.string!))
        }
    }

    /// Opens the database as FlowStack would, with a new keyring, migrated.
    public func openStore(keyring: Keyring = .generate(), clock: any WallClock = ManualClock()) async throws -> Store {
        let database = try await DatabaseFactory.open(location, logger: Logger(label: "test"))
        do {
            try await Migrations.apply(to: database, logger: Logger(label: "test"))
            let store = Store(database: database, sealer: Sealer(keyring: keyring), clock: clock)
            try await store.verifyKeyring()
            return store
        } catch {
            await database.close()
            throw error
        }
    }

    /// All bytes the database holds on disk (SQLite file and WAL), or a `pg_dump` of it.
    public func rawBytes() throws -> Data {
        switch location {
        case .sqlite(let path):
            var data = Data()
            for file in [path, path + "-wal"] {
                if let bytes = FileManager.default.contents(atPath: file) { data += bytes }
            }
            return data
        case .postgres(let url):
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.pgDump)
            process.arguments = ["--no-owner", "--data-only", "--dbname=\(url)"]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            // pg_dump closes its output when it exits. No waitUntilExit(): on Linux it waits for a
            // Dispatch source that a busy test process may never get to run.
            return pipe.fileHandleForReading.readDataToEndOfFile()
        }
    }

    static var pgDump: String {
        ProcessInfo.processInfo.environment["FLOWSTACK_TEST_PG_BIN"].map { $0 + "/pg_dump" } ?? "/usr/lib/postgresql/15/bin/pg_dump"
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

extension Data {
    /// Whether `marker` occurs anywhere in these bytes.
    public func contains(marker: String) -> Bool {
        range(of: Data(marker.utf8)) != nil
    }
}

/// The `flowstack-sandbox` built next to the tests.
public let sandboxExecutable: String = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug/flowstack-sandbox").path
}()
