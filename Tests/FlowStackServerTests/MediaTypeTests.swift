import Testing

@testable import FlowStackServer

@Suite struct MediaTypeTests {
    @Test("Content-Type media types: before ';', spaces and tabs trimmed, ASCII-lowercased")
    func mediaTypes() {
        let cases: [(String?, String)] = [
            (nil, ""), ("", ""), (" ; charset=utf-8", ""), ("application/json", "application/json"),
            ("Application/JSON; charset=UTF-8", "application/json"), ("\t application/json \t;x", "application/json"),
            ("text/plain;charset=utf-8", "text/plain"), ("application/json-seq", "application/json-seq"),
            ("APPLICATION/ÉJSON", "application/Éjson"),
        ]
        for (raw, expected) in cases {
            #expect(JSON.mediaType(raw) == expected, "\(raw ?? "nil")")
        }
        #expect(JSON.isJSONContentType("application/json ; charset=utf-8"))
        #expect(!JSON.isJSONContentType("application/jsonx") && !JSON.isJSONContentType(nil) && !JSON.isJSONContentType("text/json"))
    }
}
