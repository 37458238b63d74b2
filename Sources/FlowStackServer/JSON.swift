import FlowStackCore
import Foundation
import Hummingbird
import NIOCore

/// JSON responses and request bodies, with the checks every endpoint shares.
enum JSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Self.format(date))
        }
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func format(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
            .replacingOccurrences(of: "+0000", with: "Z")
    }

    static func response(_ status: HTTPResponse.Status = .ok, _ value: some Encodable, headers: HTTPFields = [:]) throws -> Response {
        let data = try encoder.encode(value)
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func empty(_ status: HTTPResponse.Status = .noContent) -> Response {
        Response(status: status)
    }

    /// Decodes a JSON request body: the content type must be JSON (415), the body within the size
    /// limit (413), nested no deeper than the limit and well-formed (400 naming the problem).
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, context: FlowStackRequestContext, maxBytes: Int, maxDepth: Int) async throws -> T {
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
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw describe(error)
        } catch let error as FlowStackError {
            throw error
        } catch {
            throw FlowStackError.badRequest("malformed_json", "The request body is not valid JSON.")
        }
    }

    static func isJSONContentType(_ value: String?) -> Bool {
        guard let value else { return false }
        let mediaType = value.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        return mediaType == "application/json"
    }

    /// The deepest nesting of arrays and objects, ignoring brackets inside strings.
    static func nestingDepth(_ bytes: [UInt8]) -> Int {
        var depth = 0, deepest = 0, inString = false, escaped = false
        for byte in bytes {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
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
    struct Detail: Encodable {
        var code: String
        var message: String
        var field: String?
    }
    var error: Detail

    init(_ error: FlowStackError) {
        self.error = Detail(code: error.code, message: error.message, field: error.field)
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
