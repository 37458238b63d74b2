import Synchronization

/// A committed change that cached reads elsewhere must not outlive. Use cases announce one with
/// the write that makes it (`Store.write(announcing:_:)`); on PostgreSQL it reaches every
/// replica through LISTEN/NOTIFY, so a revoked key or a deactivated workflow stops working on all
/// of them at once instead of when their caches expire.
public enum Change: Sendable, Hashable {
    /// Who may authenticate or what they may reach changed: API keys, users, memberships, plans.
    case identities
    /// Which workflows are active or what their webhooks serve changed.
    case workflows
    /// A project's variables changed.
    case variables(projectID: String)
    /// Anything may have changed (announcements may have been missed while disconnected).
    case everything

    /// The NOTIFY payload: short, and never a secret.
    public var payload: String {
        switch self {
        case .identities: "identities"
        case .workflows: "workflows"
        case .variables(let projectID): "variables:" + projectID
        case .everything: "everything"
        }
    }

    /// The change a payload names; an unknown payload (a newer replica) counts as everything.
    public init(payload: String) {
        switch payload {
        case "identities": self = .identities
        case "workflows": self = .workflows
        case "everything": self = .everything
        default:
            if payload.hasPrefix("variables:") {
                self = .variables(projectID: String(payload.dropFirst("variables:".count)))
            } else {
                self = .everything
            }
        }
    }
}

/// The one path by which a change reaches the caches it invalidates, in this process. The store
/// delivers its own writes' announcements after they commit, and the change listener those of
/// other replicas.
public final class ChangeBus: Sendable {
    public typealias Handler = @Sendable (Change) -> Void
    private let handlers = Mutex<[Handler]>([])

    public init() {}

    /// Calls `handler` for every change delivered from now on (on the delivering task; keep it short).
    public func subscribe(_ handler: @escaping Handler) {
        handlers.withLock { $0.append(handler) }
    }

    public func deliver(_ change: Change) {
        for handler in handlers.withLock({ $0 }) { handler(change) }
    }
}
