/// Why an expression could not be parsed or evaluated, with the position (in characters from the
/// start of the expression) where it happened.
public struct ExpressionError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The text is not a valid expression.
        case syntax
        /// The expression is valid but failed while running (a type error, an unknown method).
        case runtime
        /// The expression tried to reach something expressions may never reach.
        case forbidden
        /// A step, size or depth limit was exceeded.
        case limit
    }

    public var kind: Kind
    public var message: String
    public var position: Int

    public init(_ kind: Kind, _ message: String, at position: Int) {
        self.kind = kind
        self.message = message
        self.position = position
    }

    public var description: String { "\(message) (at position \(position))" }
}
