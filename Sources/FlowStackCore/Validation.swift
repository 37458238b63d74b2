/// Checks for user-supplied text fields.
public enum Validate {
    /// A normalized e-mail address (trimmed, lower-cased), or a validation error.
    public static func email(_ raw: String, field: String = "email") throws(FlowStackError) -> String {
        let value = raw.trimmingWhitespace().lowercased()
        let parts = value.split(separator: "@", omittingEmptySubsequences: false)
        guard value.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
            !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
            value.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F })
        else {
            throw .validation("Enter a valid e-mail address.", field: field)
        }
        return value
    }

    /// A display name: 1–200 characters, no control characters.
    public static func name(_ raw: String, field: String = "name", maxLength: Int = 200) throws(FlowStackError) -> String {
        let value = raw.trimmingWhitespace()
        guard !value.isEmpty else { throw .validation("The \(field) must not be empty.", field: field) }
        guard value.count <= maxLength else {
            throw .validation("The \(field) must be at most \(maxLength) characters long.", field: field)
        }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .validation("The \(field) must not contain control characters.", field: field)
        }
        return value
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }

    /// The string with control characters (and the escape character) written as `\u{XX}`, so
    /// user input cannot forge lines or terminal sequences in logs and audit records.
    public var encodingControlCharacters: String {
        var out = ""
        out.reserveCapacity(utf8.count)
        for scalar in unicodeScalars {
            if scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}" {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
