import CSQLite
import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLKit
import Synchronization

/// One SQLite connection, driven synchronously through the C API.
///
/// FlowStack runs each connection on a serial executor of its own (`SerialQueueTaskExecutor`):
/// a whole transaction — the writer's group-committed batch, or a read — executes on that thread
/// without a thread hop per statement. Statements are prepared once and kept (`SQLITE_PREPARE_PERSISTENT`).
/// The lock makes any use from elsewhere safe too, just not as fast.
final class SQLiteConnection: Sendable {
    private struct State: ~Copyable {
        var handle: OpaquePointer?
        var statements: [String: OpaquePointer] = [:]
        var walHook: WALHook?
    }

    private let state: Mutex<State>
    let executor: SerialQueueTaskExecutor
    private static let maximumCachedStatements = 256

    /// Opens (creating) the database file at `path`.
    init(path: String, label: String) throws {
        var handle: OpaquePointer?
        // NOMUTEX: SQLite's own per-connection mutex is redundant with `state`'s lock.
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let code = sqlite3_open_v2(path, &handle, flags, nil)
        guard code == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw SQLiteError(code: code, message: message)
        }
        sqlite3_extended_result_codes(handle, 1)
        state = Mutex(State(handle: handle))
        executor = SerialQueueTaskExecutor(label: label)
    }

    /// Runs one statement with `binds` and returns its rows.
    func query(_ sql: String, _ binds: [SQLiteValue]) throws -> [SQLiteRow] {
        try state.withLock { state in
            guard let handle = state.handle else { throw SQLiteError(code: SQLITE_MISUSE, message: "the connection is closed") }
            let statement = try Self.statement(for: sql, handle: handle, cache: &state.statements)
            defer {
                sqlite3_reset(statement)
                sqlite3_clear_bindings(statement)
            }
            for (offset, value) in binds.enumerated() {
                let index = Int32(offset + 1)
                let code: Int32 =
                    switch value {
                    case .null: sqlite3_bind_null(statement, index)
                    case .integer(let number): sqlite3_bind_int64(statement, index, number)
                    case .real(let number): sqlite3_bind_double(statement, index, number)
                    case .text(let text):
                        text.withCString { flowstack_sqlite3_bind_text(statement, index, $0, Int32(text.utf8.count)) }
                    case .blob(let bytes):
                        bytes.withUnsafeBytes {
                            flowstack_sqlite3_bind_blob(
                                statement, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32($0.count))
                        }
                    }
                guard code == SQLITE_OK else { throw SQLiteError(handle: handle, code: code) }
            }
            var rows: [SQLiteRow] = []
            var columns: SQLiteColumns?
            while true {
                let code = sqlite3_step(statement)
                if code == SQLITE_DONE { return rows }
                guard code == SQLITE_ROW else { throw SQLiteError(handle: handle, code: code) }
                let names = columns ?? SQLiteColumns(statement: statement)
                columns = names
                rows.append(SQLiteRow(columns: names, values: (0..<Int32(names.names.count)).map { Self.value(statement, $0) }))
            }
        }
    }

    /// Calls `hook` after every commit on this connection that wrote to the WAL, on the committing
    /// thread, inside the statement (so `hook` must not use this connection's methods; it gets the
    /// raw handle). This replaces SQLite's automatic checkpoint on this connection.
    func setWALHook(_ hook: WALHook) {
        state.withLock { state in
            guard let handle = state.handle else { return }
            state.walHook = hook
            sqlite3_wal_hook(
                handle,
                { context, handle, _, frames in
                    guard let context, let handle else { return SQLITE_OK }
                    Unmanaged<WALHook>.fromOpaque(context).takeUnretainedValue().committed(handle, Int(frames))
                    return SQLITE_OK
                }, Unmanaged.passUnretained(hook).toOpaque())
        }
    }

    /// Whether `close()` has not run yet.
    var isOpen: Bool { state.withLock { $0.handle != nil } }

    func close() {
        state.withLock { state in
            for statement in state.statements.values { sqlite3_finalize(statement) }
            state.statements = [:]
            sqlite3_close_v2(state.handle)
            state.handle = nil
            state.walHook = nil
        }
    }

    private static func statement(for sql: String, handle: OpaquePointer, cache: inout [String: OpaquePointer]) throws -> OpaquePointer {
        if let cached = cache[sql] { return cached }
        var statement: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let code = sql.withCString { text in
            let code = sqlite3_prepare_v3(handle, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, &tail)
            // Only one statement per call: refuse SQL that would silently drop the rest.
            if code == SQLITE_OK, let tail, String(cString: tail).contains(where: { !$0.isWhitespace && $0 != ";" }) {
                return SQLITE_MISUSE
            }
            return code
        }
        guard code == SQLITE_OK, let statement else {
            let error =
                code == SQLITE_MISUSE && statement != nil
                ? SQLiteError(code: code, message: "more than one statement in one query")
                : SQLiteError(handle: handle, code: code)
            sqlite3_finalize(statement)
            throw error
        }
        if cache.count >= maximumCachedStatements {
            for cached in cache.values { sqlite3_finalize(cached) }
            cache = [:]
        }
        cache[sql] = statement
        return statement
    }

    private static func value(_ statement: OpaquePointer, _ column: Int32) -> SQLiteValue {
        switch sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER:
            return .integer(sqlite3_column_int64(statement, column))
        case SQLITE_FLOAT:
            return .real(sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            guard let text = sqlite3_column_text(statement, column) else { return .text("") }
            let count = Int(sqlite3_column_bytes(statement, column))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, column))
            guard count > 0, let bytes = sqlite3_column_blob(statement, column) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        default:
            return .null
        }
    }
}

/// A value as SQLite stores it.
enum SQLiteValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    static func optional(_ value: String?) -> SQLiteValue { value.map(SQLiteValue.text) ?? .null }
    static func optional(_ value: Int64?) -> SQLiteValue { value.map(SQLiteValue.integer) ?? .null }

    /// The SQLite value of a bound Swift value. The store binds strings, integers, booleans,
    /// doubles, bytes and their optionals; anything else is refused rather than guessed at.
    init(binding value: any Encodable) throws {
        switch value {
        case let text as String: self = .text(text)
        case let optional as any SQLiteOptionalBinding:
            // One cast for every optional (nil or not), instead of trying each kind and encoding.
            guard let wrapped = optional.wrappedBinding else {
                self = .null
                return
            }
            try self.init(binding: wrapped)
        case let number as Int: self = .integer(Int64(number))
        case let number as Int64: self = .integer(number)
        case let number as Int32: self = .integer(Int64(number))
        case let flag as Bool: self = .integer(flag ? 1 : 0)
        case let number as Double: self = .real(number)
        case let data as Data: self = .blob(Array(data))
        case let bytes as [UInt8]: self = .blob(bytes)
        default:
            let capture = NilCapture()
            try? value.encode(to: capture)
            guard capture.isNil else {
                throw SQLiteError(code: SQLITE_MISMATCH, message: "cannot bind a value of type \(type(of: value))")
            }
            self = .null
        }
    }
}

/// An optional bind: its value, or nil for SQL NULL.
protocol SQLiteOptionalBinding {
    var wrappedBinding: (any Encodable)? { get }
}

extension Optional: SQLiteOptionalBinding where Wrapped: Encodable {
    var wrappedBinding: (any Encodable)? { self.map { $0 as any Encodable } }
}

/// A statement whose values are already in SQLite's terms, for the hottest inserts: SQLite runs
/// it as it is, without SQLKit's serializer or a cast per value. Elsewhere (PostgreSQL, or inside
/// another expression) it serializes as ordinary binds. Its `sql` uses `?1`, `?2`, … in order,
/// each once, and no other `?`.
struct BoundStatement: SQLExpression {
    let sql: String
    let values: [SQLiteValue]

    func serialize(to serializer: inout SQLSerializer) {
        // `?N` placeholders in order; the text between them as it is.
        var rest = Substring(sql)
        var index = 0
        while let mark = rest.firstIndex(of: "?") {
            serializer.write(String(rest[..<mark]))
            var end = rest.index(after: mark)
            while end < rest.endIndex, rest[end].isASCII, rest[end].isNumber { end = rest.index(after: end) }
            precondition(index < values.count, "BoundStatement: more placeholders than values")
            switch values[index] {
            // A literal NULL, not a bind: a bound null carries a type, which PostgreSQL then
            // refuses for a column of another one.
            case .null: serializer.write("NULL")
            case .integer(let value): serializer.write(bind: value)
            case .real(let value): serializer.write(bind: value)
            case .text(let value): serializer.write(bind: value)
            case .blob(let value): serializer.write(bind: Data(value))
            }
            index += 1
            rest = rest[end...]
        }
        serializer.write(String(rest))
    }
}

/// Detects an `Optional.none` (the only value that encodes as a single nil).
private final class NilCapture: Encoder, SingleValueEncodingContainer {
    var isNil = false
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    struct Unsupported: Error {}
    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(Refusing<Key>())
    }
    func unkeyedContainer() -> any UnkeyedEncodingContainer { RefusingUnkeyed() }
    func singleValueContainer() -> any SingleValueEncodingContainer { self }
    func encodeNil() throws { isNil = true }
    func encode<T: Encodable>(_ value: T) throws { throw Unsupported() }

    private struct Refusing<Key: CodingKey>: KeyedEncodingContainerProtocol {
        var codingPath: [any CodingKey] { [] }
        mutating func encodeNil(forKey key: Key) throws { throw Unsupported() }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { throw Unsupported() }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<
            NestedKey
        > {
            KeyedEncodingContainer(Refusing<NestedKey>())
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { RefusingUnkeyed() }
        mutating func superEncoder() -> any Encoder { NilCapture() }
        mutating func superEncoder(forKey key: Key) -> any Encoder { NilCapture() }
    }

    private struct RefusingUnkeyed: UnkeyedEncodingContainer {
        var codingPath: [any CodingKey] { [] }
        var count: Int { 0 }
        mutating func encodeNil() throws { throw Unsupported() }
        mutating func encode<T: Encodable>(_ value: T) throws { throw Unsupported() }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            KeyedEncodingContainer(Refusing<NestedKey>())
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { RefusingUnkeyed() }
        mutating func superEncoder() -> any Encoder { NilCapture() }
    }
}

/// The column names of a result, shared by its rows.
final class SQLiteColumns: Sendable {
    let names: [String]

    init(statement: OpaquePointer) {
        names = (0..<sqlite3_column_count(statement)).map { String(cString: sqlite3_column_name(statement, $0)) }
    }

    func index(of column: String) -> Int? { names.firstIndex(of: column) }
}

/// A result row: values decode to the Swift types the store reads (strings, integers, doubles,
/// booleans, bytes, and their optionals).
struct SQLiteRow: SQLRow {
    let columns: SQLiteColumns
    let values: [SQLiteValue]

    var allColumns: [String] { columns.names }

    func contains(column: String) -> Bool { columns.index(of: column) != nil }

    func decodeNil(column: String) throws -> Bool {
        try value(column) == .null
    }

    func decode<D: Decodable>(column: String, as type: D.Type) throws -> D {
        let value = try value(column)
        if let decoded = Self.decode(value, as: type) { return decoded }
        throw SQLiteError(code: SQLITE_MISMATCH, message: "column \(column) (\(value.kind)) does not decode as \(type)")
    }

    private func value(_ column: String) throws -> SQLiteValue {
        guard let index = columns.index(of: column) else {
            throw SQLiteError(code: SQLITE_RANGE, message: "no column \(column) in the result")
        }
        return values[index]
    }

    private static func decode<D>(_ value: SQLiteValue, as type: D.Type) -> D? {
        if let optional = type as? any OptionalDecodable.Type {
            if value == .null { return optional.absent as? D }
            // A value of the wrong kind is a mismatch, not a nil.
            guard let wrapped = optional.wrapped(value) else { return nil }
            return wrapped as? D
        }
        switch value {
        case .integer(let number):
            if type == Int64.self { return number as? D }
            if type == Int.self { return Int(exactly: number) as? D }
            if type == Int32.self { return Int32(exactly: number) as? D }
            if type == Bool.self { return (number != 0) as? D }
            if type == Double.self { return Double(number) as? D }
        case .real(let number):
            if type == Double.self { return number as? D }
        case .text(let text):
            if type == String.self { return text as? D }
        case .blob(let bytes):
            if type == Data.self { return Data(bytes) as? D }
            if type == [UInt8].self { return bytes as? D }
        case .null:
            break
        }
        return nil
    }

    fileprivate static func decodeAny<D>(_ value: SQLiteValue, as type: D.Type) -> Any? { decode(value, as: type) }
}

private protocol OptionalDecodable {
    static var absent: Self { get }
    static func wrapped(_ value: SQLiteValue) -> Any?
}

extension Optional: OptionalDecodable {
    fileprivate static var absent: Optional { nil }
    fileprivate static func wrapped(_ value: SQLiteValue) -> Any? {
        SQLiteRow.decodeAny(value, as: Wrapped.self).map { Optional($0 as! Wrapped) as Any }
    }
}

extension SQLiteValue {
    var kind: String {
        switch self {
        case .null: "null"
        case .integer: "integer"
        case .real: "real"
        case .text: "text"
        case .blob: "blob"
        }
    }
}

/// An SQLite failure: the result code and SQLite's message (which never includes bound values).
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String

    init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    init(handle: OpaquePointer, code: Int32) {
        self.init(code: code, message: String(cString: sqlite3_errmsg(handle)))
    }

    public var description: String { "SQLite error \(code): \(message)" }
}

/// `SQLDatabase` over one `SQLiteConnection`, for the repositories' SQLKit queries.
struct SQLiteDatabase: SQLDatabase {
    let connection: SQLiteConnection
    let logger: Logger
    var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.any() }
    var dialect: any SQLDialect { FlowStackSQLiteDialect() }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        promise.completeWithTask { try await self.execute(sql: query, onRow) }
        return promise.futureResult
    }

    /// Runs synchronously on the calling thread: the store calls this from the connection's
    /// own executor (see `SQLiteStore.read` and `GroupCommitWriter`).
    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) async throws {
        if let statement = query as? BoundStatement {
            for row in try connection.query(statement.sql, statement.values) { onRow(row) }
            return
        }
        let (sql, binds) = serialize(query)
        let values = try binds.map { try SQLiteValue(binding: $0) }
        for row in try connection.query(sql, values) {
            onRow(row)
        }
    }
}

/// SQLite's SQL dialect as SQLKit needs it (`?N` placeholders, double-quoted identifiers).
struct FlowStackSQLiteDialect: SQLDialect {
    var name: String { "sqlite" }
    var identifierQuote: any SQLExpression { SQLRaw("\"") }
    var literalStringQuote: any SQLExpression { SQLRaw("'") }
    func bindPlaceholder(at position: Int) -> any SQLExpression { SQLRaw("?\(position)") }
    func literalBoolean(_ value: Bool) -> any SQLExpression { SQLRaw(value ? "TRUE" : "FALSE") }
    var literalDefault: any SQLExpression { SQLLiteral.null }
    var supportsAutoIncrement: Bool { false }
    var autoIncrementClause: any SQLExpression { SQLRaw("AUTOINCREMENT") }
    var supportsIfExists: Bool { true }
    var supportsDropBehavior: Bool { false }
    var enumSyntax: SQLEnumSyntax { .unsupported }
    var supportsReturning: Bool { true }
    var upsertSyntax: SQLUpsertSyntax { .standard }
    var alterTableSyntax: SQLAlterTableSyntax { .init(allowsBatch: false) }
    var triggerSyntax: SQLTriggerSyntax { .init(create: [.supportsBody, .supportsCondition, .supportsUpdateColumns], drop: []) }
}

/// What a connection does after each commit to the WAL (see `SQLiteConnection.setWALHook`).
final class WALHook: Sendable {
    let committed: @Sendable (_ handle: OpaquePointer, _ frames: Int) -> Void

    init(_ committed: @escaping @Sendable (_ handle: OpaquePointer, _ frames: Int) -> Void) {
        self.committed = committed
    }
}

/// A task executor on a serial dispatch queue of its own (off the cooperative pool, which may
/// therefore block on SQLite without starving request handling).
final class SerialQueueTaskExecutor: TaskExecutor {
    private let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label, qos: .userInitiated)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
