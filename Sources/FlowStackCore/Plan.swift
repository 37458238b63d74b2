/// An organization's plan, which decides its entitlements (the security page's table).
public enum Plan: String, Codable, Sendable, CaseIterable {
    case free, pro, team, enterprise
}

/// A feature that some plans include.
public enum Feature: String, Sendable, CaseIterable {
    case sso, auditLogs, ipAllowlist, customRetention, dedicatedInfrastructure, hipaa

    public var displayName: String {
        switch self {
        case .sso: "SSO / SAML"
        case .auditLogs: "audit logs"
        case .ipAllowlist: "IP allowlisting"
        case .customRetention: "custom data retention"
        case .dedicatedInfrastructure: "dedicated infrastructure"
        case .hipaa: "HIPAA compliance"
        }
    }
}

/// The entitlements of each plan: one table, checked by the policy layer.
public struct Entitlements: Sendable, Equatable {
    public var features: Set<Feature>
    /// How long audit events stay visible, in days; nil when audit logs are not included.
    public var auditRetentionDays: Int?

    public static func of(_ plan: Plan) -> Entitlements {
        switch plan {
        case .free, .pro:
            Entitlements(features: [], auditRetentionDays: nil)
        case .team:
            Entitlements(features: [.auditLogs], auditRetentionDays: 30)
        case .enterprise:
            Entitlements(
                features: [.sso, .auditLogs, .ipAllowlist, .customRetention, .dedicatedInfrastructure, .hipaa],
                auditRetentionDays: 365
            )
        }
    }

    public func includes(_ feature: Feature) -> Bool { features.contains(feature) }
}
