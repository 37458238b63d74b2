import Synchronization

/// A JSON object: its members in the order they were added, with a `Dictionary`-like interface.
///
/// An object is its values in one array plus a `JSONShape`, its keys in order. Objects with the
/// same keys share one shape: the million items of one input all have the same few keys, so each
/// item costs one array of values instead of a hash table of keys and values (about half the
/// memory: a `[String: JSONValue]` of 8 members allocates room for 16). The parser shares the
/// shapes of the objects it reads, and adding a key to a shared shape goes through that shape's
/// table of successors, so a Set node that adds the same field to every item still gives them all
/// one shape. A shape is never changed once shared; one owned by a single object (large objects,
/// objects built key by key) is changed in place, as copy-on-write values are.
///
/// Equality and hashing ignore the order of the members, as for a dictionary.
public struct JSONObject: Sendable {
    @usableFromInline var shape: JSONShape
    @usableFromInline var storage: ContiguousArray<JSONValue>

    public init() {
        shape = JSONShape.empty
        storage = []
    }

    init(shape: JSONShape, values: ContiguousArray<JSONValue>) {
        self.shape = shape
        self.storage = values
    }

    /// The members of a dictionary, in the code-unit order of their keys (a dictionary has no order).
    public init(_ dictionary: [String: JSONValue]) {
        self.init()
        storage.reserveCapacity(dictionary.count)
        for key in dictionary.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            append(key, dictionary[key]!)
        }
    }

    /// Members in order; of a repeated key the last value counts.
    public init<S: Sequence>(_ members: S) where S.Element == (String, JSONValue) {
        self.init()
        for (key, value) in members { self[key] = value }
    }

    /// Members in order; of a repeated key the first value counts (as for repeated query
    /// parameters and headers).
    public init<S: Sequence>(firstOf members: S) where S.Element == (String, JSONValue) {
        self.init()
        for (key, value) in members where self[key] == nil { append(key, value) }
    }

    public init<S: Sequence>(uniqueKeysWithValues members: S) where S.Element == (String, JSONValue) {
        self.init(members)
    }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }
    /// The keys, in order.
    public var keys: ContiguousArray<String> { shape.keys }
    /// The values, in the order of `keys`.
    public var values: ContiguousArray<JSONValue> { storage }

    /// Where `key` is among the members.
    @inlinable
    public func position(of key: String) -> Int? {
        shape.position(of: key)
    }

    public subscript(key: String) -> JSONValue? {
        get {
            guard let position = shape.position(of: key) else { return nil }
            return storage[position]
        }
        set {
            if let position = shape.position(of: key) {
                if let newValue {
                    storage[position] = newValue
                } else {
                    remove(at: position)
                }
            } else if let newValue {
                append(key, newValue)
            }
        }
    }

    public subscript(key: String, default value: @autoclosure () -> JSONValue) -> JSONValue {
        get { self[key] ?? value() }
        set { self[key] = newValue }
    }

    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSONValue? {
        guard let position = shape.position(of: key) else { return nil }
        let value = storage[position]
        remove(at: position)
        return value
    }

    public mutating func removeAll() {
        self = JSONObject()
    }

    /// Adds a member whose key is not there yet.
    mutating func append(_ key: String, _ value: JSONValue) {
        if !shape.shared, isKnownUniquelyReferenced(&shape) {
            shape.appendInPlace(key)
        } else {
            shape = shape.adding(key)
        }
        storage.append(value)
    }

    private mutating func remove(at position: Int) {
        var keys = shape.keys
        keys.remove(at: position)
        shape = JSONShape(keys: keys, shared: false)
        storage.remove(at: position)
    }

    public func mapValues(_ transform: (JSONValue) throws -> JSONValue) rethrows -> JSONObject {
        JSONObject(shape: shape, values: ContiguousArray(try storage.map(transform)))
    }

    /// The same keys with the value at each position from `value` (the shape is kept).
    public func replacingValues(_ value: (Int) throws -> JSONValue) rethrows -> JSONObject {
        var values = ContiguousArray<JSONValue>()
        values.reserveCapacity(count)
        for position in indices { values.append(try value(position)) }
        return JSONObject(shape: shape, values: values)
    }

    public func compactMapValues(_ transform: (JSONValue) throws -> JSONValue?) rethrows -> JSONObject {
        var result = JSONObject()
        for (key, value) in self {
            if let mapped = try transform(value) { result.append(key, mapped) }
        }
        return result
    }

    /// The members for which `isIncluded` holds, in order.
    public func filter(_ isIncluded: ((key: String, value: JSONValue)) throws -> Bool) rethrows -> JSONObject {
        var result = JSONObject()
        for member in self where try isIncluded(member) { result.append(member.key, member.value) }
        return result
    }

    public mutating func merge(_ other: JSONObject, uniquingKeysWith combine: (JSONValue, JSONValue) throws -> JSONValue) rethrows {
        // Room for every member of `other` at once: a copy grown one member at a time would double.
        storage.reserveCapacity(count + other.count)
        for (key, value) in other {
            if let position = shape.position(of: key) {
                storage[position] = try combine(storage[position], value)
            } else {
                append(key, value)
            }
        }
    }

    public func merging(_ other: JSONObject, uniquingKeysWith combine: (JSONValue, JSONValue) throws -> JSONValue) rethrows
        -> JSONObject
    {
        var result = self
        try result.merge(other, uniquingKeysWith: combine)
        return result
    }

    /// Whether both objects use one stored list of keys (for tests and memory measurements).
    public func sharesKeys(with other: JSONObject) -> Bool {
        shape === other.shape
    }

    /// The members as a dictionary (for APIs that take one).
    public var dictionary: [String: JSONValue] {
        var result: [String: JSONValue] = [:]
        result.reserveCapacity(count)
        for (key, value) in self { result[key] = value }
        return result
    }
}

extension JSONObject: RandomAccessCollection {
    public typealias Element = (key: String, value: JSONValue)
    public typealias Index = Int
    public var startIndex: Int { 0 }
    public var endIndex: Int { storage.count }
    public subscript(position: Int) -> Element { (shape.keys[position], storage[position]) }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public typealias Key = String
    public typealias Value = JSONValue

    /// Of a repeated key the last value counts.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(elements)
    }
}

extension JSONObject: Hashable {
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        if lhs.shape === rhs.shape { return lhs.storage == rhs.storage }
        for (key, value) in lhs {
            guard rhs[key] == value else { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        // Independent of the order: the sum of each member's own hash.
        var sum = 0
        for (key, value) in self {
            var member = Hasher()
            member.combine(key)
            member.combine(value)
            sum &+= member.finalize()
        }
        hasher.combine(count)
        hasher.combine(sum)
    }
}

extension JSONObject: Codable {
    private struct MemberKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: MemberKey.self)
        self.init()
        for key in container.allKeys where self[key.stringValue] == nil {
            append(key.stringValue, try container.decode(JSONValue.self, forKey: key))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: MemberKey.self)
        for (key, value) in self { try container.encode(value, forKey: MemberKey(stringValue: key)) }
    }
}

/// The keys of JSON objects, in order (see `JSONObject`).
///
/// `@unchecked Sendable`: a shape that is `shared` never changes; one that is not is changed only
/// by the one object that holds it (`isKnownUniquelyReferenced`), as a copy-on-write buffer is.
public final class JSONShape: @unchecked Sendable {
    /// Keys up to this many are found by a scan; larger shapes keep a hash index.
    static let scanLimit = 8
    /// Shapes up to this many keys keep tables of successors; adding a key to a larger one gives
    /// a shape of the object's own (so objects built key by key with many distinct keys cannot
    /// fill the tables with ever longer shapes).
    static let shareLimit = 32
    /// A parser shares the shapes of objects up to this many keys.
    static let internLimit = 1_024
    /// Successors kept per shape at most.
    static let successorLimit = 32
    /// Shapes kept in successor tables at most, over the whole process. Keys can come from
    /// outside (a request's header and query names), and tables 32 wide and 32 deep would
    /// otherwise grow without bound under requests with ever new names.
    static let cachedLimit = 16_384
    private static let cached = Atomic<Int>(0)
    /// Shapes kept in successor tables now (for tests).
    static var cachedCount: Int { cached.load(ordering: .relaxed) }

    static let empty = JSONShape(keys: [], shared: true)

    // Unchecked: changed only by the one object holding an unshared shape (see the type), so no
    // access can overlap a change; the checks cost a call on every lookup.
    @exclusivity(unchecked) @usableFromInline private(set) var keys: ContiguousArray<String>
    @exclusivity(unchecked) private var index: [String: Int]?
    /// Whether other objects may hold this shape: then it never changes.
    let shared: Bool
    /// The shapes of one more key, by that key.
    private let successors = Mutex<[String: JSONShape]>([:])

    init(keys: ContiguousArray<String>, shared: Bool) {
        self.keys = keys
        self.shared = shared
        if keys.count > Self.scanLimit { index = Self.makeIndex(keys) }
    }

    private static func makeIndex(_ keys: ContiguousArray<String>) -> [String: Int] {
        var index: [String: Int] = [:]
        index.reserveCapacity(keys.count)
        for (position, key) in keys.enumerated() where index[key] == nil { index[key] = position }
        return index
    }

    @usableFromInline
    func position(of key: String) -> Int? {
        if let index { return index[key] }
        // The length first: for most keys that differ it answers without comparing their text.
        let length = key.utf8.count
        return keys.firstIndex { $0.utf8.count == length && $0 == key }
    }

    /// This shape with `key` added (a new key): a shared successor for small shapes.
    func adding(_ key: String) -> JSONShape {
        var keys = self.keys
        keys.append(key)
        guard shared, keys.count <= Self.shareLimit else { return JSONShape(keys: keys, shared: false) }
        return successors.withLock { successors in
            if let next = successors[key] { return next }
            let next = JSONShape(keys: keys, shared: true)
            if successors.count < Self.successorLimit, Self.reserveCachedSlot() { successors[key] = next }
            return next
        }
    }

    /// Counts one more shape in the successor tables, unless they hold `cachedLimit` already.
    private static func reserveCachedSlot() -> Bool {
        var count = cached.load(ordering: .relaxed)
        while count < cachedLimit {
            let (exchanged, original) = cached.compareExchange(expected: count, desired: count + 1, ordering: .relaxed)
            if exchanged { return true }
            count = original
        }
        return false
    }

    /// Adds `key` to this unshared shape, held by one object only.
    func appendInPlace(_ key: String) {
        precondition(!shared)
        keys.append(key)
        if index != nil {
            index![key] = keys.count - 1
        } else if keys.count > Self.scanLimit {
            index = Self.makeIndex(keys)
        }
    }

    /// The shared shape of `keys` for a parser: one of the recent shapes in `recent` when it has
    /// the same keys, or a new one, remembered there (large objects of many keys each share theirs
    /// too: a copy is made only when one of them gets a new key).
    static func interned(_ keys: ContiguousArray<String>, recent: inout [JSONShape]) -> JSONShape {
        if keys.isEmpty { return empty }
        for shape in recent where shape.keys == keys { return shape }
        guard keys.count <= internLimit else { return JSONShape(keys: keys, shared: false) }
        let shape = JSONShape(keys: keys, shared: true)
        if recent.count >= 4 { recent.removeFirst() }
        recent.append(shape)
        return shape
    }
}
