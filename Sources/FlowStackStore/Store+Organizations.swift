import FlowStackCore
import Foundation
import SQLKit

extension Store {
    static func organization(from row: any SQLRow) throws -> Organization {
        Organization(
            id: try row.string("id"), name: try row.string("name"),
            plan: Plan(rawValue: try row.string("plan")) ?? .free, createdAt: try row.date("created_at"))
    }

    public func insertOrganization(name: String, plan: Plan = .free, owner: String, on db: any SQLDatabase) async throws -> Organization {
        let org = Organization(id: Identifier.make("org"), name: name, plan: plan, createdAt: now)
        try await db.raw(
            """
            INSERT INTO organizations (id, name, plan, created_at)
            VALUES (\(bind: org.id), \(bind: name), \(bind: plan.rawValue), \(bind: org.createdAt.millisecondsSince1970))
            """
        ).run()
        try await insertMembership(orgID: org.id, userID: owner, role: .owner, on: db)
        return org
    }

    public func insertMembership(orgID: String, userID: String, role: OrgRole, on db: any SQLDatabase) async throws {
        do {
            try await db.raw(
                """
                INSERT INTO memberships (org_id, user_id, role, created_at)
                VALUES (\(bind: orgID), \(bind: userID), \(bind: role.rawValue), \(bind: now.millisecondsSince1970))
                """
            ).run()
        } catch  where isUniqueViolation(error) {
            throw StoreError.alreadyMember
        }
    }

    public func organization(id: String) async throws -> Organization? {
        try await read { [self] db in try await organization(id: id, on: db) }
    }

    public func organization(id: String, on db: any SQLDatabase) async throws -> Organization? {
        try await db.raw("SELECT id, name, plan, created_at FROM organizations WHERE id = \(bind: id)").first().map(
            Self.organization(from:))
    }

    /// The organizations a user belongs to, with the user's role in each.
    public func organizations(forUser userID: String) async throws -> [(Organization, OrgRole)] {
        try await read { db in
            try await db.raw(
                """
                SELECT o.id, o.name, o.plan, o.created_at, m.role FROM organizations o
                JOIN memberships m ON m.org_id = o.id WHERE m.user_id = \(bind: userID) ORDER BY o.created_at, o.id
                """
            ).all().map { row in
                (try Self.organization(from: row), OrgRole(rawValue: try row.string("role")) ?? .viewer)
            }
        }
    }

    /// The user's role in an organization and the organization's plan, or nil when not a member.
    public func access(orgID: String, userID: String) async throws -> (role: OrgRole, plan: Plan)? {
        try await read { db in
            guard
                let row = try await db.raw(
                    """
                    SELECT m.role, o.plan FROM memberships m JOIN organizations o ON o.id = m.org_id
                    WHERE m.org_id = \(bind: orgID) AND m.user_id = \(bind: userID)
                    """
                ).first(),
                let role = OrgRole(rawValue: try row.string("role")),
                let plan = Plan(rawValue: try row.string("plan"))
            else { return nil }
            return (role, plan)
        }
    }

    public func members(orgID: String) async throws -> [Member] {
        try await read { db in
            try await db.raw(
                """
                SELECT u.id, u.email, u.name, u.locked_until, m.role, m.created_at FROM memberships m
                JOIN users u ON u.id = m.user_id WHERE m.org_id = \(bind: orgID) ORDER BY m.created_at, u.id
                """
            ).all().map { row in
                Member(
                    userID: try row.string("id"), email: try row.string("email"), name: try row.string("name"),
                    role: OrgRole(rawValue: try row.string("role")) ?? .viewer,
                    lockedUntil: try row.optionalDate("locked_until"), joinedAt: try row.date("created_at"))
            }
        }
    }

    public func memberRole(orgID: String, userID: String, on db: any SQLDatabase) async throws -> OrgRole? {
        try await db.raw("SELECT role FROM memberships WHERE org_id = \(bind: orgID) AND user_id = \(bind: userID)")
            .first().flatMap { OrgRole(rawValue: try $0.string("role")) }
    }

    private func ownerCount(orgID: String, on db: any SQLDatabase) async throws -> Int {
        Int(
            try await db.raw("SELECT COUNT(*) AS n FROM memberships WHERE org_id = \(bind: orgID) AND role = 'owner'").first()?.int("n")
                ?? 0)
    }

    /// Changes a member's role; the last owner cannot be demoted.
    public func setMemberRole(orgID: String, userID: String, role: OrgRole, on db: any SQLDatabase) async throws {
        guard let current = try await memberRole(orgID: orgID, userID: userID, on: db) else { throw StoreError.notFound }
        let owners = try await ownerCount(orgID: orgID, on: db)
        if current == .owner && role != .owner && owners <= 1 {
            throw StoreError.lastOwner
        }
        try await db.raw("UPDATE memberships SET role = \(bind: role.rawValue) WHERE org_id = \(bind: orgID) AND user_id = \(bind: userID)")
            .run()
    }

    /// Removes a member (and their project roles and API keys in this organization).
    public func removeMember(orgID: String, userID: String, on db: any SQLDatabase) async throws {
        guard let current = try await memberRole(orgID: orgID, userID: userID, on: db) else { throw StoreError.notFound }
        let owners = try await ownerCount(orgID: orgID, on: db)
        if current == .owner && owners <= 1 {
            throw StoreError.lastOwner
        }
        try await db.raw("DELETE FROM memberships WHERE org_id = \(bind: orgID) AND user_id = \(bind: userID)").run()
        try await db.raw(
            """
            DELETE FROM project_members WHERE user_id = \(bind: userID)
            AND project_id IN (SELECT id FROM projects WHERE org_id = \(bind: orgID))
            """
        ).run()
        try await db.raw(
            """
            UPDATE api_keys SET revoked_at = \(bind: now.millisecondsSince1970)
            WHERE org_id = \(bind: orgID) AND created_by = \(bind: userID) AND revoked_at IS NULL
            """
        ).run()
    }

    public func setPlan(orgID: String, plan: Plan, on db: any SQLDatabase) async throws {
        try await db.raw("UPDATE organizations SET plan = \(bind: plan.rawValue) WHERE id = \(bind: orgID)").run()
    }
}
