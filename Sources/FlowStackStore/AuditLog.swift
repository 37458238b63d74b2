import Crypto
import FlowStackCore
import FlowStackCrypto
import Foundation
import SQLKit

/// What happened, for an audit event.
public struct AuditRecord: Sendable {
    public var orgID: String?
    public var action: String
    public var resourceType: String
    public var resourceID: String?
    public var outcome: String
    public var details: [String: String]

    public init(
        orgID: String?, action: String, resourceType: String, resourceID: String?, outcome: String = "success",
        details: [String: String] = [:]
    ) {
        self.orgID = orgID
        self.action = action
        self.resourceType = resourceType
        self.resourceID = resourceID
        self.outcome = outcome
        self.details = details
    }
}

/// The result of verifying the audit chain.
public struct AuditVerification: Sendable, Equatable {
    public var eventsChecked: Int
    /// The first problem found: an event whose MAC does not match, or a link that is broken.
    public var problems: [String]
    public var headHash: String?
    public var isIntact: Bool { problems.isEmpty }
}

/// The append-only, tamper-evident audit trail.
///
/// Each event's `hash` is an HMAC (keyed by a key derived from a data key-encryption key, so it
/// cannot be recomputed from the database alone) over its fields, its sealed details and the
/// previous event's hash. Editing or deleting an event breaks the chain, which `verify` reports.
extension Store {
    private static let macInfo = "flowstack.audit.v1"
    static let genesisHash = String(repeating: "0", count: 64)

    private func detailsContext(_ id: String, _ orgID: String?) -> SealContext {
        SealContext(table: "audit_events", rowID: id, column: "details", orgID: orgID)
    }

    private static func canonical(_ fields: [String?]) -> [UInt8] {
        var out: [UInt8] = []
        for field in fields {
            let bytes = Array((field ?? "\u{1}null").utf8)
            var length = UInt32(bytes.count).bigEndian
            withUnsafeBytes(of: &length) { out += $0 }
            out += bytes
        }
        return out
    }

    private static func mac(
        key: SymmetricKey, prevHash: String, id: String, orgID: String?, actorType: String, actorID: String?,
        action: String, resourceType: String, resourceID: String?, outcome: String, ip: String,
        userAgent: String, createdAt: Int64, sealedDetails: [UInt8]
    ) -> String {
        var message = canonical([
            prevHash, id, orgID, actorType, actorID, action, resourceType, resourceID, outcome, ip, userAgent, String(createdAt),
        ])
        message += SHA256.hash(data: sealedDetails)
        return Token.hex(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }

    /// The MAC of a stored event's row under data key `keyID`, with its chain link and details replaced.
    func auditMAC(row: any SQLRow, prevHash: String, sealedDetails: [UInt8], keyID: String) throws -> String {
        guard let key = sealer.keyring.macKey(id: keyID, info: Self.macInfo) else { throw DatabaseError("no data key for the audit MAC") }
        return Self.mac(
            key: key, prevHash: prevHash, id: try row.string("id"), orgID: try row.optionalString("org_id"),
            actorType: try row.string("actor_type"), actorID: try row.optionalString("actor_id"), action: try row.string("action"),
            resourceType: try row.string("resource_type"), resourceID: try row.optionalString("resource_id"),
            outcome: try row.string("outcome"), ip: try row.string("ip"), userAgent: try row.string("user_agent"),
            createdAt: try row.int("created_at"), sealedDetails: sealedDetails)
    }

    /// Appends an event inside the caller's transaction, so the change and its record commit together.
    public func appendAudit(_ record: AuditRecord, actor: AuditActor, on db: any SQLDatabase) async throws {
        if database.kind == .postgres {
            // Serialize appends so the chain stays linear across replicas.
            try await db.raw("SELECT pg_advisory_xact_lock(\(literal: 7_310_002))").run()
        }
        let id = Identifier.make("aud")
        let createdAt = now.millisecondsSince1970
        let details = record.details.mapValues { $0.encodingControlCharacters }
        let detailsJSON = try JSONSerialization.data(withJSONObject: details, options: [.sortedKeys])
        let sealed = try sealer.seal(detailsJSON, purpose: .data, context: detailsContext(id, record.orgID))
        let prevHash =
            try await db.raw("SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1").first()?.string("hash") ?? Self.genesisHash
        // The key that sealed the details (a keyring reload between two reads must not split them).
        let keyID = Sealer.keyID(of: sealed) ?? sealer.keyring.active(.data).id
        guard let key = sealer.keyring.macKey(id: keyID, info: Self.macInfo) else { throw DatabaseError("no data key for the audit MAC") }
        let ip = String(actor.ip.encodingControlCharacters.prefix(64))
        let userAgent = String(actor.userAgent.encodingControlCharacters.prefix(512))
        let hash = Self.mac(
            key: key, prevHash: prevHash, id: id, orgID: record.orgID, actorType: actor.kind.rawValue, actorID: actor.id,
            action: record.action, resourceType: record.resourceType, resourceID: record.resourceID,
            outcome: record.outcome, ip: ip, userAgent: userAgent, createdAt: createdAt, sealedDetails: sealed)
        try await db.raw(
            """
            INSERT INTO audit_events (id, org_id, actor_type, actor_id, action, resource_type, resource_id, outcome, ip, user_agent,
                                      created_at, details_sealed, mac_key_id, prev_hash, hash)
            VALUES (\(bind: id), \(bind: record.orgID), \(bind: actor.kind.rawValue), \(bind: actor.id), \(bind: record.action),
                    \(bind: record.resourceType), \(bind: record.resourceID), \(bind: record.outcome), \(bind: ip), \(bind: userAgent),
                    \(bind: createdAt), \(bind: Data(sealed)), \(bind: keyID), \(bind: prevHash), \(bind: hash))
            """
        ).run()
    }

    /// Records an event in its own transaction (for events with no other change, like a failed login).
    public func audit(_ record: AuditRecord, actor: AuditActor) async throws {
        try await write { db in try await self.appendAudit(record, actor: actor, on: db) }
    }

    private func event(from row: any SQLRow) throws -> AuditEvent {
        let id = try row.string("id")
        let orgID = try row.optionalString("org_id")
        let json = try sealer.open(try row.bytes("details_sealed"), purpose: .data, context: detailsContext(id, orgID))
        let details = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: String] ?? [:]
        return AuditEvent(
            seq: try row.int("seq"), id: id, orgID: orgID, actorType: try row.string("actor_type"),
            actorID: try row.optionalString("actor_id"),
            action: try row.string("action"), resourceType: try row.string("resource_type"),
            resourceID: try row.optionalString("resource_id"),
            outcome: try row.string("outcome"), ip: try row.string("ip"), userAgent: try row.string("user_agent"),
            createdAt: try row.date("created_at"), details: details
        )
    }

    public struct AuditFilter: Sendable {
        public var action: String?
        public var actorID: String?
        public var resourceID: String?
        public var since: Date?
        public var until: Date?
        public init(action: String? = nil, actorID: String? = nil, resourceID: String? = nil, since: Date? = nil, until: Date? = nil) {
            self.action = action
            self.actorID = actorID
            self.resourceID = resourceID
            self.since = since
            self.until = until
        }
    }

    /// An organization's audit events, newest first, with cursor pagination.
    public func auditEvents(orgID: String, filter: AuditFilter, cursor: Int64?, limit: Int) async throws -> Page<AuditEvent> {
        let rows = try await read { db in
            var query: SQLQueryString = """
                SELECT seq, id, org_id, actor_type, actor_id, action, resource_type, resource_id, outcome, ip, user_agent,
                       created_at, details_sealed FROM audit_events WHERE org_id = \(bind: orgID)
                """
            if let cursor { query += " AND seq < \(bind: cursor)" }
            if let action = filter.action { query += " AND action = \(bind: action)" }
            if let actorID = filter.actorID { query += " AND actor_id = \(bind: actorID)" }
            if let resourceID = filter.resourceID { query += " AND resource_id = \(bind: resourceID)" }
            if let since = filter.since { query += " AND created_at >= \(bind: since.millisecondsSince1970)" }
            if let until = filter.until { query += " AND created_at < \(bind: until.millisecondsSince1970)" }
            query += " ORDER BY seq DESC LIMIT \(literal: limit + 1)"
            return try await db.raw(query).all()
        }
        var events = try rows.map(event(from:))
        var next: String?
        if events.count > limit {
            events.removeLast()
            next = events.last.map { String($0.seq) }
        }
        return Page(items: events, nextCursor: next)
    }

    /// Walks the whole chain and reports every event that does not verify.
    public func verifyAudit() async throws -> AuditVerification {
        let rows = try await read { db in
            try await db.raw(
                """
                SELECT seq, id, org_id, actor_type, actor_id, action, resource_type, resource_id, outcome, ip, user_agent,
                       created_at, details_sealed, mac_key_id, prev_hash, hash FROM audit_events ORDER BY seq
                """
            ).all()
        }
        var problems: [String] = []
        var expectedPrev = Self.genesisHash
        var count = 0
        var head: String?
        for row in rows {
            count += 1
            let seq = try row.int("seq")
            let id = try row.string("id")
            let prevHash = try row.string("prev_hash")
            let hash = try row.string("hash")
            if prevHash != expectedPrev {
                problems.append("event \(seq) (\(id)): the chain is broken before it (an event was deleted or reordered)")
            }
            guard let key = sealer.keyring.macKey(id: try row.string("mac_key_id"), info: Self.macInfo) else {
                problems.append("event \(seq) (\(id)): its MAC key is not in the keyring")
                expectedPrev = hash
                continue
            }
            let computed = Self.mac(
                key: key, prevHash: prevHash, id: id, orgID: try row.optionalString("org_id"), actorType: try row.string("actor_type"),
                actorID: try row.optionalString("actor_id"), action: try row.string("action"),
                resourceType: try row.string("resource_type"),
                resourceID: try row.optionalString("resource_id"), outcome: try row.string("outcome"), ip: try row.string("ip"),
                userAgent: try row.string("user_agent"), createdAt: try row.int("created_at"),
                sealedDetails: try row.bytes("details_sealed")
            )
            if !Token.constantTimeEquals(computed, hash) {
                problems.append("event \(seq) (\(id)): its contents were altered")
            }
            expectedPrev = hash
            head = hash
        }
        return AuditVerification(eventsChecked: count, problems: problems, headHash: head)
    }
}
