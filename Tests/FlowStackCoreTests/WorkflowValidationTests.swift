import FlowStackCore
import Foundation
import Testing

@Suite struct WorkflowValidationTests {
    static let catalog: [String: NodeTypeDescriptor] = [
        "flowstack.webhook": .init(
            type: "flowstack.webhook", isTrigger: true, inputs: 0,
            parameters: [
                .init("path", .string, required: true), .init("method", .options, options: ["GET", "POST", "PUT", "DELETE"]),
            ]),
        "flowstack.schedule": .init(type: "flowstack.schedule", isTrigger: true, inputs: 0, parameters: [.init("cron", .cron)]),
        "flowstack.set": .init(type: "flowstack.set", parameters: [.init("fields", .json, required: true)]),
        "flowstack.if": .init(type: "flowstack.if", outputs: 2, parameters: [.init("condition", .string, required: true)]),
        "flowstack.merge": .init(type: "flowstack.merge", inputs: 2, parameters: []),
        "flowstack.code": .init(type: "flowstack.code", versions: [1, 2], parameters: [.init("code", .code, required: true)]),
    ]

    func decode(_ json: String) throws -> Workflow {
        try JSONDecoder().decode(Workflow.self, from: Data(json.utf8))
    }

    @Test("the documented example is valid")
    func example() throws {
        let workflow = try decode(
            """
            {"name": "Greet",
             "nodes": [
               {"name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
                "parameters": {"method": "POST", "path": "greet", "respond": "lastNode"}},
               {"name": "Shape", "type": "flowstack.set", "typeVersion": 1,
                "parameters": {"fields": {"greeting": "Hello {{ $json.body.name }}"}}}],
             "edges": [{"from": "Hook", "to": "Shape"}]}
            """)
        #expect(WorkflowValidator.validate(workflow, catalog: Self.catalog) == [])
        #expect(workflow.edges[0].output == 0 && workflow.edges[0].input == 0)
        #expect(workflow.nodes[1].onError == .stop && workflow.nodes[1].maxTries == 3)
    }

    func problems(_ nodes: [WorkflowNode], _ edges: [Edge] = [], settings: WorkflowSettings = .init()) -> [WorkflowProblem] {
        WorkflowValidator.validate(Workflow(name: "W", nodes: nodes, edges: edges, settings: settings), catalog: Self.catalog)
    }

    let hook = WorkflowNode(name: "Hook", type: "flowstack.webhook", parameters: ["path": "p"])

    @Test("each problem names its code, node and field")
    func problemsNamed() {
        let cases: [([WorkflowNode], [Edge], WorkflowSettings, String, String?, String?)] = [
            ([hook, .init(name: "X", type: "flowstack.nope")], [], .init(), "unknown_node_type", "X", "type"),
            (
                [hook, .init(name: "X", type: "flowstack.set", typeVersion: 9, parameters: ["fields": [:]])], [], .init(),
                "unknown_type_version", "X", "typeVersion"
            ),
            (
                [hook, .init(name: "Hook", type: "flowstack.set", parameters: ["fields": [:]])], [], .init(), "duplicate_node_name", "Hook",
                "name"
            ),
            ([hook], [Edge(from: "Hook", to: "Ghost")], .init(), "dangling_edge", "Hook", "edges[0].to"),
            ([hook], [Edge(from: "Ghost", to: "Hook")], .init(), "dangling_edge", nil, "edges[0].from"),
            ([hook, .init(name: "S", type: "flowstack.set")], [], .init(), "missing_parameter", "S", "parameters.fields"),
            (
                [.init(name: "Hook", type: "flowstack.webhook", parameters: ["path": ""])], [], .init(), "missing_parameter", "Hook",
                "parameters.path"
            ),
            (
                [.init(name: "Hook", type: "flowstack.webhook", parameters: ["path": "p", "method": "FETCH"])], [], .init(),
                "invalid_option", "Hook", "parameters.method"
            ),
            (
                [.init(name: "Cron", type: "flowstack.schedule", parameters: ["cron": "61 * * * *"])], [], .init(), "invalid_cron", "Cron",
                "parameters.cron"
            ),
            (
                [hook, .init(name: "S", type: "flowstack.set", parameters: ["fields": ["a": "{{ $json. }}"]])], [], .init(),
                "expression_syntax", "S", "parameters.fields.a"
            ),
            ([.init(name: "S", type: "flowstack.set", parameters: ["fields": [:]])], [], .init(), "no_trigger", nil, "nodes"),
            (
                [
                    hook, .init(name: "If", type: "flowstack.if", parameters: ["condition": "{{ true }}"]),
                    .init(name: "S", type: "flowstack.set", parameters: ["fields": [:]]),
                ],
                [Edge(from: "Hook", to: "If"), Edge(from: "If", to: "S", output: 2)], .init(), "invalid_output", "If", "edges[1].output"
            ),
            (
                [hook, .init(name: "M", type: "flowstack.merge")], [Edge(from: "Hook", to: "M", input: 2)], .init(), "invalid_input", "M",
                "edges[0].input"
            ),
            (
                [hook, .init(name: "H2", type: "flowstack.webhook", parameters: ["path": "q"])], [Edge(from: "Hook", to: "H2")], .init(),
                "edge_into_trigger", "H2", "edges[0].to"
            ),
            ([hook], [], .init(timezone: "Mars/Olympus"), "invalid_timezone", nil, "settings.timezone"),
            (
                [hook, .init(name: "S", type: "flowstack.set", parameters: ["fields": [:]], maxTries: 50)], [], .init(), "invalid_setting",
                "S", "maxTries"
            ),
        ]
        for (nodes, edges, settings, code, node, field) in cases {
            let found = problems(nodes, edges, settings: settings)
            let match = found.first { $0.code == code }
            #expect(match != nil, "expected \(code) in \(found)")
            #expect(match?.node == node, "\(code): \(String(describing: match))")
            #expect(match?.field == field, "\(code): \(String(describing: match))")
        }
    }

    @Test("cycles are found and named")
    func cycles() {
        let set = { (name: String) in WorkflowNode(name: name, type: "flowstack.set", parameters: ["fields": [:]]) }
        let found = problems(
            [hook, set("A"), set("B"), set("C")],
            [Edge(from: "Hook", to: "A"), Edge(from: "A", to: "B"), Edge(from: "B", to: "C"), Edge(from: "C", to: "A")])
        let cycle = found.first { $0.code == "cycle" }
        #expect(cycle?.message.contains("A → B → C → A") == true, "\(found)")
    }

    @Test("code parameters are not parsed as templates; every problem is reported at once")
    func codeAndAll() {
        let code = WorkflowNode(name: "Code", type: "flowstack.code", parameters: ["code": "return [{json: {a: '{{'}}]"])
        #expect(problems([hook, code], [Edge(from: "Hook", to: "Code")]) == [])
        let many = problems(
            [.init(name: "X", type: "flowstack.nope"), .init(name: "X", type: "flowstack.set")], [Edge(from: "X", to: "Y")])
        #expect(many.count >= 3, "\(many)")
    }

    @Test("malformed JSON fails to decode with the field named")
    func decoding() {
        #expect(throws: DecodingError.self) { try decode(#"{"name": "W", "nodes": [{"name": "A"}]}"#) }
        #expect(throws: DecodingError.self) { try decode(#"{"name": "W", "nodes": [], "edges": [{"from": "A"}]}"#) }
    }
}

@Suite struct CronExpressionTests {
    let utc = TimeZone(identifier: "UTC")!
    let start = Date(timeIntervalSince1970: 1_800_000_000) // 2027-01-15T08:00:00Z, a Friday

    func next(_ expression: String, after date: Date? = nil, zone: TimeZone? = nil) throws -> String {
        let cron = try CronExpression(expression)
        let fire = try #require(cron.next(after: date ?? start, in: zone ?? utc))
        return ISO8601DateFormatter().string(from: fire)
    }

    @Test(
        "next fire times",
        arguments: [
            ("* * * * *", "2027-01-15T08:01:00Z"),
            ("*/15 * * * *", "2027-01-15T08:15:00Z"),
            ("0 9 * * *", "2027-01-15T09:00:00Z"),
            ("0 8 * * *", "2027-01-16T08:00:00Z"),
            ("30 6 * * MON", "2027-01-18T06:30:00Z"),
            ("0 0 1 * *", "2027-02-01T00:00:00Z"),
            ("0 0 29 2 *", "2028-02-29T00:00:00Z"),
            ("0 12 * JAN-MAR SAT,SUN", "2027-01-16T12:00:00Z"),
            ("0 0 13 * 5", "2027-01-22T00:00:00Z"),
            ("*/10 * * * * *", "2027-01-15T08:00:10Z"),
            ("0 0 9-17/4 * * 1-5", "2027-01-15T09:00:00Z"),
            ("0 0 * * 7", "2027-01-17T00:00:00Z"),
        ])
    func nextFire(expression: String, expected: String) throws {
        #expect(try next(expression) == expected)
    }

    @Test("time zones and daylight saving")
    func timeZones() throws {
        let berlin = TimeZone(identifier: "Europe/Berlin")!
        #expect(try next("0 9 * * *", zone: berlin) == "2027-01-16T08:00:00Z")
        // 2027-03-28 02:30 does not exist in Berlin: that day is skipped.
        let beforeGap = ISO8601DateFormatter().date(from: "2027-03-27T12:00:00Z")!
        #expect(try next("30 2 * * *", after: beforeGap, zone: berlin) == "2027-03-29T00:30:00Z")
    }

    @Test(
        "bad expressions are refused with a reason",
        arguments: [
            "", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
            "* * * * 8", "*/0 * * * *", "5-1 * * * *", "a * * * *", "1,,2 * * * *", "* * * * * * *",
        ])
    func invalid(expression: String) {
        #expect(throws: CronExpression.Problem.self) { try CronExpression(expression) }
    }
}
