import FlowStackCore
import Foundation
import Hummingbird
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// JSON responses and request bodies, with the checks every endpoint shares.
enum JSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(RFC3339.format(date))
        }
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func response(_ status: HTTPResponse.Status = .ok, _ value: some Encodable, headers: HTTPFields = [:]) throws -> Response {
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        // Workflow output (a webhook's answer) is written by hand: the same JSON, much faster.
        if let json = value as? JSONValue {
            return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: json.jsonBytes(sortedKeys: true))))
        }
        let data = try encoder.encode(value)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func empty(_ status: HTTPResponse.Status = .noContent) -> Response {
        Response(status: status)
    }

    /// Decodes a JSON request body: the content type must be JSON (415), the body within the size
    /// limit (413), nested no deeper than the limit and well-formed (400 naming the problem).
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext, maxBytes: Int, maxDepth: Int)
        async throws -> T
    {
        guard isJSONContentType(request.headers[.contentType]) else {
            throw FlowStackError(status: 415, code: "unsupported_media_type", message: "The request body must be application/json.")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBytes)
        } catch {
            throw FlowStackError(status: 413, code: "payload_too_large", message: "The request body is larger than \(maxBytes) bytes.")
        }
        let bytes = Array(buffer.readableBytesView)
        if bytes.isEmpty {
            throw FlowStackError.badRequest("malformed_json", "The request body is empty; a JSON object is expected.")
        }
        if nestingDepth(bytes) > maxDepth {
            throw FlowStackError.badRequest("json_too_deep", "The JSON body is nested deeper than \(maxDepth) levels.")
        }
        if containsEscapedNUL(bytes) {
            // PostgreSQL text cannot hold NUL, and no FlowStack field needs it.
            throw FlowStackError.badRequest("invalid_character", "Strings in the request body must not contain the NUL character.")
        }
        // The one JSON parser decides what the body is (as for webhooks, node results and
        // expressions: of a repeated key the first value counts); JSONDecoder only maps that value
        // onto the request's type, from the canonical bytes the parser's value writes.
        let canonical: [UInt8]
        do {
            canonical = try JSONValue(parsing: bytes, maximumDepth: maxDepth).jsonBytes()
        } catch {
            throw FlowStackError.badRequest("malformed_json", "The request body is not valid JSON: \(error.description).")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(canonical))
        } catch let error as DecodingError {
            throw describe(error)
        } catch let error as FlowStackError {
            throw error
        } catch {
            throw FlowStackError.badRequest("malformed_json", "The request body is not valid JSON.")
        }
    }

    static func isJSONContentType(_ value: String?) -> Bool {
        mediaType(value) == "application/json"
    }

    /// The media type of a `Content-Type` value: before any `;`, without surrounding spaces and
    /// tabs, ASCII-lowercased ("" when there is none). Byte by byte: this runs on every request.
    static func mediaType(_ value: String?) -> String {
        guard let value else { return "" }
        let type = value.utf8.prefix { $0 != UInt8(ascii: ";") }
        let isBlank = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        guard let first = type.firstIndex(where: { !isBlank($0) }), let last = type.lastIndex(where: { !isBlank($0) }) else { return "" }
        return String(decoding: type[first...last].map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Whether a JSON text contains `\u0000` as an escape (not as an escaped backslash followed by text).
    static func containsEscapedNUL(_ bytes: [UInt8]) -> Bool {
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 1 < bytes.count {
                if bytes[i + 1] == UInt8(ascii: "u"), i + 5 < bytes.count, bytes[(i + 2)...(i + 5)].allSatisfy({ $0 == UInt8(ascii: "0") })
                {
                    return true
                }
                i += 2
                continue
            }
            i += 1
        }
        return false
    }

    /// The deepest nesting of arrays and objects, ignoring brackets inside strings.
    static func nestingDepth(_ bytes: [UInt8]) -> Int {
        var depth = 0
        var deepest = 0
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                deepest = max(deepest, depth)
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return deepest
    }

    static func describe(_ error: DecodingError) -> FlowStackError {
        func path(_ codingPath: [any CodingKey]) -> String? {
            let p = codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return p.isEmpty ? nil : p
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key]) ?? key.stringValue
            return .badRequest("missing_field", "The field '\(field)' is required.", field: field)
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            let field = path(context.codingPath)
            return .badRequest("invalid_field", "The field '\(field ?? "body")' has the wrong type.", field: field)
        case .dataCorrupted(let context):
            if let field = path(context.codingPath) {
                return .badRequest("invalid_field", "The field '\(field)' has an invalid value.", field: field)
            }
            return .badRequest("malformed_json", "The request body is not valid JSON.")
        @unknown default:
            return .badRequest("malformed_json", "The request body is not valid JSON.")
        }
    }
}

/// Error body: `{"error": {"code", "message", "field"?}}`.
struct ErrorBody: Encodable {
    struct Problem: Encodable {
        var code: String
        var message: String
        var node: String?
        var field: String?
    }
    struct Detail: Encodable {
        var code: String
        var message: String
        var field: String?
        var problems: [Problem]?
    }
    var error: Detail

    init(_ error: FlowStackError) {
        self.error = Detail(
            code: error.code, message: error.message, field: error.field,
            problems: error.problems?.map { Problem(code: $0.code, message: $0.message, node: $0.node, field: $0.field) })
    }
}

extension FlowStackError {
    func response() -> Response {
        var headers: HTTPFields = [:]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        let status = HTTPResponse.Status(code: status)
        return (try? JSON.response(status, ErrorBody(self), headers: headers)) ?? Response(status: status)
    }
}
