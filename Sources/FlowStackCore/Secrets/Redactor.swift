import Foundation
import Synchronization

/// The secret values an execution has touched, and their removal from everything it keeps.
///
/// Every connection a run resolves registers its secret values here before they are used. The
/// driver passes each node's output, error and log lines through `redact` before they are
/// journaled, so a secret echoed by user code or by a remote server is stored as `[redacted]`.
public final class Redactor: Sendable {
    public static let replacement = "[redacted]"
    /// Shorter values are not redacted: they would blank out ordinary words and digits.
    public static let minimumLength = 4

    private let secrets = Mutex<[String]>([])

    public init() {}

    /// Adds secret values (longest first, so a secret that contains another is removed whole),
    /// each also in the forms it is commonly echoed in: percent-encoded (a key in a query
    /// string), JSON-escaped (a secret with a quote or backslash inside a JSON string) and
    /// base64 (at each of the three alignments, as inside `Basic user:password`).
    public func register(_ values: some Sequence<String>) {
        let fresh = values.filter { $0.utf8.count >= Self.minimumLength }.flatMap(Self.encodings)
        guard !fresh.isEmpty else { return }
        secrets.withLock { list in
            var known = Set(list)
            for value in fresh where known.insert(value).inserted { list.append(value) }
            list.sort { $0.utf8.count > $1.utf8.count }
        }
    }

    public var isEmpty: Bool { secrets.withLock { $0.isEmpty } }

    /// A secret and its encoded forms (the base64 forms only when long enough to be specific).
    static func encodings(_ secret: String) -> [String] {
        var forms = [secret]
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        if let encoded = secret.addingPercentEncoding(withAllowedCharacters: unreserved), encoded != secret {
            forms.append(encoded)
            forms.append(lowercasingPercentEscapes(encoded))
            if secret.contains(" ") {
                forms.append(encoded.replacingOccurrences(of: "%20", with: "+"))
            }
        }
        if let data = try? JSONEncoder().encode(secret), let quoted = String(data: data, encoding: .utf8), quoted.count >= 2 {
            let escaped = String(quoted.dropFirst().dropLast())
            forms.append(escaped)
            forms.append(escaped.replacingOccurrences(of: "\\/", with: "/"))
        }
        let bytes = Array(secret.utf8)
        for offset in 0..<3 {
            let encoded = Data(Array(repeating: 0, count: offset) + bytes).base64EncodedString()
            // The characters that depend on the secret's bits only.
            let first = (offset * 8 + 5) / 6
            let last = ((offset + bytes.count) * 8) / 6 - 1
            guard last - first + 1 >= 8 else { continue }
            let characters = Array(encoded)
            let core = String(characters[first...last])
            forms.append(core)
            forms.append(core.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_"))
        }
        var seen = Set<String>()
        return forms.filter { $0.utf8.count >= minimumLength && seen.insert($0).inserted }
    }

    private static func lowercasingPercentEscapes(_ text: String) -> String {
        var result = ""
        var pending = 0
        for character in text {
            if character == "%" {
                pending = 2
                result.append(character)
            } else if pending > 0 {
                pending -= 1
                result.append(contentsOf: character.lowercased())
            } else {
                result.append(character)
            }
        }
        return result
    }

    /// `text` with every registered secret replaced.
    public func redact(_ text: String) -> String {
        let list = secrets.withLock { $0 }
        return Self.redact(text, list)
    }

    static func redact(_ text: String, _ list: [String]) -> String {
        var result = text
        for secret in list where result.contains(secret) {
            result = result.replacingOccurrences(of: secret, with: replacement)
        }
        return result
    }

    /// `value` with every registered secret replaced in its strings and object keys.
    public func redact(_ value: JSONValue) -> JSONValue {
        let list = secrets.withLock { $0 }
        guard !list.isEmpty else { return value }
        return Self.redact(value, list)
    }

    /// Two keys redacted to the same text: the first one's value counts.
    static func redact(_ fields: JSONObject, _ list: [String]) -> JSONObject {
        var redacted = JSONObject()
        for (key, value) in fields {
            let key = redact(key, list)
            if redacted[key] == nil { redacted[key] = redact(value, list) }
        }
        return redacted
    }

    static func redact(_ value: JSONValue, _ list: [String]) -> JSONValue {
        switch value {
        case .string(let text): .string(redact(text, list))
        case .array(let elements): .array(elements.map { redact($0, list) })
        case .object(let fields):
            .object(redact(fields, list))
        default: value
        }
    }

    /// Items with their JSON and binary data redacted. Binary payloads are base64 text: a secret
    /// inside is found by decoding, and the payload is replaced when it contains one.
    public func redact(_ items: [Item]) -> [Item] {
        let list = secrets.withLock { $0 }
        guard !list.isEmpty else { return items }
        return items.map { item in
            var copy = item
            copy.json = Self.redact(item.json, list)
            if let binary = item.binary {
                copy.binary = binary.mapValues { entry in
                    guard case .object(var fields) = entry, case .string(let data)? = fields["data"],
                        let decoded = Data(base64Encoded: data)
                    else { return Self.redact(entry, list) }
                    let text = String(decoding: decoded, as: UTF8.self)
                    if list.contains(where: { text.contains($0) }) {
                        fields["data"] = .string(Data(Self.redact(text, list).utf8).base64EncodedString())
                    }
                    return Self.redact(.object(fields), list)
                }
            }
            return copy
        }
    }
}
