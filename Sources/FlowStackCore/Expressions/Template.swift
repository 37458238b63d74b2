import Foundation

/// A parameter string with `{{ … }}` expressions, parsed once and evaluated per item.
///
/// A string that is exactly one expression evaluates to that expression's value (a number stays
/// a number); otherwise each expression's value is written into the text (null and undefined as
/// nothing, objects as JSON). `\{{` writes a literal `{{`. Only parameter strings are ever parsed:
/// the values an expression produces, and any data arriving at runtime, are never evaluated.
public struct Template: Sendable {
    enum Segment: Sendable {
        case text(String)
        case expression(Node)
    }

    let segments: [Segment]

    /// Whether `text` contains an (unescaped) `{{`.
    public static func containsExpression(_ text: String) -> Bool {
        var previous: Character?
        var iterator = text.makeIterator()
        var beforePrevious: Character?
        while let c = iterator.next() {
            if c == "{", previous == "{", beforePrevious != "\\" { return true }
            beforePrevious = previous
            previous = c
        }
        return false
    }

    public init(_ text: String, limits: ExpressionLimits = .init()) throws(ExpressionError) {
        guard text.count <= limits.maximumSourceLength else {
            throw ExpressionError(.limit, "The text is longer than \(limits.maximumSourceLength) characters", at: 0)
        }
        let chars = Array(text)
        var segments: [Segment] = []
        var literal = ""
        var i = 0
        while i < chars.count {
            if chars[i] == "\\", i + 2 < chars.count, chars[i + 1] == "{", chars[i + 2] == "{" {
                literal += "{{"
                i += 3
                continue
            }
            if chars[i] == "{", i + 1 < chars.count, chars[i + 1] == "{" {
                let start = i + 2
                guard let end = Self.closing(chars, from: start) else {
                    throw ExpressionError(.syntax, "'{{' without a matching '}}'", at: i)
                }
                if !literal.isEmpty { segments.append(.text(literal)) }
                literal = ""
                let source = String(chars[start..<end])
                guard !source.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw ExpressionError(.syntax, "Empty expression", at: start)
                }
                segments.append(.expression(try Parser.parse(source, offset: start)))
                i = end + 2
                continue
            }
            literal.append(chars[i])
            i += 1
        }
        if !literal.isEmpty || segments.isEmpty { segments.append(.text(literal)) }
        self.segments = segments
    }

    /// The index of the `}}` that closes an expression starting at `start`, skipping string
    /// literals and nested braces.
    private static func closing(_ chars: [Character], from start: Int) -> Int? {
        var depth = 0
        var quote: Character?
        var i = start
        while i < chars.count {
            let c = chars[i]
            if let q = quote {
                if c == "\\" {
                    i += 2
                    continue
                }
                if c == q { quote = nil }
            } else if c == "'" || c == "\"" || c == "`" {
                quote = c
            } else if c == "{" {
                depth += 1
            } else if c == "}" {
                if depth == 0, i + 1 < chars.count, chars[i + 1] == "}" { return i }
                depth = max(0, depth - 1)
            }
            i += 1
        }
        return nil
    }

    public func evaluate(_ context: ExpressionContext) throws(ExpressionError) -> JSONValue {
        let evaluator = Evaluator(context: context)
        if segments.count == 1, case .expression(let node) = segments[0] {
            return try evaluator.toJSON(try evaluator.evaluate(node), at: 0)
        }
        var out = ""
        for segment in segments {
            switch segment {
            case .text(let text): out += text
            case .expression(let node):
                let value = try evaluator.evaluate(node)
                if !value.isNullish {
                    if case .function = value { throw ExpressionError(.runtime, "A function cannot be written into text", at: 0) }
                    out += value.asString
                }
                if out.utf8.count > context.limits.maximumStringLength {
                    throw ExpressionError(.limit, "The text grew beyond \(context.limits.maximumStringLength) bytes", at: 0)
                }
            }
        }
        return .string(out)
    }

    /// Parses and evaluates `text` for one item.
    public static func evaluate(_ text: String, _ context: ExpressionContext) throws(ExpressionError) -> JSONValue {
        try Template(text, limits: context.limits).evaluate(context)
    }
}

/// A bare expression (no `{{ }}`), for conditions and tests.
public enum Expression {
    public static func evaluate(_ source: String, _ context: ExpressionContext = .init()) throws(ExpressionError) -> JSONValue {
        guard source.count <= context.limits.maximumSourceLength else {
            throw ExpressionError(.limit, "The expression is longer than \(context.limits.maximumSourceLength) characters", at: 0)
        }
        let evaluator = Evaluator(context: context)
        return try evaluator.toJSON(try evaluator.evaluate(try Parser.parse(source)), at: 0)
    }

    /// Throws the syntax error of `source`, if any.
    public static func validate(_ source: String) throws(ExpressionError) {
        _ = try Parser.parse(source)
    }
}
