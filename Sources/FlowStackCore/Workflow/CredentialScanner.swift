import Foundation

/// A JSON-like parameter value, as the credential scanner sees it.
///
/// The scanner keeps its own value type so that it depends on nothing but Foundation; callers
/// convert their `JSONValue` (or any decoded JSON) into it.
public indirect enum ScanValue: Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case null
    case array([ScanValue])
    case object([String: ScanValue])
}

extension ScanValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByNilLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: ScanValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, ScanValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

/// A credential that appears to be written into a node's parameters instead of being kept in a
/// connection or a project variable.
///
/// A finding never holds the secret itself: the message shows at most its first and last four
/// characters, so findings can be logged, stored and returned to any editor of the workflow.
public struct CredentialFinding: Sendable, Equatable, Codable {
    /// The node's name.
    public var node: String
    /// The parameter path: keys joined by ".", array indices as "[i]" (e.g. `headers.Authorization`).
    public var field: String
    /// The 1-based line within a multi-line string (such as a Code node's code); nil for one-line values.
    public var line: Int?
    /// What the credential looks like: `awsAccessKey`, `githubToken`, `gitlabToken`, `slackToken`,
    /// `slackWebhook`, `stripeKey`, `privateKey`, `jwt`, `googleApiKey` or `highEntropySecret`.
    public var kind: String
    /// Text for the workflow's author naming the node, field, line and kind, with a masked hint.
    public var message: String

    public init(node: String, field: String, line: Int?, kind: String, message: String) {
        self.node = node
        self.field = field
        self.line = line
        self.kind = kind
        self.message = message
    }
}

/// Finds hard-coded credentials in a node's parameters: well-known token shapes anywhere, and
/// random-looking values in places that carry authentication (auth-like keys and assignments).
///
/// Scanning works on UTF-8 bytes in a few linear passes, so a 256 KiB Code node takes a few
/// milliseconds. A value that is an expression (`{{ … }}`, `$env.NAME`) is never reported as a
/// high-entropy secret: it is resolved at run time, which is what we want authors to do. That
/// judgement is made per candidate value, so a literal key beside an expression is still found.
public enum CredentialScanner {
    /// Scans one node's parameters and returns one finding per (field, line, kind), ordered by
    /// field, then line, then kind.
    /// `isCode`: the node's `code` parameter is source text (a Code node), scanned line by line.
    public static func scan(nodeName: String, isCode isCodeNode: Bool, parameters: [String: ScanValue]) -> [CredentialFinding] {
        let walker = ParameterWalker(parameters)
        var seen = Set<FindingKey>()
        var findings: [CredentialFinding] = []
        for text in walker.strings {
            let isCode = isCodeNode && walker.isTopLevel(text.path, named: "code")
            let detections = StringScanner.detections(in: text.value, keyName: text.keyName, isCode: isCode)
            guard !detections.isEmpty else { continue }
            let field = walker.field(text.path)
            for detection in detections {
                guard seen.insert(FindingKey(field: field, line: detection.line, kind: detection.kind)).inserted else { continue }
                findings.append(
                    CredentialFinding(
                        node: nodeName, field: field, line: detection.line, kind: detection.kind.rawValue,
                        message: FindingMessage.text(
                            node: nodeName, field: field, line: detection.line,
                            kind: detection.kind, secret: detection.secret, isCode: isCode)))
            }
        }
        return findings.sorted(by: FindingKey.ordered)
    }

}

// MARK: - Kinds, keys and messages

/// The shapes the scanner recognises; the raw value is the finding's `kind`.
private enum CredentialKind: String, Sendable {
    case awsAccessKey, githubToken, gitlabToken, slackToken, slackWebhook, stripeKey, privateKey, jwt, googleApiKey
    case highEntropySecret

    /// How the message names the kind.
    var phrase: String {
        switch self {
        case .awsAccessKey: "an AWS access key ID"
        case .githubToken: "a GitHub token"
        case .gitlabToken: "a GitLab access token"
        case .slackToken: "a Slack token"
        case .slackWebhook: "a Slack webhook URL"
        case .stripeKey: "a Stripe API key"
        case .privateKey: "a private key (PEM)"
        case .jwt: "a JSON Web Token"
        case .googleApiKey: "a Google API key"
        case .highEntropySecret: "a hard-coded secret"
        }
    }
}

/// The deduplication key, which is also the sort key.
private struct FindingKey: Hashable {
    var field: String
    var line: Int?
    var kind: CredentialKind

    static func ordered(_ a: CredentialFinding, _ b: CredentialFinding) -> Bool {
        if a.field != b.field { return a.field < b.field }
        if a.line != b.line { return (a.line ?? 0) < (b.line ?? 0) }
        return a.kind < b.kind
    }
}

/// Builds the author-facing message. The secret is only ever shown masked, and only when it is
/// long enough (≥ 20 characters) that eight characters of it give nothing useful away.
private enum FindingMessage {
    static func text(node: String, field: String, line: Int?, kind: CredentialKind, secret: String?, isCode: Bool) -> String {
        var location = "Node '\(node)', field '\(field)'"
        if let line { location += ", line \(line)" }
        var what = "looks like \(kind.phrase)"
        if let secret, let hint = maskedHint(secret) { what += " (\(hint))" }
        let advice =
            isCode
            ? "Store it in a connection and use $http.request, or a project variable ($env.NAME)."
            : "Store it in a connection, or in a project variable and use {{ $env.NAME }}."
        return "\(location): \(what). \(advice)"
    }

    /// First four and last four characters of a secret of at least 20 characters; nil otherwise.
    static func maskedHint(_ secret: String) -> String? {
        guard secret.count >= 20 else { return nil }
        return String(secret.prefix(4)) + "…" + String(secret.suffix(4))
    }
}

// MARK: - Walking parameters

/// One string found in the parameters.
private struct ScannedString {
    /// Where it is, as an index into the walker's path table.
    var path: Int
    /// The key whose value this is, used to decide whether the value sits in an auth-like place.
    /// Array elements inherit their array's key; a `value` next to a `name`/`key` takes that name
    /// (the `[{ "name": "Authorization", "value": "…" }]` header-list shape).
    var keyName: String
    var value: String
}

/// Flattens parameters into their strings, iteratively so deeply nested input cannot overflow
/// the stack. Paths are kept as parent links and spelled out only for strings with findings, so
/// deep nesting costs linear, not quadratic, time.
private struct ParameterWalker {
    private var components: [(parent: Int, text: String)] = []
    private(set) var strings: [ScannedString] = []

    init(_ parameters: [String: ScanValue]) {
        var pending: [(value: ScanValue, path: Int, keyName: String)] = []
        for key in parameters.keys.sorted().reversed() {
            pending.append((parameters[key]!, append(parent: -1, key), key))
        }
        while let (value, path, keyName) = pending.popLast() {
            switch value {
            case .string(let text):
                strings.append(ScannedString(path: path, keyName: keyName, value: text))
            case .array(let elements):
                for (index, element) in elements.enumerated().reversed() {
                    pending.append((element, append(parent: path, "[\(index)]"), keyName))
                }
            case .object(let object):
                let pairName = Self.pairedName(in: object)
                for key in object.keys.sorted().reversed() {
                    let name = key == "value" ? (pairName ?? key) : key
                    pending.append((object[key]!, append(parent: path, "." + key), name))
                }
            case .number, .bool, .null:
                break
            }
        }
    }

    /// The field path: keys joined by ".", array indices as "[i]".
    func field(_ path: Int) -> String {
        var parts: [String] = []
        var index = path
        while index >= 0 {
            parts.append(components[index].text)
            index = components[index].parent
        }
        return parts.reversed().joined()
    }

    func isTopLevel(_ path: Int, named name: String) -> Bool {
        components[path].parent == -1 && components[path].text == name
    }

    private mutating func append(parent: Int, _ text: String) -> Int {
        components.append((parent, text))
        return components.count - 1
    }

    /// The `name` (or `key`) of a `{ name, value }` pair object, if it has one.
    private static func pairedName(in object: [String: ScanValue]) -> String? {
        guard object["value"] != nil else { return nil }
        if case .string(let name)? = object["name"] { return name }
        if case .string(let name)? = object["key"] { return name }
        return nil
    }
}

// MARK: - Scanning one string

/// Something found in one string: its kind, where it starts (for the line number), and the
/// secret text (only used to build the masked hint; nil when no hint should be shown).
private struct Detection {
    var kind: CredentialKind
    var range: Range<Int>
    var secret: String?
    var line: Int?
}

private typealias Bytes = UnsafeBufferPointer<UInt8>

private enum StringScanner {
    /// All detections in one string, token shapes first, then high-entropy values that do not
    /// overlap a token (a GitHub token in an `Authorization` header is one finding, not two).
    static func detections(in value: String, keyName: String, isCode: Bool) -> [Detection] {
        var value = value
        return value.withUTF8 { bytes in
            var found = TokenMatcher.matches(in: bytes)
            let tokens = found
            var candidates: [Range<Int>] = []
            if AuthNames.isAuthLike(keyName) { candidates.append(0..<bytes.count) }
            candidates += AssignmentMatcher.values(in: bytes, allowsBareValues: !isCode)
            for range in candidates {
                guard let secret = SecretCandidate.evaluate(bytes, range), !overlaps(secret, tokens) else { continue }
                found.append(Detection(kind: .highEntropySecret, range: secret, secret: string(bytes, secret)))
            }
            assignLines(&found, bytes)
            return found
        }
    }

    static func string(_ bytes: Bytes, _ range: Range<Int>) -> String {
        String(decoding: Bytes(rebasing: bytes[range]), as: UTF8.self)
    }

    /// Whether `range` overlaps one of `sorted`, which are ordered and do not overlap each other.
    private static func overlaps(_ range: Range<Int>, _ sorted: [Detection]) -> Bool {
        var low = 0
        var high = sorted.count
        while low < high {
            let mid = (low + high) / 2
            if sorted[mid].range.upperBound <= range.lowerBound { low = mid + 1 } else { high = mid }
        }
        return low < sorted.count && sorted[low].range.lowerBound < range.upperBound
    }

    /// Sets 1-based line numbers, but only in strings that have more than one line.
    private static func assignLines(_ detections: inout [Detection], _ bytes: Bytes) {
        guard !detections.isEmpty else { return }
        var newlines: [Int] = []
        for index in bytes.indices where bytes[index] == ASCII.newline { newlines.append(index) }
        guard !newlines.isEmpty else { return }
        for index in detections.indices {
            let start = detections[index].range.lowerBound
            var low = 0
            var high = newlines.count
            while low < high {
                let mid = (low + high) / 2
                if newlines[mid] < start { low = mid + 1 } else { high = mid }
            }
            detections[index].line = low + 1
        }
    }
}

// MARK: - Bytes

private enum ASCII {
    static let newline = UInt8(ascii: "\n")
    static let backslash = UInt8(ascii: "\\")

    static func isDigit(_ b: UInt8) -> Bool { b &- 0x30 < 10 }
    static func isUpper(_ b: UInt8) -> Bool { b &- 0x41 < 26 }
    static func isLower(_ b: UInt8) -> Bool { b &- 0x61 < 26 }
    static func isAlnum(_ b: UInt8) -> Bool { isDigit(b) || isUpper(b) || isLower(b) }
    static func isUpperAlnum(_ b: UInt8) -> Bool { isDigit(b) || isUpper(b) }
    static func isWord(_ b: UInt8) -> Bool { isAlnum(b) || b == UInt8(ascii: "_") }
    static func isBase64URL(_ b: UInt8) -> Bool { isWord(b) || b == UInt8(ascii: "-") }
    static func isAlnumOrDash(_ b: UInt8) -> Bool { isAlnum(b) || b == UInt8(ascii: "-") }
    static func isBase64(_ b: UInt8) -> Bool { isAlnum(b) || b == UInt8(ascii: "+") || b == UInt8(ascii: "/") || b == UInt8(ascii: "=") }
    static func isBlank(_ b: UInt8) -> Bool { b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") }
    static func isSpace(_ b: UInt8) -> Bool { isBlank(b) || b == newline || b == UInt8(ascii: "\r") || b == 0x0B || b == 0x0C }
    static func isQuote(_ b: UInt8) -> Bool { b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") || b == UInt8(ascii: "`") }
    static func lower(_ b: UInt8) -> UInt8 { isUpper(b) ? b | 0x20 : b }

    /// The index just past the run of bytes matching `predicate` that starts at `start`.
    static func run(_ bytes: Bytes, from start: Int, while predicate: (UInt8) -> Bool) -> Int {
        var end = start
        while end < bytes.count && predicate(bytes[end]) { end += 1 }
        return end
    }

    static func has(_ prefix: [UInt8], in bytes: Bytes, at start: Int) -> Bool {
        guard start >= 0, bytes.count - start >= prefix.count else { return false }
        for offset in prefix.indices where bytes[start + offset] != prefix[offset] { return false }
        return true
    }

    /// Case-insensitive version of `has`; `prefix` must be lower-case.
    static func hasIgnoringCase(_ prefix: [UInt8], in bytes: Bytes, at start: Int) -> Bool {
        guard start >= 0, bytes.count - start >= prefix.count else { return false }
        for offset in prefix.indices where lower(bytes[start + offset]) != prefix[offset] { return false }
        return true
    }
}

// MARK: - Token shapes

/// The alphabets token bodies are made of.
private enum TokenAlphabet: CaseIterable {
    case upperAlnum, alnum, word, base64URL, alnumOrDash

    func contains(_ b: UInt8) -> Bool {
        switch self {
        case .upperAlnum: ASCII.isUpperAlnum(b)
        case .alnum: ASCII.isAlnum(b)
        case .word: ASCII.isWord(b)
        case .base64URL: ASCII.isBase64URL(b)
        case .alnumOrDash: ASCII.isAlnumOrDash(b)
        }
    }
}

/// Recognises the published shapes of provider tokens in one pass, dispatching on the first byte.
///
/// A token must start at a word boundary (not after a letter, digit or `_`), so a token prefix
/// buried in a longer identifier is not a match. Known documentation placeholders (AWS's
/// `…EXAMPLE` key, `ghp_xxxx…`) are skipped.
///
/// Alphabets with `-` allow a new attempt to start inside a body that was already measured
/// (`xoxb-xoxb-xoxb-…`), so body runs are remembered: any start inside a known run ends where
/// that run ends, which keeps the pass linear.
private struct TokenMatcher {
    private static let akia = Array("AKIA".utf8), asia = Array("ASIA".utf8), aiza = Array("AIza".utf8)
    private static let githubPrefixes = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"].map { Array($0.utf8) }
    private static let githubPAT = Array("github_pat_".utf8), gitlabPAT = Array("glpat-".utf8)
    private static let slackPrefixes = ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"].map { Array($0.utf8) }
    private static let slackHook = Array("hooks.slack.com/services/".utf8)
    private static let stripePrefixes = ["sk_live_", "rk_live_", "sk_test_"].map { Array($0.utf8) }
    private static let jwtStart = Array("eyJ".utf8)
    private static let pemBegin = Array("-----BEGIN ".utf8), pemDashes = Array("-----".utf8)
    private static let pemPrivate = Array("PRIVATE KEY".utf8), pemProcType = Array("Proc-Type:".utf8)
    private static let escapedNewline = Array("\\n".utf8), escapedReturn = Array("\\r".utf8)
    /// How many recent runs to remember per alphabet; a JWT measures three in a row.
    private static let rememberedRuns = 4

    private let bytes: Bytes
    private var runs: [TokenAlphabet: [Range<Int>]] = [:]

    static func matches(in bytes: Bytes) -> [Detection] {
        var matcher = TokenMatcher(bytes: bytes)
        return matcher.scan()
    }

    private init(bytes: Bytes) { self.bytes = bytes }

    private mutating func scan() -> [Detection] {
        var found: [Detection] = []
        var index = 0
        while index < bytes.count {
            guard let (kind, end) = match(at: index) else {
                index += 1
                continue
            }
            let range = index..<end
            if !SecretCandidate.isPlaceholder(bytes, range) {
                found.append(Detection(kind: kind, range: range, secret: kind == .privateKey ? nil : StringScanner.string(bytes, range)))
            }
            index = end
        }
        return found
    }

    private mutating func match(at index: Int) -> (CredentialKind, Int)? {
        let first = bytes[index]
        if first == UInt8(ascii: "-") { return privateKey(index).map { (.privateKey, $0) } }
        guard index == 0 || !ASCII.isWord(bytes[index - 1]) else { return nil }
        switch first {
        case UInt8(ascii: "A"):
            if let end = awsKey(index) { return (.awsAccessKey, end) }
            return googleKey(index).map { (.googleApiKey, $0) }
        case UInt8(ascii: "g"):
            if let end = prefixed(index, Self.githubPrefixes, minimum: 36, .alnum) ?? prefixed(index, [Self.githubPAT], minimum: 22, .word)
            {
                return (.githubToken, end)
            }
            return prefixed(index, [Self.gitlabPAT], minimum: 20, .base64URL).map { (.gitlabToken, $0) }
        case UInt8(ascii: "x"):
            return prefixed(index, Self.slackPrefixes, minimum: 10, .alnumOrDash).map { (.slackToken, $0) }
        case UInt8(ascii: "h"):
            return slackWebhook(index).map { (.slackWebhook, $0) }
        case UInt8(ascii: "s"), UInt8(ascii: "r"):
            return prefixed(index, Self.stripePrefixes, minimum: 16, .alnum).map { (.stripeKey, $0) }
        case UInt8(ascii: "e"):
            return jwt(index)
        default:
            return nil
        }
    }

    /// The end of the run of `alphabet` bytes starting at `start`, reusing a remembered run.
    private mutating func run(from start: Int, _ alphabet: TokenAlphabet) -> Int {
        if let known = runs[alphabet, default: []].first(where: { $0.contains(start) }) { return known.upperBound }
        let end = ASCII.run(bytes, from: start, while: alphabet.contains)
        guard end > start else { return end }
        var recent = runs[alphabet, default: []]
        if recent.count == Self.rememberedRuns { recent.removeFirst() }
        recent.append(start..<end)
        runs[alphabet] = recent
        return end
    }

    /// One of `prefixes`, then at least `minimum` bytes of `alphabet`; returns the end.
    private mutating func prefixed(_ index: Int, _ prefixes: [[UInt8]], minimum: Int, _ alphabet: TokenAlphabet) -> Int? {
        guard let prefix = prefixes.first(where: { ASCII.has($0, in: bytes, at: index) }) else { return nil }
        let start = index + prefix.count
        let end = run(from: start, alphabet)
        return end - start >= minimum ? end : nil
    }

    /// `AKIA`/`ASIA` and exactly 16 upper-case letters or digits, not followed by a letter.
    private mutating func awsKey(_ index: Int) -> Int? {
        guard ASCII.has(Self.akia, in: bytes, at: index) || ASCII.has(Self.asia, in: bytes, at: index) else { return nil }
        let end = run(from: index + 4, .upperAlnum)
        guard end - index == 20, end == bytes.count || !ASCII.isAlnum(bytes[end]) else { return nil }
        return end
    }

    /// `AIza` and exactly 35 of `[A-Za-z0-9_-]`.
    private mutating func googleKey(_ index: Int) -> Int? {
        guard ASCII.has(Self.aiza, in: bytes, at: index) else { return nil }
        let end = run(from: index + 4, .base64URL)
        return end - index == 39 ? end : nil
    }

    /// `hooks.slack.com/services/T…/B…/…`.
    private mutating func slackWebhook(_ index: Int) -> Int? {
        guard ASCII.has(Self.slackHook, in: bytes, at: index) else { return nil }
        var position = index + Self.slackHook.count
        for marker in [UInt8(ascii: "T"), UInt8(ascii: "B")] {
            guard position < bytes.count, bytes[position] == marker else { return nil }
            let end = run(from: position + 1, .upperAlnum)
            guard end > position + 1, end < bytes.count, bytes[end] == UInt8(ascii: "/") else { return nil }
            position = end + 1
        }
        let end = run(from: position, .alnum)
        return end - position >= 8 ? end : nil
    }

    /// Three base64url segments of at least 10 characters, the first two JSON objects (`eyJ`).
    private mutating func jwt(_ index: Int) -> (CredentialKind, Int)? {
        var start = index
        for segment in 0..<3 {
            if segment < 2 && !ASCII.has(Self.jwtStart, in: bytes, at: start) { return nil }
            let end = run(from: start, .base64URL)
            guard end - start >= 10 else { return nil }
            if segment == 2 { return (.jwt, end) }
            guard end < bytes.count, bytes[end] == UInt8(ascii: ".") else { return nil }
            start = end + 1
        }
        return nil
    }

    /// A `-----BEGIN … PRIVATE KEY-----` header followed by key material. Requiring the material
    /// keeps code that merely mentions the header (`pem.startsWith("-----BEGIN PRIVATE KEY-----")`)
    /// from being reported. The finding points at the header.
    private func privateKey(_ index: Int) -> Int? {
        guard ASCII.has(Self.pemBegin, in: bytes, at: index) else { return nil }
        let labelStart = index + Self.pemBegin.count
        let labelEnd = ASCII.run(bytes, from: labelStart) { ASCII.isUpperAlnum($0) || $0 == UInt8(ascii: " ") }
        guard labelEnd - labelStart <= 40, labelEnd - labelStart >= Self.pemPrivate.count,
            ASCII.has(Self.pemPrivate, in: bytes, at: labelEnd - Self.pemPrivate.count),
            ASCII.has(Self.pemDashes, in: bytes, at: labelEnd)
        else { return nil }
        let headerEnd = labelEnd + Self.pemDashes.count
        var body = headerEnd
        while body < bytes.count {
            if ASCII.isSpace(bytes[body]) || bytes[body] == UInt8(ascii: "\"") {
                body += 1
            } else if ASCII.has(Self.escapedNewline, in: bytes, at: body) || ASCII.has(Self.escapedReturn, in: bytes, at: body) {
                body += 2
            } else {
                break
            }
        }
        let material = ASCII.run(bytes, from: body, while: ASCII.isBase64)
        guard material - body >= 16 || ASCII.has(Self.pemProcType, in: bytes, at: body) else { return nil }
        return headerEnd
    }
}

// MARK: - Auth-like names and assignments

/// Whether a key or variable name is one that carries credentials.
private enum AuthNames {
    /// Every name in the list is matched as a substring, which also covers the exact names
    /// (`token`, `x-auth-token`, `client_secret`, …) and their variants (`proxy-authorization`).
    private static let fragments = [
        "token", "secret", "password", "passwd", "apikey", "api_key", "api-key",
        "authorization", "private_key", "private-key", "privatekey",
    ].map { Array($0.utf8) }

    static func isAuthLike(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { isAuthLike($0, 0..<$0.count) }
    }

    static func isAuthLike(_ bytes: Bytes, _ range: Range<Int>) -> Bool {
        guard range.count >= 5 else { return false }
        for fragment in fragments where fragment.count <= range.count {
            for start in range.lowerBound...(range.upperBound - fragment.count)
            where ASCII.hasIgnoringCase(fragment, in: bytes, at: start) {
                return true
            }
        }
        return false
    }
}

/// Finds string values assigned to auth-like names: `apiKey = "…"`, `token: '…'`,
/// `"Authorization": "Bearer …"`, `setHeader("x-api-key", "…")`, and — outside code, where a bare
/// word is not a variable — `?api_key=…` query parameters and `Authorization: Bearer …` header lines.
///
/// Each `=`, `:` or `,` costs a bounded look-back, and the scan resumes after any value it reads,
/// so the whole pass is linear in the string's length.
private enum AssignmentMatcher {
    private static let maximumNameLength = 64

    static func values(in bytes: Bytes, allowsBareValues: Bool) -> [Range<Int>] {
        var values: [Range<Int>] = []
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "=") || byte == UInt8(ascii: ":") || byte == UInt8(ascii: ","),
                let name = name(before: index, in: bytes, quotedOnly: byte == UInt8(ascii: ",")),
                AuthNames.isAuthLike(bytes, name.range),
                let value = quotedValue(after: index, in: bytes)
                    ?? (allowsBareValues ? bareValue(after: index, in: bytes, operator: byte, nameStart: name.start) : nil)
            else {
                index += 1
                continue
            }
            values.append(value.range)
            index = max(index + 1, value.resume)
        }
        return values
    }

    /// The name before an operator: a quoted key (`"x-api-key"`, also `\"token\"` inside a string
    /// literal) or an identifier, of which only the last `.` segment counts (`this.apiKey`).
    private static func name(before index: Int, in bytes: Bytes, quotedOnly: Bool)
        -> (range: Range<Int>, quoted: Bool, start: Int)?
    {
        var last = index - 1
        while last >= 0 && index - last <= maximumNameLength && ASCII.isBlank(bytes[last]) { last -= 1 }
        if last > 0 && bytes[last] == UInt8(ascii: "]") { last -= 1 } // headers["x-api-key"] = …
        guard last >= 0 else { return nil }
        if ASCII.isQuote(bytes[last]) {
            let quote = bytes[last]
            var end = last
            if end > 0 && bytes[end - 1] == ASCII.backslash { end -= 1 }
            var start = end - 1
            while start >= 0 && bytes[start] != quote && bytes[start] != ASCII.newline && end - start <= maximumNameLength { start -= 1 }
            guard start >= 0, bytes[start] == quote else { return nil }
            return (start + 1..<end, true, start)
        }
        guard !quotedOnly else { return nil }
        var start = last
        while start >= 0 && last - start < maximumNameLength && isNameByte(bytes[start]) { start -= 1 }
        guard start < last else { return nil }
        var segment = start + 1
        for position in (start + 1)...last where bytes[position] == UInt8(ascii: ".") { segment = position + 1 }
        return (segment..<last + 1, false, start + 1)
    }

    private static func isNameByte(_ b: UInt8) -> Bool {
        ASCII.isBase64URL(b) || b == UInt8(ascii: "$") || b == UInt8(ascii: ".")
    }

    /// A quoted value on the same line: `"…"`, `'…'`, `` `…` ``, or an escaped `\"…\"`.
    private static func quotedValue(after index: Int, in bytes: Bytes) -> (range: Range<Int>, resume: Int)? {
        var open = ASCII.run(bytes, from: index + 1, while: ASCII.isBlank)
        if open < bytes.count && bytes[open] == ASCII.backslash { open += 1 }
        guard open < bytes.count, ASCII.isQuote(bytes[open]) else { return nil }
        let quote = bytes[open]
        let close = ASCII.run(bytes, from: open + 1) { $0 != quote && $0 != ASCII.newline }
        guard close < bytes.count, bytes[close] == quote else { return nil }
        var end = close
        if end > open + 1 && bytes[end - 1] == ASCII.backslash { end -= 1 }
        return (open + 1..<end, close + 1)
    }

    /// An unquoted value in text that is not code, where a bare word is a value rather than a
    /// variable: `Authorization: Bearer …`, `token: …`, or `api_key=…` starting a query parameter
    /// or a line. The value ends at whitespace or a separator, so one bad value cannot hide the
    /// assignments after it.
    private static func bareValue(after index: Int, in bytes: Bytes, operator byte: UInt8, nameStart: Int)
        -> (range: Range<Int>, resume: Int)?
    {
        if byte == UInt8(ascii: "=") {
            let before = nameStart - 1
            guard
                before < 0 || ASCII.isSpace(bytes[before]) || bytes[before] == UInt8(ascii: "?")
                    || bytes[before] == UInt8(ascii: "&") || bytes[before] == UInt8(ascii: ";")
            else { return nil }
        } else if byte != UInt8(ascii: ":") {
            return nil
        }
        var start = ASCII.run(bytes, from: index + 1, while: ASCII.isBlank)
        if let scheme = SecretCandidate.scheme(in: bytes, at: start) {
            start = ASCII.run(bytes, from: start + scheme, while: ASCII.isBlank)
        }
        let end = ASCII.run(bytes, from: start, while: isBareValueByte)
        return end > start ? (index + 1..<end, end) : nil
    }

    private static func isBareValueByte(_ b: UInt8) -> Bool {
        !ASCII.isSpace(b) && !ASCII.isQuote(b) && b != UInt8(ascii: "&") && b != UInt8(ascii: ",")
            && b != UInt8(ascii: ";") && b != UInt8(ascii: "}") && b != UInt8(ascii: "]")
    }
}

// MARK: - Judging a candidate

/// Decides whether a value in an auth-like place is a real secret rather than an expression,
/// a placeholder, a URL or ordinary text.
private enum SecretCandidate {
    private static let schemes = ["bearer ", "basic ", "token "].map { Array($0.utf8) }
    /// Lower-case fragments of values that stand for a secret rather than being one.
    private static let placeholders = ["xxxx", "your_", "your-", "<", "${", "example", "changeme", "placeholder", "redacted", "****"]
        .map { Array($0.utf8) }
    /// Expressions, project variables and URLs are resolved or addressed, not secret.
    private static let notSecrets = ["{{", "$env.", "://"].map { Array($0.utf8) }
    static let minimumLength = 16
    static let minimumEntropy = 3.5

    /// The value without surrounding whitespace, a trailing `,`/`;`, or a leading auth scheme word.
    static func trimmed(_ bytes: Bytes, _ range: Range<Int>) -> Range<Int>? {
        var start = range.lowerBound
        var end = range.upperBound
        while start < end && ASCII.isSpace(bytes[start]) { start += 1 }
        while end > start && (ASCII.isSpace(bytes[end - 1]) || bytes[end - 1] == UInt8(ascii: ",") || bytes[end - 1] == UInt8(ascii: ";")) {
            end -= 1
        }
        if let scheme = scheme(in: bytes, at: start), start + scheme <= end {
            start += scheme
            while start < end && ASCII.isSpace(bytes[start]) { start += 1 }
        }
        return start < end ? start..<end : nil
    }

    /// The length of a `Bearer `, `Basic ` or `token ` prefix at `start`, if there is one.
    static func scheme(in bytes: Bytes, at start: Int) -> Int? {
        schemes.first(where: { ASCII.hasIgnoringCase($0, in: bytes, at: start) })?.count
    }

    /// The secret's range if the value is one, cheapest checks first.
    static func evaluate(_ bytes: Bytes, _ range: Range<Int>) -> Range<Int>? {
        guard let secret = trimmed(bytes, range), secret.count >= minimumLength,
            !secret.contains(where: { ASCII.isSpace(bytes[$0]) }),
            entropy(bytes, secret) >= minimumEntropy
        else { return nil }
        guard !containsAny(notSecrets, bytes, secret), !isPlaceholder(bytes, secret) else { return nil }
        return secret
    }

    static func isPlaceholder(_ bytes: Bytes, _ range: Range<Int>) -> Bool {
        containsAny(placeholders, bytes, range)
    }

    /// Whether any of the lower-case `needles` occurs in `range`, ignoring ASCII case. Searching
    /// bytes directly keeps this linear and allocation-free even for a 256 KiB value.
    private static func containsAny(_ needles: [[UInt8]], _ bytes: Bytes, _ range: Range<Int>) -> Bool {
        for start in range {
            for needle in needles where start + needle.count <= range.upperBound && ASCII.lower(bytes[start]) == needle[0] {
                if ASCII.hasIgnoringCase(needle, in: bytes, at: start) { return true }
            }
        }
        return false
    }

    /// Shannon entropy in bits per byte; random keys score well above 3.5, words and repeats below.
    static func entropy(_ bytes: Bytes, _ range: Range<Int>) -> Double {
        var counts = [Int](repeating: 0, count: 256)
        for index in range { counts[Int(bytes[index])] += 1 }
        let total = Double(range.count)
        var bits = 0.0
        for count in counts where count > 0 {
            let p = Double(count) / total
            bits -= p * log2(p)
        }
        return bits
    }
}
