import FlowStackCore
import FlowStackRuntime
import FlowStackTesting
import Foundation
import Synchronization
import Testing

@testable import FlowStackSandbox

/// The pool's admission and its reading of a child's output, without a child.
@Suite struct SandboxPoolPartsTests {
    /// Waits (bounded) until `condition` holds.
    func eventually(_ condition: () -> Bool) async throws {
        for _ in 0..<2000 where !condition() { try await Task.sleep(for: .milliseconds(1)) }
        #expect(condition())
    }

    @Test("a released slot goes to the longest waiter, never to a caller that came later", .timeLimit(.minutes(1)))
    func slotsAreFair() async throws {
        let slots = RunSlots(maximum: 1)
        let order = OrderLog()
        await slots.acquire()
        let first = Task {
            await slots.acquire()
            order.append("first")
        }
        try await eventually { slots.waiting == 1 }
        let second = Task {
            await slots.acquire()
            order.append("second")
        }
        try await eventually { slots.waiting == 2 }
        slots.release()
        // Handed over: still taken, so a newcomer cannot slip in before the waiters.
        #expect(slots.inUse == 1 && slots.waiting == 1)
        let late = Task {
            await slots.acquire()
            order.append("late")
        }
        try await eventually { slots.waiting == 2 }
        await first.value
        #expect(order.entries == ["first"])
        slots.release()
        await second.value
        slots.release()
        await late.value
        #expect(order.entries == ["first", "second", "late"])
        slots.release()
        #expect(slots.inUse == 0 && slots.waiting == 0)
    }

    @Test("up to the maximum run at once, and all of a long queue is served in order", .timeLimit(.minutes(1)))
    func slotsUnderLoad() async throws {
        let slots = RunSlots(maximum: 3)
        for _ in 0..<3 { await slots.acquire() }
        #expect(slots.inUse == 3)
        let order = OrderLog()
        var tasks: [Task<Void, Never>] = []
        for index in 0..<200 {
            tasks.append(
                Task {
                    await slots.acquire()
                    order.append("\(index)")
                })
            try await eventually { slots.waiting == index + 1 }
        }
        for index in 0..<200 {
            slots.release()
            await tasks[index].value
            #expect(slots.inUse == 3)
        }
        #expect(order.entries == (0..<200).map { "\($0)" })
        for _ in 0..<3 { slots.release() }
        #expect(slots.inUse == 0)
    }

    @Test("a child's output arrives as lines, across and within chunks, then ends", .timeLimit(.minutes(1)))
    func outputLines() async throws {
        let pipe = Pipe()
        let output = ChildOutput(pipe.fileHandleForReading)
        let writer = pipe.fileHandleForWriting
        try writer.write(contentsOf: Data("one\ntw".utf8))
        #expect(await output.next() == Data("one".utf8))
        let waiting = Task { await output.next() }
        try await Task.sleep(for: .milliseconds(20))
        try writer.write(contentsOf: Data("o\n\nthree\nfour".utf8))
        #expect(await waiting.value == Data("two".utf8))
        #expect(await output.next() == Data())
        #expect(await output.next() == Data("three".utf8))
        // A long line in many chunks arrives whole, after "four".
        let long = Data((0..<300_000).map { UInt8(ascii: "a") + UInt8($0 % 26) })
        for start in stride(from: 0, to: long.count, by: 4096) {
            try writer.write(contentsOf: long[start..<min(start + 4096, long.count)])
        }
        try writer.write(contentsOf: Data("\nfive".utf8))
        #expect(await output.next() == Data("four".utf8) + long)
        try writer.close()
        // An unfinished last line is not an answer.
        #expect(await output.next() == nil)
        #expect(await output.next() == nil)
    }

    @Test("a line longer than the limit is not kept: the output ends there, marked as overflowed", .timeLimit(.minutes(1)))
    func outputLineLimit() async throws {
        let pipe = Pipe()
        let output = ChildOutput(pipe.fileHandleForReading, maximumLineBytes: 100)
        let writer = pipe.fileHandleForWriting
        try writer.write(contentsOf: Data((String(repeating: "a", count: 100) + "\n").utf8))
        #expect(await output.next() == Data(String(repeating: "a", count: 100).utf8))
        output.limit(1000)
        try writer.write(contentsOf: Data((String(repeating: "b", count: 1000) + "\nshort\n").utf8))
        #expect(await output.next()?.count == 1000)
        #expect(await output.next() == Data("short".utf8))
        #expect(!output.overflowed)
        // Past the limit without a newline yet: the output ends before the line does.
        for _ in 0..<3 { try writer.write(contentsOf: Data(repeating: UInt8(ascii: "c"), count: 400)) }
        #expect(await output.next() == nil)
        #expect(output.overflowed)
        #expect(await output.next() == nil)
    }
}

final class OrderLog: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ entry: String) { storage.withLock { $0.append(entry) } }
    var entries: [String] { storage.withLock { $0 } }
}

/// What a Code node may return, checked by the sandbox's bootstrap with the real child.
@Suite(.serialized) struct SandboxOutputTests {
    static let pool = SandboxPool(executable: sandboxExecutable)

    func run(
        _ code: String, mode: CodeRequest.Mode = .all, items: [Item] = [Item(json: ["n": 1])], maxOutputBytes: Int = 1 << 20,
        maxLogBytes: Int = 4096
    ) async throws -> CodeResponse {
        try await Self.pool.run(
            CodeRequest(
                code: code, mode: mode, items: items, env: [:], timeLimitMs: 5000, maxOutputBytes: maxOutputBytes,
                maxLogBytes: maxLogBytes, context: .init(executionId: "exe_t", workflowId: "wf_t", workflowName: "T", nodeName: "Code")))
    }

    @Test("objects, {json} and {json, binary} items come out as items; input items arrive as {json, binary?}")
    func accepted() async throws {
        let response = try await run(
            """
            const [a, b] = $input.all();
            return [{plain: 1}, {json: {wrapped: true}}, {json: {x: 1}, binary: {f: {data: 'aGk='}}}, {json: {}, binary: null},
                    {json: {first: a.json.n, second: b.json, hasBinary: b.binary.file.data}}];
            """, items: [Item(json: ["n": 1]), Item(json: ["m": 2], binary: ["file": ["data": "eA=="]])])
        #expect(response.ok, "\(response.error ?? "")")
        #expect(
            response.items == [
                Item(json: ["plain": 1]), Item(json: ["wrapped": true]), Item(json: ["x": 1], binary: ["f": ["data": "aGk="]]),
                Item(json: [:]), Item(json: ["first": 1, "second": ["m": 2], "hasBinary": "eA=="]),
            ])
        let each = try await run(
            "return {json: {doubled: $json.n * 2, index: $itemIndex, same: item.json.n === $input.item.json.n}}", mode: .each,
            items: (1...3).map { Item(json: ["n": .number(Double($0))]) })
        #expect(
            each.items?.map(\.json) == [
                ["doubled": 2, "index": 0, "same": true], ["doubled": 4, "index": 1, "same": true],
                ["doubled": 6, "index": 2, "same": true],
            ])
    }

    @Test(
        "each wrong shape fails the node with a message that says what is wrong",
        arguments: [
            ("return 5", "The Code node must return an array of objects, but it returned a number"),
            (
                "return",
                "The Code node must return an array of objects, but it returned undefined (is a return statement missing? Return [] for no items)"
            ),
            ("return [{a: 1}, 7]", "The Code node must return an array of objects, but item 1 is a number"),
            ("return [null]", "The Code node must return an array of objects, but item 0 is null"),
            ("return [[1, 2]]", "The Code node must return an array of objects, but item 0 is an array"),
            ("return [{json: [1]}]", #"Item 0: the "json" property must be an object, not an array"#),
            ("return [{json: 'x'}]", #"Item 0: the "json" property must be an object, not a string"#),
            ("return [{json: null}]", #"Item 0: the "json" property must be an object, not null"#),
            ("return [{json: {}, binary: [1]}]", #"Item 0: the "binary" property must be an object, not an array"#),
            ("return [{json: {}, binary: 3}]", #"Item 0: the "binary" property must be an object, not a number"#),
            (
                "const o = {}; o.self = o; return [o]",
                "Item 0 could not be converted to JSON: TypeError: JSON.stringify cannot serialize cyclic structures."
            ),
            ("return [{json: {toJSON() { return [1] }}}]", "Item 0 did not convert to a JSON object"),
        ])
    func refused(code: String, message: String) async throws {
        let response = try await run(code)
        #expect(!response.ok)
        #expect(response.errorKind == "output")
        #expect(response.error == message)
    }

    @Test(
        "in each mode every item must give an object",
        arguments: [
            ("return 1", "In \"each\" mode the Code node must return an object for every item, but it returned a number for item 0"),
            ("return [{a: 1}]", "In \"each\" mode the Code node must return an object for every item, but it returned an array for item 0"),
            (
                "return $itemIndex === 1 ? null : {a: 1}",
                "In \"each\" mode the Code node must return an object for every item, but it returned null for item 1"
            ),
        ])
    func refusedEach(code: String, message: String) async throws {
        let response = try await run(code, mode: .each, items: [Item(json: ["n": 1]), Item(json: ["n": 2])])
        #expect(!response.ok)
        #expect(response.error == message)
    }

    @Test("an error message the code chooses is cut to 8 KiB, and the child serves the next run")
    func errorMessageCut() async throws {
        let response = try await run("throw new Error('é'.repeat(1_000_000))")
        #expect(!response.ok)
        #expect(response.errorKind == "runtime")
        let message = response.error ?? ""
        #expect(message.hasPrefix("Error: éé"))
        #expect(message.hasSuffix(" … (cut at 8192 bytes)"))
        #expect(message.utf8.count <= 8192)
        let next = try await run("return [{json: {ok: true}}]")
        #expect(next.items?.first?.json["ok"] == true)
    }

    @Test("console output stops at maxLogBytes, the last line cut at a character boundary, with one marker")
    func logLimit() async throws {
        // 51 bytes: 50 for the line and 1 for its end; each é is 2 bytes, each 😀 4.
        let response = try await run("console.log('ok'); console.log('é'.repeat(30)); console.log('more'); return []", maxLogBytes: 3 + 51)
        #expect(response.logs == ["ok", String(repeating: "é", count: 25), "[log truncated]"])
        let emoji = try await run("console.log('a' + '😀'.repeat(5)); return []", maxLogBytes: 12)
        #expect(emoji.logs == ["a😀😀", "[log truncated]"])
    }

    @Test("$http.request options larger than the output limit never leave the sandbox")
    func brokerCallLimit() async throws {
        let response = try await run(
            """
            try { await $http.request({url: 'https://example.com', method: 'POST', body: 'x'.repeat(20000)}); return [] }
            catch (e) { return [{json: {message: e.message}}] }
            """, maxOutputBytes: 10_000)
        #expect(response.items?.first?.json["message"] == "$http.request options are larger than the limit of 10000 bytes.")
    }

    @Test("output past the limit stops the run")
    func outputLimit() async throws {
        let response = try await run(
            "return Array.from({length: 1000}, (_, i) => ({json: {i, pad: 'x'.repeat(100)}}))", maxOutputBytes: 10_000)
        #expect(!response.ok)
        #expect(response.error == "The output of the Code node is larger than the limit of 10000 bytes")
        let fits = try await run("return Array.from({length: 10}, (_, i) => ({json: {i}}))", maxOutputBytes: 10_000)
        #expect(fits.items?.count == 10)
    }
}

/// How the pool starts and ends its children.
@Suite struct SandboxChildTests {
    @Test("a child starts with an empty environment in its own empty directory, and is reaped when it ends", .timeLimit(.minutes(1)))
    func spawnAndReap() async throws {
        let child = try SandboxChild(executable: sandboxExecutable)
        _ = try await child.readReady()
        let environment = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(child.pid)/environ"))
        #expect(environment == Data("SWIFT_BACKTRACE=enable=no\u{0}".utf8))
        let cwd = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(child.pid)/cwd")
        #expect(URL(fileURLWithPath: cwd).standardizedFileURL == URL(fileURLWithPath: child.directory).standardizedFileURL)
        #expect(try FileManager.default.contentsOfDirectory(atPath: child.directory).isEmpty)
        #expect(getpgid(child.pid) == child.pid, "a process group of its own")
        child.terminate()
        child.terminate()
        var gone = false
        for _ in 0..<500 where !gone {
            gone = kill(child.pid, 0) == -1 && errno == ESRCH
            if !gone { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(gone, "killed and reaped, not left a zombie")
        #expect(!FileManager.default.fileExists(atPath: child.directory))
    }

    @Test("a child that sends a line longer than its request allows is stopped, with an output error", .timeLimit(.minutes(1)))
    func overlongLine() async throws {
        // A stand-in for a compromised child: ready, then 3 MB without a newline for any request.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flowstack-fake-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("fake-sandbox").path
        try Data(
            """
            #!/bin/sh
            echo '{"ready":true,"protections":{}}'
            read -r request
            exec /usr/bin/head -c 3000000 /dev/zero
            """.utf8
        ).write(to: URL(fileURLWithPath: script))
        chmod(script, 0o755)
        let pool = SandboxPool(executable: script)
        let request = CodeRequest(
            code: "return []", mode: .all, items: [], env: [:], timeLimitMs: 5000, maxOutputBytes: 10_000, maxLogBytes: 1000,
            context: .init(executionId: "e", workflowId: "w", workflowName: "W", nodeName: "C"))
        let started = ContinuousClock.now
        let response = try await pool.run(request)
        #expect(response.errorKind == "output")
        #expect(response.error?.contains("more than \(SandboxChild.maximumLineBytes(request)) bytes") == true)
        #expect(ContinuousClock.now - started < .seconds(5), "stopped at the limit, not by the wall-clock kill")
        await pool.shutdown()
    }

    @Test("children a burst started beyond the warm ones are stopped after their idle lifetime", .timeLimit(.minutes(1)))
    func burstChildrenAreStopped() async throws {
        var limits = SandboxLimits()
        limits.warm = 1
        // Long enough that a loaded machine cannot trim the burst's children before the first check.
        limits.idleLifetime = .seconds(2)
        let pool = SandboxPool(executable: sandboxExecutable, limits: limits)
        try await pool.warmUp()
        let request = CodeRequest(
            code: "let t = Date.now(); while (Date.now() - t < 200) {} return []", mode: .all, items: [], env: [:],
            timeLimitMs: 5000, maxOutputBytes: 10_000, maxLogBytes: 1000,
            context: .init(executionId: "e", workflowId: "w", workflowName: "W", nodeName: "C"))
        // Four at once: three more children than the one kept warm.
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 { group.addTask { try await pool.run(request).ok } }
            for try await ok in group { #expect(ok) }
        }
        // At least one child beyond the warm one (a run may reuse a child another has just returned).
        #expect(await pool.idleCount > 1)
        for _ in 0..<200 where await pool.idleCount > 1 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(await pool.idleCount == 1)
        // The one kept still runs code.
        #expect(try await pool.run(request).ok)
        await pool.shutdown()
    }

    @Test("while sandbox children live, other programs the server runs are still seen to finish", .timeLimit(.minutes(1)))
    func otherProcessesFinish() async throws {
        let pool = SandboxPool(executable: sandboxExecutable)
        try await pool.warmUp()
        let finished = Atomic<Bool>(false)
        // On a thread of its own: if the exit is never noticed, waitUntilExit never returns.
        let thread = Thread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/true")
            try? process.run()
            process.waitUntilExit()
            finished.store(true, ordering: .releasing)
        }
        thread.start()
        for _ in 0..<1000 where !finished.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(10)) }
        let noticed = finished.load(ordering: .acquiring)
        #expect(noticed)
        await pool.shutdown()
    }
}
