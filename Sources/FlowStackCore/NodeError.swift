/// A failure of a node, with a message safe to show and store.
public struct NodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var field: String?
    public init(_ message: String, field: String? = nil) {
        self.message = message
        self.field = field
    }
    public var description: String { message }
}
