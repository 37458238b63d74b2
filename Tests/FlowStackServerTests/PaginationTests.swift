import FlowStackEngine
import FlowStackNodes
import FlowStackRuntime
import FlowStackTesting
import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

/// A paged API on loopback, in the shapes real APIs page in.
final class PagedAPI: Sendable {
    /// Every request it answered: path with query, and the Authorization header.
    let seen = Mutex<[(path: String, authorization: String?)]>([])

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        @Sendable func json(_ value: Any, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
            var fields = headers
            fields[.contentType] = "application/json"
            return Response(
                status: status, headers: fields,
                body: .init(byteBuffer: ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: value, options: .fragmentsAllowed))))
        }
        @Sendable func note(_ request: Request) {
            seen.withLock { $0.append((request.uri.description, request.headers[.authorization])) }
        }
        // `?page=N` (from 1): two items a page for three pages, then an empty list (or a 404 with `?end=404`).
        router.get("numbered") { request, _ -> Response in
            note(request)
            let page = Int(request.uri.queryParameters["page"].map(String.init) ?? "1") ?? 1
            if page > 3 {
                return request.uri.queryParameters["end"] == "404" ? json(["error": "no such page"], status: .notFound) : json([Any]())
            }
            return json([["n": page * 2 - 1, "page": page], ["n": page * 2, "page": page]])
        }
        // `?cursor=C`: an object with the items and a relative link to the next page (null at the end);
        // `&jump=URL` makes the first page link to URL instead.
        router.get("linked") { request, _ -> Response in
            note(request)
            let cursor = Int(request.uri.queryParameters["cursor"].map(String.init) ?? "0") ?? 0
            let next: Any =
                if let jump = request.uri.queryParameters["jump"].map(String.init) {
                    jump
                } else if cursor < 2 {
                    "/linked?cursor=\(cursor + 1)"
                } else {
                    NSNull()
                }
            return json(["cursor": cursor, "next": next])
        }
        // POST `{"offset": K}`: two items while K < 4, and `X-Has-More: false` on the last page.
        router.post("search") { request, context -> Response in
            note(request)
            let body = try await request.body.collect(upTo: 65536)
            let offset = ((try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any])?["offset"] as? Int ?? -1
            return json([["i": offset], ["i": offset + 1]], headers: [.init("X-Has-More")!: offset + 2 < 6 ? "true" : "false"])
        }
        return router
    }

    func run(_ body: @Sendable @escaping (Int) async throws -> Void) async throws {
        let app = Application(router: router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in try await body(try #require(client.port)) }
    }
}

/// The HTTP Request node's pagination, through the API against a real server on loopback.
@Suite struct PaginationTests {
    func workflow(_ parameters: [String: Any]) -> [String: Any] {
        [
            "name": "Pages",
            "nodes": [
                ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
                ["name": "Fetch", "type": "flowstack.httpRequest", "typeVersion": 1, "parameters": parameters],
            ],
            "edges": [["from": "Manual", "to": "Fetch"]],
        ]
    }

    /// Saves and runs a workflow with the HTTP Request node's `parameters`; answers the run.
    func run(_ client: APIClient, _ project: String, _ auth: Auth, _ parameters: [String: Any]) async throws -> APIResponse {
        let created = try await client.post("/api/v1/projects/\(project)/workflows", workflow(parameters), auth: auth)
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json["id"] as? String)
        return try await client.post("/api/v1/workflows/\(id)/run?wait=true", nil, auth: auth)
    }

    func output(_ response: APIResponse) -> [[String: Any]] {
        response.json["output"] as? [[String: Any]] ?? []
    }

    @Test(
        "pages by parameter, by next URL, by POST body; ends on an empty page, a status code, an expression or the request limit",
        arguments: Backend.allCases)
    func modes(_ backend: Backend) async throws {
        let api = PagedAPI()
        try await api.run { port in
            let app = try await TestApp.make(backend, fetcher: try loopbackFetcher())
            try await app.test { client in
                let (auth, project, _) = try await setUp(client, app)
                let base = "http://127.0.0.1:\(port)"
                // A page number in the query, until an empty page: pages 1–3 and the empty page 4.
                let numbered = try await run(
                    client, project, auth,
                    [
                        "url": "\(base)/numbered", "query": ["page": 1],
                        "pagination": [
                            "mode": "parameters", "parameters": [["in": "query", "name": "page", "value": "{{ $pageCount + 1 }}"]],
                        ],
                    ])
                #expect(numbered.json["status"] as? String == "succeeded", "\(numbered.text)")
                #expect(output(numbered).map { $0["n"] as? Int } == [1, 2, 3, 4, 5, 6])
                #expect(
                    api.seen.withLock { $0.map(\.path) } == [
                        "/numbered?page=1", "/numbered?page=2", "/numbered?page=3", "/numbered?page=4",
                    ])

                // Ends on a listed status code, which is not an error and adds nothing.
                let ended = try await run(
                    client, project, auth,
                    [
                        "url": "\(base)/numbered?end=404",
                        "pagination": [
                            "mode": "parameters", "parameters": [["in": "query", "name": "page", "value": "{{ $pageCount + 1 }}"]],
                            "complete": "statusCode", "statusCodes": [404],
                        ],
                    ])
                #expect(ended.json["status"] as? String == "succeeded", "\(ended.text)")
                #expect(output(ended).count == 6)
                // Without the status code listed, the 404 fails the node as any HTTP error does.
                let failed = try await run(
                    client, project, auth,
                    [
                        "url": "\(base)/numbered?end=404",
                        "pagination": [
                            "mode": "parameters", "parameters": [["in": "query", "name": "page", "value": "{{ $pageCount + 1 }}"]],
                            "complete": "statusCode", "statusCodes": [410],
                        ],
                    ])
                #expect(failed.json["status"] as? String == "failed")
                #expect((failed.json["error"] as? String ?? "").contains("404"))

                // A relative link in the body, followed until it is null.
                api.seen.withLock { $0.removeAll() }
                let linked = try await run(
                    client, project, auth,
                    [
                        "url": "\(base)/linked", "pagination": ["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}"],
                    ])
                #expect(output(linked).map { $0["cursor"] as? Int } == [0, 1, 2])
                #expect(api.seen.withLock { $0.map(\.path) } == ["/linked", "/linked?cursor=1", "/linked?cursor=2"])

                // The request limit stops it (no error), as does an expression on the response's headers.
                let limited = try await run(
                    client, project, auth,
                    [
                        "url": "\(base)/linked",
                        "pagination": ["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}", "maxRequests": 2],
                    ])
                #expect(output(limited).map { $0["cursor"] as? Int } == [0, 1])
                let searched = try await run(
                    client, project, auth,
                    [
                        "url": "\(base)/search", "method": "POST", "bodyType": "json", "body": ["offset": 0, "q": "x"],
                        "pagination": [
                            "mode": "parameters", "parameters": [["in": "body", "name": "offset", "value": "{{ $pageCount * 2 }}"]],
                            "complete": "expression", "completeExpression": "{{ $response.headers['x-has-more'] === 'false' }}",
                        ],
                    ])
                #expect(searched.json["status"] as? String == "succeeded", "\(searched.text)")
                #expect(output(searched).map { $0["i"] as? Int } == [0, 1, 2, 3, 4, 5])

                // Without pagination, one request as before.
                api.seen.withLock { $0.removeAll() }
                let single = try await run(client, project, auth, ["url": "\(base)/numbered"])
                #expect(output(single).count == 2)
                #expect(api.seen.withLock { $0.count } == 1)
            }
        }
    }

    @Test("each page goes through the SSRF guard, and a credential never follows a next URL to another origin")
    func guarded() async throws {
        let api = PagedAPI()
        let elsewhere = PagedAPI()
        try await api.run { port in
            try await elsewhere.run { otherPort in
                let app = try await TestApp.make(.sqlite, fetcher: try loopbackFetcher())
                try await app.test { client in
                    let (auth, project, _) = try await setUp(client, app)
                    // A next URL that points at the metadata address is refused like any request.
                    let metadata = try await run(
                        client, project, auth,
                        [
                            "url": "http://127.0.0.1:\(port)/linked?jump=http://169.254.169.254/latest/meta-data/",
                            "pagination": ["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}"],
                        ])
                    #expect(metadata.json["status"] as? String == "failed")
                    #expect(
                        (metadata.json["error"] as? String ?? "").lowercased().contains("refused")
                            || (metadata.json["error"] as? String ?? "").contains("169.254"),
                        "\(metadata.text)")

                    let jump = "http://127.0.0.1:\(port)/linked?jump=http://127.0.0.1:\(otherPort)/linked%3Fcursor%3D2"
                    let pagination: [String: Any] = ["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}"]
                    // Without a connection, a next page on another origin is fetched.
                    let open = try await run(client, project, auth, ["url": jump, "pagination": pagination])
                    #expect(output(open).map { $0["cursor"] as? Int } == [0, 2], "\(open.text)")
                    #expect(elsewhere.seen.withLock { $0.count } == 1)
                    // A credential header the node itself sets is dropped there, as on a redirect.
                    let typed = try await run(
                        client, project, auth,
                        [
                            "url": jump, "pagination": pagination,
                            "headers": ["Authorization": "Bearer typed-in", "Cookie": "s=1", "X-Trace": "t"],
                        ])
                    #expect(output(typed).count == 2, "\(typed.text)")
                    #expect(api.seen.withLock { $0.last?.authorization } == "Bearer typed-in")
                    #expect(elsewhere.seen.withLock { $0.count == 2 && $0.last?.authorization == nil })

                    // With a connection, pages stay on the first request's origin: the other server sees nothing.
                    let token = "page-token-\(UUID())"
                    let connection = try await client.post(
                        "/api/v1/projects/\(project)/connections",
                        ["name": "api", "type": "bearer", "data": ["token": token]], auth: auth)
                    #expect(connection.status == 201, "\(connection.text)")
                    let signed = try await run(
                        client, project, auth,
                        [
                            "url": "http://127.0.0.1:\(port)/linked", "connection": "api", "pagination": pagination,
                        ])
                    #expect(output(signed).count == 3)
                    #expect(api.seen.withLock { $0.suffix(3).allSatisfy { $0.authorization == "Bearer \(token)" } })
                    let refused = try await run(client, project, auth, ["url": jump, "connection": "api", "pagination": pagination])
                    #expect(refused.json["status"] as? String == "failed")
                    #expect((refused.json["error"] as? String ?? "").contains("another origin"), "\(refused.text)")
                    #expect(elsewhere.seen.withLock { $0.count } == 2)
                }
            }
        }
    }

    @Test("a malformed pagination is refused at save, naming the field")
    func validation() async throws {
        let app = try await TestApp.make(.sqlite)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            let cases: [([String: Any], String)] = [
                (["mode": "pages"], "parameters.pagination.mode"),
                (["mode": "nextUrl"], "parameters.pagination.nextUrl"),
                (["mode": "parameters", "parameters": []], "parameters.pagination.parameters"),
                (
                    ["mode": "parameters", "parameters": [["in": "cookie", "name": "p", "value": 1]]],
                    "parameters.pagination.parameters[0].in"
                ),
                (["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}", "maxRequests": 5000], "parameters.pagination.maxRequests"),
                (
                    ["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}", "complete": "statusCode"],
                    "parameters.pagination.statusCodes"
                ),
                (
                    ["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}", "complete": "expression"],
                    "parameters.pagination.completeExpression"
                ),
                (["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}", "intervalMs": -1], "parameters.pagination.intervalMs"),
                (["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}", "limit": 3], "parameters.pagination.limit"),
                (["mode": "nextUrl", "nextUrl": "{{ $response.body.next "], "parameters.pagination.nextUrl"),
                (["mode": "nextUrl", "nextUrl": "{{ $response.body.next }}", "statusCodes": [404]], "parameters.pagination.statusCodes"),
                (["mode": "parameters", "parameters": [5]], "parameters.pagination.parameters[0]"),
            ]
            // Not even as an expression: its per-page fields would then come from data.
            let expression = try await client.post(
                "/api/v1/projects/\(project)/workflows",
                workflow(["url": "https://api.example.com/x", "pagination": "{{ $json.pagination }}"]), auth: auth)
            #expect(
                ((expression.json["error"] as? [String: Any])?["problems"] as? [[String: Any]] ?? []).contains {
                    $0["field"] as? String == "parameters.pagination"
                },
                "\(expression.text)")
            for (pagination, field) in cases {
                let saved = try await client.post(
                    "/api/v1/projects/\(project)/workflows",
                    workflow(["url": "https://api.example.com/x", "pagination": pagination]), auth: auth)
                #expect(saved.status == 400 || saved.status == 422, "\(field): \(saved.text)")
                let problems = (saved.json["error"] as? [String: Any])?["problems"] as? [[String: Any]] ?? []
                #expect(
                    problems.contains { $0["field"] as? String == field && $0["node"] as? String == "Fetch" }, "\(field): \(saved.text)")
            }
            let good = try await client.post(
                "/api/v1/projects/\(project)/workflows",
                workflow([
                    "url": "https://api.example.com/x",
                    "pagination": [
                        "mode": "parameters", "parameters": [["in": "header", "name": "X-Page", "value": "{{ $pageCount }}"]],
                        "complete": "statusCode", "statusCodes": [404], "maxRequests": 10, "intervalMs": 100,
                    ],
                ]), auth: auth)
            #expect(good.status == 201, "\(good.text)")
        }
    }
}
