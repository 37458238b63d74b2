import FlowStackCore
import FlowStackTesting
import Foundation
import Testing

/// Every entry point reads JSON with the one parser (FlowStackCore's `JSONValue(parsing:)`).
@Suite struct JSONEntryPointTests {
    @Test("an API body with a repeated key is read as a webhook body is: the first value counts", arguments: Backend.allCases)
    func repeatedKeys(backend: Backend) async throws {
        let app = try await TestApp.make(backend)
        try await app.test { client in
            let owner = try await client.setupOwner(app)
            let auth = try await client.login(owner)
            let created = try await client.request(
                .post, "/api/v1/orgs/\(owner.orgID)/projects", rawBody: #"{"name": "First", "name": "Second"}"#, auth: auth)
            #expect(created.status == 201)
            #expect(created.json["name"] as? String == "First")
            // Not JSON, though JSONDecoder lets it through in a field the request type does not read.
            for body in [#"{"name": "x", "n": 01}"#, #"{"name": "x", "n": 1.}"#, #"{"name": "x", "n": -}"#, #"{"name": "x",}"#] {
                let malformed = try await client.request(.post, "/api/v1/orgs/\(owner.orgID)/projects", rawBody: body, auth: auth)
                #expect(malformed.status == 400, "\(body)")
                #expect(malformed.errorCode == "malformed_json", "\(body)")
            }
        }
    }
}
