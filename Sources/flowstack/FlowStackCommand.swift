import ArgumentParser
import Configuration
import FlowStackApp
import FlowStackCore
import FlowStackOperations
import FlowStackServer
import FlowStackStore
import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

@main
struct FlowStackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flowstack",
        abstract: "FlowStack: self-hostable workflow automation.",
        subcommands: [
            Serve.self, Run.self, Validate.self, Users.self, Orgs.self, Audit.self, Migrate.self, Keys.self, Backup.self, Restore.self,
        ]
    )

    static func main() async {
        // Everything FlowStack creates (database, WAL, keys, tokens) is private to its user.
        umask(0o077)
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Options every command that touches storage shares. Each can also come from the environment
/// (`FLOWSTACK_DATA_DIR`, `FLOWSTACK_DATABASE`, …) or a JSON config file (`{"flowstack": {…}}`);
/// the command line wins, then the environment, then the file.
struct StorageOptions: ParsableArguments {
    @Option(help: "Data directory (created with mode 0700). Default: ./flowstack-data")
    var dataDir: String?

    @Option(help: "Database: SQLite in the data directory by default, or postgres://user:password@host:port/db")
    var database: String?

    @Option(help: "A JSON configuration file.")
    var config: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    func reader(extra: [AbsoluteConfigKey: ConfigValue] = [:]) async throws -> ConfigReader {
        var values = extra
        if let dataDir { values["flowstack.dataDir"] = ConfigValue(.string(dataDir), isSecret: false) }
        if let database { values["flowstack.database"] = ConfigValue(.string(database), isSecret: true) }
        if let logLevel { values["flowstack.logLevel"] = ConfigValue(.string(logLevel), isSecret: false) }
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "command line", values: values),
            EnvironmentVariablesProvider(secretsSpecifier: .specific(["FLOWSTACK_DATABASE", "FLOWSTACK_KEYRING"])),
        ]
        let file = config ?? ProcessInfo.processInfo.environment["FLOWSTACK_CONFIG"]
        if let file {
            let location = ConfigReader(provider: InMemoryProvider(values: ["filePath": ConfigValue(.string(file), isSecret: false)]))
            providers.append(try await FileProvider<JSONSnapshot>(config: location))
        }
        return ConfigReader(providers: providers)
    }

    func settings(_ config: ConfigReader) -> ServerSettings {
        var settings = ServerSettings()
        let f = config.scoped(to: "flowstack")
        settings.dataDirectory = f.string(forKey: "dataDir", default: settings.dataDirectory)
        settings.database = f.string(forKey: "database", isSecret: true).map(DatabaseLocation.parse)
        settings.keyringFile = f.string(forKey: "keyringFile")
        settings.keyringJSON = f.string(forKey: "keyring", isSecret: true)
        settings.keyringCommand = f.string(forKey: "keyringCommand")
        func seconds(_ key: ConfigKey, _ fallback: Duration) -> Duration {
            let value = f.double(forKey: key, default: fallback.inSeconds)
            return .milliseconds(Int64(max(0.001, value) * 1000))
        }
        settings.databaseTimeouts.call = seconds("dbCallTimeoutSeconds", settings.databaseTimeouts.call)
        settings.databaseTimeouts.statement = seconds("dbStatementTimeoutSeconds", settings.databaseTimeouts.statement)
        settings.databaseTimeouts.lock = seconds("dbLockTimeoutSeconds", settings.databaseTimeouts.lock)
        settings.databaseTimeouts.idleInTransaction = seconds(
            "dbIdleInTransactionTimeoutSeconds", settings.databaseTimeouts.idleInTransaction)
        return settings
    }

    func logger(_ config: ConfigReader) -> Logger {
        var logger = Logger(label: "flowstack", factory: DeferredStreamLogHandler.standardError)
        logger.logLevel = config.string(forKey: "flowstack.logLevel").flatMap(Logger.Level.init(rawValue:)) ?? .info
        return logger
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the FlowStack server (HTTPS, TLS 1.3 only).")

    @OptionGroup var storage: StorageOptions

    @Option(help: "Address to listen on. Default: 127.0.0.1")
    var host: String?

    @Option(help: "HTTPS port. Default: 8443")
    var port: Int?

    @Option(help: "Optional plain-HTTP port that rejects every request with 403 (no redirect).")
    var httpPort: Int?

    @Option(help: "Optional HTTPS port for webhooks only: their own origin, and the API no longer serves them.")
    var webhookPort: Int?

    @Flag(name: .customLong("allow-signup"), help: "Let anyone create an account and organization (default off).")
    var allowSignup = false

    @Option(help: "PEM certificate (chain) to serve instead of the self-signed one.")
    var tlsCert: String?

    @Option(help: "PEM private key for --tls-cert.")
    var tlsKey: String?

    @Option(
        name: .customLong("http-allow"),
        help:
            "A host name or CIDR range the HTTP Request node may reach although it is private (repeatable; comma-separated in FLOWSTACK_HTTP_ALLOW)."
    )
    var httpAllow: [String] = []

    /// The edge limits; a rate of 0 (with a burst of 0) turns that limit off.
    static func edge(_ f: ConfigReader, _ defaults: EdgeSettings) throws -> EdgeSettings {
        var edge = defaults
        edge.apiPerSecond = f.double(forKey: "rateApiPerSecond", default: edge.apiPerSecond)
        edge.apiBurst = f.double(forKey: "rateApiBurst", default: edge.apiBurst)
        edge.keyPerSecond = f.double(forKey: "rateKeyPerSecond", default: edge.keyPerSecond)
        edge.keyBurst = f.double(forKey: "rateKeyBurst", default: edge.keyBurst)
        edge.orgPerSecond = f.double(forKey: "rateOrgPerSecond", default: edge.orgPerSecond)
        edge.orgBurst = f.double(forKey: "rateOrgBurst", default: edge.orgBurst)
        edge.webhookPerSecond = f.double(forKey: "rateWebhookPerSecond", default: edge.webhookPerSecond)
        edge.webhookBurst = f.double(forKey: "rateWebhookBurst", default: edge.webhookBurst)
        edge.webhookAddressPerSecond = f.double(forKey: "rateWebhookAddressPerSecond", default: edge.webhookAddressPerSecond)
        edge.webhookAddressBurst = f.double(forKey: "rateWebhookAddressBurst", default: edge.webhookAddressBurst)
        edge.connectionsPerAddress = f.int(forKey: "connectionsPerAddress", default: edge.connectionsPerAddress)
        edge.handshakesPerSecond = f.double(forKey: "handshakesPerSecond", default: edge.handshakesPerSecond)
        edge.handshakeBurst = f.double(forKey: "handshakeBurst", default: edge.handshakeBurst)
        edge.headerTimeout = .milliseconds(Int64(f.double(forKey: "headerTimeoutSeconds", default: edge.headerTimeout.inSeconds) * 1000))
        edge.idleTimeout = .milliseconds(Int64(f.double(forKey: "idleTimeoutSeconds", default: edge.idleTimeout.inSeconds) * 1000))
        edge.bodyTimeout = .milliseconds(Int64(f.double(forKey: "bodyTimeoutSeconds", default: edge.bodyTimeout.inSeconds) * 1000))
        guard edge.headerTimeout > .zero, edge.idleTimeout > .zero, edge.bodyTimeout > .zero else {
            throw ValidationError(
                "FLOWSTACK_HEADER_TIMEOUT_SECONDS, FLOWSTACK_IDLE_TIMEOUT_SECONDS and FLOWSTACK_BODY_TIMEOUT_SECONDS must be more than 0")
        }
        let rates = [
            edge.apiPerSecond, edge.apiBurst, edge.keyPerSecond, edge.keyBurst, edge.orgPerSecond, edge.orgBurst,
            edge.webhookPerSecond, edge.webhookBurst, edge.webhookAddressPerSecond, edge.webhookAddressBurst,
            edge.handshakesPerSecond, edge.handshakeBurst, Double(edge.connectionsPerAddress),
        ]
        guard rates.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
            throw ValidationError("The rate, burst and connection limits must be 0 (off) or more")
        }
        return edge
    }

    func run() async throws {
        var extra: [AbsoluteConfigKey: ConfigValue] = [:]
        if let host { extra["flowstack.host"] = ConfigValue(.string(host), isSecret: false) }
        if let port { extra["flowstack.port"] = ConfigValue(.int(port), isSecret: false) }
        if let httpPort { extra["flowstack.httpPort"] = ConfigValue(.int(httpPort), isSecret: false) }
        if let webhookPort { extra["flowstack.webhookPort"] = ConfigValue(.int(webhookPort), isSecret: false) }
        if allowSignup { extra["flowstack.allowSignup"] = ConfigValue(.bool(true), isSecret: false) }
        if let tlsCert { extra["flowstack.tlsCert"] = ConfigValue(.string(tlsCert), isSecret: false) }
        if let tlsKey { extra["flowstack.tlsKey"] = ConfigValue(.string(tlsKey), isSecret: false) }
        if !httpAllow.isEmpty { extra["flowstack.httpAllow"] = ConfigValue(.stringArray(httpAllow), isSecret: false) }
        let config = try await storage.reader(extra: extra)
        let f = config.scoped(to: "flowstack")
        var settings = storage.settings(config)
        settings.host = f.string(forKey: "host", default: settings.host)
        settings.port = f.int(forKey: "port", default: settings.port)
        settings.httpPort = f.int(forKey: "httpPort")
        settings.app.allowSignup = f.bool(forKey: "allowSignup", default: false)
        settings.tlsCertificatePath = f.string(forKey: "tlsCert")
        settings.tlsKeyPath = f.string(forKey: "tlsKey")
        settings.publicURL = f.string(forKey: "publicUrl")
        settings.webhookPort = f.int(forKey: "webhookPort")
        settings.webhookPublicURL = f.string(forKey: "webhookPublicUrl")
        settings.app.keyRotationDays = f.int(forKey: "keyRotationDays", default: settings.app.keyRotationDays)
        settings.trustedProxies = Set(f.stringArray(forKey: "trustedProxies", default: []))
        settings.app.sessionIdleTimeout = f.double(forKey: "sessionIdleTimeoutSeconds", default: settings.app.sessionIdleTimeout)
        settings.app.sessionAbsoluteLifetime = f.double(
            forKey: "sessionAbsoluteLifetimeSeconds", default: settings.app.sessionAbsoluteLifetime)
        settings.app.ipFailureLimit = f.int(forKey: "ipFailureLimit", default: settings.app.ipFailureLimit)
        settings.app.ipFailureWindow = f.double(forKey: "ipFailureWindowSeconds", default: settings.app.ipFailureWindow)
        settings.app.lockoutThreshold = f.int(forKey: "lockoutThreshold", default: settings.app.lockoutThreshold)
        settings.app.lockoutDuration = f.double(forKey: "lockoutDurationSeconds", default: settings.app.lockoutDuration)
        settings.maxBodyBytes = f.int(forKey: "maxBodyBytes", default: settings.maxBodyBytes)
        settings.httpAllow = f.stringArray(forKey: "httpAllow", default: []).flatMap {
            $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        .filter { !$0.isEmpty }
        settings.engine.leaseDuration = f.double(forKey: "leaseSeconds", default: settings.engine.leaseDuration)
        settings.engine.heartbeatInterval = min(settings.engine.heartbeatInterval, settings.engine.leaseDuration / 3)
        settings.engine.stallTimeout = f.double(forKey: "stallSeconds", default: settings.engine.stallTimeout)
        // A journal write that outlives every deadline of a database call means the run is stuck.
        settings.engine.writeStallTimeout = settings.databaseTimeouts.call.inSeconds + 5
        settings.sandboxPath = f.string(forKey: "sandboxPath")
        settings.edge = try Self.edge(f, settings.edge)
        let logger = storage.logger(config)

        let server: RunningServer
        do {
            server = try await FlowStackApplication.build(settings: settings, logger: logger)
        } catch let error as StartupError {
            throw ValidationError(error.description)
        }
        var banner = """
            FlowStack is listening on \(server.httpsURL)
            TLS certificate SHA-256 fingerprint: \(server.certificateFingerprint)
            Data directory: \(settings.dataDirectory)   Database: \(settings.resolvedDatabase.redacted)

            """
        if settings.hasWebhookOrigin {
            banner += "Webhooks are served on their own origin: \(settings.webhookBaseURL)/webhook/…\n\n"
        }
        if let token = server.setupToken {
            banner += """
                Create the owner account with this one-time setup token (also in \(settings.dataDirectory)/setup-token):
                  \(token)
                  curl --cacert \(settings.dataDirectory)/tls/server.crt -H 'Content-Type: application/json' \\
                    -d '{"token":"\(token)","email":"you@example.com","password":"…","name":"You","organization":"Acme"}' \\
                    \(server.httpsURL)api/v1/setup

                """
        }
        FileHandle.standardOutput.write(Data(banner.utf8))
        let group = ServiceGroup(
            configuration: .init(services: server.services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage user accounts.", subcommands: [CreateOwner.self, Disable.self])

    struct CreateOwner: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-owner",
            abstract:
                "Create a user who owns a new organization (for scripts). The password is read from FLOWSTACK_OWNER_PASSWORD or standard input."
        )
        @OptionGroup var storage: StorageOptions
        @Option var email: String
        @Option var name: String
        @Option var organization: String

        func run() async throws {
            let config = try await storage.reader()
            let password = ProcessInfo.processInfo.environment["FLOWSTACK_OWNER_PASSWORD"] ?? readLine(strippingNewline: true) ?? ""
            let store = try await Bootstrap.openStore(settings: storage.settings(config), logger: storage.logger(config))
            do {
                let result = try await Admin(store: store).createOwner(
                    email: email, name: name, organization: organization, password: password)
                print("created user \(result.user.id) (\(result.user.email)) owning organization \(result.org.id) (\(result.org.name))")
                await store.database.close()
            } catch let error as FlowStackError {
                await store.database.close()
                throw ValidationError(error.message)
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable an account and end its sessions (or --enable it again).")
        @OptionGroup var storage: StorageOptions
        @Option var email: String
        @Flag var enable = false

        func run() async throws {
            let config = try await storage.reader()
            let store = try await Bootstrap.openStore(settings: storage.settings(config), logger: storage.logger(config))
            do {
                try await Admin(store: store).setDisabled(email: email, disabled: !enable)
                print(enable ? "enabled \(email)" : "disabled \(email); its sessions have ended")
                await store.database.close()
            } catch let error as FlowStackError {
                await store.database.close()
                throw ValidationError(error.message)
            }
        }
    }
}

struct Orgs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage organizations.", subcommands: [SetPlan.self])

    struct SetPlan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-plan", abstract: "Set an organization's plan (free, pro, team, enterprise).")
        @OptionGroup var storage: StorageOptions
        @Option var org: String
        @Option var plan: String

        func run() async throws {
            guard let plan = Plan(rawValue: plan) else { throw ValidationError("plan must be one of free, pro, team, enterprise") }
            let config = try await storage.reader()
            let store = try await Bootstrap.openStore(settings: storage.settings(config), logger: storage.logger(config))
            do {
                try await Admin(store: store).setPlan(orgID: org, plan: plan)
                print("organization \(org) is now on the \(plan.rawValue) plan")
                await store.database.close()
            } catch let error as FlowStackError {
                await store.database.close()
                throw ValidationError(error.message)
            }
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Audit trail tools.", subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Verify the audit chain; exits 1 when an event was altered or deleted.")
        @OptionGroup var storage: StorageOptions

        func run() async throws {
            let config = try await storage.reader()
            let store = try await Bootstrap.openStore(settings: storage.settings(config), logger: storage.logger(config))
            let result = try await store.verifyAudit()
            await store.database.close()
            if result.isIntact {
                print("audit chain intact: \(result.eventsChecked) events; head \(result.headHash ?? "none")")
            } else {
                print("audit chain BROKEN (\(result.problems.count) problems in \(result.eventsChecked) events):")
                for problem in result.problems { print("  - \(problem)") }
                throw ExitCode(1)
            }
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply database migrations and check the keyring, then exit.")
    @OptionGroup var storage: StorageOptions

    func run() async throws {
        let config = try await storage.reader()
        let store = try await Bootstrap.openStore(settings: storage.settings(config), logger: storage.logger(config))
        await store.database.close()
        print("database is up to date")
    }
}
