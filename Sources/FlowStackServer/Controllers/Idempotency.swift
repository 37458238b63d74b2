import FlowStackCore
import FlowStackStore
import Foundation
import HTTPTypes
import Hummingbird

/// `Idempotency-Key` on requests that start executions (webhooks, `POST …/run`): the first
/// request with a key starts an execution whose id is fixed in advance; a repeat for the same
/// workflow within a day is answered with that execution instead of starting another.
enum Idempotency {
    static let header = HTTPField.Name("Idempotency-Key")!
    static let replayedHeader = HTTPField.Name("Idempotent-Replayed")!

    /// What a request with a key does.
    enum Start: Sendable {
        /// Start execution `executionID` (the key names it from now on).
        case start(executionID: String)
        /// Answer with execution `executionID`, which an earlier request with the key started.
        case replay(executionID: String)

        /// The id a new execution must take.
        var newExecutionID: String? {
            if case .start(let id) = self { id } else { nil }
        }
    }

    /// What a request does with its key; nil when it has none.
    static func begin(_ request: Request, workflowID: String, api: API) async throws -> Start? {
        guard let key = try key(request) else { return nil }
        return try await begin(key, workflowID: workflowID, store: api.store, staleAfter: api.idempotencyStaleAfter)
    }

    /// The request's key: 1–255 visible ASCII characters; nil when the header is absent.
    static func key(_ request: Request) throws -> String? {
        guard let key = request.headers[header] else { return nil }
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw FlowStackError(status: 400, code: "invalid_idempotency_key", message: "An Idempotency-Key is 1 to 255 visible ASCII characters.",
                                 field: "Idempotency-Key")
        }
        return key
    }

    /// Claims `key` for a new execution of `workflowID`, or finds the execution it started.
    /// A key whose execution was never written is taken over once the request that claimed it
    /// must have ended (`staleAfter`); until then a repeat gets 409.
    static func begin(_ key: String, workflowID: String, store: Store, staleAfter: TimeInterval) async throws -> Start {
        let id = Identifier.makeOrdered("exe")
        switch try await store.claimIdempotencyKey(key, workflowID: workflowID, executionID: id) {
        case .claimed:
            return .start(executionID: id)
        case .used(let previous, let age):
            if try await store.execution(id: previous) != nil { return .replay(executionID: previous) }
            let inUse = FlowStackError(status: 409, code: "idempotency_key_in_use",
                                       message: "A request with this Idempotency-Key is still being handled; send it again in a few seconds.")
            guard age >= staleAfter else { throw inUse }
            // The request that claimed it died before its execution was accepted.
            guard try await store.reassignIdempotencyKey(key, workflowID: workflowID, from: previous, to: id) else { throw inUse }
            return .start(executionID: id)
        }
    }

    static func markReplayed(_ response: Response) -> Response {
        var response = response
        response.headers[replayedHeader] = "true"
        return response
    }
}

extension API {
    /// After this long, a key whose execution was never written belongs to a request that died.
    var idempotencyStaleAfter: TimeInterval {
        max(settings.engine.leaseDuration, settings.databaseTimeouts.call.inSeconds + 5)
    }
}
