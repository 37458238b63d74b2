import FlowStackCore
import FlowStackRuntime

/// Routes each item by a condition: output 0 when it holds, output 1 when not.
public struct IfNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.if", outputs: 2, parameters: [.init("condition", .string, required: true)])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        var yes: [Item] = []
        var no: [Item] = []
        for (index, item) in input.items.enumerated() {
            if try input.parameter("condition", item: index)?.isTruthy ?? false { yes.append(item) } else { no.append(item) }
        }
        return .items([yes, no])
    }
}

/// Keeps the items for which a condition holds.
public struct FilterNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.filter", parameters: [.init("condition", .string, required: true)])

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        var kept: [Item] = []
        for (index, item) in input.items.enumerated() where try input.parameter("condition", item: index)?.isTruthy ?? false {
            kept.append(item)
        }
        return .items([kept])
    }
}

/// Passes items on unchanged.
public struct NoOpNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.noOp")
    public func run(_ input: NodeInput) async throws -> NodeOutput { .items([input.items]) }
}

/// Fails the execution with a message (which may be an expression).
public struct StopAndErrorNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(
        type: "flowstack.stopAndError", parameters: [.init("message", .string, required: true)])
    public func run(_ input: NodeInput) async throws -> NodeOutput {
        throw NodeError(try input.string("message", default: "Stopped by the workflow"))
    }
}
