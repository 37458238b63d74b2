import Foundation

/// The kinds of connection, each with its fields. A connection's `data` is a flat object of
/// strings; which of them are secret is decided here, never by the client.
public enum ConnectionKind: String, Codable, Sendable, CaseIterable {
    case apiKey, bearer, basic, headers, oauth2, secrets
}

/// One field of a connection kind.
public struct ConnectionField: Sendable {
    public var name: String
    public var secret: Bool
    public var required: Bool
    public var options: [String]?
    public var isURL: Bool
    /// Managed by the server (OAuth2 tokens): never accepted from a client.
    public var managed: Bool

    init(_ name: String, secret: Bool = false, required: Bool = false, options: [String]? = nil, isURL: Bool = false, managed: Bool = false)
    {
        self.name = name
        self.secret = secret
        self.required = required
        self.options = options
        self.isURL = isURL
        self.managed = managed
    }
}

/// A connection's fields split into what may be shown and what is sealed with the connections key.
public struct ConnectionData: Sendable, Equatable {
    public var config: [String: String]
    public var secrets: [String: String]

    public init(config: [String: String] = [:], secrets: [String: String] = [:]) {
        self.config = config
        self.secrets = secrets
    }
}

public enum ConnectionSchema {
    public static let maximumSecretBytes = 16 * 1024
    public static let maximumFieldBytes = 2048
    public static let maximumFields = 50

    /// The fixed fields of a kind; nil for kinds whose fields the user names (headers, secrets),
    /// where every value is secret.
    public static func fields(_ kind: ConnectionKind) -> [ConnectionField]? {
        switch kind {
        case .apiKey:
            [.init("key", secret: true, required: true), .init("name"), .init("in", options: ["header", "query"])]
        case .bearer:
            [.init("token", secret: true, required: true)]
        case .basic:
            [.init("username", required: true), .init("password", secret: true, required: true)]
        case .oauth2:
            [
                .init("grantType", required: true, options: ["authorizationCode", "clientCredentials"]),
                .init("authorizationUrl", isURL: true), .init("tokenUrl", required: true, isURL: true),
                .init("clientId", required: true), .init("clientSecret", secret: true), .init("scope"),
                .init("clientAuth", options: ["basic", "body"]),
                .init("accessToken", secret: true, managed: true), .init("refreshToken", secret: true, managed: true),
            ]
        case .headers, .secrets:
            nil
        }
    }

    /// Splits and checks a client's `data`. `existing` is the stored data for a PATCH: given
    /// fields replace stored ones, an explicit null removes an optional one.
    public static func validate(_ kind: ConnectionKind, data: JSONValue?, existing: ConnectionData? = nil) throws(FlowStackError)
        -> ConnectionData
    {
        var result = existing ?? ConnectionData()
        let given: JSONObject
        switch data {
        case nil: given = [:]
        case .object(let fields)?: given = fields
        default: throw .validation("data must be an object of strings.", field: "data")
        }
        guard given.count <= maximumFields else { throw .validation("data has more than \(maximumFields) fields.", field: "data") }
        if let fields = fields(kind) {
            for (name, value) in given.sorted(by: { $0.key < $1.key }) {
                guard let field = fields.first(where: { $0.name == name }), !field.managed else {
                    throw .validation("A \(kind.rawValue) connection has no field '\(name)'.", field: "data.\(name)")
                }
                if value == .null {
                    guard !field.required else { throw .validation("data.\(name) is required.", field: "data.\(name)") }
                    result.config[name] = nil
                    result.secrets[name] = nil
                    continue
                }
                guard case .string(let text) = value, !text.isEmpty else {
                    throw .validation("data.\(name) must be a non-empty string.", field: "data.\(name)")
                }
                try check(text, field: name, secret: field.secret, multiline: false)
                if let options = field.options, !options.contains(text) {
                    throw .validation("data.\(name) must be one of \(options.joined(separator: ", ")).", field: "data.\(name)")
                }
                if field.isURL {
                    try checkURL(text, field: name)
                    // The client secret and codes travel to these: https, except to this machine.
                    let host = URLComponents(string: text)?.host?.lowercased() ?? ""
                    guard text.lowercased().hasPrefix("https://") || ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host) else {
                        throw .validation("data.\(name) must be an https URL.", field: "data.\(name)")
                    }
                }
                if kind == .apiKey, name == "name", !HeaderCheck.isToken(text) {
                    throw .validation("data.name must be a valid header or query parameter name.", field: "data.name")
                }
                if field.secret { result.secrets[name] = text } else { result.config[name] = text }
            }
            for field in fields where field.required {
                if result.config[field.name] == nil && result.secrets[field.name] == nil {
                    throw .validation("data.\(field.name) is required for a \(kind.rawValue) connection.", field: "data.\(field.name)")
                }
            }
            if kind == .oauth2, result.config["grantType"] == "authorizationCode", result.config["authorizationUrl"] == nil {
                throw .validation("data.authorizationUrl is required for the authorization code grant.", field: "data.authorizationUrl")
            }
            if kind == .oauth2, result.config["grantType"] == "clientCredentials", result.secrets["clientSecret"] == nil {
                throw .validation("data.clientSecret is required for the client credentials grant.", field: "data.clientSecret")
            }
        } else {
            for (name, value) in given.sorted(by: { $0.key < $1.key }) {
                guard !name.isEmpty, name.utf8.count <= 128 else { throw .validation("Field names are 1 to 128 bytes.", field: "data") }
                if kind == .headers {
                    guard HeaderCheck.isToken(name) else {
                        throw .validation("'\(name)' is not a valid header name.", field: "data.\(name)")
                    }
                } else {
                    guard
                        name.unicodeScalars.allSatisfy({
                            $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_-.".unicodeScalars.contains($0))
                        })
                    else {
                        throw .validation("Secret names use letters, digits, '_', '-' and '.'.", field: "data.\(name)")
                    }
                }
                if value == .null {
                    result.secrets[name] = nil
                    continue
                }
                guard case .string(let text) = value, !text.isEmpty else {
                    throw .validation("data.\(name) must be a non-empty string.", field: "data.\(name)")
                }
                // Only a `secrets` connection may hold multi-line values (PEM keys); they never go
                // into a header unchecked.
                try check(text, field: name, secret: true, multiline: kind == .secrets)
                if kind == .headers, !HeaderCheck.isValue(text) {
                    throw .validation("The value of header '\(name)' has characters a header cannot carry.", field: "data.\(name)")
                }
                result.secrets[name] = text
            }
            guard !result.secrets.isEmpty else {
                throw .validation("A \(kind.rawValue) connection needs at least one field.", field: "data")
            }
        }
        return result
    }

    private static func check(_ text: String, field: String, secret: Bool, multiline: Bool) throws(FlowStackError) {
        let limit = secret ? maximumSecretBytes : maximumFieldBytes
        guard text.utf8.count <= limit else { throw .validation("data.\(field) is longer than \(limit) bytes.", field: "data.\(field)") }
        guard
            !text.unicodeScalars.contains(where: {
                ($0.value < 0x20 && !(multiline && ($0 == "\n" || $0 == "\r" || $0 == "\t"))) || $0.value == 0x7F
            })
        else {
            throw .validation("data.\(field) contains control characters.", field: "data.\(field)")
        }
    }

    public static func checkURL(_ text: String, field: String) throws(FlowStackError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "https" || scheme == "http", components.host?.isEmpty == false
        else {
            throw .validation("\(field) must be an absolute http or https URL.", field: field == "testUrl" ? field : "data.\(field)")
        }
    }

    /// Checks an allowed-hosts list: host names (lowercased), optionally `*.` for subdomains.
    public static func checkHosts(_ hosts: [String]) throws(FlowStackError) -> [String] {
        guard hosts.count <= 20 else { throw .validation("allowedHosts has at most 20 entries.", field: "allowedHosts") }
        return try hosts.map { host throws(FlowStackError) in
            let name = host.lowercased()
            let bare = name.hasPrefix("*.") ? String(name.dropFirst(2)) : name
            guard !bare.isEmpty, bare.utf8.count <= 253,
                bare.unicodeScalars.allSatisfy({
                    $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-.:[]".unicodeScalars.contains($0))
                }),
                !bare.hasPrefix("."), !bare.hasSuffix(".")
            else {
                throw .validation("'\(host)' is not a host name (use api.example.com or *.example.com).", field: "allowedHosts")
            }
            return name
        }
    }

    /// Whether `host` is one of `allowed` (empty: any host).
    public static func hostAllowed(_ host: String, _ allowed: [String]) -> Bool {
        guard !allowed.isEmpty else { return true }
        let host = host.lowercased()
        // Only plain host names compare: anything encoded or unusual is refused, not interpreted.
        guard !host.isEmpty,
            host.unicodeScalars.allSatisfy({
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-.:[]".unicodeScalars.contains($0))
            })
        else {
            return false
        }
        return allowed.contains { entry in
            entry.hasPrefix("*.") ? host.hasSuffix(String(entry.dropFirst(1))) : host == entry
        }
    }

    /// What a read shows of a secret: its last four characters, or nothing for short values
    /// (the last four of an eight-character password are half of it).
    public static func hint(_ secret: String) -> String {
        secret.count >= 12 ? String(secret.suffix(4)) : ""
    }
}

/// Checks header names and values that workflows set on responses and requests.
public enum HeaderCheck {
    public static func isToken(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 256
            && name.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                    || "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
    }

    public static func isValue(_ value: String) -> Bool {
        value.utf8.count <= 8192 && value.utf8.allSatisfy { $0 == 0x09 || (0x20...0x7E).contains($0) || $0 >= 0x80 }
    }
}
