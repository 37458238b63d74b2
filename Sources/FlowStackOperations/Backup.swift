import Crypto
import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Logging

/// What a backup holds besides the database: enough to check, before restoring, that the keys at
/// hand are the right ones. Never any key material: the sealed check values only open with it.
public struct BackupManifest: Codable, Sendable {
    public struct KeyCheck: Codable, Sendable {
        public var keyId: String
        public var purpose: String
        public var sealed: String
    }
    public var format: String
    public var createdAt: Date
    public var database: String
    public var file: String
    public var sha256: String
    public var schemaVersion: Int
    public var keyChecks: [KeyCheck]

    static let formatName = "flowstack-backup/1"
    static let fileName = "manifest.json"
}

public struct BackupError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// `flowstack backup` and `flowstack restore`: a consistent snapshot of the database (SQLite
/// `VACUUM INTO`, or `pg_dump`) plus a manifest, without keys. Restoring checks the keyring against
/// the backup's sealed check values first and refuses the wrong keys before touching anything.
public enum Backups {
    public static func create(store: Store, settings: ServerSettings, to directory: String) async throws -> BackupManifest {
        if FileManager.default.fileExists(atPath: directory),
            !((try? FileManager.default.contentsOfDirectory(atPath: directory))?.isEmpty ?? false)
        {
            throw BackupError("\(directory) exists and is not empty")
        }
        try SecureFile.makeDirectory(directory)
        let checks = try await store.keyChecks().map {
            BackupManifest.KeyCheck(keyId: $0.keyID, purpose: $0.purpose, sealed: $0.sealed.base64EncodedString())
        }
        let schema = try await store.schemaVersion()
        let file: String
        switch settings.resolvedDatabase {
        case .sqlite:
            file = "flowstack.sqlite"
            try await store.snapshot(to: (directory as NSString).appendingPathComponent(file))
        case .postgres(let url):
            file = "flowstack.pgdump"
            let (dbname, password) = try Tool.splitPassword(url)
            try await Tool.run(
                Tool.postgres("pg_dump"),
                [
                    "--format=custom", "--no-owner", "--no-privileges",
                    "--file=\((directory as NSString).appendingPathComponent(file))", "--dbname=\(dbname)",
                ],
                password: password)
        }
        let path = (directory as NSString).appendingPathComponent(file)
        _ = chmod(path, 0o600)
        let manifest = BackupManifest(
            format: BackupManifest.formatName, createdAt: store.now, database: settings.resolvedDatabase.kindName,
            file: file, sha256: try sha256(of: path), schemaVersion: schema, keyChecks: checks)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try SecureFile.write(try encoder.encode(manifest), to: (directory as NSString).appendingPathComponent(BackupManifest.fileName))
        return manifest
    }

    /// Restores a backup into the configured database. Refuses a damaged backup, the wrong keys, and
    /// (without `force`) a database that already holds FlowStack data.
    public static func restore(from directory: String, settings: ServerSettings, force: Bool, logger: Logger) async throws {
        let manifestPath = (directory as NSString).appendingPathComponent(BackupManifest.fileName)
        guard let data = FileManager.default.contents(atPath: manifestPath) else { throw BackupError("\(manifestPath) cannot be read") }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let manifest = try? decoder.decode(BackupManifest.self, from: data), manifest.format == BackupManifest.formatName else {
            throw BackupError("\(manifestPath) is not a FlowStack backup manifest")
        }
        let file = (directory as NSString).appendingPathComponent((manifest.file as NSString).lastPathComponent)
        guard try sha256(of: file) == manifest.sha256 else {
            throw BackupError("\(file) does not match its checksum: the backup is damaged")
        }
        guard manifest.database == settings.resolvedDatabase.kindName else {
            throw BackupError("this is a \(manifest.database) backup; the configured database is \(settings.resolvedDatabase.kindName)")
        }
        guard manifest.schemaVersion <= (Migrations.all.map(\.version).max() ?? 0) else {
            throw BackupError(
                "this backup comes from a newer FlowStack (schema \(manifest.schemaVersion)); restore it with that version or later")
        }
        try checkKeys(manifest, settings: settings)
        switch settings.resolvedDatabase {
        case .sqlite(let target):
            if FileManager.default.fileExists(atPath: target) {
                guard force else { throw BackupError("\(target) exists; give --force to replace it (stop the servers first)") }
            }
            try SecureFile.makeDirectory((target as NSString).deletingLastPathComponent)
            // Copied next to the target first, then renamed over it: a failed copy leaves the old database.
            let staging = target + ".restoring"
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.copyItem(atPath: file, toPath: staging)
            _ = chmod(staging, 0o600)
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: target + suffix) }
            guard rename(staging, target) == 0 else { throw BackupError("\(target) could not be replaced") }
        case .postgres(let url):
            let database = try await DatabaseFactory.open(.postgres(url: url), logger: logger)
            let initialized = try await Migrations.isInitialized(database)
            await database.close()
            guard !initialized || force else { throw BackupError("the database already holds FlowStack data; give --force to replace it") }
            let (dbname, password) = try Tool.splitPassword(url)
            try await Tool.run(
                Tool.postgres("pg_restore"),
                [
                    "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
                    "--exit-on-error", "--dbname=\(dbname)", file,
                ], password: password)
        }
        // Opening it as the server would: migrations, and the keyring checked against it once more.
        let store = try await Bootstrap.openStore(settings: settings, logger: logger)
        await store.database.close()
    }

    /// Every key that sealed data in the backup must be in the keyring and open its check value.
    static func checkKeys(_ manifest: BackupManifest, settings: ServerSettings) throws {
        guard let keyring = try KeyringSource.from(settings).load() else {
            throw BackupError("no keyring: restoring needs the keyring the backup was made with (\(KeyringSource.from(settings)))")
        }
        let sealer = Sealer(keyring: keyring)
        for check in manifest.keyChecks {
            guard let purpose = KeyPurpose(rawValue: check.purpose), let sealed = Data(base64Encoded: check.sealed) else {
                throw BackupError("the manifest's key check for \(check.keyId) is malformed")
            }
            guard keyring.key(id: check.keyId, purpose: purpose) != nil else {
                throw BackupError(
                    "the keyring does not contain the \(purpose.rawValue) key '\(check.keyId)' this backup was sealed with; nothing was restored"
                )
            }
            do {
                _ = try sealer.open(
                    sealed, purpose: purpose, context: SealContext(table: "key_checks", rowID: check.keyId, column: "sealed", orgID: nil))
            } catch {
                throw BackupError("the keyring's key '\(check.keyId)' is not the one this backup was sealed with; nothing was restored")
            }
        }
    }

    static func sha256(of path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw BackupError("\(path) cannot be read") }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return Token.hex(hasher.finalize())
    }
}

extension DatabaseLocation {
    var kindName: String {
        switch self {
        case .sqlite: "sqlite"
        case .postgres: "postgres"
        }
    }
}

/// Runs PostgreSQL's client tools on a thread of their own.
enum Tool {
    /// FLOWSTACK_PG_BIN, then PATH, then the newest Debian cluster's tools.
    static func postgres(_ name: String) -> String {
        let environment = ProcessInfo.processInfo.environment
        var directories = [environment["FLOWSTACK_PG_BIN"]].compactMap { $0 }
        directories += (environment["PATH"] ?? "/usr/bin:/usr/local/bin").split(separator: ":").map(String.init)
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).compactMap(Int.init).sorted(
            by: >)
        directories += versions.map { "/usr/lib/postgresql/\($0)/bin" }
        return directories.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/bin/" + name
    }

    /// The URL without its password, and the password (passed through PGPASSWORD, so it never
    /// shows in the process list).
    static func splitPassword(_ url: String) throws -> (String, String?) {
        guard var components = URLComponents(string: url) else {
            throw BackupError("the database URL cannot be parsed; give it as postgres://user:password@host:port/database")
        }
        guard let password = components.password else { return (url, nil) }
        components.password = nil
        return (components.string ?? url, password.removingPercentEncoding ?? password)
    }

    static func run(_ executable: String, _ arguments: [String], password: String? = nil) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = arguments
                if let password { process.environment = ProcessInfo.processInfo.environment.merging(["PGPASSWORD": password]) { $1 } }
                process.standardInput = FileHandle.nullDevice
                let errors = Pipe()
                process.standardError = errors
                do {
                    try process.run()
                } catch {
                    continuation.resume(
                        throwing: BackupError("\(executable) cannot be run: install the PostgreSQL client tools or set FLOWSTACK_PG_BIN"))
                    return
                }
                let message = errors.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                if process.terminationStatus == 0 {
                    continuation.resume()
                } else {
                    // The tools' messages may quote the connection string: keep only the first line, without URLs.
                    let first = String(decoding: message, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
                    let cleaned = first.replacingOccurrences(of: #"postgres(ql)?://\S+"#, with: "<database>", options: .regularExpression)
                    continuation.resume(throwing: BackupError("\((executable as NSString).lastPathComponent) failed: \(cleaned)"))
                }
            }.start()
        }
    }
}
