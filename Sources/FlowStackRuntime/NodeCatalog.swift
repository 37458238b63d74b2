import FlowStackCore

/// The node types a driver can run, by type name (`NodeCatalog.standard`: the built-in ones).
public struct NodeCatalog: Sendable {
    public let types: [String: any NodeType]

    public init(types: [any NodeType]) {
        self.types = Dictionary(uniqueKeysWithValues: types.map { (type(of: $0).descriptor.type, $0) })
    }

    public var descriptors: [String: NodeTypeDescriptor] {
        types.mapValues { type(of: $0).descriptor }
    }

    public func node(_ type: String) -> (any NodeType)? { types[type] }
}
