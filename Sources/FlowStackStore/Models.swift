import FlowStackCore
import Foundation

public struct User: Sendable, Equatable {
    public var id: String
    public var email: String
    public var name: String
    public var passwordHash: String
    public var failedLogins: Int
    public var lockedUntil: Date?
    public var disabled: Bool
    public var createdAt: Date
    public var passwordChangedAt: Date
}

public struct Organization: Sendable, Equatable {
    public var id: String
    public var name: String
    public var plan: Plan
    public var createdAt: Date
}

public struct Member: Sendable, Equatable {
    public var userID: String
    public var email: String
    public var name: String
    public var role: OrgRole
    public var lockedUntil: Date?
    public var joinedAt: Date
}

public struct Project: Sendable, Equatable {
    public var id: String
    public var orgID: String
    public var name: String
    public var description: String
    public var createdAt: Date
    public var updatedAt: Date
}

public struct ProjectMember: Sendable, Equatable {
    public var userID: String
    public var email: String
    public var name: String
    public var role: ProjectRole
}

public struct Session: Sendable, Equatable {
    public var id: String
    public var userID: String
    public var createdAt: Date
    public var lastSeenAt: Date
    public var expiresAt: Date
}

public struct APIKey: Sendable, Equatable {
    public var id: String
    public var orgID: String
    public var projectID: String?
    public var createdBy: String
    public var name: String
    public var prefix: String
    public var last4: String
    public var scope: APIKeyScope
    public var createdAt: Date
    public var lastUsedAt: Date?
    public var expiresAt: Date?
    public var revokedAt: Date?

    public init(
        id: String, orgID: String, projectID: String?, createdBy: String, name: String, prefix: String, last4: String,
        scope: APIKeyScope, createdAt: Date, lastUsedAt: Date?, expiresAt: Date?, revokedAt: Date?
    ) {
        self.id = id
        self.orgID = orgID
        self.projectID = projectID
        self.createdBy = createdBy
        self.name = name
        self.prefix = prefix
        self.last4 = last4
        self.scope = scope
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }
}

public struct Invitation: Sendable, Equatable {
    public var id: String
    public var orgID: String
    public var email: String
    public var role: OrgRole
    public var invitedBy: String
    public var createdAt: Date
    public var expiresAt: Date
    public var acceptedAt: Date?
}

/// Who did something, from where: the part of an audit event the request supplies.
public struct AuditActor: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case user
        case apiKey = "api_key"
        case system, anonymous
    }
    public var kind: Kind
    public var id: String?
    public var ip: String
    public var userAgent: String

    public init(kind: Kind, id: String?, ip: String, userAgent: String) {
        self.kind = kind
        self.id = id
        self.ip = ip
        self.userAgent = userAgent
    }

    public static func system(_ name: String = "cli") -> AuditActor {
        AuditActor(kind: .system, id: name, ip: "local", userAgent: "flowstack-cli")
    }
}

/// One audit event as recorded.
public struct AuditEvent: Sendable, Equatable {
    public var seq: Int64
    public var id: String
    public var orgID: String?
    public var actorType: String
    public var actorID: String?
    public var action: String
    public var resourceType: String
    public var resourceID: String?
    public var outcome: String
    public var ip: String
    public var userAgent: String
    public var createdAt: Date
    public var details: [String: String]
}

/// A page of results and the cursor for the next one.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    public var nextCursor: String?
}
