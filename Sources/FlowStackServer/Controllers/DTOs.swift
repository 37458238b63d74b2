import FlowStackCore
import FlowStackStore
import Foundation

/// The JSON shapes of the API's responses (documented in the OpenAPI document).
struct UserDTO: Encodable {
    var id: String
    var email: String
    var name: String
    var createdAt: Date
    init(_ user: User) {
        id = user.id
        email = user.email
        name = user.name
        createdAt = user.createdAt
    }
}

struct OrganizationDTO: Encodable {
    var id: String
    var name: String
    var plan: String
    var role: String?
    var createdAt: Date
    init(_ org: Organization, role: OrgRole?) {
        id = org.id
        name = org.name
        plan = org.plan.rawValue
        self.role = role?.rawValue
        createdAt = org.createdAt
    }
}

struct MemberDTO: Encodable {
    var userId: String
    var email: String
    var name: String
    var role: String
    var locked: Bool
    var joinedAt: Date
    init(_ member: Member, now: Date) {
        userId = member.userID
        email = member.email
        name = member.name
        role = member.role.rawValue
        locked = member.lockedUntil.map { $0 > now } ?? false
        joinedAt = member.joinedAt
    }
}

struct ProjectDTO: Encodable {
    var id: String
    var orgId: String
    var name: String
    var description: String
    var createdAt: Date
    var updatedAt: Date
    init(_ project: Project) {
        id = project.id
        orgId = project.orgID
        name = project.name
        description = project.description
        createdAt = project.createdAt
        updatedAt = project.updatedAt
    }
}

struct ProjectMemberDTO: Encodable {
    var userId: String
    var email: String
    var name: String
    var role: String
    init(_ member: ProjectMember) {
        userId = member.userID
        email = member.email
        name = member.name
        role = member.role.rawValue
    }
}

struct APIKeyDTO: Encodable {
    var id: String
    var name: String
    var prefix: String
    var last4: String
    var scope: String
    var projectId: String?
    var createdAt: Date
    var lastUsedAt: Date?
    var expiresAt: Date?
    var rotationDue: Bool

    init(_ key: APIKey, now: Date, rotationDays: Int) {
        id = key.id
        name = key.name
        prefix = key.prefix
        last4 = key.last4
        scope = key.scope.rawValue
        projectId = key.projectID
        createdAt = key.createdAt
        lastUsedAt = key.lastUsedAt
        expiresAt = key.expiresAt
        rotationDue = now.timeIntervalSince(key.createdAt) >= Double(rotationDays) * 86_400
    }

    enum CodingKeys: String, CodingKey {
        case id, name, prefix, last4, scope, projectId, createdAt, lastUsedAt, expiresAt, rotationDue
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(name, forKey: .name)
        try c.encode(prefix, forKey: .prefix)
        try c.encode(last4, forKey: .last4)
        try c.encode(scope, forKey: .scope)
        try c.encode(projectId, forKey: .projectId)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(lastUsedAt, forKey: .lastUsedAt)
        try c.encode(expiresAt, forKey: .expiresAt)
        try c.encode(rotationDue, forKey: .rotationDue)
    }
}

struct AuditEventDTO: Encodable {
    struct Ref: Encodable {
        var type: String
        var id: String?
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(type, forKey: .type)
            try c.encode(id, forKey: .id)
        }
        enum CodingKeys: String, CodingKey { case type, id }
    }
    var id: String
    var action: String
    var actor: Ref
    var resource: Ref
    var outcome: String
    var ip: String
    var userAgent: String
    var createdAt: Date
    var details: [String: String]

    init(_ event: AuditEvent) {
        id = event.id
        action = event.action
        actor = Ref(type: event.actorType, id: event.actorID)
        resource = Ref(type: event.resourceType, id: event.resourceID)
        outcome = event.outcome
        ip = event.ip
        userAgent = event.userAgent
        createdAt = event.createdAt
        details = event.details
    }
}

struct ListDTO<Item: Encodable>: Encodable {
    var items: [Item]
    var nextCursor: String?

    enum CodingKeys: String, CodingKey { case items, nextCursor }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(items, forKey: .items)
        try c.encode(nextCursor, forKey: .nextCursor)
    }
}
