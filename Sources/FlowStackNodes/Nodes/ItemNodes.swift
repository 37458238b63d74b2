import FlowStackCore
import FlowStackRuntime

/// Combines two inputs: `append` (all of input 0, then input 1), `byPosition` (merge the i-th
/// items' fields), `byKey` (join items whose `key` field is equal) or `waitForBoth` (append, but
/// only when both inputs received items; otherwise nothing goes on).
public struct MergeNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.merge", inputs: 2,
        parameters: [
            .init("mode", .options, options: ["append", "byPosition", "byKey", "waitForBoth"]), .init("key", .string),
        ])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        let a = input.inputs.first ?? []
        let b = input.inputs.count > 1 ? input.inputs[1] : []
        switch try input.string("mode", default: "append") {
        case "byPosition":
            return .items([
                zip(a, b).map { x, y in
                    Item(json: .object((x.json.objectValue ?? [:]).merging(y.json.objectValue ?? [:]) { $1 }))
                }
            ])
        case "byKey":
            let key = try input.string("key")
            guard !key.isEmpty else { throw NodeError("byKey needs the 'key' parameter", field: "key") }
            var right: [JSONValue: [Item]] = [:]
            for item in b { if let k = item.json.value(at: key) { right[k, default: []].append(item) } }
            var out: [Item] = []
            for item in a {
                guard let k = item.json.value(at: key) else { continue }
                for match in right[k] ?? [] {
                    out.append(Item(json: .object((item.json.objectValue ?? [:]).merging(match.json.objectValue ?? [:]) { $1 })))
                }
            }
            return .items([out])
        case "waitForBoth":
            return .items([a.isEmpty || b.isEmpty ? [] : a + b])
        default:
            return .items([a + b])
        }
    }
}

/// Keeps the first (or last) `maxItems` items.
public struct LimitNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.limit",
        parameters: [
            .init("maxItems", .number, required: true), .init("keep", .options, options: ["first", "last"]),
        ])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        guard case .number(let n) = try input.parameter("maxItems") ?? .null, n >= 0 else {
            throw NodeError("maxItems must be a number of items", field: "maxItems")
        }
        let count = Int(n)
        return .items([
            try input.string("keep", default: "first") == "last" ? Array(input.items.suffix(count)) : Array(input.items.prefix(count))
        ])
    }
}

/// Sorts items by a field, ascending or descending (numbers numerically, otherwise as text).
public struct SortNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.sort",
        parameters: [
            .init("field", .string, required: true), .init("order", .options, options: ["ascending", "descending"]),
        ])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        let field = try input.string("field")
        let descending = try input.string("order", default: "ascending") == "descending"
        func less(_ x: JSONValue?, _ y: JSONValue?) -> Bool {
            switch (x, y) {
            case (.number(let a)?, .number(let b)?): return a < b
            case (nil, _?): return false
            case (_?, nil): return true
            default: return (x?.stringValue ?? x?.jsonText ?? "") < (y?.stringValue ?? y?.jsonText ?? "")
            }
        }
        let sorted = input.items.enumerated().sorted { l, r in
            let a = l.element.json.value(at: field)
            let b = r.element.json.value(at: field)
            if less(a, b) != less(b, a) { return descending ? less(b, a) : less(a, b) }
            return l.offset < r.offset
        }.map(\.element)
        return .items([sorted])
    }
}

/// Turns an array field of each item into one item per element.
public struct SplitOutNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.splitOut", parameters: [.init("field", .string, required: true)])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        let field = try input.string("field")
        var out: [Item] = []
        for item in input.items {
            guard let value = item.json.value(at: field) else { continue }
            let elements = value.arrayValue ?? [value]
            for element in elements {
                out.append(Item(json: element.objectValue != nil ? element : .object([field: element])))
            }
        }
        return .items([out])
    }
}

/// Collects a field of every item (or the whole items) into one item.
public struct AggregateNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.aggregate",
        parameters: [
            .init("field", .string), .init("outputField", .string),
        ])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        let field = try input.string("field")
        let output = try input.string("outputField", default: field.isEmpty ? "data" : field)
        let values = field.isEmpty ? input.items.map(\.json) : input.items.compactMap { $0.json.value(at: field) }
        return .items([[Item(json: .object([output: .array(values)]))]])
    }
}

/// Drops items whose field (or whole JSON) was already seen.
public struct RemoveDuplicatesNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.removeDuplicates", parameters: [.init("field", .string)])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        let field = try input.string("field")
        var seen = Set<JSONValue>()
        return .items([
            input.items.filter { item in
                seen.insert(field.isEmpty ? item.json : (item.json.value(at: field) ?? .null)).inserted
            }
        ])
    }
}
