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
        out.reserveCapacity(input.items.count)
        for (index, item) in input.items.enumerated() {
            guard case .object(let fields) = try input.parameter("fields", item: index) ?? .object([:]) else {
                throw NodeError("'fields' must be an object of field names and values", field: "fields")
            }
            // One copy of the item's values, with room for the new fields (not a doubled array).
            let json = keepOnly ? fields : (item.json.objectValue ?? [:]).merging(fields) { $1 }
            out.append(Item(json: .object(json), binary: keepOnly ? nil : item.binary))
        }
        return .items([out])
    }
}
