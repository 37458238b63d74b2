import FlowStackCore
import FlowStackCrypto
import FlowStackOperations
import FlowStackServer
import FlowStackStore
import FlowStackTesting
import Foundation
import Logging
import Testing

/// Key rotation, retirement, reload and backups (issue 4; SECURITY-TESTS 13, 17, 18).
@Suite struct KeyManagementTests {
    /// A workflow whose parameters and output carry `marker`, with a Wait so runs overlap rotation.
    func markerWorkflow(_ marker: String) -> [String: Any] {
        [
            "name": "Marker",
            "nodes": [
                ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                ["name": "Set", "type": "flowstack.set", "typeVersion": 1, "parameters": ["fields": ["secret": marker]]],
            ],
            "edges": [["from": "Manual", "to": "Set"]],
        ]
    }

    @Test("rotation while executions run loses nothing; old versions open until re-encrypted, then retire", arguments: Backend.allCases)
    func rotateWhileRunning(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        let marker = "ROTATE-\(UUID().uuidString)"
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            _ = try await client.post("/api/v1/projects/\(project)/variables", ["name": "TOKEN", "value": marker], auth: auth)
            let connection =
                try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "crm", "type": "bearer", "data": ["token": marker]], auth: auth
                ).json["id"] as! String
            let workflow =
                try await client.post("/api/v1/projects/\(project)/workflows", markerWorkflow(marker), auth: auth).json["id"] as! String
            let store = app.store
            let oldData = store.sealer.keyring.active(.data).id
            let oldConnections = store.sealer.keyring.active(.connections).id

            // Executions keep being submitted and run while the data key rotates.
            let runs = Task {
                var ids: [String] = []
                for _ in 0..<40 {
                    let accepted = try await client.post("/api/v1/workflows/\(workflow)/run", nil, auth: auth)
                    ids.append(try #require(accepted.json["id"] as? String, "\(accepted.text)"))
                }
                return ids
            }
            try await Task.sleep(for: .milliseconds(50))
            let (rotated, newKey) = store.sealer.keyring.rotated(.data)
            store.sealer.replaceKeyring(rotated)
            try await store.verifyKeyring()
            var passes = 0
            // Small pages, so that every table is walked across several of them.
            while try await store.reencrypt(.data, batchSize: 7, progress: { _ in }) > 0 {
                passes += 1
                #expect(passes < 20)
            }
            let ids = try await runs.value
            for id in ids {
                let done = try await waitForStatus(client, id, auth: auth)
                #expect(done.json["status"] as? String == "succeeded", "\(done.text)")
            }
            // Values written after re-encryption are under the new key too; one more pass moves any stragglers.
            while try await store.reencrypt(.data, progress: { _ in }) > 0 {}
            let counts = try await store.sealedCounts(batchSize: 5)
            #expect(counts == (try await store.sealedCounts()))
            #expect(counts[.data]?[oldData] == nil)
            #expect((counts[.data]?[newKey.id] ?? 0) > 40)
            // Connections use their own key: rotating the data key did not touch them (SECURITY-TESTS 18).
            #expect(counts[.connections]?[oldConnections] == 1)
            #expect(counts[.connections]?.keys.contains(newKey.id) != true)

            // Retire: a sealer without the old data key opens everything.
            store.sealer.replaceKeyring(try store.sealer.keyring.removing(oldData))
            try await store.forgetKey(oldData)
            #expect(try await store.verifyAudit().problems.isEmpty)
            #expect(try await store.connection(id: connection)?.data.secrets["token"] == marker)
            #expect(try await store.variableMap(projectID: project)["TOKEN"] == marker)
            for id in ids {
                let execution = try await client.get("/api/v1/executions/\(id)", auth: auth)
                #expect(execution.status == 200)
                #expect(execution.text.contains(marker))
            }
            // The connections key rotates on its own.
            let (both, connectionsKey) = store.sealer.keyring.rotated(.connections)
            store.sealer.replaceKeyring(both)
            try await store.verifyKeyring()
            #expect(try await store.reencrypt(.connections, progress: { _ in }) == 1)
            #expect(try await store.sealedCounts()[.connections]?[connectionsKey.id] == 1)
            #expect(try await store.connection(id: connection)?.data.secrets["token"] == marker)
            #expect(!(try app.database.rawBytes().contains(marker: marker)))
        }
    }

    @Test("a running server reloads a rotated keyring from its file; a wrong or missing keyring refuses to start")
    func reload() async throws {
        let database = try await TestDatabase.make(.sqlite)
        defer { database.remove() }
        let file = database.directory + "/keyring.json"
        let initial = Keyring.generate()
        try SecureFile.write(initial.json(), to: file)
        let server = try await database.openStore(keyring: initial)
        // `flowstack keys rotate`, in another process: a new active key, recorded in the database.
        let cli = try await database.openStore(keyring: initial)
        let (rotated, key) = initial.rotated(.data)
        try KeyringSource.file(file).save(rotated)
        cli.sealer.replaceKeyring(rotated)
        try await cli.verifyKeyring()
        await cli.database.close()
        #expect(server.sealer.keyring.active(.data).id != key.id)
        // A keyring that names the new key but holds other material is refused by the watcher.
        let forged = database.directory + "/forged.json"
        var forgedJSON = try JSONSerialization.jsonObject(with: rotated.json()) as! [String: Any]
        var dataKeys = forgedJSON["data"] as! [[String: Any]]
        dataKeys[dataKeys.count - 1]["key"] = Data(repeating: 7, count: 32).base64EncodedString()
        forgedJSON["data"] = dataKeys
        try SecureFile.write(try JSONSerialization.data(withJSONObject: forgedJSON), to: forged)
        try await KeyringWatcher(store: server, source: .file(forged), logger: Logger(label: "test")).check()
        #expect(server.sealer.keyring.active(.data).id != key.id)
        try await KeyringWatcher(store: server, source: .file(file), logger: Logger(label: "test")).check()
        #expect(server.sealer.keyring.active(.data).id == key.id)
        // Key ids are short and plain (a long id would not fit the sealed header).
        #expect(throws: KeyringError.self) {
            _ = try Keyring(
                json: Data(
                    String(decoding: initial.json(), as: UTF8.self)
                        .replacingOccurrences(of: initial.active(.data).id, with: String(repeating: "x", count: 300)).utf8))
        }
        await server.database.close()

        // SECURITY-TESTS 17: the keyring of another installation, or none, and the server refuses to start.
        var settings = ServerSettings()
        settings.dataDirectory = database.directory
        settings.database = database.location
        settings.keyringJSON = String(decoding: Keyring.generate().json(), as: UTF8.self)
        await #expect(throws: StartupError.self) { _ = try await Bootstrap.openStore(settings: settings, logger: Logger(label: "test")) }
        settings.keyringJSON = nil
        settings.keyringCommand = "cat '\(file)'"
        let fromCommand = try await Bootstrap.openStore(settings: settings, logger: Logger(label: "test"))
        #expect(fromCommand.sealer.keyring.active(.data).id == key.id)
        await fromCommand.database.close()
        settings.keyringCommand = "exit 3"
        await #expect(throws: StartupError.self) { _ = try await Bootstrap.openStore(settings: settings, logger: Logger(label: "test")) }
    }

    @Test("backup: no marker in the snapshot; restore with the right keys works, with the wrong keys refuses", arguments: Backend.allCases)
    func backupRestore(_ backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        let marker = "BACKUP-\(UUID().uuidString)"
        let keyring = app.store.sealer.keyring
        let backupDirectory = app.database.directory + "/backup"
        let target = try await TestDatabase.make(backend)
        defer { target.remove() }
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            _ = try await client.post("/api/v1/projects/\(project)/variables", ["name": "TOKEN", "value": marker], auth: auth)
            let connection =
                try await client.post(
                    "/api/v1/projects/\(project)/connections",
                    ["name": "crm", "type": "bearer", "data": ["token": marker]], auth: auth
                ).json["id"] as! String
            let workflow =
                try await client.post("/api/v1/projects/\(project)/workflows", markerWorkflow(marker), auth: auth).json["id"] as! String
            let run = try await client.post("/api/v1/workflows/\(workflow)/run?wait=true", nil, auth: auth)
            #expect(run.text.contains(marker))
            var settings = ServerSettings()
            settings.dataDirectory = app.database.directory
            settings.database = app.database.location
            settings.keyringJSON = String(decoding: keyring.json(), as: UTF8.self)
            let manifest = try await Backups.create(store: app.store, settings: settings, to: backupDirectory)
            #expect(manifest.keyChecks.count == 2)
            // The backup (database and manifest) holds neither the marker nor any key material.
            for name in try FileManager.default.contentsOfDirectory(atPath: backupDirectory) {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: backupDirectory + "/" + name))
                #expect(!bytes.contains(marker: marker), "\(name)")
                for material in keyMaterial(keyring) {
                    #expect(!bytes.contains(marker: material), "\(name)")
                }
            }

            var restore = ServerSettings()
            restore.dataDirectory = target.directory
            restore.database = target.location
            // The wrong keys: refused, and nothing is written.
            restore.keyringJSON = String(decoding: Keyring.generate().json(), as: UTF8.self)
            await #expect(throws: BackupError.self) {
                try await Backups.restore(from: backupDirectory, settings: restore, force: false, logger: Logger(label: "test"))
            }
            if case .sqlite(let path) = target.location { #expect(!FileManager.default.fileExists(atPath: path)) }
            // A damaged backup: refused.
            let file = backupDirectory + "/" + manifest.file
            let original = try Data(contentsOf: URL(fileURLWithPath: file))
            var damaged = original
            damaged[damaged.count / 2] ^= 0xFF
            try damaged.write(to: URL(fileURLWithPath: file))
            restore.keyringJSON = String(decoding: keyring.json(), as: UTF8.self)
            await #expect(throws: BackupError.self) {
                try await Backups.restore(from: backupDirectory, settings: restore, force: false, logger: Logger(label: "test"))
            }
            try original.write(to: URL(fileURLWithPath: file))
            // The right keys: restored, and everything opens.
            try await Backups.restore(from: backupDirectory, settings: restore, force: false, logger: Logger(label: "test"))
            let restored = try await target.openStore(keyring: keyring)
            #expect(try await restored.connection(id: connection)?.data.secrets["token"] == marker)
            #expect(try await restored.variableMap(projectID: project)["TOKEN"] == marker)
            #expect(try await restored.verifyAudit().problems.isEmpty)
            #expect(!(try target.rawBytes().contains(marker: marker)))
            await restored.database.close()
            // Restoring over existing data needs --force.
            await #expect(throws: BackupError.self) {
                try await Backups.restore(from: backupDirectory, settings: restore, force: false, logger: Logger(label: "test"))
            }
        }
    }
}

/// The base64 key material in a keyring's JSON.
func keyMaterial(_ keyring: Keyring) -> [String] {
    guard let json = try? JSONSerialization.jsonObject(with: keyring.json()) as? [String: Any] else { return [] }
    return ["data", "connections"].flatMap { (json[$0] as? [[String: Any]] ?? []).compactMap { $0["key"] as? String } }
}
