/// The syntax tree of an expression.
indirect enum Node: Sendable {
    case literal(JSONValue)
    case undefined
    case identifier(String, Int)
    case member(Node, String, optional: Bool, Int)
    case index(Node, Node, optional: Bool, Int)
    case call(Node, [Node], optional: Bool, Int)
    case unary(String, Node, Int)
    case binary(String, Node, Node, Int)
    case logical(String, Node, Node)
    case conditional(Node, Node, Node)
    case array([Node])
    case object([(key: ObjectKey, value: Node)])
    case arrow([String], Node, Int)
    case template([String], [Node])
}

enum ObjectKey: Sendable {
    case name(String)
    case computed(Node)
}

/// A Pratt parser for the expression language.
struct Parser {
    private var tokens: [Token]
    private var index = 0
    private var depth = 0
    static let maximumDepth = 128

    init(tokens: [Token]) {
        self.tokens = tokens
    }

    static func parse(_ source: String, offset: Int = 0) throws(ExpressionError) -> Node {
        var lexer = Lexer(source, offset: offset)
        var parser = Parser(tokens: try lexer.tokenize())
        let node = try parser.expression()
        guard case .end = parser.peek.kind else {
            throw ExpressionError(.syntax, "Unexpected \(parser.describe(parser.peek))", at: parser.peek.position)
        }
        return node
    }

    private var peek: Token { tokens[index] }
    private func peek(_ offset: Int) -> Token { tokens[min(index + offset, tokens.count - 1)] }

    private mutating func advance() -> Token {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private func isPunctuator(_ p: String, _ token: Token? = nil) -> Bool {
        if case .punctuator(let q) = (token ?? peek).kind { return q == p }
        return false
    }

    private mutating func accept(_ p: String) -> Bool {
        if isPunctuator(p) {
            _ = advance()
            return true
        }
        return false
    }

    private mutating func expect(_ p: String) throws(ExpressionError) {
        guard accept(p) else { throw ExpressionError(.syntax, "Expected '\(p)' but found \(describe(peek))", at: peek.position) }
    }

    private func describe(_ token: Token) -> String {
        switch token.kind {
        case .end: "end of expression"
        case .number(let n): "number \(n)"
        case .string: "string"
        case .template: "template literal"
        case .identifier(let name): "'\(name)'"
        case .punctuator(let p): "'\(p)'"
        }
    }

    mutating func expression() throws(ExpressionError) -> Node {
        depth += 1
        defer { depth -= 1 }
        guard depth < Self.maximumDepth else { throw ExpressionError(.limit, "Expression is nested too deeply", at: peek.position) }
        if let arrow = try arrowFunction() { return arrow }
        let condition = try binary(0)
        if accept("?") {
            let whenTrue = try expression()
            try expect(":")
            let whenFalse = try expression()
            return .conditional(condition, whenTrue, whenFalse)
        }
        return condition
    }

    /// `x => …` or `(a, b) => …`, recognised by looking ahead for `=>`.
    private mutating func arrowFunction() throws(ExpressionError) -> Node? {
        let start = peek.position
        if case .identifier(let name) = peek.kind, isPunctuator("=>", peek(1)) {
            _ = advance()
            _ = advance()
            return .arrow([name], try expression(), start)
        }
        guard isPunctuator("(") else { return nil }
        var offset = 1
        var params: [String] = []
        if !isPunctuator(")", peek(offset)) {
            while true {
                guard case .identifier(let name) = peek(offset).kind else { return nil }
                params.append(name)
                offset += 1
                if isPunctuator(",", peek(offset)) {
                    offset += 1
                    continue
                }
                break
            }
        }
        guard isPunctuator(")", peek(offset)), isPunctuator("=>", peek(offset + 1)) else { return nil }
        for _ in 0..<(offset + 2) { _ = advance() }
        return .arrow(params, try expression(), start)
    }

    private static let precedence: [String: Int] = [
        "??": 1, "||": 2, "&&": 3,
        "==": 4, "!=": 4, "===": 4, "!==": 4,
        "<": 5, ">": 5, "<=": 5, ">=": 5, "in": 5,
        "+": 6, "-": 6, "*": 7, "/": 7, "%": 7, "**": 8,
    ]

    private func binaryOperator() -> String? {
        switch peek.kind {
        case .punctuator(let p) where Self.precedence[p] != nil: p
        case .identifier("in"): "in"
        default: nil
        }
    }

    /// Longest chain of operators or postfix operations, which nest the tree (and the evaluator's recursion).
    static let maximumChain = 500

    private mutating func binary(_ minimum: Int) throws(ExpressionError) -> Node {
        var left = try unary()
        var chain = 0
        while let op = binaryOperator(), let precedence = Self.precedence[op], precedence > minimum {
            chain += 1
            guard chain <= Self.maximumChain else {
                throw ExpressionError(.limit, "Too many operators in one expression", at: peek.position)
            }
            let position = advance().position
            // `**` is right-associative.
            let right = try binary(op == "**" ? precedence - 1 : precedence)
            if op == "&&" || op == "||" || op == "??" {
                left = .logical(op, left, right)
            } else {
                left = .binary(op, left, right, position)
            }
        }
        return left
    }

    private mutating func unary() throws(ExpressionError) -> Node {
        let position = peek.position
        depth += 1
        defer { depth -= 1 }
        guard depth < Self.maximumDepth else { throw ExpressionError(.limit, "Expression is nested too deeply", at: position) }
        if accept("!") { return .unary("!", try unary(), position) }
        if accept("-") { return .unary("-", try unary(), position) }
        if accept("+") { return .unary("+", try unary(), position) }
        if case .identifier("typeof") = peek.kind {
            _ = advance()
            return .unary("typeof", try unary(), position)
        }
        if case .identifier(let word) = peek.kind,
            ["new", "delete", "void", "await", "function", "class", "import", "yield", "this", "super"].contains(word)
        {
            throw ExpressionError(.forbidden, "'\(word)' is not allowed in expressions", at: position)
        }
        return try postfix(try primary())
    }

    private mutating func postfix(_ base: Node) throws(ExpressionError) -> Node {
        var node = base
        var chain = 0
        while true {
            let position = peek.position
            chain += 1
            guard chain <= Self.maximumChain else {
                throw ExpressionError(.limit, "Too many chained accesses in one expression", at: position)
            }
            if accept(".") {
                node = .member(node, try propertyName(), optional: false, position)
            } else if accept("?.") {
                if accept("(") {
                    node = .call(node, try arguments(), optional: true, position)
                } else if accept("[") {
                    let key = try expression()
                    try expect("]")
                    node = .index(node, key, optional: true, position)
                } else {
                    node = .member(node, try propertyName(), optional: true, position)
                }
            } else if accept("[") {
                let key = try expression()
                try expect("]")
                node = .index(node, key, optional: false, position)
            } else if accept("(") {
                node = .call(node, try arguments(), optional: false, position)
            } else {
                return node
            }
        }
    }

    private mutating func propertyName() throws(ExpressionError) -> String {
        guard case .identifier(let name) = peek.kind else {
            throw ExpressionError(.syntax, "Expected a property name but found \(describe(peek))", at: peek.position)
        }
        _ = advance()
        return name
    }

    /// Arguments after `(`, through `)`.
    private mutating func arguments() throws(ExpressionError) -> [Node] {
        var args: [Node] = []
        if accept(")") { return args }
        repeat {
            if isPunctuator(")") { break }
            args.append(try expression())
        } while accept(",")
        try expect(")")
        return args
    }

    private mutating func primary() throws(ExpressionError) -> Node {
        let token = advance()
        switch token.kind {
        case .number(let n): return .literal(.number(n))
        case .string(let s): return .literal(.string(s))
        case .template(let strings, let substitutions):
            var nodes: [Node] = []
            for substitution in substitutions {
                nodes.append(try Parser.parse(substitution.source, offset: substitution.offset))
            }
            return .template(strings, nodes)
        case .identifier(let name):
            switch name {
            case "true": return .literal(.bool(true))
            case "false": return .literal(.bool(false))
            case "null": return .literal(.null)
            case "undefined": return .undefined
            default: return .identifier(name, token.position)
            }
        case .punctuator("("):
            let inner = try expression()
            try expect(")")
            return inner
        case .punctuator("["):
            var elements: [Node] = []
            while !isPunctuator("]") {
                elements.append(try expression())
                if !accept(",") { break }
            }
            try expect("]")
            return .array(elements)
        case .punctuator("{"):
            var entries: [(key: ObjectKey, value: Node)] = []
            while !isPunctuator("}") {
                let keyToken = advance()
                let key: ObjectKey
                switch keyToken.kind {
                case .identifier(let name): key = .name(name)
                case .string(let s): key = .name(s)
                case .number(let n): key = .name(JSValue.numberToString(n))
                case .punctuator("["):
                    key = .computed(try expression())
                    try expect("]")
                default:
                    throw ExpressionError(.syntax, "Expected a property name but found \(describe(keyToken))", at: keyToken.position)
                }
                if accept(":") {
                    entries.append((key, try expression()))
                } else if case .name(let name) = key, case .identifier = keyToken.kind {
                    entries.append((key, .identifier(name, keyToken.position))) // shorthand {a}
                } else {
                    throw ExpressionError(.syntax, "Expected ':' after property name", at: peek.position)
                }
                if !accept(",") { break }
            }
            try expect("}")
            return .object(entries)
        default:
            throw ExpressionError(.syntax, "Unexpected \(describe(token))", at: token.position)
        }
    }
}
