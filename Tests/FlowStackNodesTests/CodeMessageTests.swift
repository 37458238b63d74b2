import FlowStackCore
import FlowStackNodes
import FlowStackRuntime
import Foundation
import Testing

/// The parent's side of the sandbox protocol: the request it writes and the answer it reads, by
/// `JSONValue`'s writer and parser, agree with what `Codable` reads and writes.
@Suite struct CodeMessageTests {
    static let request: CodeRequest = {
        var request = CodeRequest(
            code: "return $input.all()", mode: .each,
            items: [
                Item(json: ["n": 1, "s": "é\u{1}\"", "f": 1.5, "big": 1e300, "none": nil, "list": [true, false]]),
                Item(json: "plain", binary: ["file": ["mimeType": "text/plain", "data": "aGk="]]),
            ],
            env: ["A": "1", "B": "two words"], timeLimitMs: 5000, maxOutputBytes: 1 << 20, maxLogBytes: 4096,
            context: .init(executionId: "exe_1", workflowId: "wf_1", workflowName: "W \u{2028}", nodeName: "Code"))
        request.maxMemoryBytes = 448 << 20
        request.secretNonce = "nonce"
        return request
    }()

    @Test("the request line is the document JSONEncoder writes, with and without the optionals")
    func requestLine() throws {
        var bare = Self.request
        bare.maxMemoryBytes = nil
        bare.secretNonce = nil
        for request in [Self.request, bare] {
            let line = request.jsonLine()
            #expect(line.last == 0x0A)
            #expect(!line.dropLast().contains(0x0A), "one line")
            let ours = try JSONValue(parsing: Array(line.dropLast()))
            let theirs = try JSONValue(parsing: Array(try JSONEncoder().encode(request)))
            #expect(ours == theirs)
            let decoded = try JSONDecoder().decode(CodeRequest.self, from: Data(line))
            #expect(decoded.items == request.items && decoded.env == request.env && decoded.maxMemoryBytes == request.maxMemoryBytes)
            #expect(decoded.secretNonce == request.secretNonce && decoded.context.workflowName == request.context.workflowName)
        }
    }

    @Test(
        "answers read as Decodable reads them",
        arguments: [
            #"{"ok": true, "items": [{"json": {"a": 1, "b": [1, "x", null]}}, {"json": 2, "binary": {"f": {"data": "aGk="}}}], "logs": ["hi", "there"]}"#,
            #"{"ok": true, "items": []}"#,
            #"{"ok": true, "items": [{"json": null}, {"json": {}, "binary": null}]}"#,
            #"{"ok": false, "error": "ReferenceError: x is not defined", "errorKind": "runtime", "line": 3, "logs": []}"#,
            #"{"ok": false, "error": "boom", "errorKind": null, "line": null, "items": null, "logs": null}"#,
            #"{"ok": true, "items": [{"json": 1}], "unknown": {"ignored": true}}"#,
        ])
    func answers(text: String) throws {
        let ours = try CodeResponse(parsing: Array(text.utf8))
        let theirs = try JSONDecoder().decode(CodeResponse.self, from: Data(text.utf8))
        #expect(ours.ok == theirs.ok)
        #expect(ours.items == theirs.items)
        #expect(ours.error == theirs.error && ours.errorKind == theirs.errorKind)
        #expect(ours.line == theirs.line && ours.logs == theirs.logs)
    }

    @Test(
        "malformed answers are refused, as Decodable refuses them",
        arguments: [
            #"{"items": []}"#, #"{"ok": "yes"}"#, #"{"ok": true, "items": {}}"#, #"{"ok": true, "items": [{"binary": {}}]}"#,
            #"{"ok": true, "items": [3]}"#, #"{"ok": true, "items": [{"json": 1, "binary": []}]}"#, #"{"ok": false, "error": 3}"#,
            #"{"ok": false, "line": 2.5}"#, #"{"ok": false, "line": "3"}"#, #"{"ok": true, "logs": [1]}"#, #"{"ok": true, "logs": "x"}"#,
            #"[{"ok": true}]"#, #"{"ok": true"#, "",
        ])
    func malformed(text: String) {
        #expect(throws: (any Error).self) { try CodeResponse(parsing: Array(text.utf8)) }
        #expect(throws: (any Error).self) { try JSONDecoder().decode(CodeResponse.self, from: Data(text.utf8)) }
    }
}
