import FlowStackCore
import Foundation

/// Runs the user's JavaScript in the sandbox, once for all items or once for each item. The code
/// is never treated as a template; project variables are visible as `$env`.
public struct CodeNode: NodeType {
    public init() {}
    public static let descriptor = NodeTypeDescriptor(type: "flowstack.code", parameters: [
        .init("code", .code, required: true),
        .init("mode", .options, options: ["runOnceForAllItems", "runOnceForEachItem"]),
        .init("timeLimitMs", .number),
    ])

    public static let defaultTimeLimitMs = 10_000
    public static let maximumTimeLimitMs = 120_000

    public func run(_ input: NodeInput) async throws -> NodeOutput {
        guard case .string(let code)? = input.node.parameters["code"], !code.isEmpty else {
            throw NodeError("code must be JavaScript source text.", field: "code")
        }
        guard code.utf8.count <= 256 * 1024 else { throw NodeError("code must be at most 256 KiB.", field: "code") }
        let mode: CodeRequest.Mode
        switch input.node.parameters["mode"]?.stringValue ?? "runOnceForAllItems" {
        case "runOnceForAllItems": mode = .all
        case "runOnceForEachItem": mode = .each
        default: throw NodeError("mode must be runOnceForAllItems or runOnceForEachItem.", field: "mode")
        }
        var limit = Self.defaultTimeLimitMs
        if let given = input.node.parameters["timeLimitMs"]?.numberValue {
            guard given >= 1, given <= Double(Self.maximumTimeLimitMs) else {
                throw NodeError("timeLimitMs must be from 1 to \(Self.maximumTimeLimitMs).", field: "timeLimitMs")
            }
            limit = Int(given)
        }
        let services = try input.requireServices("The Code node")
        let request = CodeRequest(code: code, mode: mode, items: input.items, env: input.base.variables, timeLimitMs: limit,
                                  maxOutputBytes: 16 << 20, maxLogBytes: 64 << 10,
                                  context: .init(executionId: input.base.executionID, workflowId: input.base.workflowID,
                                                 workflowName: input.base.workflowName, nodeName: input.node.name))
        let response = try await services.runCode(request)
        input.log.append(contentsOf: response.logs ?? [])
        guard response.ok else {
            let line = response.line.map { " (line \($0))" } ?? ""
            throw NodeError((response.error ?? "The code failed.") + line, field: "code")
        }
        return .items([response.items ?? []])
    }
}
