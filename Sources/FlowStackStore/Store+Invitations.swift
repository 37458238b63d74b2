import FlowStackCore
import FlowStackCrypto
import Foundation
import SQLKit

extension Store {
    private func emailContext(_ id: String, _ orgID: String) -> SealContext {
        SealContext(table: "invitations", rowID: id, column: "email", orgID: orgID)
    }

    public func insertInvitation(
        orgID: String, email: String, role: OrgRole, invitedBy: String, tokenHash: String,
        lifetime: TimeInterval, on db: any SQLDatabase
    ) async throws -> Invitation {
        let now = self.now
        let invitation = Invitation(
            id: Identifier.make("inv"), orgID: orgID, email: email, role: role, invitedBy: invitedBy,
            createdAt: now, expiresAt: now.addingTimeInterval(lifetime), acceptedAt: nil)
        let sealed = try sealer.seal(email, context: emailContext(invitation.id, orgID))
        try await db.raw(
            """
            INSERT INTO invitations (id, org_id, token_hash, role, email_sealed, invited_by, created_at, expires_at)
            VALUES (\(bind: invitation.id), \(bind: orgID), \(bind: tokenHash), \(bind: role.rawValue), \(bind: Data(sealed)),
                    \(bind: invitedBy), \(bind: now.millisecondsSince1970), \(bind: invitation.expiresAt.millisecondsSince1970))
            """
        ).run()
        return invitation
    }

    public func invitation(tokenHash: String) async throws -> Invitation? {
        try await read { [self] db in try await invitation(tokenHash: tokenHash, on: db) }
    }

    public func invitation(tokenHash: String, on db: any SQLDatabase) async throws -> Invitation? {
        guard
            let row = try await db.raw(
                """
                SELECT id, org_id, role, email_sealed, invited_by, created_at, expires_at, accepted_at
                FROM invitations WHERE token_hash = \(bind: tokenHash)
                """
            ).first()
        else { return nil }
        let id = try row.string("id")
        let orgID = try row.string("org_id")
        return Invitation(
            id: id, orgID: orgID,
            email: try sealer.openString(try row.bytes("email_sealed"), context: emailContext(id, orgID)),
            role: OrgRole(rawValue: try row.string("role")) ?? .viewer, invitedBy: try row.string("invited_by"),
            createdAt: try row.date("created_at"), expiresAt: try row.date("expires_at"), acceptedAt: try row.optionalDate("accepted_at")
        )
    }

    public func markInvitationAccepted(id: String, on db: any SQLDatabase) async throws {
        try await db.raw("UPDATE invitations SET accepted_at = \(bind: now.millisecondsSince1970) WHERE id = \(bind: id)").run()
    }
}
