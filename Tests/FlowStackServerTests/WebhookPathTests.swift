@testable import FlowStackServer
import Testing

@Suite struct WebhookPathTests {
    @Test("webhook paths: outer slashes dropped; only ASCII letters, digits, - _ . /; no empty, . or .. segment; 200 bytes at most")
    func normalize() {
        let cases: [(String, String?)] = [
            ("greet", "greet"), ("/greet/", "greet"), ("///a/b-c_d.e/", "a/b-c_d.e"), ("a/.hidden", "a/.hidden"), ("a..b", "a..b"),
            ("", nil), ("///", nil), ("a//b", nil), ("a/./b", nil), ("a/../b", nil), ("..", nil), ("./a", nil), ("a/..", nil),
            ("é", nil), ("a b", nil), ("a%2e", nil), ("a?b", nil), ("a\\b", nil), ("ａ", nil),
            (String(repeating: "a", count: 200), String(repeating: "a", count: 200)), (String(repeating: "a", count: 201), nil),
        ]
        for (raw, expected) in cases {
            #expect(WebhookPaths.normalize(raw) == expected, "\(raw)")
        }
    }

    @Test("Content-Type media types: before ';', spaces and tabs trimmed, ASCII-lowercased")
    func mediaTypes() {
        let cases: [(String?, String)] = [
            (nil, ""), ("", ""), (" ; charset=utf-8", ""), ("application/json", "application/json"),
            ("Application/JSON; charset=UTF-8", "application/json"), ("\t application/json \t;x", "application/json"),
            ("text/plain;charset=utf-8", "text/plain"), ("application/json-seq", "application/json-seq"), ("APPLICATION/ÉJSON", "application/Éjson"),
        ]
        for (raw, expected) in cases {
            #expect(JSON.mediaType(raw) == expected, "\(raw ?? "nil")")
        }
        #expect(JSON.isJSONContentType("application/json ; charset=utf-8"))
        #expect(!JSON.isJSONContentType("application/jsonx") && !JSON.isJSONContentType(nil) && !JSON.isJSONContentType("text/json"))
    }
}
