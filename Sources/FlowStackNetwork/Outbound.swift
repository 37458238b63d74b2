import Foundation

/// An outbound HTTP request of the HTTP Request node.
public struct OutboundRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]?
    public var timeout: TimeInterval
    public var followRedirects: Bool
    public var maxRedirects: Int
    public var maxResponseBytes: Int
    /// Headers that carry a credential (lowercased): dropped when a redirect leaves the host.
    public var credentialHeaders: Set<String> = []
    /// The body carries a credential: it is never re-sent to another origin on a redirect.
    public var credentialInBody = false
    /// Headers that always carry a credential (lowercased): they stay with the origin they were
    /// set for, on a redirect and on a next page.
    public static let originBoundHeaders: Set<String> = ["authorization", "cookie", "proxy-authorization"]
    /// The nonce `{{secret:NAME:NONCE}}` placeholders must carry to be filled (Code nodes only).
    public var secretNonce: String?

    public init(
        method: String, url: String, headers: [(String, String)] = [], body: [UInt8]? = nil, timeout: TimeInterval = 30,
        followRedirects: Bool = true, maxRedirects: Int = 5, maxResponseBytes: Int = 16 << 20
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.followRedirects = followRedirects
        self.maxRedirects = maxRedirects
        self.maxResponseBytes = maxResponseBytes
    }
}

public struct OutboundResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Makes outbound HTTP requests through the SSRF guard.
public protocol OutboundFetching: Sendable {
    func fetch(_ request: OutboundRequest) async throws -> OutboundResponse
}

extension URL {
    /// Same scheme, host and port (a missing port is the scheme's default): where a credential
    /// given for one URL may also go.
    public func hasSameOrigin(as other: URL) -> Bool {
        func port(_ url: URL) -> Int? {
            url.port ?? (url.scheme?.lowercased() == "https" ? 443 : url.scheme?.lowercased() == "http" ? 80 : nil)
        }
        return scheme?.lowercased() == other.scheme?.lowercased() && host?.lowercased() == other.host?.lowercased()
            && port(self) == port(other)
    }
}
