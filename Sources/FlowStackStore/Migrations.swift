import FlowStackCore
import Foundation
import Logging
import SQLKit

/// One schema change. Statements use `{int}`, `{blob}` and `{serial}` for the column types that
/// SQLite and PostgreSQL spell differently.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let statements: [String]

    func sql(for kind: DatabaseKind) -> [String] {
        statements.map { statement in
            switch kind {
            case .sqlite:
                statement
                    .replacingOccurrences(of: "{int}", with: "INTEGER")
                    .replacingOccurrences(of: "{blob}", with: "BLOB")
                    .replacingOccurrences(of: "{serial}", with: "INTEGER PRIMARY KEY AUTOINCREMENT")
            case .postgres:
                statement
                    .replacingOccurrences(of: "{int}", with: "BIGINT")
                    .replacingOccurrences(of: "{blob}", with: "BYTEA")
                    .replacingOccurrences(of: "{serial}", with: "BIGSERIAL PRIMARY KEY")
            }
        }
    }
}

/// The ordered, versioned migrations, applied at start. Never edit one that has shipped: add a
/// new one.
public enum Migrations {
    public static let all: [Migration] = [
        Migration(
            version: 1, name: "identity",
            statements: [
                """
                CREATE TABLE key_checks (
                    key_id TEXT PRIMARY KEY, purpose TEXT NOT NULL, sealed {blob} NOT NULL, created_at {int} NOT NULL)
                """,
                "CREATE TABLE instance_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
                """
                CREATE TABLE users (
                    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
                    password_hash TEXT NOT NULL, failed_logins {int} NOT NULL DEFAULT 0, locked_until {int},
                    disabled {int} NOT NULL DEFAULT 0, created_at {int} NOT NULL, password_changed_at {int} NOT NULL)
                """,
                """
                CREATE TABLE organizations (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL, created_at {int} NOT NULL)
                """,
                """
                CREATE TABLE memberships (
                    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
                    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    role TEXT NOT NULL, created_at {int} NOT NULL, PRIMARY KEY (org_id, user_id))
                """,
                "CREATE INDEX memberships_user ON memberships (user_id)",
                """
                CREATE TABLE projects (
                    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
                    name TEXT NOT NULL, description_sealed {blob}, created_at {int} NOT NULL, updated_at {int} NOT NULL)
                """,
                "CREATE INDEX projects_org ON projects (org_id)",
                """
                CREATE TABLE project_members (
                    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
                    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    role TEXT NOT NULL, created_at {int} NOT NULL, PRIMARY KEY (project_id, user_id))
                """,
                """
                CREATE TABLE sessions (
                    id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,
                    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    created_at {int} NOT NULL, last_seen_at {int} NOT NULL, expires_at {int} NOT NULL,
                    ip TEXT NOT NULL, user_agent TEXT NOT NULL)
                """,
                "CREATE INDEX sessions_user ON sessions (user_id)",
                """
                CREATE TABLE api_keys (
                    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
                    project_id TEXT REFERENCES projects(id) ON DELETE CASCADE,
                    created_by TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, last4 TEXT NOT NULL,
                    scope TEXT NOT NULL, created_at {int} NOT NULL, last_used_at {int}, expires_at {int}, revoked_at {int})
                """,
                "CREATE INDEX api_keys_org ON api_keys (org_id)",
                """
                CREATE TABLE invitations (
                    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
                    token_hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL, email_sealed {blob} NOT NULL,
                    invited_by TEXT NOT NULL, created_at {int} NOT NULL, expires_at {int} NOT NULL, accepted_at {int})
                """,
                """
                CREATE TABLE audit_events (
                    seq {serial}, id TEXT NOT NULL UNIQUE, org_id TEXT, actor_type TEXT NOT NULL, actor_id TEXT,
                    action TEXT NOT NULL, resource_type TEXT NOT NULL, resource_id TEXT, outcome TEXT NOT NULL,
                    ip TEXT NOT NULL, user_agent TEXT NOT NULL, created_at {int} NOT NULL,
                    details_sealed {blob} NOT NULL, mac_key_id TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)
                """,
                "CREATE INDEX audit_events_org ON audit_events (org_id, seq)",
            ]),
        Migration(
            version: 2, name: "workflows and executions",
            statements: [
                """
                CREATE TABLE workflows (
                    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
                    name TEXT NOT NULL, active {int} NOT NULL DEFAULT 0, version_id TEXT NOT NULL, version {int} NOT NULL,
                    created_at {int} NOT NULL, updated_at {int} NOT NULL)
                """,
                "CREATE INDEX workflows_project ON workflows (project_id, created_at)",
                """
                CREATE TABLE workflow_versions (
                    id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
                    version {int} NOT NULL, definition_sealed {blob} NOT NULL, created_by TEXT, created_at {int} NOT NULL,
                    UNIQUE (workflow_id, version))
                """,
                """
                CREATE TABLE webhooks (
                    path TEXT PRIMARY KEY, method TEXT NOT NULL, node TEXT NOT NULL,
                    workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE)
                """,
                "CREATE INDEX webhooks_workflow ON webhooks (workflow_id)",
                """
                CREATE TABLE executions (
                    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, project_id TEXT NOT NULL, workflow_id TEXT NOT NULL,
                    version_id TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL, trigger_node TEXT NOT NULL,
                    created_at {int} NOT NULL, started_at {int}, finished_at {int}, failed_node TEXT, error_sealed {blob},
                    fence {int} NOT NULL DEFAULT 0, lease_owner TEXT, lease_expires {int}, wait_until {int},
                    events {int} NOT NULL DEFAULT 0, parent_id TEXT, retry_of TEXT)
                """,
                "CREATE INDEX executions_project ON executions (project_id, created_at, id)",
                "CREATE INDEX executions_queue ON executions (status, lease_expires)",
                "CREATE INDEX executions_workflow ON executions (workflow_id)",
                """
                CREATE TABLE execution_events (
                    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE, seq {int} NOT NULL,
                    node TEXT, event_sealed {blob} NOT NULL, created_at {int} NOT NULL, PRIMARY KEY (execution_id, seq))
                """,
                """
                CREATE TABLE webhook_replays (
                    workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE, request_id TEXT NOT NULL,
                    seen_at {int} NOT NULL, PRIMARY KEY (workflow_id, request_id))
                """,
                """
                CREATE TABLE schedule_fires (
                    workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE, node TEXT NOT NULL,
                    due_at {int} NOT NULL, execution_id TEXT NOT NULL, PRIMARY KEY (workflow_id, node, due_at))
                """,
            ]),
        Migration(
            version: 3, name: "project variables",
            statements: [
                """
                CREATE TABLE variables (
                    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE, name TEXT NOT NULL,
                    org_id TEXT NOT NULL, value_sealed {blob} NOT NULL, created_at {int} NOT NULL, updated_at {int} NOT NULL,
                    PRIMARY KEY (project_id, name))
                """
            ]),
        Migration(
            version: 4, name: "connections",
            statements: [
                // Non-secret fields are sealed with the data key; every secret field is a row of its own in
                // connection_secrets, sealed with the connections key and bound to (connection, field, org).
                """
                CREATE TABLE connections (
                    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
                    name TEXT NOT NULL, type TEXT NOT NULL, config_sealed {blob} NOT NULL,
                    status TEXT NOT NULL, status_message TEXT, last_tested_at {int}, token_expires_at {int},
                    created_by TEXT, created_at {int} NOT NULL, updated_at {int} NOT NULL, UNIQUE (project_id, name))
                """,
                """
                CREATE TABLE connection_secrets (
                    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE, field TEXT NOT NULL,
                    org_id TEXT NOT NULL, sealed {blob} NOT NULL, PRIMARY KEY (connection_id, field))
                """,
                """
                CREATE TABLE oauth2_states (
                    state_hash TEXT PRIMARY KEY, connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
                    org_id TEXT NOT NULL, user_id TEXT NOT NULL, session_id TEXT NOT NULL, verifier_sealed {blob} NOT NULL,
                    redirect_uri TEXT NOT NULL, expires_at {int} NOT NULL)
                """,
            ]),
        Migration(
            version: 5, name: "resume payloads",
            statements: [
                // What a resume call sent to a waiting execution (sealed, bound to the wait it ends).
                "ALTER TABLE executions ADD COLUMN resume_sealed {blob}"
            ]),
        Migration(
            version: 6, name: "idempotency keys",
            statements: [
                // An Idempotency-Key of a webhook or run request (its SHA-256, never the key) and the
                // execution it started, kept for a day.
                """
                CREATE TABLE idempotency_keys (
                    workflow_id TEXT NOT NULL, key_hash TEXT NOT NULL, execution_id TEXT NOT NULL, created_at {int} NOT NULL,
                    PRIMARY KEY (workflow_id, key_hash))
                """,
                "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
            ]),
        Migration(
            version: 7, name: "failed logins of unknown addresses",
            statements: [
                // Failed logins for e-mail addresses no account has (SHA-256 of the address), counted
                // and locked like an account's, so the lockout does not tell which accounts exist.
                """
                CREATE TABLE login_failures (
                    email_hash TEXT PRIMARY KEY, failures {int} NOT NULL, locked_until {int}, updated_at {int} NOT NULL)
                """,
                "CREATE INDEX login_failures_updated ON login_failures (updated_at)",
                // An account's count of failures starts again after a quiet period, as an unknown
                // address's does (its row is forgotten).
                "ALTER TABLE users ADD COLUMN last_failed_login_at {int}",
            ]),
        Migration(
            version: 8, name: "schedule due times",
            statements: [
                // The next due time of each Schedule trigger of an active workflow, kept up to date on
                // activate, deactivate, save and delete, so a scheduler pass reads only what is due
                // (through the index) instead of every active workflow. Only ids and a time: the
                // trigger's rule stays in the sealed definition.
                """
                CREATE TABLE schedules (
                    workflow_id TEXT NOT NULL, node TEXT NOT NULL, next_due_at {int} NOT NULL,
                    PRIMARY KEY (workflow_id, node))
                """,
                "CREATE INDEX schedules_due ON schedules (next_due_at)",
            ]),
    ]

    /// Applies the migrations not yet applied, in order, each in its own transaction.
    public static func apply(to database: any Database, logger: Logger, migrations: [Migration] = all) async throws {
        let kind = database.kind
        try await database.write { db in
            try await db.raw(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version \(unsafeRaw: kind == .sqlite ? "INTEGER" : "BIGINT") PRIMARY KEY,
                    name TEXT NOT NULL, applied_at \(unsafeRaw: kind == .sqlite ? "INTEGER" : "BIGINT") NOT NULL)
                """
            ).run()
        }
        for migration in migrations.sorted(by: { $0.version < $1.version }) {
            let applied: Bool = try await database.maintenance { db in
                if kind == .postgres {
                    // Several replicas may start at once: one applies, the others wait and skip.
                    try await db.raw("SELECT pg_advisory_xact_lock(\(literal: 7_310_001))").run()
                }
                let done = try await db.raw("SELECT version FROM schema_migrations WHERE version = \(bind: migration.version)").first()
                if done != nil { return false }
                for statement in migration.sql(for: kind) {
                    try await db.raw(SQLQueryString(statement)).run()
                }
                try await db.raw(
                    """
                    INSERT INTO schema_migrations (version, name, applied_at)
                    VALUES (\(bind: migration.version), \(bind: migration.name), \(bind: Date().millisecondsSince1970))
                    """
                ).run()
                return true
            }
            if applied {
                logger.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
        }
    }

    /// Whether the database holds FlowStack tables already.
    public static func isInitialized(_ database: any Database) async throws -> Bool {
        try await database.read { db in
            let sql: SQLQueryString =
                db.dialect.name == "sqlite"
                ? "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'key_checks'"
                : "SELECT table_name FROM information_schema.tables WHERE table_name = 'key_checks' AND table_schema = current_schema()"
            return try await db.raw(sql).first() != nil
        }
    }
}
