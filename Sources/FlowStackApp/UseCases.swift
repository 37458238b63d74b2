import FlowStackCore
import FlowStackEngine
import FlowStackStore
import Logging

/// The application layer: one slice per feature, each use case one method that owns its
/// transaction, its authorization (through `Access`, the one policy function), its audit event
/// and its change announcement. Adapters (the HTTP API, the CLI) decode, call one method, and
/// encode the answer.
public struct UseCases: Sendable {
    public let store: Store
    public let settings: AppSettings
    public let access: Access
    public let auth: AuthService
    public let setup: SetupService
    public let engine: ExecutionEngine

    public init(store: Store, engine: ExecutionEngine, settings: AppSettings, logger: Logger) async throws {
        self.store = store
        self.settings = settings
        self.engine = engine
        self.access = Access(store: store)
        self.auth = try await AuthService(store: store, settings: settings, logger: logger)
        self.setup = SetupService(store: store, tokenFile: settings.setupTokenFile)
    }

    public var accounts: Accounts { Accounts(app: self) }
    public var organizations: Organizations { Organizations(app: self) }
    public var projects: Projects { Projects(app: self) }
    public var apiKeys: APIKeys { APIKeys(app: self) }
    public var auditTrail: AuditTrail { AuditTrail(app: self) }
    public var workflows: Workflows { Workflows(app: self) }
    public var executions: Executions { Executions(app: self) }
    public var variables: Variables { Variables(app: self) }
    public var connections: Connections { Connections(app: self) }
    public var securityReports: SecurityReports { SecurityReports(app: self) }
}
