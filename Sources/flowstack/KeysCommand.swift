import ArgumentParser
import FlowStackCore
import FlowStackCrypto
import FlowStackOperations
import FlowStackServer
import FlowStackStore
import Foundation

/// `flowstack keys`: key-encryption key versions, rotation with re-encryption, retirement.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage key-encryption keys: status, rotate, reencrypt, retire (see docs/key-management.md).",
        subcommands: [Status.self, Rotate.self, Reencrypt.self, Retire.self])

    struct PurposeOptions: ParsableArguments {
        @Flag(help: "The key for everything but connection secrets.")
        var data = false
        @Flag(help: "The key for connection secrets.")
        var connections = false

        func purposes(requireOne: Bool) throws -> [KeyPurpose] {
            if data && connections { throw ValidationError("give --data or --connections, not both") }
            if data { return [.data] }
            if connections { return [.connections] }
            if requireOne { throw ValidationError("give --data or --connections") }
            return KeyPurpose.allCases
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Key versions and how many stored values each seals.")
        @OptionGroup var storage: StorageOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let (store, _) = try await Keys.open(storage)
            let counts = try await store.sealedCounts()
            let dates = try await store.keyCheckDates()
            let keyring = store.sealer.keyring
            var report: [[String: Any]] = []
            for purpose in KeyPurpose.allCases {
                let active = keyring.active(purpose).id
                for key in keyring.versions[purpose] ?? [] {
                    var entry: [String: Any] = [
                        "purpose": purpose.rawValue, "id": key.id, "active": key.id == active,
                        "values": counts[purpose]?[key.id] ?? 0,
                    ]
                    if let date = dates[key.id] { entry["firstUsed"] = ISO8601DateFormatter().string(from: date) }
                    report.append(entry)
                }
                // Values naming a key the keyring lacks cannot be opened: say so loudly.
                for (id, count) in counts[purpose] ?? [:] where keyring.key(id: id, purpose: purpose) == nil {
                    report.append(["purpose": purpose.rawValue, "id": id, "active": false, "values": count, "missing": true])
                }
            }
            await store.database.close()
            if json {
                let data = try JSONSerialization.data(withJSONObject: ["keys": report], options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            for entry in report {
                let state =
                    entry["missing"] != nil ? "MISSING FROM KEYRING" : (entry["active"] as? Bool == true ? "active" : "old (open only)")
                let first = (entry["firstUsed"] as? String).map { ", first used \($0)" } ?? ""
                print("\(entry["purpose"]!) key \(entry["id"]!): \(state), seals \(entry["values"]!) values\(first)")
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a new key version (it becomes active) and re-encrypt everything to it; servers pick it up within seconds.")
        @OptionGroup var storage: StorageOptions
        @OptionGroup var purpose: PurposeOptions
        @Option(help: "Write the new keyring here (needed when the keyring comes from FLOWSTACK_KEYRING or a command).")
        var output: String?

        func run() async throws {
            let purpose = try self.purpose.purposes(requireOne: true)[0]
            let (store, source) = try await Keys.open(storage)
            let (keyring, key) = store.sealer.keyring.rotated(purpose)
            try Keys.save(keyring, source: source, output: output)
            store.sealer.replaceKeyring(keyring)
            // Records the new key's check value: running servers see it and reload their keyring.
            try await store.verifyKeyring()
            if output != nil || !source.isWritable {
                // Two phases when the keyring lives elsewhere: nothing is re-encrypted before the new
                // keyring is stored where the servers read it (else they could not open moved values).
                await store.database.close()
                print("new \(purpose.rawValue) key \(key.id) recorded; nothing was re-encrypted yet.")
                print("1. store the new keyring where \(source) reads it;")
                print("2. wait until every server logs \"keyring reloaded\" (restart servers whose keyring comes from FLOWSTACK_KEYRING);")
                print("3. run `flowstack keys reencrypt --\(purpose.rawValue)`, then `flowstack keys retire`.")
                return
            }
            print("new \(purpose.rawValue) key \(key.id) is active; waiting \(Int(Keys.reloadWait)) s for running servers to load it")
            try await Task.sleep(for: .seconds(Keys.reloadWait))
            print("re-encrypting (old versions keep opening meanwhile)")
            try await Keys.reencrypt(store, purpose)
            await store.database.close()
        }
    }

    struct Reencrypt: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Finish an interrupted re-encryption: move every value to the active key.")
        @OptionGroup var storage: StorageOptions
        @OptionGroup var purpose: PurposeOptions

        func run() async throws {
            let (store, _) = try await Keys.open(storage)
            for purpose in try self.purpose.purposes(requireOne: false) {
                try await Keys.reencrypt(store, purpose)
            }
            await store.database.close()
        }
    }

    struct Retire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove old key versions that no stored value uses any more.")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Write the new keyring here (needed when the keyring comes from FLOWSTACK_KEYRING or a command).")
        var output: String?

        func run() async throws {
            let (store, source) = try await Keys.open(storage)
            let counts = try await store.sealedCounts()
            var keyring = store.sealer.keyring
            var retired: [String] = []
            var kept: [String] = []
            for purpose in KeyPurpose.allCases {
                let active = keyring.active(purpose).id
                for key in keyring.versions[purpose] ?? [] where key.id != active {
                    let count = counts[purpose]?[key.id] ?? 0
                    if count == 0 {
                        keyring = try keyring.removing(key.id)
                        retired.append(key.id)
                    } else {
                        kept.append("\(key.id) still seals \(count) values: run `flowstack keys reencrypt` first")
                    }
                }
            }
            if !retired.isEmpty {
                try Keys.save(keyring, source: source, output: output)
                for id in retired { try await store.forgetKey(id) }
            }
            await store.database.close()
            for id in retired { print("retired \(id)") }
            for line in kept { print("kept \(line)") }
            if retired.isEmpty && kept.isEmpty { print("no old key versions to retire") }
            if !kept.isEmpty { throw ExitCode(1) }
        }
    }

    /// Servers look for a new key every 5 seconds (and load it at once when they meet a value sealed with it).
    static let reloadWait: Double = Double(ProcessInfo.processInfo.environment["FLOWSTACK_KEY_RELOAD_WAIT"] ?? "") ?? 6

    static func open(_ storage: StorageOptions) async throws -> (Store, KeyringSource) {
        let config = try await storage.reader()
        let settings = storage.settings(config)
        let store = try await Bootstrap.openStore(settings: settings, logger: storage.logger(config))
        return (store, KeyringSource.from(settings))
    }

    static func save(_ keyring: Keyring, source: KeyringSource, output: String?) throws {
        if let output {
            try SecureFile.write(keyring.json(), to: output)
            print("wrote the new keyring to \(output) (mode 0600)")
        } else {
            try source.save(keyring)
        }
    }

    /// Re-encrypts in passes until one finds nothing left: servers that still held the old
    /// keyring may write a few values with the old key until they reload (within seconds).
    static func reencrypt(_ store: Store, _ purpose: KeyPurpose) async throws {
        var total = 0
        for pass in 1...40 {
            let moved = try await store.reencrypt(purpose) { progress in
                let percent = progress.total == 0 ? 100 : progress.done * 100 / progress.total
                print("  \(progress.purpose.rawValue): \(progress.table) \(progress.done)/\(progress.total) (\(percent)%)")
            }
            total += moved
            if moved == 0 {
                print("re-encryption of \(purpose.rawValue) done: \(total) values moved to \(store.sealer.keyring.active(purpose).id)")
                print("when every server has logged \"keyring reloaded\", run `flowstack keys retire` to remove the old version")
                return
            }
            if pass > 1 { print("  \(moved) values were still written with an older key; waiting for servers to reload the keyring") }
            try await Task.sleep(for: .seconds(pass == 1 ? 0 : 3))
        }
        throw ValidationError(
            "values are still being written with an older \(purpose.rawValue) key: a server has not picked up the new keyring "
                + "(restart servers whose keyring comes from FLOWSTACK_KEYRING), then run `flowstack keys reencrypt`")
    }
}

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent snapshot of the database plus a manifest (no keys) to a new directory.")
    @OptionGroup var storage: StorageOptions
    @Option(help: "The directory to create.") var output: String

    func run() async throws {
        let config = try await storage.reader()
        let settings = storage.settings(config)
        let store = try await Bootstrap.openStore(settings: settings, logger: storage.logger(config))
        do {
            let manifest = try await Backups.create(store: store, settings: settings, to: output)
            await store.database.close()
            print(
                "backup written to \(output): \(manifest.file) (sha256 \(manifest.sha256)), sealed with keys \(manifest.keyChecks.map(\.keyId).joined(separator: ", "))"
            )
            print("keep the keyring separately: the backup cannot be opened without it")
        } catch {
            await store.database.close()
            throw error
        }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a backup into the configured database; refuses the wrong keys before changing anything.")
    @OptionGroup var storage: StorageOptions
    @Option(help: "The backup directory.") var from: String
    @Flag(help: "Replace a database that already holds FlowStack data.") var force = false

    func run() async throws {
        let config = try await storage.reader()
        try await Backups.restore(from: from, settings: storage.settings(config), force: force, logger: storage.logger(config))
        print("restored \(from); the keyring matches it")
    }
}
