import FlowStackCore
import FlowStackRuntime

/// Sets fields on each item (values may be expressions); `keepOnlySet` drops the other fields.
public struct SetNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.set",
        parameters: [
            .init("fields", .json, required: true), .init("keepOnlySet", .boolean),
        ])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        let keepOnly = try input.parameter("keepOnlySet")?.isTruthy ?? false
        var out: [Item] = []
        for (index, item) in input.items.enumerated() {
            guard case .object(let fields) = try input.parameter("fields", item: index) ?? .object([:]) else {
                throw NodeError("'fields' must be an object of field names and values", field: "fields")
            }
            var json = keepOnly ? [:] : (item.json.objectValue ?? [:])
            for (key, value) in fields { json[key] = value }
            out.append(Item(json: .object(json), binary: keepOnly ? nil : item.binary))
        }
        return .items([out])
    }
}
