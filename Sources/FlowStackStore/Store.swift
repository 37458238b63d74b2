import FlowStackCore
import FlowStackCrypto
import Foundation
import Logging
import SQLKit

/// FlowStack's repositories over one `Database`, with the sealer for encrypted columns and the
/// clock for every timestamp.
///
/// Methods that change data take the `SQLDatabase` of an open transaction (`on db`), so callers
/// compose a change and its audit event into one atomic write.
public struct Store: Sendable {
    public let database: any Database
    public let sealer: Sealer
    public let clock: any WallClock
    /// Opened workflow versions by org and version id. A version never changes once written, so
    /// a claimed execution (and each sub-workflow call) need not read and unseal it again; the
    /// lifetime bounds how long a deleted workflow's version is still served.
    let versions = ExpiringCache<String, Workflow>(lifetime: .seconds(60), capacity: 2_000)
    /// Announced changes, delivered to this process's caches (`write(announcing:_:)`, `ChangeListener`).
    public let changes: ChangeBus

    public init(database: any Database, sealer: Sealer, clock: any WallClock = SystemWallClock()) {
        self.database = database
        self.sealer = sealer
        self.clock = clock
        self.changes = ChangeBus()
    }

    public var now: Date { clock.now() }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await database.read(body)
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await database.write(body)
    }

    /// A write whose `changes` other readers must see: on PostgreSQL they are sent with the
    /// transaction (NOTIFY, delivered to every replica when it commits), and in this process they
    /// are delivered as soon as it has committed. Nothing is announced when `body` throws.
    public func write<T: Sendable>(announcing changes: [Change], _ body: @escaping @Sendable (any SQLDatabase) async throws -> T)
        async throws -> T
    {
        let notify = database.kind == .postgres
        let result = try await database.write { db in
            let result = try await body(db)
            if notify {
                for change in Set(changes) {
                    try await db.raw("SELECT pg_notify(\(literal: Self.changeChannel), \(bind: change.payload))").run()
                }
            }
            return result
        }
        for change in changes { self.changes.deliver(change) }
        return result
    }

    /// The PostgreSQL channel changes are announced on.
    public static let changeChannel = "flowstack_changes"
}

extension SQLRow {
    func string(_ column: String) throws -> String { try decode(column: column, as: String.self) }
    func optionalString(_ column: String) throws -> String? { try decode(column: column, as: String?.self) }
    func int(_ column: String) throws -> Int64 { try decode(column: column, as: Int64.self) }
    func optionalInt(_ column: String) throws -> Int64? { try decode(column: column, as: Int64?.self) }
    func date(_ column: String) throws -> Date { Date(millisecondsSince1970: try int(column)) }
    func optionalDate(_ column: String) throws -> Date? { try optionalInt(column).map(Date.init(millisecondsSince1970:)) }
    func bytes(_ column: String) throws -> [UInt8] { Array(try decode(column: column, as: Data.self)) }
    func optionalBytes(_ column: String) throws -> [UInt8]? { try decode(column: column, as: Data?.self).map(Array.init) }
}

extension Optional where Wrapped == Date {
    var ms: Int64? { self?.millisecondsSince1970 }
}

/// Whether an error is a unique-constraint violation (on either engine).
func isUniqueViolation(_ error: any Error) -> Bool {
    let text = String(reflecting: error)
    return text.contains("UNIQUE constraint failed") || text.contains("23505") || text.contains("unique_violation")
        || text.contains("duplicate key")
}
