import FlowStackCore
import FlowStackNetwork
import FlowStackNodes
import FlowStackRuntime
import Foundation
import Testing

@Suite struct LocalRunnerTests {
    let runner = LocalRunner(catalog: .standard)

    func workflow(_ json: String) throws -> Workflow {
        try JSONDecoder().decode(Workflow.self, from: Data(json.utf8))
    }

    @Test("the example workflow greets")
    func greet() async throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/greet.json")
        let wf = try JSONDecoder().decode(Workflow.self, from: Data(contentsOf: url))
        let result = try await runner.run(wf, input: [Item(json: ["body": ["name": "Ada"], "method": "POST"])])
        #expect(result.status == .succeeded)
        #expect(result.output.map { $0.json["greeting"] } == ["Hello Ada"])
        #expect(result.nodes.map(\.node) == ["Hook", "Shape"])
    }

    @Test("branches, merge, sort, limit, aggregate and crypto together")
    func pipeline() async throws {
        let wf = try workflow(
            """
            {"name": "P", "nodes": [
              {"name": "Start", "type": "flowstack.manualTrigger"},
              {"name": "Split", "type": "flowstack.splitOut", "parameters": {"field": "people"}},
              {"name": "Adult", "type": "flowstack.if", "parameters": {"condition": "{{ $json.age >= 18 }}"}},
              {"name": "Tag", "type": "flowstack.set", "parameters": {"fields": {"group": "adult", "next": "{{ $json.age + 1 }}"}}},
              {"name": "Minor", "type": "flowstack.set", "parameters": {"fields": {"group": "minor"}}},
              {"name": "Merge", "type": "flowstack.merge"},
              {"name": "Sort", "type": "flowstack.sort", "parameters": {"field": "age", "order": "descending"}},
              {"name": "Top", "type": "flowstack.limit", "parameters": {"maxItems": 2}},
              {"name": "Hash", "type": "flowstack.crypto", "parameters": {"value": "{{ $json.name }}"}},
              {"name": "All", "type": "flowstack.aggregate", "parameters": {"field": "name", "outputField": "names"}}],
             "edges": [{"from": "Start", "to": "Split"}, {"from": "Split", "to": "Adult"},
                       {"from": "Adult", "to": "Tag", "output": 0}, {"from": "Adult", "to": "Minor", "output": 1},
                       {"from": "Tag", "to": "Merge", "input": 0}, {"from": "Minor", "to": "Merge", "input": 1},
                       {"from": "Merge", "to": "Sort"}, {"from": "Sort", "to": "Top"}, {"from": "Top", "to": "Hash"},
                       {"from": "Hash", "to": "All"}]}
            """)
        let people: JSONValue = [
            "people": [["name": "a", "age": 30], ["name": "b", "age": 12], ["name": "c", "age": 45], ["name": "d", "age": 17]]
        ]
        let result = try await runner.run(wf, input: [Item(json: people)])
        #expect(result.status == .succeeded, "\(String(describing: result.error))")
        #expect(result.output == [Item(json: ["names": ["c", "a"]])])
        #expect(result.nodes.first { $0.node == "Tag" }?.items == 2)
    }

    @Test("a failing node stops the execution with its error; continue and retries are honoured")
    func failures() async throws {
        let stop = try workflow(
            """
            {"name": "F", "nodes": [{"name": "S", "type": "flowstack.manualTrigger"},
              {"name": "Boom", "type": "flowstack.stopAndError", "parameters": {"message": "bad {{ $json.x }}"}},
              {"name": "After", "type": "flowstack.noOp"}],
             "edges": [{"from": "S", "to": "Boom"}, {"from": "Boom", "to": "After"}]}
            """)
        let failed = try await runner.run(stop, input: [Item(json: ["x": 7])])
        #expect(failed.status == .failed)
        #expect(failed.error == "bad 7")
        #expect(failed.failedNode == "Boom")

        var continuing = stop
        continuing.nodes[1].onError = .continue
        continuing.nodes[1].retryOnFail = true
        continuing.nodes[1].maxTries = 2
        continuing.nodes[1].waitBetweenTries = 10
        let continued = try await runner.run(continuing, input: [Item(json: ["x": 7])])
        #expect(continued.status == .succeeded)
        #expect(continued.output == [Item(json: ["error": "bad 7"])])
        #expect(continued.nodes.first { $0.node == "Boom" }?.attempts == 2)
    }

    @Test("invalid workflows are refused with every problem")
    func invalid() async throws {
        let wf = try workflow(#"{"name": "X", "nodes": [{"name": "A", "type": "flowstack.set"}], "edges": [{"from": "A", "to": "B"}]}"#)
        await #expect(throws: LocalRunner.InvalidWorkflow.self) { try await runner.run(wf) }
    }
}

@Suite struct NodeTests {
    func run(_ type: any NodeType, _ parameters: [String: JSONValue], _ inputs: [[Item]]) async throws -> NodeOutput {
        let node = WorkflowNode(name: "N", type: Swift.type(of: type).descriptor.type, parameters: parameters)
        return try await type.run(NodeInput(node: node, inputs: inputs, base: ExpressionContext()))
    }

    let items = [Item(json: ["id": 1, "v": "a"]), Item(json: ["id": 2, "v": "b"]), Item(json: ["id": 1, "v": "c"])]

    @Test("every item's context shares one list of the items, built once per run of the node")
    func contextSharesTheItemList() throws {
        let many = (0..<1000).map { Item(json: ["id": .number(Double($0))]) }
        let input = NodeInput(
            node: WorkflowNode(name: "N", type: SetNode.descriptor.type, parameters: [:]), inputs: [many], base: ExpressionContext())
        func storage(_ context: ExpressionContext) -> UnsafeRawPointer? {
            context.inputItems.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
        }
        let first = input.context(for: 0)
        let last = input.context(for: 999)
        #expect(first.inputItems.count == 1000 && last.json == ["id": 999])
        // The same storage, not an equal copy: a copy per item made a node quadratic in its items.
        #expect(storage(first) != nil && storage(first) == storage(last))
        var changed = input
        changed.inputs = [Array(many.prefix(2))]
        #expect(changed.context(for: 0).inputItems.count == 2)
    }

    @Test("a parameter's template is evaluated per item, and a broken one fails where it is used")
    func compiledParameters() async throws {
        let input = NodeInput(
            node: WorkflowNode(
                name: "N", type: SetNode.descriptor.type,
                parameters: [
                    "fields": ["a": "{{ $json.id * 10 }}", "b": ["x", "{{ $itemIndex }}"], "c": "plain"],
                    "bad": "{{ 1 + }}", "escaped": "\\{{ not }}",
                ]),
            inputs: [items], base: ExpressionContext())
        #expect(try input.parameter("fields", item: 1) == ["a": 20, "b": ["x", 1], "c": "plain"])
        #expect(try input.parameter("fields", item: 2) == ["a": 10, "b": ["x", 2], "c": "plain"])
        #expect(try input.parameter("escaped") == "{{ not }}")
        #expect(throws: ExpressionError.self) { try input.parameter("bad") }
        #expect(throws: ExpressionError.self) { try input.parameter("bad", item: 1) }
    }

    @Test("set keeps or replaces fields")
    func set() async throws {
        #expect(
            try await run(SetNode(), ["fields": ["w": "{{ $json.v }}!"]], [[items[0]]])
                == .items([[Item(json: ["id": 1, "v": "a", "w": "a!"])]]))
        #expect(try await run(SetNode(), ["fields": ["w": 1], "keepOnlySet": true], [[items[0]]]) == .items([[Item(json: ["w": 1])]]))
    }

    @Test("filter, remove duplicates, limit and sort")
    func itemNodes() async throws {
        #expect(try await run(FilterNode(), ["condition": "{{ $json.id === 1 }}"], [items]) == .items([[items[0], items[2]]]))
        #expect(try await run(RemoveDuplicatesNode(), ["field": "id"], [items]) == .items([[items[0], items[1]]]))
        #expect(try await run(LimitNode(), ["maxItems": 1, "keep": "last"], [items]) == .items([[items[2]]]))
        #expect(try await run(SortNode(), ["field": "id"], [items]) == .items([[items[0], items[2], items[1]]]))
    }

    @Test("merge by position and by key")
    func merge() async throws {
        let left = [Item(json: ["k": 1, "a": 1]), Item(json: ["k": 2, "a": 2])]
        let right = [Item(json: ["k": 2, "b": 2])]
        #expect(
            try await run(MergeNode(), ["mode": "byKey", "key": "k"], [left, right]) == .items([[Item(json: ["k": 2, "a": 2, "b": 2])]]))
        #expect(try await run(MergeNode(), ["mode": "byPosition"], [left, right]) == .items([[Item(json: ["k": 2, "a": 1, "b": 2])]]))
        #expect(try await run(MergeNode(), [:], [left, right]) == .items([left + right]))
        #expect(try await run(MergeNode(), ["mode": "waitForBoth"], [left, right]) == .items([left + right]))
        #expect(try await run(MergeNode(), ["mode": "waitForBoth"], [left, []]) == .items([[]]))
    }

    @Test("switch routes to the first rule that holds, else the fallback output")
    func switchNode() async throws {
        let rules: JSONValue = ["{{ $json.v === 'a' }}", "{{ $json.id === 1 }}"]
        #expect(try await run(SwitchNode(), ["rules": rules], [items]) == .items([[items[0]], [items[2]], [items[1]]]))
    }

    @Test("date and time: format, add and subtract, with clear errors")
    func dateTime() async throws {
        let item = [Item(json: ["when": "2026-03-01T10:00:00Z"])]
        let added = try await run(
            DateTimeNode(), ["operation": "add", "value": "{{ $json.when }}", "amount": 90, "unit": "minutes"], [item])
        #expect(added == .items([[Item(json: ["when": "2026-03-01T10:00:00Z", "date": "2026-03-01T11:30:00.000Z"])]]))
        let formatted = try await run(
            DateTimeNode(), ["operation": "format", "value": "2026-03-01T10:00:00Z", "format": "dd.MM.yyyy", "outputField": "d"],
            [[Item(json: [:])]])
        #expect(formatted == .items([[Item(json: ["d": "01.03.2026"])]]))
        await #expect(throws: NodeError.self) {
            try await run(DateTimeNode(), ["operation": "add", "value": "yesterday", "amount": 1], [item])
        }
    }

    @Test("wait asks to sleep; respond to webhook keeps the response on its hidden output")
    func waitAndRespond() async throws {
        let wait = try await run(WaitNode(), ["resume": "timeInterval", "seconds": 5], [items])
        guard case .wait(let until, let kept) = wait else {
            Issue.record("no wait")
            return
        }
        #expect(kept == items)
        #expect(until.timeIntervalSinceNow > 3)
        #expect(try await run(WaitNode(), ["resume": "webhook"], [items]) == .waitForResume(items: items))
        await #expect(throws: NodeError.self) { try await run(WaitNode(), ["resume": "timeInterval", "seconds": -1], [items]) }
        let respond = try await run(RespondToWebhookNode(), ["statusCode": 202, "body": ["ok": true], "headers": ["X-A": "b"]], [items])
        #expect(respond == .items([items, [Item(json: ["statusCode": 202, "headers": ["X-A": "b"], "body": ["ok": true]])]]))
        await #expect(throws: NodeError.self) { try await run(RespondToWebhookNode(), ["statusCode": 99], [items]) }
        await #expect(throws: NodeError.self) { try await run(RespondToWebhookNode(), ["headers": ["Bad Header": "x"]], [items]) }
    }

    @Test("HTTP request: builds the request from parameters and shapes the response into items")
    func httpRequest() async throws {
        struct Echo: NodeServices {
            func executeWorkflow(id: String, items: [Item], wait: Bool, caller: ExpressionContext) async throws -> [Item] { [] }
            func runCode(_ request: CodeRequest) async throws -> CodeResponse { CodeResponse(ok: false) }
            func fetch(_ request: OutboundRequest) async throws -> OutboundResponse {
                let headers = request.headers.map { "\($0.0)=\($0.1)" }.joined(separator: ";")
                let body =
                    #"[{"url":"\#(request.url)","method":"\#(request.method)","headers":"\#(headers)","body":"\#(String(decoding: request.body ?? [], as: UTF8.self).replacingOccurrences(of: "\"", with: "'"))"}]"#
                return OutboundResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array(body.utf8))
            }
        }
        let node = WorkflowNode(
            name: "N", type: "flowstack.httpRequest",
            parameters: [
                "url": "https://api.example.com/items/{{ $json.id }}", "method": "POST", "query": ["q": "x y"],
                "headers": ["X-Trace": "t"], "bodyType": "json", "body": ["v": "{{ $json.v }}"],
            ])
        let output = try await HTTPRequestNode().run(
            NodeInput(node: node, inputs: [[items[0]]], base: ExpressionContext(), services: Echo()))
        guard case .items(let produced) = output, let json = produced.first?.first?.json else {
            Issue.record("no items")
            return
        }
        #expect(json["url"] == "https://api.example.com/items/1?q=x%20y")
        #expect(json["method"] == "POST")
        #expect(json["headers"] == "X-Trace=t;Content-Type=application/json")
        #expect(json["body"] == "{'v':'a'}")
        for bad: [String: JSONValue] in [
            ["url": "file:///etc/passwd"], ["url": "https://x.example", "method": "TRACE"], ["url": "https://x.example", "timeout": 0],
        ] {
            await #expect(throws: NodeError.self) {
                try await HTTPRequestNode().run(
                    NodeInput(
                        node: WorkflowNode(name: "N", type: "flowstack.httpRequest", parameters: bad), inputs: [items],
                        base: ExpressionContext(), services: Echo()))
            }
        }
        // Without the platform's HTTP service (no SSRF guard), the node refuses to run.
        await #expect(throws: NodeError.self) { try await run(HTTPRequestNode(), ["url": "https://x.example"], [items]) }
    }

    struct FailingCode: CodeRunning {
        let message: String
        func run(_ request: CodeRequest) async throws -> CodeResponse {
            CodeResponse(ok: false, error: message, errorKind: "runtime", line: 2)
        }
    }

    /// The message a Code node fails with when the sandbox answers `message`.
    func failure(_ message: String) async -> String? {
        let services = StandaloneServices(codeRunner: FailingCode(message: message), fetcher: nil)
        let node = WorkflowNode(name: "C", type: "flowstack.code", parameters: ["code": "throw new Error('x')"])
        do {
            _ = try await CodeNode().run(NodeInput(node: node, inputs: [[Item(json: [:])]], base: ExpressionContext(), services: services))
            return nil
        } catch {
            return (error as? NodeError)?.message
        }
    }

    @Test("a Code node keeps at most 16 KiB of the sandbox's error message, whatever the sandbox sends")
    func codeErrorCut() async throws {
        #expect(await failure("Error: short") == "Error: short (line 2)")
        let huge = await failure("Error: " + String(repeating: "é", count: 1 << 20))
        #expect(huge?.hasPrefix("Error: éé") == true)
        #expect(huge?.hasSuffix(" … (line 2)") == true)
        #expect((huge?.utf8.count ?? .max) <= (16 << 10) + 32)
    }

    @Test("crypto hashes and HMACs with known answers")
    func crypto() async throws {
        let hash = try await run(CryptoNode(), ["value": "abc"], [[Item(json: [:])]])
        #expect(hash == .items([[Item(json: ["hash": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"])]]))
        let hmac = try await run(
            CryptoNode(), ["action": "hmac", "value": "The quick brown fox jumps over the lazy dog", "secret": "key"], [[Item(json: [:])]])
        #expect(hmac == .items([[Item(json: ["hash": "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"])]]))
        await #expect(throws: NodeError.self) { try await run(CryptoNode(), ["action": "hmac", "value": "x"], [[Item(json: [:])]]) }
    }
}
