import FlowStackCore
import FlowStackStore
import Foundation
import HTTPTypes
import Hummingbird

/// The `Idempotency-Key` header of requests that start executions (webhooks, `POST …/run`); what
/// a key does is `Executions.begin` (the first request starts an execution whose id is fixed in
/// advance, a repeat within a day is answered with it).
enum Idempotency {
    static let header = HTTPField.Name("Idempotency-Key")!
    static let replayedHeader = HTTPField.Name("Idempotent-Replayed")!

    /// The request's key: 1–255 visible ASCII characters; nil when the header is absent.
    static func key(_ request: Request) throws -> String? {
        guard let key = request.headers[header] else { return nil }
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw FlowStackError(
                status: 400, code: "invalid_idempotency_key", message: "An Idempotency-Key is 1 to 255 visible ASCII characters.",
                field: "Idempotency-Key")
        }
        return key
    }

    static func markReplayed(_ response: Response) -> Response {
        mark(response, replayed: true)
    }

    /// The answer, marked as a replay when an earlier request with the key started its execution.
    static func mark(_ response: Response, replayed: Bool) -> Response {
        guard replayed else { return response }
        var response = response
        response.headers[replayedHeader] = "true"
        return response
    }
}
