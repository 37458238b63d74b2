import Foundation

/// The whitelisted methods and global functions of the expression language.
enum Methods {
    static let stringMethods: Set<String> = [
        "toUpperCase", "toLowerCase", "trim", "trimStart", "trimEnd", "includes", "startsWith", "endsWith", "indexOf",
        "lastIndexOf", "slice", "substring", "split", "replace", "replaceAll", "padStart", "padEnd", "repeat", "charAt",
        "at", "concat", "toString", "localeCompare",
    ]
    static let arrayMethods: Set<String> = [
        "map", "filter", "some", "every", "find", "findIndex", "reduce", "includes", "indexOf", "join", "slice",
        "concat", "reverse", "sort", "flat", "at", "toString", "first", "last",
    ]
    static let numberMethods: Set<String> = ["toFixed", "toString", "toPrecision"]
    static let objectMethods: Set<String> = ["hasOwnProperty"]
    static let dateMethods: Set<String> = [
        "toISO", "toISOString", "toISODate", "toMillis", "getTime", "toString", "plus", "minus", "startOf", "toUnixInteger",
    ]
    static let mathFunctions: Set<String> = [
        "abs", "ceil", "floor", "round", "min", "max", "pow", "sqrt", "trunc", "sign", "random", "log", "log10", "log2", "exp",
    ]

    private static func argument(_ arguments: [JSValue], _ i: Int) -> JSValue {
        i < arguments.count ? arguments[i] : .undefined
    }

    private static func integer(_ value: JSValue, default fallback: Int) -> Int {
        if case .undefined = value { return fallback }
        let n = value.asNumber
        if n.isNaN { return 0 }
        // Clamped so that no later arithmetic on it can overflow (and trap).
        let bound = Double(1 << 30)
        return Int(min(max(n.rounded(.towardZero), -bound), bound))
    }

    /// JavaScript's relative index handling for slice/substring-like methods.
    private static func relative(_ index: Int, _ count: Int) -> Int {
        index < 0 ? max(0, count + index) : min(index, count)
    }

    static func call(_ e: Evaluator, receiver: JSValue, name: String, _ args: [JSValue], at position: Int) throws(ExpressionError)
        -> JSValue
    {
        switch receiver {
        case .json(.string(let s)): return try string(e, s, name, args, at: position)
        case .json(.array(let a)): return try array(e, a, name, args, at: position)
        case .json(.number(let n)): return try number(n, name, args, at: position)
        case .json(.bool(let b)):
            return .string(b ? "true" : "false")
        case .json(.object(let o)):
            return .bool(o[argument(args, 0).asString] != nil)
        case .date(let d): return try date(e, d, name, args, at: position)
        default: throw ExpressionError(.runtime, "\(name) is not a function", at: position)
        }
    }

    private static func string(_ e: Evaluator, _ s: String, _ name: String, _ args: [JSValue], at position: Int) throws(ExpressionError)
        -> JSValue
    {
        let chars = Array(s)
        let a0 = argument(args, 0)
        let a1 = argument(args, 1)
        switch name {
        case "toUpperCase": return .string(s.uppercased())
        case "toLowerCase": return .string(s.lowercased())
        case "trim": return .string(s.trimmingCharacters(in: .whitespacesAndNewlines))
        case "trimStart": return .string(String(s.drop { $0.isWhitespace }))
        case "trimEnd": return .string(String(s.reversed().drop { $0.isWhitespace }.reversed()))
        case "includes": return .bool(a0.asString.isEmpty || s.contains(a0.asString))
        case "startsWith": return .bool(s.hasPrefix(a0.asString))
        case "endsWith": return .bool(s.hasSuffix(a0.asString))
        case "indexOf", "lastIndexOf":
            let needle = Array(a0.asString)
            guard !needle.isEmpty else { return .number(name == "indexOf" ? 0 : Double(chars.count)) }
            guard needle.count <= chars.count else { return .number(-1) }
            let range = Array(0...(chars.count - needle.count))
            let candidates = name == "indexOf" ? range : range.reversed()
            for i in candidates where Array(chars[i..<(i + needle.count)]) == needle { return .number(Double(i)) }
            return .number(-1)
        case "slice":
            let start = relative(integer(a0, default: 0), chars.count)
            let end = relative(integer(a1, default: chars.count), chars.count)
            return .string(start < end ? String(chars[start..<end]) : "")
        case "substring":
            var start = min(max(integer(a0, default: 0), 0), chars.count)
            var end = min(max(integer(a1, default: chars.count), 0), chars.count)
            if start > end { swap(&start, &end) }
            return .string(String(chars[start..<end]))
        case "split":
            if case .undefined = a0 { return .json(.array([.string(s)])) }
            let separator = a0.asString
            var parts: [JSONValue]
            if separator.isEmpty {
                parts = chars.map { .string(String($0)) }
            } else {
                parts = s.components(separatedBy: separator).map { .string($0) }
            }
            if case .undefined = a1 {} else { parts = Array(parts.prefix(max(0, integer(a1, default: parts.count)))) }
            return try e.checkedArray(parts, at: position)
        case "replace", "replaceAll":
            let target = a0.asString
            let replacement: (String) throws(ExpressionError) -> String = { (match: String) throws(ExpressionError) -> String in
                if case .function = a1 { return try e.call(a1, [.string(match)], at: position).asString }
                return a1.asString
            }
            guard !target.isEmpty else { return .string(try replacement("") + s) }
            if name == "replace", let range = s.range(of: target) {
                return try e.checkedString(s.replacingCharacters(in: range, with: try replacement(target)), at: position)
            }
            if name == "replaceAll" {
                return try e.checkedString(s.replacingOccurrences(of: target, with: try replacement(target)), at: position)
            }
            return .string(s)
        case "padStart", "padEnd":
            let length = integer(a0, default: 0)
            let filler = { if case .undefined = a1 { return " " } else { return a1.asString } }()
            guard length > chars.count, !filler.isEmpty else { return .string(s) }
            guard length <= e.context.limits.maximumStringLength else {
                throw ExpressionError(.limit, "A string grew beyond \(e.context.limits.maximumStringLength) bytes", at: position)
            }
            let needed = length - chars.count
            let pad = String(String(repeating: filler, count: needed / filler.count + 1).prefix(needed))
            return .string(name == "padStart" ? pad + s : s + pad)
        case "repeat":
            let count = integer(a0, default: 0)
            guard count >= 0 else { throw ExpressionError(.runtime, "Invalid count value: \(count)", at: position) }
            guard count == 0 || s.utf8.count <= e.context.limits.maximumStringLength / count else {
                throw ExpressionError(.limit, "A string grew beyond \(e.context.limits.maximumStringLength) bytes", at: position)
            }
            return .string(String(repeating: s, count: count))
        case "charAt":
            let i = integer(a0, default: 0)
            return .string(i >= 0 && i < chars.count ? String(chars[i]) : "")
        case "at":
            var i = integer(a0, default: 0)
            if i < 0 { i += chars.count }
            return i >= 0 && i < chars.count ? .string(String(chars[i])) : .undefined
        case "concat": return try e.checkedString(s + args.map(\.asString).joined(), at: position)
        case "localeCompare":
            let other = a0.asString
            return .number(s < other ? -1 : s > other ? 1 : 0)
        default: return .string(s)
        }
    }

    private static func callback(_ e: Evaluator, _ f: JSValue, _ name: String, at position: Int) throws(ExpressionError) -> JSValue {
        guard case .function = f else {
            throw ExpressionError(.runtime, "\(name) needs a function argument, such as x => x.id", at: position)
        }
        return f
    }

    private static func array(_ e: Evaluator, _ a: [JSONValue], _ name: String, _ args: [JSValue], at position: Int) throws(ExpressionError)
        -> JSValue
    {
        let a0 = argument(args, 0)
        let a1 = argument(args, 1)
        switch name {
        case "map":
            let f = try callback(e, a0, name, at: position)
            var out: [JSONValue] = []
            for (i, item) in a.enumerated() {
                out.append(try e.toJSON(try e.call(f, [.json(item), .number(Double(i))], at: position), at: position))
            }
            return .json(.array(out))
        case "filter":
            let f = try callback(e, a0, name, at: position)
            var out: [JSONValue] = []
            for (i, item) in a.enumerated() where try e.call(f, [.json(item), .number(Double(i))], at: position).truthy { out.append(item) }
            return .json(.array(out))
        case "some", "every", "find", "findIndex":
            let f = try callback(e, a0, name, at: position)
            for (i, item) in a.enumerated() {
                let hit = try e.call(f, [.json(item), .number(Double(i))], at: position).truthy
                switch name {
                case "some" where hit: return .bool(true)
                case "every" where !hit: return .bool(false)
                case "find" where hit: return .json(item)
                case "findIndex" where hit: return .number(Double(i))
                default: break
                }
            }
            switch name {
            case "some": return .bool(false)
            case "every": return .bool(true)
            case "find": return .undefined
            default: return .number(-1)
            }
        case "reduce":
            let f = try callback(e, a0, name, at: position)
            var items = a.map(JSValue.json)
            var accumulator: JSValue
            if args.count >= 2 {
                accumulator = a1
            } else {
                guard !items.isEmpty else { throw ExpressionError(.runtime, "Reduce of empty array with no initial value", at: position) }
                accumulator = items.removeFirst()
            }
            let offset = args.count >= 2 ? 0 : 1
            for (i, item) in items.enumerated() {
                accumulator = try e.call(f, [accumulator, item, .number(Double(i + offset))], at: position)
            }
            return accumulator
        case "includes":
            return .bool(a.contains { Evaluator.strictEquals(.json($0), a0) || (a0.asNumber.isNaN && $0.numberValue?.isNaN == true) })
        case "indexOf": return .number(Double(a.firstIndex { Evaluator.strictEquals(.json($0), a0) } ?? -1))
        case "join":
            let separator = { if case .undefined = a0 { return "," } else { return a0.asString } }()
            return try e.checkedString(a.map { $0 == .null ? "" : JSValue.json($0).asString }.joined(separator: separator), at: position)
        case "toString": return try e.checkedString(a.map { JSValue.json($0).asString }.joined(separator: ","), at: position)
        case "slice":
            let start = relative(integer(a0, default: 0), a.count)
            let end = relative(integer(a1, default: a.count), a.count)
            return .json(.array(start < end ? Array(a[start..<end]) : []))
        case "concat":
            var out = a
            for arg in args {
                if case .json(.array(let more)) = arg { out += more } else { out.append(try e.toJSON(arg, at: position)) }
            }
            return try e.checkedArray(out, at: position)
        case "reverse": return .json(.array(a.reversed()))
        case "sort":
            var failure: ExpressionError?
            let sorted: [JSONValue]
            if case .function = a0 {
                sorted = a.sorted { x, y in
                    guard failure == nil else { return false }
                    do { return try e.call(a0, [.json(x), .json(y)], at: position).asNumber < 0 } catch {
                        failure = error as? ExpressionError
                        return false
                    }
                }
            } else {
                sorted = a.sorted { JSValue.json($0).asString < JSValue.json($1).asString }
            }
            if let failure { throw failure }
            return .json(.array(sorted))
        case "flat":
            let depth = integer(a0, default: 1)
            func flatten(_ items: [JSONValue], _ depth: Int) -> [JSONValue] {
                items.flatMap { item -> [JSONValue] in
                    if depth > 0, case .array(let inner) = item { return flatten(inner, depth - 1) }
                    return [item]
                }
            }
            return try e.checkedArray(flatten(a, depth), at: position)
        case "at":
            var i = integer(a0, default: 0)
            if i < 0 { i += a.count }
            return i >= 0 && i < a.count ? .json(a[i]) : .undefined
        case "first": return a.first.map(JSValue.json) ?? .undefined
        case "last": return a.last.map(JSValue.json) ?? .undefined
        default: throw ExpressionError(.runtime, "\(name) is not a function", at: position)
        }
    }

    private static func number(_ n: Double, _ name: String, _ args: [JSValue], at position: Int) throws(ExpressionError) -> JSValue {
        switch name {
        case "toFixed":
            let digits = integer(argument(args, 0), default: 0)
            guard (0...100).contains(digits) else {
                throw ExpressionError(.runtime, "toFixed() digits argument must be between 0 and 100", at: position)
            }
            return .string(String(format: "%.\(digits)f", n))
        case "toPrecision":
            let digits = integer(argument(args, 0), default: 6)
            guard (1...100).contains(digits) else {
                throw ExpressionError(.runtime, "toPrecision() argument must be between 1 and 100", at: position)
            }
            return .string(String(format: "%.\(digits)g", n))
        default:
            let radix = integer(argument(args, 0), default: 10)
            if radix != 10, (2...36).contains(radix), n == n.rounded(), abs(n) < 9e15 { return .string(String(Int64(n), radix: radix)) }
            return .string(JSValue.numberToString(n))
        }
    }

    static func dateComponent(_ date: Date, _ name: String, timeZone: TimeZone) -> Double? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let components = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        switch name {
        case "year": return components.year.map(Double.init)
        case "month": return components.month.map(Double.init)
        case "day": return components.day.map(Double.init)
        case "hour": return components.hour.map(Double.init)
        case "minute": return components.minute.map(Double.init)
        case "second": return components.second.map(Double.init)
        case "weekday": return components.weekday.map { Double(($0 + 5) % 7 + 1) } // ISO: Monday = 1
        default: return nil
        }
    }

    private static func unit(_ value: JSValue, at position: Int) throws(ExpressionError) -> Calendar.Component {
        var name = value.asString.lowercased()
        if name.hasSuffix("s") { name.removeLast() }
        switch name {
        case "millisecond": return Calendar.Component.nanosecond
        case "second": return .second
        case "minute": return .minute
        case "hour": return .hour
        case "day": return .day
        case "week": return .weekOfYear
        case "month": return .month
        case "year": return .year
        default: throw ExpressionError(.runtime, "Unknown time unit '\(value.asString)'", at: position)
        }
    }

    private static func date(_ e: Evaluator, _ d: Date, _ name: String, _ args: [JSValue], at position: Int) throws(ExpressionError)
        -> JSValue
    {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = e.context.timeZone
        switch name {
        case "toISO", "toISOString", "toString": return .string(RFC3339.format(d))
        case "toISODate":
            let c = calendar.dateComponents([.year, .month, .day], from: d)
            return .string(String(format: "%04d-%02d-%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0))
        case "toMillis", "getTime": return .number((d.timeIntervalSince1970 * 1000).rounded())
        case "toUnixInteger": return .number(d.timeIntervalSince1970.rounded(.down))
        case "plus", "minus":
            let amount = integer(argument(args, 0), default: 0) * (name == "minus" ? -1 : 1)
            let component = try unit(argument(args, 1), at: position)
            let value = component == .nanosecond ? amount * 1_000_000 : amount
            guard let moved = calendar.date(byAdding: component, value: value, to: d) else {
                throw ExpressionError(.runtime, "Date out of range", at: position)
            }
            return .date(moved)
        case "startOf":
            let component = try unit(argument(args, 0), at: position)
            guard let interval = calendar.dateInterval(of: component == .weekOfYear ? .weekOfYear : component, for: d) else {
                return .date(d)
            }
            return .date(interval.start)
        default: throw ExpressionError(.runtime, "\(name) is not a function", at: position)
        }
    }

    static func global(_ e: Evaluator, _ name: String, _ args: [JSValue], at position: Int) throws(ExpressionError) -> JSValue {
        let a0 = argument(args, 0)
        switch name {
        case "String": return try e.checkedString(args.isEmpty ? "" : a0.asString, at: position)
        case "Number": return .number(args.isEmpty ? 0 : a0.asNumber)
        case "Boolean": return .bool(a0.truthy)
        case "parseFloat":
            let text = a0.asString.trimmingCharacters(in: .whitespaces)
            var prefix = ""
            for c in text where c.isNumber || c == "." || c == "-" || c == "+" || c == "e" || c == "E" { prefix.append(c) }
            while !prefix.isEmpty, Double(prefix) == nil { prefix.removeLast() }
            return .number(Double(prefix) ?? .nan)
        case "parseInt":
            let radix = integer(argument(args, 1), default: 10)
            var text = a0.asString.trimmingCharacters(in: .whitespaces)
            var sign = 1.0
            if text.hasPrefix("-") {
                sign = -1
                text.removeFirst()
            } else if text.hasPrefix("+") {
                text.removeFirst()
            }
            var base = radix == 0 ? 10 : radix
            if base == 16 || radix == 0, text.lowercased().hasPrefix("0x") {
                text.removeFirst(2)
                base = 16
            }
            guard (2...36).contains(base) else { return .number(.nan) }
            let digits = text.prefix { $0.isHexDigit || $0.isLetter || $0.isNumber }.prefix { Int(String($0), radix: base) != nil }
            guard let value = Int64(digits, radix: base) else { return .number(.nan) }
            return .number(sign * Double(value))
        case "isNaN": return .bool(a0.asNumber.isNaN)
        case "isFinite": return .bool(a0.asNumber.isFinite)
        case "encodeURIComponent":
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-_.!~*'()")
            return .string(a0.asString.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
        case "decodeURIComponent":
            guard let decoded = a0.asString.removingPercentEncoding else { throw ExpressionError(.runtime, "URI malformed", at: position) }
            return .string(decoded)
        case "JSON.stringify":
            if case .undefined = a0 { return .undefined }
            let json = try e.toJSON(a0, at: position)
            if case .number(let n) = argument(args, 2).asJSONOrNull, n > 0 {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
                return try e.checkedString((try? String(decoding: encoder.encode(json), as: UTF8.self)) ?? "null", at: position)
            }
            return try e.checkedString(json.jsonText, at: position)
        case "JSON.parse":
            do {
                return .json(try JSONValue.parse(a0.asString))
            } catch {
                throw ExpressionError(.runtime, "JSON.parse: the text is not valid JSON", at: position)
            }
        case "Object.keys", "Object.values", "Object.entries":
            guard case .json(.object(let o)) = a0 else {
                if case .json(.array(let a)) = a0, name == "Object.keys" { return .json(.array(a.indices.map { .string(String($0)) })) }
                throw ExpressionError(.runtime, "\(name) needs an object", at: position)
            }
            let keys = o.keys.sorted()
            switch name {
            case "Object.keys": return .json(.array(keys.map { .string($0) }))
            case "Object.values": return .json(.array(keys.map { o[$0]! }))
            default: return .json(.array(keys.map { .array([.string($0), o[$0]!]) }))
            }
        case "Object.fromEntries":
            guard case .json(.array(let entries)) = a0 else {
                throw ExpressionError(.runtime, "Object.fromEntries needs an array of [key, value] pairs", at: position)
            }
            var o: JSONObject = [:]
            for entry in entries {
                guard case .array(let pair) = entry, pair.count >= 1 else { continue }
                let key = JSValue.json(pair[0]).asString
                if Evaluator.forbiddenNames.contains(key) {
                    throw ExpressionError(.forbidden, "'\(key)' cannot be used as a property name", at: position)
                }
                o[key] = pair.count > 1 ? pair[1] : .null
            }
            return .json(.object(o))
        case "Object.assign":
            var o: JSONObject = [:]
            for arg in args { if case .json(.object(let more)) = arg { o.merge(more) { $1 } } }
            return .json(.object(o))
        case "Array.isArray":
            if case .json(.array) = a0 { return .bool(true) }
            return .bool(false)
        case "Array.from":
            switch a0 {
            case .json(.array(let a)): return .json(.array(a))
            case .json(.string(let s)): return .json(.array(s.map { .string(String($0)) }))
            default: return .json(.array([]))
            }
        case "Date.now": return .number((e.context.now.timeIntervalSince1970 * 1000).rounded())
        case "Date.parse": return .number(RFC3339.parse(a0.asString).map { ($0.timeIntervalSince1970 * 1000).rounded() } ?? .nan)
        default:
            if name.hasPrefix("Math.") { return try math(String(name.dropFirst(5)), args, at: position) }
            throw ExpressionError(.runtime, "\(name) is not a function", at: position)
        }
    }

    private static func math(_ name: String, _ args: [JSValue], at position: Int) throws(ExpressionError) -> JSValue {
        let x = argument(args, 0).asNumber
        switch name {
        case "abs": return .number(abs(x))
        case "ceil": return .number(x.rounded(.up))
        case "floor": return .number(x.rounded(.down))
        case "round": return .number((x + 0.5).rounded(.down))
        case "trunc": return .number(x.rounded(.towardZero))
        case "sign": return .number(x > 0 ? 1 : x < 0 ? -1 : x)
        case "sqrt": return .number(x.squareRoot())
        case "pow": return .number(pow(x, argument(args, 1).asNumber))
        case "log": return .number(log(x))
        case "log10": return .number(log10(x))
        case "log2": return .number(log2(x))
        case "exp": return .number(exp(x))
        case "random": return .number(Double.random(in: 0..<1))
        case "min", "max":
            let values = args.flatMap { arg -> [Double] in
                if case .json(.array(let a)) = arg { return a.map { JSValue.json($0).asNumber } }
                return [arg.asNumber]
            }
            if values.contains(where: \.isNaN) { return .number(.nan) }
            if name == "min" { return .number(values.min() ?? .infinity) }
            return .number(values.max() ?? -.infinity)
        default: throw ExpressionError(.runtime, "Math.\(name) is not a function", at: position)
        }
    }
}

extension JSValue {
    fileprivate var asJSONOrNull: JSONValue {
        if case .json(let v) = self { return v }
        return .null
    }
}
