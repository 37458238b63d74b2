import Foundation

/// A runtime value of the expression language: JSON plus the few things JSON cannot hold.
indirect enum JSValue: Sendable {
    case undefined
    case json(JSONValue)
    case date(Date)
    case function(Callable)
    case namespace(Namespace)

    static let null = JSValue.json(.null)
    static func number(_ n: Double) -> JSValue { .json(.number(n)) }
    static func string(_ s: String) -> JSValue { .json(.string(s)) }
    static func bool(_ b: Bool) -> JSValue { .json(.bool(b)) }
}

/// Something callable: an arrow function, a method bound to its receiver, or a global function.
enum Callable: Sendable {
    case arrow(params: [String], body: Node, scope: [String: JSValue])
    case method(receiver: JSValue, name: String)
    case global(String)
}

/// The built-in objects an expression can name.
enum Namespace: Sendable {
    case math, json, object, array, string, number, date
    case input
    case nodes
    case node(String)
}

extension JSValue {
    var isNullish: Bool {
        switch self {
        case .undefined, .json(.null): true
        default: false
        }
    }

    var truthy: Bool {
        switch self {
        case .undefined: false
        case .json(let v): v.isTruthy
        default: true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: "undefined"
        case .json(let v):
            switch v {
            case .null, .array, .object: "object"
            case .bool: "boolean"
            case .number: "number"
            case .string: "string"
            }
        case .date, .namespace: "object"
        case .function: "function"
        }
    }

    static func numberToString(_ n: Double) -> String {
        if n.isNaN { return "NaN" }
        if n.isInfinite { return n > 0 ? "Infinity" : "-Infinity" }
        if n == n.rounded(), abs(n) < 9.007_199_254_740_992e15 {
            return n == 0 ? "0" : String(Int64(n))
        }
        if n == n.rounded(), abs(n) < 1e21 {
            // Beyond 2^53 JavaScript prints the shortest digits padded with zeros, never Int64 (which would trap).
            let text = "\(abs(n))"
            if let e = text.firstIndex(of: "e"), let exponent = Int(text[text.index(after: e)...]) {
                let digits = text[..<e].replacingOccurrences(of: ".", with: "")
                let padded = digits + String(repeating: "0", count: max(0, exponent + 1 - digits.count))
                return (n < 0 ? "-" : "") + padded
            }
            return (n < 0 ? "-" : "") + text.replacingOccurrences(of: ".0", with: "")
        }
        var text = "\(n)"
        if let e = text.firstIndex(of: "e") {
            var exponent = String(text[text.index(after: e)...])
            let sign = exponent.hasPrefix("-") ? "-" : "+"
            exponent = exponent.trimmingCharacters(in: CharacterSet(charactersIn: "+-"))
            while exponent.hasPrefix("0") && exponent.count > 1 { exponent.removeFirst() }
            text = String(text[..<e]) + "e" + sign + exponent
        }
        return text
    }

    /// JavaScript's ToString (objects and arrays render as JSON, as n8n's templates do).
    var asString: String {
        switch self {
        case .undefined: "undefined"
        case .json(let v):
            switch v {
            case .null: "null"
            case .bool(let b): b ? "true" : "false"
            case .number(let n): Self.numberToString(n)
            case .string(let s): s
            case .array, .object: v.jsonText
            }
        case .date(let d): RFC3339.format(d)
        case .function: "function"
        case .namespace: "[object]"
        }
    }

    /// JavaScript's ToNumber.
    var asNumber: Double {
        switch self {
        case .undefined:
            return Double.nan
        case .json(let v):
            switch v {
            case .null: return 0
            case .bool(let b): return b ? 1 : 0
            case .number(let n): return n
            case .string(let s):
                let trimmed = s.trimmingCharacters(in: .whitespacesAndNewlines)
                if trimmed.isEmpty { return 0 }
                if trimmed.hasPrefix("0x") || trimmed.hasPrefix("0X") {
                    return Int64(trimmed.dropFirst(2), radix: 16).map(Double.init) ?? Double.nan
                }
                if trimmed == "Infinity" || trimmed == "+Infinity" { return Double.infinity }
                if trimmed == "-Infinity" { return -Double.infinity }
                return Double(trimmed) ?? Double.nan
            case .array(let a):
                if a.isEmpty { return 0 }
                if a.count == 1 { return JSValue.json(a[0]).asNumber }
                return Double.nan
            case .object:
                return Double.nan
            }
        case .date(let d):
            return (d.timeIntervalSince1970 * 1000).rounded()
        default:
            return Double.nan
        }
    }
}
