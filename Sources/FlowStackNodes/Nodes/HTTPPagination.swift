import FlowStackCore
import FlowStackRuntime
import Foundation

/// How the HTTP Request node fetches further pages: its `pagination` parameter.
///
///     {"mode": "nextUrl", "nextUrl": "{{ $response.body.next }}"}
///     {"mode": "parameters", "parameters": [{"in": "query", "name": "page", "value": "{{ $pageCount + 1 }}"}],
///      "complete": "expression", "completeExpression": "{{ !$response.body.hasMore }}"}
///
/// The first request is the node's own. After each response, `nextUrl`, `parameters` and
/// `completeExpression` are evaluated with `$response` (`{statusCode, headers, body}`) and
/// `$pageCount` (responses so far) bound; the other fields are read once, before the first request.
struct Pagination: Sendable {
    enum Mode: String, CaseIterable { case nextUrl, parameters }
    enum Completion: String, CaseIterable { case emptyResponse, statusCode, expression }
    enum Place: String, CaseIterable { case query, header, body }

    /// One parameter set on the next request.
    struct Setting: Sendable {
        var place: Place
        var name: String
        var value: JSONValue
    }

    var mode: Mode
    var completion: Completion
    var statusCodes: Set<Int>
    var maxRequests: Int
    var intervalMilliseconds: Int
    /// The unevaluated fields evaluated after each response.
    var raw: JSONObject

    static let fields: Set<String> = [
        "mode", "nextUrl", "parameters", "complete", "statusCodes", "completeExpression", "maxRequests", "intervalMs",
    ]
    /// Fields that may use `$response` and `$pageCount`.
    static let perPage: Set<String> = ["nextUrl", "parameters", "completeExpression"]
    static let defaultMaxRequests = 100
    static let requestLimit = 1000
    static let intervalLimit = 60_000
    static let settingLimit = 20

    /// Problems with a `pagination` value, each naming its field. Strings that are expressions
    /// are not checked here (they are checked once evaluated).
    static func problems(_ value: JSONValue) -> [(field: String, message: String)] {
        guard let object = value.objectValue else {
            // Not even as an expression: its per-page fields would then come from data, and data
            // is never evaluated as a template.
            return [("", "pagination must be an object (its fields may be expressions).")]
        }
        var problems: [(field: String, message: String)] = []
        for key in object.keys.sorted() where !fields.contains(key) {
            problems.append((key, "'\(key)' is not a pagination field (\(fields.sorted().joined(separator: ", ")))."))
        }
        let mode = object["mode"]
        if mode == nil || (!isExpression(mode!) && mode!.stringValue.flatMap(Mode.init(rawValue:)) == nil) {
            problems.append(("mode", "mode must be nextUrl or parameters."))
        }
        let complete = object["complete"]
        if let complete, !isExpression(complete), complete.stringValue.flatMap(Completion.init(rawValue:)) == nil {
            problems.append(("complete", "complete must be emptyResponse, statusCode or expression."))
        }
        switch mode?.stringValue.flatMap(Mode.init(rawValue:)) {
        case .nextUrl:
            if object["nextUrl"]?.stringValue?.isEmpty != false {
                problems.append(
                    ("nextUrl", "nextUrl (the next page's URL, usually an expression on $response) is required in nextUrl mode."))
            }
        case .parameters:
            switch object["parameters"] {
            case .array(let settings)?:
                if settings.isEmpty || settings.count > settingLimit {
                    problems.append(("parameters", "parameters must list 1 to \(settingLimit) parameters to set."))
                }
                for (index, setting) in settings.enumerated() {
                    problems += settingProblems(setting).map {
                        ("parameters[\(index)]" + ($0.field.isEmpty ? "" : ".\($0.field)"), $0.message)
                    }
                }
            case let other? where isExpression(other):
                break
            default:
                problems.append(("parameters", "parameters (a list of {in, name, value}) is required in parameters mode."))
            }
        case nil:
            break
        }
        switch complete?.stringValue.flatMap(Completion.init(rawValue:)) {
        case .statusCode:
            let codes = object["statusCodes"]
            if !(codes.map(isExpression) ?? false) {
                let valid =
                    codes?.arrayValue.map { list in
                        !list.isEmpty
                            && list.allSatisfy { code in
                                code.numberValue.map { $0 == $0.rounded() && (100...599).contains($0) } ?? false
                            }
                    } ?? false
                if !valid { problems.append(("statusCodes", "statusCodes must list the HTTP status codes (100–599) that end pagination.")) }
            }
        case .expression:
            if object["completeExpression"]?.stringValue?.isEmpty != false {
                problems.append(
                    ("completeExpression", "completeExpression (true when the last page has come) is required when complete is expression.")
                )
            }
        default:
            break
        }
        if complete.map(isExpression) != true {
            // A field for another way of ending would be ignored: say so rather than surprise.
            let ending = complete?.stringValue ?? Completion.emptyResponse.rawValue
            if object["statusCodes"] != nil, ending != Completion.statusCode.rawValue {
                problems.append(("statusCodes", "statusCodes is only read when complete is statusCode."))
            }
            if object["completeExpression"] != nil, ending != Completion.expression.rawValue {
                problems.append(("completeExpression", "completeExpression is only read when complete is expression."))
            }
        }
        if let count = object["maxRequests"], !isExpression(count), !isInteger(count, in: 1...requestLimit) {
            problems.append(("maxRequests", "maxRequests must be a whole number from 1 to \(requestLimit)."))
        }
        if let interval = object["intervalMs"], !isExpression(interval), !isInteger(interval, in: 0...intervalLimit) {
            problems.append(("intervalMs", "intervalMs must be a whole number of milliseconds from 0 to \(intervalLimit)."))
        }
        return problems
    }

    static func settingProblems(_ value: JSONValue) -> [(field: String, message: String)] {
        guard let setting = value.objectValue else { return [("", "Each parameter to set is an object {in, name, value}.")] }
        var problems: [(field: String, message: String)] = []
        if let place = setting["in"], !isExpression(place), place.stringValue.flatMap(Place.init(rawValue:)) == nil {
            problems.append(("in", "in must be query, header or body."))
        } else if setting["in"] == nil {
            problems.append(("in", "in (query, header or body) is required."))
        }
        if setting["name"]?.stringValue?.isEmpty != false {
            problems.append(("name", "name is required."))
        }
        if setting["value"] == nil {
            problems.append(("value", "value is required."))
        }
        return problems
    }

    private static func isExpression(_ value: JSONValue) -> Bool {
        if case .string(let text) = value { return Template.containsExpression(text) }
        return false
    }

    private static func isInteger(_ value: JSONValue, in range: ClosedRange<Int>) -> Bool {
        guard let number = value.numberValue, number == number.rounded(), number >= Double(range.lowerBound),
            number <= Double(range.upperBound)
        else {
            return false
        }
        return true
    }

    /// The node's pagination for item `index`, or nil when it has none.
    init?(_ input: NodeInput, item index: Int) throws {
        guard let given = input.node.parameters["pagination"], given != .null else { return nil }
        guard case .object(let raw) = given else {
            throw NodeError("pagination must be an object (its fields may be expressions).", field: "pagination")
        }
        // The fixed fields are evaluated now, for the item; the per-page ones after each response.
        var fixed = raw.filter { !Self.perPage.contains($0.key) }
        fixed = try NodeInput.resolve(.object(fixed), input.context(for: index)).objectValue ?? [:]
        var resolved = fixed
        for key in Self.perPage { resolved[key] = raw[key] }
        if let problem = Self.problems(.object(resolved)).first {
            throw NodeError(problem.message, field: problem.field.isEmpty ? "pagination" : "pagination.\(problem.field)")
        }
        mode = fixed["mode"]?.stringValue.flatMap(Mode.init(rawValue:)) ?? .nextUrl
        completion = fixed["complete"]?.stringValue.flatMap(Completion.init(rawValue:)) ?? .emptyResponse
        statusCodes = Set(fixed["statusCodes"]?.arrayValue?.compactMap { $0.numberValue.map(Int.init) } ?? [])
        maxRequests = fixed["maxRequests"]?.numberValue.map(Int.init) ?? Self.defaultMaxRequests
        intervalMilliseconds = fixed["intervalMs"]?.numberValue.map(Int.init) ?? 0
        self.raw = raw.filter { Self.perPage.contains($0.key) }
    }

    /// Whether a page parameter goes in the body (as far as the literal parameters say).
    var setsBody: Bool {
        raw["parameters"]?.arrayValue?.contains { $0["in"] == .string(Place.body.rawValue) } ?? false
    }

    /// The context the per-page fields are evaluated in.
    static func scope(_ input: NodeInput, item index: Int, response: JSONValue, pageCount: Int) -> ExpressionContext {
        var context = input.context(for: index)
        context.boundNames = ["$response": response, "$pageCount": .number(Double(pageCount))]
        return context
    }

    /// True when `completeExpression` says the last page has come.
    func isComplete(_ scope: ExpressionContext) throws -> Bool {
        guard completion == .expression, let expression = raw["completeExpression"] else { return false }
        return try NodeInput.resolve(expression, scope).isTruthy
    }

    /// The next page's URL, resolved against the current one; nil when there is none.
    func nextURL(_ scope: ExpressionContext, after current: String) throws -> String? {
        guard let given = raw["nextUrl"] else { return nil }
        let value = try NodeInput.resolve(given, scope)
        switch value {
        case .null:
            return nil
        case .string(let text):
            if text.isEmpty { return nil }
            guard let url = URL(string: text, relativeTo: URL(string: current)) else {
                throw NodeError("The next page's URL '\(text.prefix(200))' is not a valid URL.", field: "pagination.nextUrl")
            }
            return url.absoluteString
        default:
            throw NodeError("nextUrl must evaluate to a URL string (or to nothing on the last page).", field: "pagination.nextUrl")
        }
    }

    /// The parameters to set on the next request.
    func settings(_ scope: ExpressionContext) throws -> [Setting] {
        guard let given = raw["parameters"] else { return [] }
        guard case .array(let list) = try NodeInput.resolve(given, scope), !list.isEmpty, list.count <= Self.settingLimit else {
            throw NodeError("parameters must list 1 to \(Self.settingLimit) parameters to set.", field: "pagination.parameters")
        }
        return try list.enumerated().map { index, item in
            if let problem = Self.settingProblems(item).first {
                throw NodeError(
                    problem.message, field: "pagination.parameters[\(index)]" + (problem.field.isEmpty ? "" : ".\(problem.field)"))
            }
            guard let place = item["in"]?.stringValue.flatMap(Place.init(rawValue:)), let name = item["name"]?.stringValue,
                let value = item["value"]
            else {
                throw NodeError("in must be query, header or body.", field: "pagination.parameters[\(index)].in")
            }
            return Setting(place: place, name: name, value: value)
        }
    }

    /// An empty page: no body, or JSON null, `[]`, `{}` or `""`.
    static func isEmpty(_ body: JSONValue, bytes: [UInt8]) -> Bool {
        if bytes.isEmpty { return true }
        switch body {
        case .null:
            return bytes.count <= 64 && String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "null"
        case .array(let items): return items.isEmpty
        case .object(let fields): return fields.isEmpty
        case .string(let text): return text.isEmpty
        default: return false
        }
    }
}

/// What pagination changes in the node's request for the next page.
struct PageOverrides: Sendable {
    /// The whole URL (nextUrl mode): replaces `url` and `query`.
    var url: String?
    var query: [(String, String)] = []
    var headers: [(String, String)] = []
    var body: [(String, JSONValue)] = []

    init() {}

    init(_ settings: [Pagination.Setting]) {
        for setting in settings {
            switch setting.place {
            case .query: query.append((setting.name, setting.value.stringValue ?? setting.value.jsonText))
            case .header: headers.append((setting.name, setting.value.stringValue ?? setting.value.jsonText))
            case .body: body.append((setting.name, setting.value))
            }
        }
    }
}
