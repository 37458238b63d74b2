import Foundation

/// Evaluates a syntax tree against an `ExpressionContext`.
///
/// Only the names and methods listed here exist. Property names that lead to JavaScript's
/// prototype machinery (`constructor`, `__proto__`, `prototype`, …) are refused outright, so
/// the n8n expression-injection payloads (CVE-2025-68613 and friends) have nothing to reach.
final class Evaluator {
    let context: ExpressionContext
    private var steps = 0

    init(context: ExpressionContext) {
        self.context = context
    }

    static let forbiddenNames: Set<String> = [
        "constructor", "__proto__", "prototype", "__defineGetter__", "__defineSetter__", "__lookupGetter__",
        "__lookupSetter__", "caller", "callee", "arguments",
    ]

    static let forbiddenGlobals: Set<String> = [
        "globalThis", "window", "self", "global", "process", "require", "module", "exports", "eval", "Function",
        "this", "import", "Reflect", "Proxy", "Symbol", "WebAssembly", "setTimeout", "setInterval", "fetch",
        "XMLHttpRequest", "Buffer", "__dirname", "__filename", "Deno", "Bun",
    ]

    func evaluate(_ node: Node, scope: [String: JSValue] = [:]) throws(ExpressionError) -> JSValue {
        steps += 1
        if steps > context.limits.steps {
            throw ExpressionError(.limit, "The expression took more than \(context.limits.steps) steps", at: 0)
        }
        switch node {
        case .literal(let value): return .json(value)
        case .undefined: return .undefined
        case .identifier(let name, let position): return try identifier(name, scope: scope, at: position)
        case .member(let base, let name, let optional, let position):
            let object = try evaluate(base, scope: scope)
            if optional && object.isNullish { return .undefined }
            return try member(object, name, at: position)
        case .index(let base, let keyNode, let optional, let position):
            let object = try evaluate(base, scope: scope)
            if optional && object.isNullish { return .undefined }
            let key = try evaluate(keyNode, scope: scope)
            if case .json(.array(let array)) = object, case .json(.number(let n)) = key {
                guard n >= 0, n == n.rounded(), n < Double(array.count) else { return .undefined }
                return .json(array[Int(n)])
            }
            if case .json(.string(let string)) = object, case .json(.number(let n)) = key {
                guard n >= 0, n == n.rounded(), n < Double(string.count) else { return .undefined }
                return .string(String(string[string.index(string.startIndex, offsetBy: Int(n))]))
            }
            return try member(object, key.asString, at: position)
        case .call(let calleeNode, let argumentNodes, let optional, let position):
            let callee = try evaluate(calleeNode, scope: scope)
            if optional && callee.isNullish { return .undefined }
            var arguments: [JSValue] = []
            for argument in argumentNodes { arguments.append(try evaluate(argument, scope: scope)) }
            return try call(callee, arguments, at: position)
        case .unary(let op, let operandNode, let position):
            if op == "typeof", case .identifier(let name, _) = operandNode, scope[name] == nil, Self.globalNames.contains(name) == false {
                return .string("undefined")
            }
            let operand = try evaluate(operandNode, scope: scope)
            switch op {
            case "!": return .bool(!operand.truthy)
            case "-": return .number(-operand.asNumber)
            case "+": return .number(operand.asNumber)
            case "typeof": return .string(operand.typeName)
            default: throw ExpressionError(.syntax, "Unknown operator \(op)", at: position)
            }
        case .binary(let op, let leftNode, let rightNode, let position):
            return try binary(op, try evaluate(leftNode, scope: scope), try evaluate(rightNode, scope: scope), at: position)
        case .logical(let op, let leftNode, let rightNode):
            let left = try evaluate(leftNode, scope: scope)
            switch op {
            case "&&": return left.truthy ? try evaluate(rightNode, scope: scope) : left
            case "||": return left.truthy ? left : try evaluate(rightNode, scope: scope)
            default: return left.isNullish ? try evaluate(rightNode, scope: scope) : left
            }
        case .conditional(let condition, let whenTrue, let whenFalse):
            return try evaluate(condition, scope: scope).truthy
                ? try evaluate(whenTrue, scope: scope) : try evaluate(whenFalse, scope: scope)
        case .array(let elements):
            var values: [JSONValue] = []
            for element in elements { values.append(try toJSON(try evaluate(element, scope: scope), at: 0)) }
            return try checkedArray(values, at: 0)
        case .object(let entries):
            var object: JSONObject = [:]
            for (key, valueNode) in entries {
                let name: String
                switch key {
                case .name(let n): name = n
                case .computed(let keyNode): name = try evaluate(keyNode, scope: scope).asString
                }
                if Self.forbiddenNames.contains(name) {
                    throw ExpressionError(.forbidden, "'\(name)' cannot be used as a property name", at: 0)
                }
                object[name] = try toJSON(try evaluate(valueNode, scope: scope), at: 0)
            }
            return .json(.object(object))
        case .arrow(let params, let body, _):
            return .function(.arrow(params: params, body: body, scope: scope))
        case .template(let strings, let nodes):
            var out = strings.first ?? ""
            for (i, node) in nodes.enumerated() {
                out += try evaluate(node, scope: scope).asString
                if i + 1 < strings.count { out += strings[i + 1] }
            }
            return try checkedString(out, at: 0)
        }
    }

    // MARK: Names

    static let globalNames: Set<String> = [
        "$json", "$input", "$node", "$env", "$now", "$today", "$execution", "$workflow", "$itemIndex", "$", "$items",
        "Math", "JSON", "Object", "Array", "String", "Number", "Boolean", "Date", "parseInt", "parseFloat", "isNaN",
        "isFinite", "encodeURIComponent", "decodeURIComponent", "NaN", "Infinity",
    ]

    private func identifier(_ name: String, scope: [String: JSValue], at position: Int) throws(ExpressionError) -> JSValue {
        if let value = scope[name] { return value }
        switch name {
        case "$json": return .json(context.json)
        case "$input": return .namespace(.input)
        case "$node": return .namespace(.nodes)
        case "$env": return .json(.object(JSONObject(context.variables.mapValues { .string($0) })))
        case "$now": return .date(context.now)
        case "$today":
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = context.timeZone
            return .date(calendar.startOfDay(for: context.now))
        case "$execution": return .json(.object(["id": .string(context.executionID), "resumeUrl": .string(context.resumeURL)]))
        case "$workflow": return .json(.object(["id": .string(context.workflowID), "name": .string(context.workflowName)]))
        case "$itemIndex": return .number(Double(context.itemIndex))
        case "$items": return .json(.array(context.inputItems))
        case "$": return .function(.global("$"))
        case "Math": return .namespace(.math)
        case "JSON": return .namespace(.json)
        case "Object": return .namespace(.object)
        case "Array": return .namespace(.array)
        case "String": return .function(.global("String"))
        case "Number": return .function(.global("Number"))
        case "Boolean": return .function(.global("Boolean"))
        case "Date": return .namespace(.date)
        case "parseInt", "parseFloat", "isNaN", "isFinite", "encodeURIComponent", "decodeURIComponent": return .function(.global(name))
        case "NaN": return .number(.nan)
        case "Infinity": return .number(.infinity)
        default:
            if name.hasPrefix("$"), let bound = context.boundNames[name] { return .json(bound) }
            if Self.forbiddenGlobals.contains(name) {
                throw ExpressionError(.forbidden, "'\(name)' is not available in expressions", at: position)
            }
            throw ExpressionError(.runtime, "\(name) is not defined", at: position)
        }
    }

    // MARK: Members

    private func member(_ object: JSValue, _ name: String, at position: Int) throws(ExpressionError) -> JSValue {
        if Self.forbiddenNames.contains(name) || name.hasPrefix("__") {
            throw ExpressionError(.forbidden, "'\(name)' is not accessible in expressions", at: position)
        }
        switch object {
        case .undefined, .json(.null):
            throw ExpressionError(.runtime, "Cannot read properties of \(object.asString) (reading '\(name)')", at: position)
        case .json(.object(let dict)):
            if let value = dict[name] { return .json(value) }
            return Methods.objectMethods.contains(name) ? .function(.method(receiver: object, name: name)) : .undefined
        case .json(.array(let array)):
            if name == "length" { return .number(Double(array.count)) }
            if let i = Int(name), i >= 0, i < array.count { return .json(array[i]) }
            return Methods.arrayMethods.contains(name) ? .function(.method(receiver: object, name: name)) : .undefined
        case .json(.string(let string)):
            if name == "length" { return .number(Double(string.count)) }
            return Methods.stringMethods.contains(name) ? .function(.method(receiver: object, name: name)) : .undefined
        case .json(.number), .json(.bool):
            return Methods.numberMethods.contains(name) ? .function(.method(receiver: object, name: name)) : .undefined
        case .date(let date):
            if let part = Methods.dateComponent(date, name, timeZone: context.timeZone) { return .number(part) }
            return Methods.dateMethods.contains(name) ? .function(.method(receiver: object, name: name)) : .undefined
        case .function:
            return .undefined
        case .namespace(let namespace):
            return try namespaceMember(namespace, name, at: position)
        }
    }

    private func namespaceMember(_ namespace: Namespace, _ name: String, at position: Int) throws(ExpressionError) -> JSValue {
        switch namespace {
        case .math:
            switch name {
            case "PI": return .number(Double.pi)
            case "E": return .number(M_E)
            case "LN2": return .number(M_LN2)
            case "LN10": return .number(M_LN10)
            case "SQRT2": return .number(2.0.squareRoot())
            default: return Methods.mathFunctions.contains(name) ? .function(.global("Math.\(name)")) : .undefined
            }
        case .json: return ["stringify", "parse"].contains(name) ? .function(.global("JSON.\(name)")) : .undefined
        case .object:
            return ["keys", "values", "entries", "fromEntries", "assign"].contains(name) ? .function(.global("Object.\(name)")) : .undefined
        case .array: return ["isArray", "from"].contains(name) ? .function(.global("Array.\(name)")) : .undefined
        case .string, .number: return .undefined
        case .date: return ["now", "parse"].contains(name) ? .function(.global("Date.\(name)")) : .undefined
        case .input:
            switch name {
            case "item": return .json(.object(["json": context.json]))
            case "all", "first", "last": return .function(.method(receiver: .namespace(.input), name: name))
            default: return .undefined
            }
        case .nodes:
            return try nodeAccessor(name, at: position)
        case .node(let nodeName):
            let items = context.nodeOutputs[nodeName] ?? []
            switch name {
            case "json": return .json(items.first?.json ?? .object([:]))
            case "item":
                let item = context.itemIndex < items.count ? items[context.itemIndex].json : (items.first?.json ?? .object([:]))
                return .json(.object(["json": item]))
            case "all", "first", "last": return .function(.method(receiver: .namespace(namespace), name: name))
            default: return .undefined
            }
        }
    }

    private func nodeAccessor(_ name: String, at position: Int) throws(ExpressionError) -> JSValue {
        guard context.nodeOutputs[name] != nil else {
            throw ExpressionError(.runtime, "No output from a node called '\(name)' is available", at: position)
        }
        return .namespace(.node(name))
    }

    // MARK: Calls

    func call(_ callee: JSValue, _ arguments: [JSValue], at position: Int) throws(ExpressionError) -> JSValue {
        guard case .function(let function) = callee else {
            throw ExpressionError(.runtime, "\(callee.typeName == "undefined" ? "undefined" : "value") is not a function", at: position)
        }
        switch function {
        case .arrow(let params, let body, let captured):
            var scope = captured
            for (i, param) in params.enumerated() { scope[param] = i < arguments.count ? arguments[i] : .undefined }
            return try evaluate(body, scope: scope)
        case .method(let receiver, let name):
            if case .namespace(let namespace) = receiver {
                let wrapped: [JSONValue]
                switch namespace {
                case .input: wrapped = context.inputItems.map { JSONValue.object(["json": $0]) }
                case .node(let nodeName): wrapped = (context.nodeOutputs[nodeName] ?? []).map { JSONValue.object(["json": $0.json]) }
                default: wrapped = []
                }
                switch name {
                case "all": return .json(.array(wrapped))
                case "first": return wrapped.first.map(JSValue.json) ?? .undefined
                default: return wrapped.last.map(JSValue.json) ?? .undefined
                }
            }
            return try Methods.call(self, receiver: receiver, name: name, arguments, at: position)
        case .global(let name):
            if name == "$" {
                return try nodeAccessor(arguments.first?.asString ?? "", at: position)
            }
            return try Methods.global(self, name, arguments, at: position)
        }
    }

    // MARK: Operators

    private func binary(_ op: String, _ left: JSValue, _ right: JSValue, at position: Int) throws(ExpressionError) -> JSValue {
        switch op {
        case "+":
            if case .json(.number(let a)) = left, case .json(.number(let b)) = right { return .number(a + b) }
            if isStringLike(left) || isStringLike(right) {
                return try checkedString(left.asString + right.asString, at: position)
            }
            return .number(left.asNumber + right.asNumber)
        case "-": return .number(left.asNumber - right.asNumber)
        case "*": return .number(left.asNumber * right.asNumber)
        case "/": return .number(left.asNumber / right.asNumber)
        case "%":
            let a = left.asNumber
            let b = right.asNumber
            return .number(a.truncatingRemainder(dividingBy: b))
        case "**": return .number(pow(left.asNumber, right.asNumber))
        case "===": return .bool(Self.strictEquals(left, right))
        case "!==": return .bool(!Self.strictEquals(left, right))
        case "==": return .bool(Self.looseEquals(left, right))
        case "!=": return .bool(!Self.looseEquals(left, right))
        case "<", ">", "<=", ">=":
            if case .json(.string(let a)) = left, case .json(.string(let b)) = right {
                switch op {
                case "<": return .bool(a < b)
                case ">": return .bool(a > b)
                case "<=": return .bool(a <= b)
                default: return .bool(a >= b)
                }
            }
            let a = left.asNumber
            let b = right.asNumber
            switch op {
            case "<": return .bool(a < b)
            case ">": return .bool(a > b)
            case "<=": return .bool(a <= b)
            default: return .bool(a >= b)
            }
        case "in":
            switch right {
            case .json(.object(let dict)): return .bool(dict[left.asString] != nil)
            case .json(.array(let array)):
                let n = left.asNumber
                return .bool(n >= 0 && n == n.rounded() && n < Double(array.count))
            default: throw ExpressionError(.runtime, "Cannot use 'in' on a \(right.typeName)", at: position)
            }
        default:
            throw ExpressionError(.syntax, "Unknown operator \(op)", at: position)
        }
    }

    private func isStringLike(_ value: JSValue) -> Bool {
        switch value {
        case .json(.string), .json(.array), .json(.object), .date: true
        default: false
        }
    }

    static func strictEquals(_ a: JSValue, _ b: JSValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined): true
        case (.json(let x), .json(let y)): x == y
        case (.date(let x), .date(let y)): x == y
        default: false
        }
    }

    static func looseEquals(_ a: JSValue, _ b: JSValue) -> Bool {
        if a.isNullish || b.isNullish { return a.isNullish && b.isNullish }
        switch (a, b) {
        case (.json(.string(let x)), .json(.string(let y))): return x == y
        case (.json(.array), _), (.json(.object), _), (_, .json(.array)), (_, .json(.object)): return strictEquals(a, b)
        default: return a.asNumber == b.asNumber
        }
    }

    // MARK: Conversions and limits

    func toJSON(_ value: JSValue, at position: Int) throws(ExpressionError) -> JSONValue {
        switch value {
        case .undefined: return .null
        case .json(let v): return v
        case .date(let d): return .string(RFC3339.format(d))
        case .function, .namespace:
            throw ExpressionError(.runtime, "A function or built-in object cannot be used as a value", at: position)
        }
    }

    func checkedString(_ s: String, at position: Int) throws(ExpressionError) -> JSValue {
        guard s.utf8.count <= context.limits.maximumStringLength else {
            throw ExpressionError(.limit, "A string grew beyond \(context.limits.maximumStringLength) bytes", at: position)
        }
        return .string(s)
    }

    func checkedArray(_ a: [JSONValue], at position: Int) throws(ExpressionError) -> JSValue {
        guard a.count <= context.limits.maximumArrayLength else {
            throw ExpressionError(.limit, "An array grew beyond \(context.limits.maximumArrayLength) elements", at: position)
        }
        return .json(.array(a))
    }
}
