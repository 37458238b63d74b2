/// Tokens of the expression language (a subset of JavaScript expression syntax).
struct Token: Equatable {
    enum Kind: Equatable {
        case number(Double)
        case string(String)
        /// A template literal: its literal parts and the source of each `${…}` with its offset.
        case template(strings: [String], expressions: [Substitution])
        case identifier(String)
        case punctuator(String)
        case end
    }

    struct Substitution: Equatable {
        var source: String
        var offset: Int
    }

    var kind: Kind
    var position: Int
}

/// Turns expression source into tokens.
struct Lexer {
    private let chars: [Character]
    private var index = 0
    private let base: Int

    init(_ source: String, offset: Int = 0) {
        chars = Array(source)
        base = offset
    }

    private static let punctuators: [String] = [
        "===", "!==", "...", "**", "?.", "??", "=>", "==", "!=", "<=", ">=", "&&", "||",
        "(", ")", "[", "]", "{", "}", ".", ",", ":", "?", "+", "-", "*", "/", "%", "<", ">", "!",
    ]

    mutating func tokenize() throws(ExpressionError) -> [Token] {
        var tokens: [Token] = []
        while true {
            skipWhitespace()
            let start = index
            guard index < chars.count else {
                tokens.append(Token(kind: .end, position: base + index))
                return tokens
            }
            let c = chars[index]
            if c.isNumber || (c == "." && index + 1 < chars.count && chars[index + 1].isNumber) {
                tokens.append(Token(kind: .number(try number()), position: base + start))
            } else if c == "\"" || c == "'" {
                tokens.append(Token(kind: .string(try string(quote: c)), position: base + start))
            } else if c == "`" {
                tokens.append(Token(kind: try template(), position: base + start))
            } else if c.isLetter || c == "_" || c == "$" {
                var name = ""
                while index < chars.count, chars[index].isLetter || chars[index].isNumber || chars[index] == "_" || chars[index] == "$" {
                    name.append(chars[index])
                    index += 1
                }
                tokens.append(Token(kind: .identifier(name), position: base + start))
            } else if let p = Self.punctuators.first(where: { matches($0) }) {
                // `?.` followed by a digit is a conditional followed by a number (a ?.5 : b).
                if p == "?.", index + 2 < chars.count, chars[index + 2].isNumber {
                    index += 1
                    tokens.append(Token(kind: .punctuator("?"), position: base + start))
                } else {
                    index += p.count
                    tokens.append(Token(kind: .punctuator(p), position: base + start))
                }
            } else {
                throw ExpressionError(.syntax, "Unexpected character '\(c)'", at: base + start)
            }
        }
    }

    private func matches(_ p: String) -> Bool {
        let pc = Array(p)
        guard index + pc.count <= chars.count else { return false }
        return Array(chars[index..<(index + pc.count)]) == pc
    }

    private mutating func skipWhitespace() {
        while index < chars.count, chars[index].isWhitespace { index += 1 }
    }

    private mutating func number() throws(ExpressionError) -> Double {
        let start = index
        if chars[index] == "0", index + 1 < chars.count, "xXbBoO".contains(chars[index + 1]) {
            let radix = "xX".contains(chars[index + 1]) ? 16 : "bB".contains(chars[index + 1]) ? 2 : 8
            index += 2
            var digits = ""
            while index < chars.count, chars[index].isHexDigit || chars[index] == "_" {
                if chars[index] != "_" { digits.append(chars[index]) }
                index += 1
            }
            guard let value = Int64(digits, radix: radix) else {
                throw ExpressionError(.syntax, "Invalid number literal", at: base + start)
            }
            return Double(value)
        }
        var text = ""
        while index < chars.count, chars[index].isNumber || chars[index] == "." || chars[index] == "_" {
            if chars[index] != "_" { text.append(chars[index]) }
            index += 1
        }
        if index < chars.count, chars[index] == "e" || chars[index] == "E" {
            text.append("e")
            index += 1
            if index < chars.count, chars[index] == "+" || chars[index] == "-" {
                text.append(chars[index])
                index += 1
            }
            while index < chars.count, chars[index].isNumber {
                text.append(chars[index])
                index += 1
            }
        }
        guard let value = Double(text) else { throw ExpressionError(.syntax, "Invalid number literal '\(text)'", at: base + start) }
        return value
    }

    private mutating func escape() throws(ExpressionError) -> String {
        let start = index
        index += 1
        guard index < chars.count else { throw ExpressionError(.syntax, "Unterminated escape", at: base + start) }
        let c = chars[index]
        index += 1
        switch c {
        case "n": return "\n"
        case "t": return "\t"
        case "r": return "\r"
        case "b": return "\u{8}"
        case "f": return "\u{c}"
        case "v": return "\u{b}"
        case "0": return "\u{0}"
        case "u":
            var hex = ""
            if index < chars.count, chars[index] == "{" {
                index += 1
                while index < chars.count, chars[index] != "}" {
                    hex.append(chars[index])
                    index += 1
                }
                index += 1
            } else {
                for _ in 0..<4 where index < chars.count {
                    hex.append(chars[index])
                    index += 1
                }
            }
            guard let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) else {
                throw ExpressionError(.syntax, "Invalid unicode escape", at: base + start)
            }
            return String(Character(scalar))
        case "x":
            var hex = ""
            for _ in 0..<2 where index < chars.count {
                hex.append(chars[index])
                index += 1
            }
            guard let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) else {
                throw ExpressionError(.syntax, "Invalid hex escape", at: base + start)
            }
            return String(Character(scalar))
        default: return String(c)
        }
    }

    private mutating func string(quote: Character) throws(ExpressionError) -> String {
        let start = index
        index += 1
        var value = ""
        while index < chars.count {
            let c = chars[index]
            if c == quote {
                index += 1
                return value
            }
            if c == "\\" {
                value += try escape()
            } else if c == "\n" {
                break
            } else {
                value.append(c)
                index += 1
            }
        }
        throw ExpressionError(.syntax, "Unterminated string literal", at: base + start)
    }

    private mutating func template() throws(ExpressionError) -> Token.Kind {
        let start = index
        index += 1
        var strings: [String] = []
        var substitutions: [Token.Substitution] = []
        var current = ""
        while index < chars.count {
            let c = chars[index]
            if c == "`" {
                index += 1
                strings.append(current)
                return .template(strings: strings, expressions: substitutions)
            }
            if c == "\\" {
                current += try escape()
            } else if c == "$", index + 1 < chars.count, chars[index + 1] == "{" {
                strings.append(current)
                current = ""
                index += 2
                let exprStart = index
                var depth = 0
                var source = ""
                var quote: Character?
                while index < chars.count {
                    let d = chars[index]
                    if let q = quote {
                        if d == "\\" {
                            source.append(d)
                            index += 1
                            if index < chars.count { source.append(chars[index]) }
                        } else if d == q {
                            quote = nil
                        }
                        if index < chars.count { if d != "\\" { source.append(d) } }
                        index += 1
                        continue
                    }
                    if d == "'" || d == "\"" || d == "`" { quote = d }
                    if d == "{" { depth += 1 }
                    if d == "}" {
                        if depth == 0 { break }
                        depth -= 1
                    }
                    source.append(d)
                    index += 1
                }
                guard index < chars.count else {
                    throw ExpressionError(.syntax, "Unterminated template substitution", at: base + exprStart)
                }
                index += 1
                substitutions.append(Token.Substitution(source: source, offset: base + exprStart))
            } else {
                current.append(c)
                index += 1
            }
        }
        throw ExpressionError(.syntax, "Unterminated template literal", at: base + start)
    }
}
