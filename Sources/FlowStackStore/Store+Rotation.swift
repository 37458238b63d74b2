import Crypto
import FlowStackCore
import FlowStackCrypto
import Foundation
import SQLKit

/// A column of sealed values, with what it takes to rebuild each value's `SealContext`.
struct SealedColumn: Sendable {
    var table: String
    var column: String
    var purpose: KeyPurpose
    /// Columns that identify a row (selected as k0, k1).
    var keys: [String]
    /// The SELECT list and FROM clause: it must yield k0[, k1], org, sealed.
    var source: String
    var context: @Sendable (_ keys: [String], _ org: String?) -> SealContext

    static let all: [SealedColumn] = [
        SealedColumn(
            table: "projects", column: "description_sealed", purpose: .data, keys: ["id"],
            source: "SELECT id AS k0, org_id AS org, description_sealed AS sealed FROM projects WHERE description_sealed IS NOT NULL",
            context: { SealContext(table: "projects", rowID: $0[0], column: "description", orgID: $1) }),
        SealedColumn(
            table: "invitations", column: "email_sealed", purpose: .data, keys: ["id"],
            source: "SELECT id AS k0, org_id AS org, email_sealed AS sealed FROM invitations",
            context: { SealContext(table: "invitations", rowID: $0[0], column: "email", orgID: $1) }),
        SealedColumn(
            table: "workflow_versions", column: "definition_sealed", purpose: .data, keys: ["id"],
            source: """
                SELECT v.id AS k0, w.org_id AS org, v.definition_sealed AS sealed
                FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id
                """,
            context: { SealContext(table: "workflow_versions", rowID: $0[0], column: "definition", orgID: $1) }),
        SealedColumn(
            table: "executions", column: "error_sealed", purpose: .data, keys: ["id"],
            source: "SELECT id AS k0, org_id AS org, error_sealed AS sealed FROM executions WHERE error_sealed IS NOT NULL",
            context: { SealContext(table: "executions", rowID: $0[0], column: "error", orgID: $1) }),
        SealedColumn(
            table: "execution_events", column: "event_sealed", purpose: .data, keys: ["execution_id", "seq"],
            source: """
                SELECT e.execution_id AS k0, e.seq AS k1, x.org_id AS org, e.event_sealed AS sealed
                FROM execution_events e JOIN executions x ON x.id = e.execution_id
                """,
            context: { SealContext(table: "execution_events", rowID: "\($0[0])/\($0[1])", column: "event", orgID: $1) }),
        SealedColumn(
            table: "variables", column: "value_sealed", purpose: .data, keys: ["project_id", "name"],
            source: "SELECT project_id AS k0, name AS k1, org_id AS org, value_sealed AS sealed FROM variables",
            context: { SealContext(table: "variables", rowID: "\($0[0])/\($0[1])", column: "value", orgID: $1) }),
        SealedColumn(
            table: "connections", column: "config_sealed", purpose: .data, keys: ["id"],
            source: "SELECT id AS k0, org_id AS org, config_sealed AS sealed FROM connections",
            context: { SealContext(table: "connections", rowID: $0[0], column: "config", orgID: $1) }),
        SealedColumn(
            table: "oauth2_states", column: "verifier_sealed", purpose: .data, keys: ["state_hash"],
            source: "SELECT state_hash AS k0, org_id AS org, verifier_sealed AS sealed FROM oauth2_states",
            context: { SealContext(table: "oauth2_states", rowID: $0[0], column: "verifier", orgID: $1) }),
        SealedColumn(
            table: "executions", column: "resume_sealed", purpose: .data, keys: ["id", "events"],
            source: "SELECT id AS k0, events AS k1, org_id AS org, resume_sealed AS sealed FROM executions WHERE resume_sealed IS NOT NULL",
            context: { SealContext(table: "executions", rowID: "\($0[0])/\($0[1])", column: "resume", orgID: $1) }),
        SealedColumn(
            table: "connection_secrets", column: "sealed", purpose: .connections, keys: ["connection_id", "field"],
            source: "SELECT connection_id AS k0, field AS k1, org_id AS org, sealed AS sealed FROM connection_secrets",
            context: { SealContext(table: "connection_secrets", rowID: $0[0], column: $0[1], orgID: $1) }),
    ]
}

/// Re-encryption progress, reported per batch.
public struct ReencryptionProgress: Sendable {
    public var purpose: KeyPurpose
    public var table: String
    public var done: Int
    public var total: Int
}

extension Store {
    public static let batchSize = 500
    static let numericKeys: Set<String> = ["seq", "events"]

    /// How many stored values each key id seals, per purpose (for `flowstack keys status`).
    public func sealedCounts(batchSize: Int = Store.batchSize) async throws -> [KeyPurpose: [String: Int]] {
        var counts: [KeyPurpose: [String: Int]] = [.data: [:], .connections: [:]]
        for column in SealedColumn.all {
            try await forEachBatch(column, batchSize: batchSize) { rows in
                for row in rows {
                    let keyID = Sealer.keyID(of: try row.bytes("sealed")) ?? "?"
                    counts[column.purpose]![keyID, default: 0] += 1
                }
                return true
            }
        }
        let audit = try await read { db in try await db.raw("SELECT mac_key_id, COUNT(*) AS n FROM audit_events GROUP BY mac_key_id").all()
        }
        for row in audit { counts[.data]![try row.string("mac_key_id"), default: 0] += Int(try row.int("n")) }
        return counts
    }

    /// Calls `body` with pages of (k0, k1?, org, sealed) rows in primary-key order. Pages follow
    /// the last key seen (not an offset), so rows deleted meanwhile never make a pass skip others.
    private func forEachBatch(_ column: SealedColumn, batchSize: Int, _ body: ([any SQLRow]) async throws -> Bool) async throws {
        let order = column.keys.indices.map { "k\($0)" }.joined(separator: ", ")
        var last: [any Encodable & Sendable]?
        while true {
            var query = SQLQueryString("SELECT * FROM (\(column.source)) s" as String)
            if let last {
                if last.count == 1 {
                    query += " WHERE k0 > \(bind: last[0])"
                } else {
                    query += " WHERE k0 > \(bind: last[0]) OR (k0 = \(bind: last[0]) AND k1 > \(bind: last[1]))"
                }
            }
            query += SQLQueryString(" ORDER BY \(order) LIMIT \(batchSize)" as String)
            let page = query
            let rows = try await read { db in try await db.raw(page).all() }
            if rows.isEmpty { return }
            guard try await body(rows) else { return }
            if rows.count < batchSize { return }
            let final = rows[rows.count - 1]
            last = try column.keys.indices.map { index -> any Encodable & Sendable in
                Self.numericKeys.contains(column.keys[index]) ? try final.int("k\(index)") : try final.string("k\(index)")
            }
        }
    }

    /// Re-seals every value of `purpose` that is not under the active key. Each value is replaced
    /// only if it did not change meanwhile (compare-and-swap), so concurrent writers lose nothing;
    /// returns how many values still named another key when the pass began (0: done).
    public func reencrypt(_ purpose: KeyPurpose, batchSize: Int = Store.batchSize, progress: @Sendable (ReencryptionProgress) -> Void)
        async throws -> Int
    {
        let active = sealer.keyring.active(purpose).id
        var stale = 0
        for column in SealedColumn.all where column.purpose == purpose {
            var done = 0
            let countText = "SELECT COUNT(*) AS n FROM (\(column.source)) s"
            let total = try await read { db in try await db.raw(SQLQueryString(countText)).first()?.int("n") ?? 0 }
            try await forEachBatch(column, batchSize: batchSize) { rows in
                var updates: [(keys: [String], old: [UInt8], new: [UInt8])] = []
                for row in rows {
                    let old = try row.bytes("sealed")
                    guard Sealer.keyID(of: old) != active else { continue }
                    let keys = try column.keys.indices.map { index -> String in
                        Self.numericKeys.contains(column.keys[index]) ? String(try row.int("k\(index)")) : try row.string("k\(index)")
                    }
                    let context = column.context(keys, try row.optionalString("org"))
                    let plaintext: [UInt8]
                    do {
                        plaintext = try sealer.open(old, purpose: purpose, context: context)
                    } catch {
                        throw DatabaseError("\(column.table) \(keys.joined(separator: "/")): \(error)")
                    }
                    updates.append((keys, old, try sealer.seal(plaintext, purpose: purpose, context: context)))
                }
                stale += updates.count
                if !updates.isEmpty {
                    let batch = updates
                    try await write { db in
                        for update in batch {
                            var sql = SQLQueryString("UPDATE \(column.table) SET \(column.column) = " as String)
                            sql += "\(bind: Data(update.new)) WHERE \(unsafeRaw: column.column) = \(bind: Data(update.old))"
                            for (index, key) in column.keys.enumerated() {
                                if Self.numericKeys.contains(key) {
                                    sql += " AND \(unsafeRaw: key) = \(bind: Int64(update.keys[index]) ?? -1)"
                                } else {
                                    sql += " AND \(unsafeRaw: key) = \(bind: update.keys[index])"
                                }
                            }
                            try await db.raw(sql).run()
                        }
                    }
                }
                done += rows.count
                progress(ReencryptionProgress(purpose: purpose, table: column.table, done: done, total: Int(total)))
                return true
            }
        }
        if purpose == .data {
            stale += try await rechainAudit()
        }
        return stale
    }

    /// Moves the audit trail to the active data key: the details are re-sealed and, since each
    /// event's MAC covers its sealed details and the previous hash, the chain is recomputed from
    /// the first event that names an older key. The whole chain is verified just before, so
    /// re-keying does not launder a trail that was already tampered with; the rewrite itself holds
    /// the append lock (PostgreSQL) or the single writer (SQLite). Returns the events rewritten.
    func rechainAudit() async throws -> Int {
        let active = sealer.keyring.active(.data).id
        let first = try await read { db in
            try await db.raw("SELECT MIN(seq) AS s FROM audit_events WHERE mac_key_id <> \(bind: active)").first()?.optionalInt("s")
        }
        guard let first else { return 0 }
        let verification = try await verifyAudit()
        guard verification.problems.isEmpty else {
            throw DatabaseError(
                "the audit chain does not verify (\(verification.problems.count) problems); it is not re-keyed, so that tampering stays visible"
            )
        }
        return try await write { db in
            if self.database.kind == .postgres {
                try await db.raw("SELECT pg_advisory_xact_lock(\(literal: 7_310_002))").run()
            }
            let rows = try await db.raw(
                """
                SELECT seq, id, org_id, actor_type, actor_id, action, resource_type, resource_id, outcome, ip, user_agent,
                       created_at, details_sealed, prev_hash FROM audit_events WHERE seq >= \(bind: first) ORDER BY seq
                """
            ).all()
            var prev =
                try await db.raw("SELECT hash FROM audit_events WHERE seq < \(bind: first) ORDER BY seq DESC LIMIT 1").first()?.string(
                    "hash")
                ?? Self.genesisHash
            for row in rows {
                let id = try row.string("id")
                let orgID = try row.optionalString("org_id")
                let details = try self.sealer.open(
                    try row.bytes("details_sealed"), purpose: .data,
                    context: SealContext(table: "audit_events", rowID: id, column: "details", orgID: orgID))
                let sealed = try self.sealer.seal(
                    details, purpose: .data, context: SealContext(table: "audit_events", rowID: id, column: "details", orgID: orgID))
                let hash = try self.auditMAC(row: row, prevHash: prev, sealedDetails: sealed, keyID: active)
                try await db.raw(
                    """
                    UPDATE audit_events SET details_sealed = \(bind: Data(sealed)), mac_key_id = \(bind: active), prev_hash = \(bind: prev),
                        hash = \(bind: hash) WHERE seq = \(bind: try row.int("seq"))
                    """
                ).run()
                prev = hash
            }
            return rows.count
        }
    }

    /// Removes a key's check value once nothing is sealed with it any more.
    public func forgetKey(_ keyID: String) async throws {
        try await write { db in try await db.raw("DELETE FROM key_checks WHERE key_id = \(bind: keyID)").run() }
    }

    /// Key ids that have sealed data in this database (from their check values).
    public func recordedKeyIDs() async throws -> [String: KeyPurpose] {
        let rows = try await read { db in try await db.raw("SELECT key_id, purpose FROM key_checks").all() }
        var ids: [String: KeyPurpose] = [:]
        for row in rows { ids[try row.string("key_id")] = KeyPurpose(rawValue: try row.string("purpose")) }
        return ids
    }
}
