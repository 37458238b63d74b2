import FlowStackCore
import Foundation
import HTTPTypes
import Hummingbird

/// Refuses requests that are unsafe before any handler sees them: methods no route has, over-long
/// URLs and header sections, paths with NUL, control characters, dot segments or encoded
/// traversal (`%2e`, `%2f`, `%5c`, `%00`, overlong UTF-8), header values with CR, LF or NUL,
/// transfer codings other than `chunked`,
/// credentials in the query string (they end up in logs and browser history), bodies that
/// declare a size over the limit. (The API's group refuses bodies that are not JSON:
/// `JSONBodyMiddleware`.)
struct RequestGuardMiddleware: RouterMiddleware {
    typealias Context = FlowStackRequestContext
    let maxBodyBytes: Int
    let trustedProxies: Set<String>
    var maxURLBytes = 8 * 1024
    var maxHeaderBytes = 32 * 1024

    static let methods: Set<HTTPRequest.Method> = [.get, .head, .post, .put, .patch, .delete, .options]

    static let credentialParameterNames: Set<String> = [
        "api_key", "apikey", "api-key", "key", "token", "access_token", "session", "password", "flowstack_session",
        "__host-flowstack_session",
    ]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try Self.check(request, maxURLBytes: maxURLBytes, maxHeaderBytes: maxHeaderBytes)
        var context = context
        context.userAgent = String((request.headers[.userAgent] ?? "").prefix(512))
        if trustedProxies.contains(context.peerIP), let forwarded = request.headers[HTTPField.Name("X-Forwarded-For")!] {
            // The right-most address is the one our trusted proxy saw.
            if let last = forwarded.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !last.isEmpty {
                context.clientIP = String(last.prefix(64))
            }
        }
        for (name, value) in request.uri.queryParameters {
            if name.contains("\u{0}") || value.contains("\u{0}") {
                throw FlowStackError.badRequest(
                    "invalid_parameter", "Query parameters must not contain the NUL character.", field: String(name))
            }
            if Self.credentialParameterNames.contains(name.lowercased()) || value.hasPrefix("fsk_") {
                throw FlowStackError.badRequest(
                    "credentials_in_query",
                    "Credentials are not accepted in the query string; send an API key as 'Authorization: Bearer <key>'.",
                    field: String(name)
                )
            }
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBodyBytes {
            throw FlowStackError(status: 413, code: "payload_too_large", message: "The request body is larger than \(maxBodyBytes) bytes.")
        }
        return try await next(request, context)
    }

    /// The checks of the request line and headers, each a typed refusal.
    static func check(_ request: Request, maxURLBytes: Int, maxHeaderBytes: Int) throws {
        guard methods.contains(request.method) else {
            throw FlowStackError(
                status: 405, code: "method_not_allowed", message: "The method \(request.method.rawValue.prefix(32)) is not served.")
        }
        let target = request.uri.string
        guard target.utf8.count <= maxURLBytes else {
            throw FlowStackError(status: 414, code: "uri_too_long", message: "The URL is longer than \(maxURLBytes) bytes.")
        }
        var headerBytes = 0
        for field in request.headers {
            headerBytes += field.name.rawName.utf8.count + field.value.utf8.count + 4
            if field.value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }) {
                throw FlowStackError.badRequest(
                    "invalid_header", "Header values must not contain CR, LF or NUL.", field: field.name.canonicalName)
            }
        }
        // The parser frames only `chunked`; any other coding (`gzip, chunked`) would be read as
        // one thing here and another by a proxy in front: refused, not guessed.
        let codings = request.headers[values: .transferEncoding].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if !codings.isEmpty && codings != ["chunked"] {
            throw FlowStackError.badRequest(
                "invalid_transfer_encoding", "Only 'Transfer-Encoding: chunked' is accepted.", field: "Transfer-Encoding")
        }
        guard headerBytes <= maxHeaderBytes else {
            throw FlowStackError(
                status: 431, code: "headers_too_large", message: "The request's headers are larger than \(maxHeaderBytes) bytes.")
        }
        if let problem = pathProblem(request.uri.path) {
            throw FlowStackError.badRequest("invalid_path", problem)
        }
    }

    /// Why a request path is refused, or nil. The path is checked as sent (percent-encoded).
    static func pathProblem(_ path: String) -> String? {
        let bytes = Array(path.utf8)
        guard bytes.first == UInt8(ascii: "/") else { return "The path must start with '/'." }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte < 0x20 || byte == 0x7F || byte == UInt8(ascii: "\\") { return "The path contains a control character or a backslash." }
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) else {
                    return "The path has a malformed percent-encoding."
                }
                let value = high << 4 | low
                switch value {
                case UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: "\\"):
                    return "The path encodes '.', '/' or '\\': encoded traversal is refused."
                case 0..<0x20, 0x7F:
                    return "The path encodes a control character."
                default:
                    decoded.append(value)
                }
                index += 3
                continue
            }
            decoded.append(byte)
            index += 1
        }
        // Overlong and otherwise invalid UTF-8 (%c0%ae is an overlong '.') is refused, not repaired.
        guard String(validating: decoded, as: UTF8.self) != nil else { return "The path is not valid UTF-8." }
        let segments = decoded.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for (index, segment) in segments.enumerated() {
            if segment.elementsEqual([UInt8(ascii: ".")]) || segment.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                return "The path has a '.' or '..' segment."
            }
            // `//api/…` reaches the same route as `/api/…` (the router skips empty segments) but
            // not the checks that go by the path's prefix; only a trailing `/` is accepted.
            if segment.isEmpty && index > 0 && index < segments.count - 1 {
                return "The path has an empty segment ('//')."
            }
        }
        return nil
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// The JSON API's bodies must say they are JSON, whether or not the route reads one (n8n
/// CVE-2026-21858 came from an endpoint that also parsed other content types).
struct JSONBodyMiddleware: RouterMiddleware {
    typealias Context = FlowStackRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let hasBody = (request.headers[.contentLength].flatMap(Int.init) ?? 0) > 0 || request.headers[.transferEncoding] != nil
        if hasBody && !JSON.isJSONContentType(request.headers[.contentType]) {
            throw FlowStackError(status: 415, code: "unsupported_media_type", message: "The request body must be application/json.")
        }
        return try await next(request, context)
    }
}
