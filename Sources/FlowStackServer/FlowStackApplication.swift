import FlowStackApp
import FlowStackCore
import FlowStackCrypto
import FlowStackEngine
import FlowStackNetwork
import FlowStackNodes
import FlowStackOperations
import FlowStackRuntime
import FlowStackSandbox
import FlowStackStore
import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle

/// What `flowstack serve` runs, and what it prints on start.
public struct RunningServer: Sendable {
    public let services: [any Service]
    public let store: Store
    public let setupToken: String?
    public let certificateFingerprint: String
    public let httpsURL: String
}

/// The composition root: builds the API router and the listeners from settings.
public enum FlowStackApplication {
    /// The public API's router, over an opened store. Tests drive it in-process.
    ///
    /// Route groups, each with its own middleware: the health probes; the API (`/api/v1`: JSON
    /// bodies, rate limits, authentication), whose authenticated routes run in `APIContext`;
    /// webhooks (their own authentication and limits); and the OAuth2 callback.
    public static func makeRouter(store: Store, settings: ServerSettings, logger: Logger, engine: ExecutionEngine) async throws -> Router<
        FlowStackRequestContext
    > {
        let app = try await UseCases(store: store, engine: engine, settings: settings.resolvedApp, logger: logger)
        let api = API(
            app: app, settings: settings, logger: logger, limiter: RateLimiter(clock: store.clock),
            webhooks: WebhookCache(changes: store.changes, lifetime: settings.webhookCacheLifetime))
        let router = Router(context: FlowStackRequestContext.self)
        let routes = RouteTable()
        router.add(middleware: ResponseMiddleware(routes: routes))
        router.add(
            middleware: RequestGuardMiddleware(
                maxBodyBytes: settings.maxBodyBytes, trustedProxies: settings.trustedProxies,
                maxURLBytes: settings.edge.maxURLBytes, maxHeaderBytes: settings.edge.maxHeaderBytes))
        if settings.hasWebhookOrigin {
            router.add(
                middleware: WebhookOriginMiddleware(
                    webhookPort: settings.webhookPort, webhookHost: settings.webhookHost,
                    webhookBaseURL: settings.webhookBaseURL))
        }
        HealthController(
            store: store, engine: engine, workerStall: .milliseconds(Int64((settings.databaseTimeouts.call.inSeconds + 5) * 1000))
        )
        .addRoutes(to: router)

        let v1 = router.group("api/v1")
            .add(middleware: JSONBodyMiddleware())
            .add(middleware: RateLimitMiddleware(phase: .address, limiter: api.limiter, edge: settings.edge))
            .add(middleware: AuthMiddleware(auth: app.auth))
            .add(middleware: RateLimitMiddleware(phase: .identity, limiter: api.limiter, edge: settings.edge))
        OpenAPIController().addRoutes(to: v1)
        AuthController(api: api).addPublicRoutes(to: v1)
        OrganizationController(api: api).addPublicRoutes(to: v1)
        let authenticated = v1.group(context: APIContext.self)
        AuthController(api: api).addRoutes(to: authenticated)
        OrganizationController(api: api).addRoutes(to: authenticated)
        ProjectController(api: api).addRoutes(to: authenticated)
        APIKeyController(api: api).addRoutes(to: authenticated)
        AuditController(api: api).addRoutes(to: authenticated)
        WorkflowController(api: api).addRoutes(to: authenticated)
        ExecutionController(api: api).addRoutes(to: authenticated)
        VariableController(api: api).addRoutes(to: authenticated)
        ConnectionController(api: api).addRoutes(to: authenticated)
        SecurityReportController(api: api).addRoutes(to: authenticated)

        WebhookController(api: api).addRoutes(to: router)
        ConnectionController(api: api).addCallbackRoutes(to: router.group("oauth2"))
        routes.load(from: router)
        return router
    }

    /// Opens everything and returns the services to run: the HTTPS listener, the optional
    /// plain-HTTP rejecter and housekeeping.
    public static func build(settings: ServerSettings, logger: Logger, clock: any WallClock = SystemWallClock()) async throws
        -> RunningServer
    {
        for (name, value, example) in [
            ("FLOWSTACK_PUBLIC_URL", settings.publicURL, "https://flows.example.com"),
            ("FLOWSTACK_WEBHOOK_PUBLIC_URL", settings.webhookPublicURL, "https://hooks.example.com"),
        ] {
            guard let value else { continue }
            guard let components = URLComponents(string: value), components.scheme?.lowercased() == "https",
                components.host?.isEmpty == false, components.query == nil, components.fragment == nil
            else {
                throw StartupError("refusing to start: \(name) must be an https URL without query or fragment, such as \(example)")
            }
        }
        if let webhookPort = settings.webhookPort, webhookPort == settings.port || webhookPort == settings.httpPort {
            throw StartupError("refusing to start: FLOWSTACK_WEBHOOK_PORT must differ from the HTTPS and HTTP ports")
        }
        let store = try await Bootstrap.openStore(settings: settings, logger: logger, clock: clock)
        // Nothing opened here outlives a failed start: whatever fails below closes them again.
        var sandbox: SandboxPool?
        do {
            let certificate = try Bootstrap.certificate(settings: settings, logger: logger)
            let tls = try Bootstrap.tlsConfiguration(certificatePath: certificate.certificatePath, keyPath: certificate.keyPath)
            let setupToken = try await SetupService(store: store, tokenFile: settings.resolvedApp.setupTokenFile).prepare()
            let policy: AddressPolicy
            do {
                policy = try AddressPolicy(allow: settings.httpAllow)
            } catch {
                throw StartupError("--http-allow: \(error.description)")
            }
            sandbox = await startSandbox(settings: settings, logger: logger)
            let engine = ExecutionEngine(
                store: store, configuration: settings.engineConfiguration, logger: logger,
                codeRunner: sandbox, fetcher: GuardedHTTPClient(policy: policy))
            let router = try await makeRouter(store: store, settings: settings, logger: logger, engine: engine)
            let displayHost = settings.host == "0.0.0.0" || settings.host == "::" ? "localhost" : settings.host
            let httpsURL = "https://\(displayHost.contains(":") ? "[\(displayHost)]" : displayHost):\(settings.port)/"

            // The closer comes first: a service group stops services in reverse order, so the
            // database closes only after every listener has drained.
            var services: [any Service] = [StoreCloser(store: store)]
            if let sandbox { services.append(SandboxCloser(pool: sandbox)) }
            let limits = ConnectionLimits(edge: settings.edge, exempt: settings.trustedProxies)
            services.append(
                Application(
                    router: router,
                    server: try .tls(.http1(configuration: limits.http1Configuration()), tlsConfiguration: tls),
                    configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: nil),
                    logger: logger
                ))
            if let webhookPort = settings.webhookPort {
                // The webhook origin: the same router, which serves only webhooks here (WebhookOriginMiddleware).
                services.append(
                    Application(
                        router: router,
                        server: try .tls(.http1(configuration: limits.http1Configuration()), tlsConfiguration: tls),
                        configuration: .init(address: .hostname(settings.host, port: webhookPort), serverName: nil),
                        logger: logger
                    ))
            }
            if let httpPort = settings.httpPort {
                services.append(
                    Application(
                        router: HTTPRejecter.router(httpsURL: httpsURL),
                        server: .http1(configuration: limits.http1Configuration()),
                        configuration: .init(address: .hostname(settings.host, port: httpPort), serverName: nil),
                        logger: logger
                    ))
            }
            services.append(HousekeepingService(store: store, settings: settings, logger: logger))
            let keyringSource = KeyringSource.from(settings)
            if keyringSource.isWritable {
                // Reading a small file in place is fine; a keyring command runs only in the watcher's thread.
                store.sealer.setReloader { try? keyringSource.load() }
            }
            services.append(KeyringWatcher(store: store, source: keyringSource, logger: logger))
            services.append(ChangeListener(store: store))
            services.append(engine)
            services.append(Scheduler(engine: engine, logger: logger))
            return RunningServer(
                services: services, store: store, setupToken: setupToken,
                certificateFingerprint: certificate.fingerprint, httpsURL: httpsURL)
        } catch {
            await sandbox?.shutdown()
            await store.database.close()
            throw error
        }
    }
}

extension FlowStackApplication {
    /// The Code node sandbox pool, warmed up; nil (Code nodes then fail with a clear error) when
    /// the `flowstack-sandbox` executable is missing or does not start.
    static func startSandbox(settings: ServerSettings, logger: Logger) async -> SandboxPool? {
        guard let path = settings.sandboxPath ?? SandboxPool.defaultExecutable() else {
            logger.warning("flowstack-sandbox not found next to flowstack: Code nodes are disabled")
            return nil
        }
        let pool = SandboxPool(executable: path)
        do {
            try await pool.warmUp()
            let protections = await pool.protections
            logger.info(
                "code sandbox ready",
                metadata: ["protections": "\(protections.map { "\($0.key)=\($0.value.jsonText)" }.sorted().joined(separator: " "))"])
            return pool
        } catch {
            logger.warning("the code sandbox does not start: Code nodes are disabled", metadata: ["error": "\(error)"])
            return nil
        }
    }
}

/// The plain-HTTP listener: every request gets 403 and a JSON error naming the HTTPS URL.
/// No redirect (a redirect would invite clients to send credentials in clear first), no data,
/// no cookies.
enum HTTPRejecter {
    struct Reject<Context: RequestContext>: RouterMiddleware {
        let body: ByteBuffer
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            var headers = ResponseMiddleware<Context>.securityHeaders
            headers[.contentType] = "application/json; charset=utf-8"
            headers[.connection] = "close"
            return Response(status: .forbidden, headers: headers, body: .init(byteBuffer: body))
        }
    }

    static func router(httpsURL: String) -> Router<BasicRequestContext> {
        // Every method and path, including unknown ones, gets the same refusal.
        let error = FlowStackError(status: 403, code: "https_required", message: "FlowStack only serves HTTPS; use \(httpsURL)")
        let data = (try? JSON.encoder.encode(ErrorBody(error))) ?? Data()
        let router = Router()
        router.add(middleware: Reject(body: ByteBuffer(bytes: data)))
        return router
    }
}

/// Stops the Code node sandbox's children once the engine, which uses them, has stopped.
struct SandboxCloser: Service {
    let pool: SandboxPool
    func run() async throws {
        try? await gracefulShutdown()
        await pool.shutdown()
    }
}
