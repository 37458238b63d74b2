import FlowStackCore
import FlowStackNodes
import FlowStackRuntime
import FlowStackSandbox
import FlowStackTesting
import Foundation
import Testing

func codeWorkflow(_ code: String, mode: String = "runOnceForAllItems", timeLimitMs: Int? = nil) -> [String: Any] {
    var parameters: [String: Any] = ["code": code, "mode": mode]
    if let timeLimitMs { parameters["timeLimitMs"] = timeLimitMs }
    return [
        "name": "Code",
        "nodes": [
            ["name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": [:]],
            ["name": "Code", "type": "flowstack.code", "typeVersion": 1, "parameters": parameters],
        ],
        "edges": [["from": "Manual", "to": "Code"]],
    ]
}

/// Code nodes through the API with the real sandbox (SECURITY-TESTS 28–29).
@Suite(.serialized) struct CodeNodeTests {
    func withApp(_ body: @Sendable @escaping (APIClient, Auth, String) async throws -> Void) async throws {
        var limits = SandboxLimits()
        limits.memoryBytes = 256 << 20
        let pool = SandboxPool(executable: sandboxExecutable, limits: limits)
        let app = try await TestApp.make(.sqlite, codeRunner: pool)
        try await app.test { client in
            let (auth, project, _) = try await setUp(client, app)
            try await body(client, auth, project)
        }
        await pool.shutdown()
    }

    func run(
        _ client: APIClient, _ auth: Auth, _ project: String, _ workflow: [String: Any], items: [[String: Any]] = [["n": 1], ["n": 2]]
    ) async throws -> APIResponse {
        let id = try #require(try await client.post("/api/v1/projects/\(project)/workflows", workflow, auth: auth).json["id"] as? String)
        return try await client.post("/api/v1/workflows/\(id)/run?wait=true", ["items": items], auth: auth)
    }

    @Test("$execution.resumeUrl is the execution's resume URL, in Code nodes as in expressions")
    func resumeURL() async throws {
        try await withApp { client, auth, project in
            var workflow = codeWorkflow("return [{json: {url: $execution.resumeUrl, id: $execution.id}}]")
            workflow["nodes"] =
                (workflow["nodes"] as! [[String: Any]]) + [
                    [
                        "name": "Same", "type": "flowstack.set", "typeVersion": 1,
                        "parameters": ["fields": ["same": "{{ $json.url == $execution.resumeUrl }}"]],
                    ]
                ]
            workflow["edges"] = (workflow["edges"] as! [[String: Any]]) + [["from": "Code", "to": "Same"]]
            let done = try await run(client, auth, project, workflow, items: [[:]])
            let output = try #require((done.json["output"] as? [[String: Any]])?.first, "\(done.text)")
            let id = try #require(output["id"] as? String)
            let url = try #require(output["url"] as? String)
            #expect(url.hasPrefix("https://127.0.0.1:8443/webhook-waiting/\(id)/data-"))
            #expect(output["same"] as? Bool == true)
        }
    }

    @Test("modern JavaScript in both modes, async/await, console.log captured into the execution")
    func runs() async throws {
        try await withApp { client, auth, project in
            let all = try await run(
                client, auth, project,
                codeWorkflow(
                    """
                    console.log('items', items.length, {first: $input.first().json.n});
                    await Promise.resolve();
                    return items.map(i => ({json: {...i.json, doubled: i.json.n * 2, label: `#${i.json.n}`}}));
                    """))
            #expect(all.json["status"] as? String == "succeeded")
            let output = all.json["output"] as? [[String: Any]] ?? []
            #expect(output.map { $0["doubled"] as? Double } == [2, 4])
            #expect(output.first?["label"] as? String == "#1")
            let execution = try await client.get("/api/v1/executions/\(all.json["id"] as! String)", auth: auth)
            let code = (execution.json["nodes"] as? [[String: Any]])?.first { $0["node"] as? String == "Code" }
            #expect((code?["logs"] as? [String])?.first?.contains("items 2") == true)

            let each = try await run(
                client, auth, project, codeWorkflow("return {json: {n: $json.n + 10, i: $itemIndex}}", mode: "runOnceForEachItem"))
            #expect((each.json["output"] as? [[String: Any]])?.map { $0["n"] as? Double } == [11, 12])
        }
    }

    @Test(
        "no route to the process, the environment, files, the network or other programs; each fails the node clearly",
        arguments: [
            "return [{json: {x: this.constructor.constructor('return process')()}}]",
            "return [{json: {x: `${this.constructor.constructor('return process')()}`}}]",
            "return [{json: {x: eval('1 + 1')}}]",
            "return [{json: {x: Function('return 1')()}}]",
            "return [{json: {env: process.env}}]",
            "return [{json: {x: require('fs').readFileSync('/proc/self/environ')}}]",
            "const r = await fetch('http://127.0.0.1:1/'); return [{json: {}}]",
            "return [{json: {x: new XMLHttpRequest()}}]",
            "return [{json: {x: require('child_process').execSync('id')}}]",
        ])
    func escapes(code: String) async throws {
        try await withApp { client, auth, project in
            let result = try await run(client, auth, project, codeWorkflow(code))
            #expect(result.json["status"] as? String == "failed", "\(code): \(result.text)")
            #expect(result.json["failedNode"] as? String == "Code")
            #expect((result.json["error"] as? String)?.isEmpty == false)
        }
    }

    @Test("$env holds only project variables, never the server's environment")
    func environment() async throws {
        try await withApp { client, auth, project in
            let result = try await run(
                client, auth, project, codeWorkflow("return [{json: {keys: Object.keys($env), path: typeof $env.PATH}}]"))
            let first = (result.json["output"] as? [[String: Any]])?.first
            #expect((first?["keys"] as? [Any])?.isEmpty == true)
            #expect(first?["path"] as? String == "undefined")
        }
    }

    @Test(
        "runaway code is stopped for that node while other executions carry on",
        arguments: [
            ("while (true) {}", "time limit"),
            ("function f() { return f() + 1 }; return [{json: {x: f()}}]", "call stack"),
            ("const a = []; while (true) a.push(new Array(1e6).fill(1.5)); return []", "memory"),
        ])
    func runaway(code: String, expected: String) async throws {
        try await withApp { client, auth, project in
            async let hog = run(client, auth, project, codeWorkflow(code, timeLimitMs: 1500))
            // Meanwhile another execution runs normally.
            let other = try await run(client, auth, project, codeWorkflow("return [{json: {ok: true}}]"))
            #expect(other.json["status"] as? String == "succeeded")
            let result = try await hog
            #expect(result.json["status"] as? String == "failed")
            let error = (result.json["error"] as? String ?? "").lowercased()
            #expect(
                error.contains(expected) || (expected == "memory" && (error.contains("crash") || error.contains("out of memory"))),
                "\(error)")
            // The pool replaced the child: the next run works.
            let after = try await run(client, auth, project, codeWorkflow("return [{json: {ok: 1}}]"))
            #expect(after.json["status"] as? String == "succeeded")
        }
    }
}

/// The child's own hardening, checked by its self-test: no sockets (any family), no fork, exec,
/// ptrace, mount or unshare, a private network namespace, and JavaScript still works.
@Suite struct SandboxHardeningTests {
    @Test("the sandbox process cannot open sockets, spawn programs or leave its namespace")
    func selfTest() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: sandboxExecutable)
        process.arguments = ["--self-test"]
        process.environment = ["SWIFT_BACKTRACE": "enable=no"]
        process.currentDirectoryURL = URL(fileURLWithPath: NSTemporaryDirectory())
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let checks = try #require(report["checks"] as? [String: [String: Any]])
        for name in [
            "socketInet", "socketInet6", "socketUnix", "tcpConnect127.0.0.1:1", "fork", "posixSpawn", "execve", "ptrace", "mount",
            "unshare",
        ] {
            #expect(checks[name]?["blocked"] as? Bool == true, "\(name)")
        }
        let protections = try #require(report["protections"] as? [String: Any])
        #expect(protections["seccomp"] as? Bool == true)
        #expect(protections["network"] as? String == "namespace")
        #expect((report["jsc"] as? [String: Any])?["works"] as? Bool == true)
        #expect(report["pass"] as? Bool == true)
    }
}
