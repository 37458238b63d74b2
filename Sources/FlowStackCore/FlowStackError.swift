/// An error a client may see: a stable machine-readable code, an HTTP status, a message safe to
/// show, and the request field it concerns.
///
/// Library code throws these for every refusal caused by input or policy; anything else is an
/// internal failure that the server reports as a bare 500 without details.
public struct FlowStackError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    public var field: String?
    /// Seconds after which a retry may succeed (lockout, throttling).
    public var retryAfter: Int?
    /// Every problem found, when there are several (workflow validation).
    public var problems: [WorkflowProblem]?

    public init(status: Int, code: String, message: String, field: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retryAfter = retryAfter
    }

    public var description: String { "\(code): \(message)" }

    public static func badRequest(_ code: String, _ message: String, field: String? = nil) -> Self {
        .init(status: 400, code: code, message: message, field: field)
    }
    public static func validation(_ message: String, field: String) -> Self {
        .init(status: 422, code: "validation_failed", message: message, field: field)
    }
    public static let unauthenticated = Self(status: 401, code: "unauthenticated", message: "Authentication is required.")
    public static let invalidCredentials = Self(status: 401, code: "invalid_credentials", message: "The e-mail or password is incorrect.")
    public static let forbidden = Self(status: 403, code: "forbidden", message: "You do not have permission to do this.")
    public static let insufficientScope = Self(status: 403, code: "insufficient_scope", message: "This API key is read-only.")
    public static let notFound = Self(status: 404, code: "not_found", message: "The resource does not exist.")
    public static func conflict(_ code: String, _ message: String, field: String? = nil) -> Self {
        .init(status: 409, code: code, message: message, field: field)
    }
    public static func featureNotInPlan(_ feature: String) -> Self {
        .init(status: 403, code: "plan_upgrade_required", message: "Your organization's plan does not include \(feature).")
    }
}
