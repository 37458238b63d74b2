import FlowStackApp
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
}
