import FlowStackCore
import FlowStackRuntime

/// Where hard-coded credentials are looked for: the code of Code nodes and the parameters of
/// HTTP Request nodes. (Trigger nodes hold their own webhook secrets by design.)
extension CredentialScanner {
    static let scannedNodeTypes: Set<String> = [CodeNode.descriptor.type, HTTPRequestNode.descriptor.type]

    public static func scan(_ workflow: Workflow) -> [CredentialFinding] {
        workflow.nodes.filter { scannedNodeTypes.contains($0.type) }.flatMap { node in
            scan(nodeName: node.name, isCode: node.type == CodeNode.descriptor.type, parameters: node.parameters.mapValues(ScanValue.init))
        }
    }
}

extension ScanValue {
    init(_ value: JSONValue) {
        switch value {
        case .string(let text): self = .string(text)
        case .number(let number): self = .number(number)
        case .bool(let flag): self = .bool(flag)
        case .null: self = .null
        case .array(let elements): self = .array(elements.map(ScanValue.init))
        case .object(let fields): self = .object(fields.dictionary.mapValues(ScanValue.init))
        }
    }
}
