import FlowStackCore
import FlowStackCrypto
import FlowStackStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Where the keyring comes from: the environment, a file, a command that prints it (a KMS or
/// vault CLI), or `<data-dir>/keyring.json`. Key material is never stored in the database.
public enum KeyringSource: Sendable, CustomStringConvertible {
    case environment(String)
    case file(String)
    case command(String)
    case dataDirectory(String)

    public static func from(_ settings: ServerSettings) -> KeyringSource {
        if let json = settings.keyringJSON { return .environment(json) }
        if let command = settings.keyringCommand { return .command(command) }
        if let path = settings.keyringFile { return .file(path) }
        return .dataDirectory((settings.dataDirectory as NSString).appendingPathComponent("keyring.json"))
    }

    public var description: String {
        switch self {
        case .environment: "FLOWSTACK_KEYRING"
        case .file(let path): "the keyring file \(path) (FLOWSTACK_KEYRING_FILE)"
        case .command: "the keyring command (FLOWSTACK_KEYRING_COMMAND)"
        case .dataDirectory(let path): path
        }
    }

    /// Whether `save` can write a changed keyring back.
    public var isWritable: Bool {
        switch self {
        case .file, .dataDirectory: true
        case .environment, .command: false
        }
    }

    /// The keyring, or nil when a data-directory keyring does not exist yet.
    public func load() throws -> Keyring? {
        do {
            switch self {
            case .environment(let json):
                return try Keyring(json: Data(json.utf8))
            case .file(let path):
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw StartupError("\(description) cannot be read")
                }
                return try Keyring(json: data)
            case .command(let command):
                return try Keyring(json: try Self.output(of: command))
            case .dataDirectory(let path):
                guard let data = FileManager.default.contents(atPath: path) else { return nil }
                if let mode = SecureFile.mode(of: path), mode & 0o077 != 0 {
                    throw StartupError("\(path) is readable by other users (mode \(String(mode, radix: 8))); run chmod 600 on it")
                }
                return try Keyring(json: data)
            }
        } catch let error as KeyringError {
            throw StartupError("the keyring from \(description) is invalid: \(error.description)")
        }
    }

    /// Loads on a thread of its own (a command may take a while; the concurrency pool must not wait).
    public func loadInBackground() async throws -> Keyring? {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try self.load() }) }.start()
        }
    }

    /// Writes the keyring back (mode 0600, atomically).
    public func save(_ keyring: Keyring) throws {
        switch self {
        case .file(let path), .dataDirectory(let path):
            try SecureFile.write(keyring.json(), to: path)
        case .environment, .command:
            throw StartupError(
                "\(description) cannot be written: give --output FILE and store the new keyring where \(description) reads it")
        }
    }

    /// The standard output of `/bin/sh -c command` (its standard error passes through); fails on a
    /// non-zero exit or after `timeout` seconds. The command runs in a process group of its own
    /// (Foundation's `Process` makes the child a group leader): on timeout the whole group is
    /// killed, so a grandchild holding the pipe cannot keep startup waiting.
    static func output(of command: String, timeout: TimeInterval = 30) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let group = process.processIdentifier
        let finished = Mutex(false)
        let timedOut = Mutex(false)
        let timer = Thread {
            Thread.sleep(forTimeInterval: timeout)
            // While the output is still being read, some member of the group holds the pipe, so
            // the group (and its id) still exists.
            if !finished.withLock({ $0 }) {
                timedOut.withLock { $0 = true }
                kill(-group, SIGKILL)
            }
        }
        timer.start()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        finished.withLock { $0 = true }
        guard !timedOut.withLock({ $0 }) else {
            throw StartupError("the keyring command did not finish within \(Int(timeout)) seconds and was killed")
        }
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw StartupError(
                process.terminationReason == .uncaughtSignal
                    ? "the keyring command was stopped (signal \(process.terminationStatus))"
                    : "the keyring command failed (exit status \(process.terminationStatus))")
        }
        return data
    }
}

/// Picks up a rotated keyring without a restart: when the database names a key this process does
/// not have (`flowstack keys rotate` recorded it), the keyring is loaded again from its source.
public struct KeyringWatcher: Service {
    let store: Store
    let source: KeyringSource
    let logger: Logger
    var interval: Duration = .seconds(5)

    public init(store: Store, source: KeyringSource, logger: Logger) {
        self.store = store
        self.source = source
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelledOrShuttingDown {
            try? await Task.sleep(for: interval)
            do {
                try await check()
            } catch {
                logger.error("reloading the keyring failed", metadata: ["error": "\(error)"])
            }
        }
    }

    public func check() async throws {
        let recorded = try await store.recordedKeyIDs()
        let current = store.sealer.keyring
        guard recorded.contains(where: { current.key(id: $0.key, purpose: $0.value) == nil }) else { return }
        guard let fresh = try await source.loadInBackground() else { return }
        let missing = recorded.filter { fresh.key(id: $0.key, purpose: $0.value) == nil }.map(\.key)
        guard missing.isEmpty else {
            logger.error("the keyring does not contain keys the database uses", metadata: ["keys": "\(missing.sorted())"])
            return
        }
        guard try await store.keyringOpensChecks(fresh) else {
            logger.error("the reloaded keyring's key material does not match this database; keeping the current keyring")
            return
        }
        store.sealer.replaceKeyring(fresh)
        logger.notice(
            "keyring reloaded", metadata: ["data": "\(fresh.active(.data).id)", "connections": "\(fresh.active(.connections).id)"])
    }
}

extension Task where Success == Never, Failure == Never {
    static var isCancelledOrShuttingDown: Bool { Task.isCancelled || Task.isShuttingDownGracefully }
}
