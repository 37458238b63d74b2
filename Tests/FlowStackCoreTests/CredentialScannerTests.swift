import FlowStackCore
import Foundation
import Testing

/// Fake credentials, generated so that nothing resembling a live secret sits verbatim in the
/// source (prefixes are split so repository secret scanners do not trip on them either).
enum FakeSecrets {
    static let alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    static let upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    static let base64URL = alnum + "_-"

    /// Deterministic pseudo-random text (a linear congruential generator), so failures reproduce.
    static func random(_ count: Int, seed: UInt64, from alphabet: String = alnum) -> String {
        let characters = Array(alphabet)
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
        return String(
            (0..<count).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return characters[Int((state >> 33) % UInt64(characters.count))]
            })
    }

    static let aws = "AK" + "IA" + random(16, seed: 1, from: upperAlnum)
    static let github = "gh" + "p_" + random(36, seed: 2)
    static let githubFineGrained = "github" + "_pat_" + random(40, seed: 3, from: alnum + "_")
    static let gitlab = "gl" + "pat-" + random(20, seed: 4, from: base64URL)
    static let slack = "xo" + "xb-" + random(12, seed: 5, from: "0123456789") + "-" + random(24, seed: 6)
    static let slackWebhook =
        "https://hooks.slack" + ".com/services/T" + random(8, seed: 7, from: upperAlnum)
        + "/B" + random(10, seed: 8, from: upperAlnum) + "/" + random(24, seed: 9)
    static let stripe = "sk" + "_live_" + random(24, seed: 10)
    static let privateKey =
        "-----BEGIN RSA " + "PRIVATE KEY-----\n" + random(64, seed: 11, from: alnum + "+/")
        + "\n" + random(64, seed: 12, from: alnum + "+/") + "\n-----END RSA " + "PRIVATE KEY-----"
    static let jwt =
        "ey" + "J" + random(20, seed: 13, from: base64URL) + ".ey" + "J" + random(40, seed: 14, from: base64URL)
        + "." + random(43, seed: 15, from: base64URL)
    static let google = "AI" + "za" + random(35, seed: 16, from: base64URL)
    /// A random 40-character value, like most API keys without a recognisable prefix.
    static let opaque = random(40, seed: 17)

    static let byKind: [(kind: String, token: String)] = [
        ("awsAccessKey", aws), ("githubToken", github), ("githubToken", githubFineGrained), ("gitlabToken", gitlab),
        ("slackToken", slack), ("slackWebhook", slackWebhook), ("stripeKey", stripe), ("privateKey", privateKey),
        ("jwt", jwt), ("googleApiKey", google),
    ]
}

private func scan(_ parameters: [String: ScanValue], node: String = "Call CRM", isCode: Bool = false) -> [CredentialFinding] {
    CredentialScanner.scan(nodeName: node, isCode: isCode, parameters: parameters)
}

private func scanCode(_ code: String, node: String = "Transform") -> [CredentialFinding] {
    CredentialScanner.scan(nodeName: node, isCode: true, parameters: ["code": .string(code), "mode": "runOnceForAllItems"])
}

@Suite struct CredentialTokenShapeTests {
    @Test("each token shape is found in a nested value, with a line only if the value has several", arguments: FakeSecrets.byKind)
    func nestedValue(kind: String, token: String) {
        let findings = scan(["options": ["note": .string("send with " + token + " please")]])
        #expect(findings.map(\.kind) == [kind])
        #expect(findings.first?.node == "Call CRM")
        #expect(findings.first?.field == "options.note")
        #expect(findings.first?.line == (token.contains("\n") ? 1 : nil))
    }

    @Test("each token shape is found on its line of a Code node", arguments: FakeSecrets.byKind)
    func inCode(kind: String, token: String) {
        let code = "// Sync contacts\nconst base = 'https://crm.test/api';\nconst value = `\(token)`;\nreturn items;\n"
        let findings = scanCode(code)
        #expect(findings.map(\.kind) == [kind])
        #expect(findings.first?.field == "code")
        #expect(findings.first?.line == 3)
        #expect(findings.first?.message.contains("line 3") == true)
    }

    @Test("a token prefix inside a longer identifier is not a token")
    func wordBoundary() {
        #expect(scan(["note": .string("x" + FakeSecrets.aws)]).isEmpty)
        #expect(scan(["note": .string("my" + FakeSecrets.github)]).isEmpty)
        #expect(scan(["note": .string("(" + FakeSecrets.aws + ")")]).map(\.kind) == ["awsAccessKey"])
    }

    @Test("documentation placeholders in a token's shape are not reported")
    func documentationPlaceholders() {
        let placeholders = ["AK" + "IAIOSFODNN7EXAMPLE", "gh" + "p_" + String(repeating: "x", count: 36)]
        for placeholder in placeholders {
            #expect(scan(["note": .string(placeholder)]).isEmpty, "\(placeholder)")
        }
    }

    @Test("a PEM header without key material is not a private key")
    func pemHeaderAlone() {
        #expect(scanCode("if (pem.startsWith('-----BEGIN " + "PRIVATE KEY-----')) { return [] }").isEmpty)
    }

    @Test("a known token in an auth header is reported once, by its kind")
    func tokenInHeader() {
        let findings = scan(["headers": ["Authorization": .string("Bearer " + FakeSecrets.github)]])
        #expect(findings.map(\.kind) == ["githubToken"])
        #expect(findings.first?.field == "headers.Authorization")
    }
}

@Suite struct CredentialHighEntropyTests {
    @Test("a random API key assigned in a Code node is reported on its line")
    func codeAssignment() {
        let code = "const base = 'https://crm.test/api';\n\nconst apiKey = \"\(FakeSecrets.opaque)\";\nreturn items;"
        let findings = scanCode(code, node: "Enrich")
        #expect(
            findings == [
                CredentialFinding(
                    node: "Enrich", field: "code", line: 3, kind: "highEntropySecret",
                    message: findings.first?.message ?? "")
            ])
        #expect(findings.first?.message.hasPrefix("Node 'Enrich', field 'code', line 3: ") == true)
    }

    @Test(
        "assignment shapes in code: object keys, quoted headers, setHeader calls, escaped JSON",
        arguments: [
            "const options = { token: '\(FakeSecrets.opaque)' };",
            "headers = { \"Authorization\": \"Bearer \(FakeSecrets.opaque)\" };",
            "request.setHeader('X-API-Key', '\(FakeSecrets.opaque)');",
            "headers['x-api-key'] = '\(FakeSecrets.opaque)';",
            "const body = \"{\\\"client_secret\\\": \\\"\(FakeSecrets.opaque)\\\"}\";",
            "this.password = `\(FakeSecrets.opaque)`;",
        ])
    func codeShapes(line: String) {
        #expect(scanCode(line).map(\.kind) == ["highEntropySecret"], "\(line)")
    }

    @Test("a Bearer header value is reported at headers.Authorization")
    func bearerHeader() {
        let findings = scan(["headers": ["Authorization": .string("Bearer " + FakeSecrets.opaque)]])
        #expect(findings.map(\.field) == ["headers.Authorization"])
        #expect(findings.map(\.kind) == ["highEntropySecret"])
        #expect(findings.first?.line == nil)
    }

    @Test("auth-like keys are recognised by name, including in name/value header lists and arrays")
    func authLikeKeys() {
        let secret = ScanValue.string(FakeSecrets.opaque)
        let findings = scan([
            "password": secret,
            "auth": ["client_secret": secret, "X-Auth-Token": secret],
            "headers": [["name": "Content-Type", "value": "application/json"], ["name": "X-API-Key", "value": secret]],
            "refreshTokens": ["short", secret],
        ])
        #expect(
            findings.map(\.field) == [
                "auth.X-Auth-Token", "auth.client_secret", "headers[1].value", "password", "refreshTokens[1]",
            ])
        #expect(findings.allSatisfy { $0.kind == "highEntropySecret" })
    }

    @Test("secrets in query strings and raw header text are found outside code")
    func bareValues() {
        let url = scan(["url": .string("https://api.service.test/v1/items?limit=5&api_key=\(FakeSecrets.opaque)&page=2")])
        #expect(url.map(\.field) == ["url"])
        let raw = scan(["rawHeaders": .string("Accept: application/json\nAuthorization: Bearer \(FakeSecrets.opaque)\n")])
        #expect(raw.map(\.line) == [2])
    }

    @Test(
        "expressions and project variables are never reported",
        arguments: [
            ["token": "{{ $env.TOKEN }}"],
            ["headers": ["Authorization": "={{ 'Bearer ' + $env.API_TOKEN }}"]],
            ["apiKey": "$env.API_KEY"],
            [
                "code":
                    "const apiKey = $env.API_KEY;\nconst token = `${$env.TOKEN}`;\nconst auth = { Authorization: `Bearer ${$env.CRM_TOKEN}` };"
            ],
        ] as [[String: ScanValue]])
    func expressions(parameters: [String: ScanValue]) {
        #expect(CredentialScanner.scan(nodeName: "N", isCode: true, parameters: parameters).isEmpty)
    }

    @Test(
        "placeholders, short values and low-entropy values are not secrets",
        arguments: [
            "your_api_key_here", "xxxxxxxxxxxxxxxxxxxx", "<paste-your-token-here>", "changeme-changeme-2024",
            "aaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababab", "hunter2", "Bearer sk-example-not-a-real-key-123",
        ])
    func notSecrets(value: String) {
        #expect(scan(["token": .string(value), "headers": ["Authorization": .string("Bearer " + value)]]).isEmpty)
        #expect(scanCode("const apiKey = '\(value)';").isEmpty)
    }

    @Test("ordinary text in ordinary fields is not reported")
    func ordinaryText() {
        let findings = scan([
            "url": "https://api.crm.test/v2/contacts/search?limit=100&order=desc",
            "id": "3f2b8c1e-9d4a-4e7b-a6f1-0c5d2e8b9a47",
            "requestId": "c0a80164-7f3e-11ee-b962-0242ac120002",
            "description": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
            "tokenUrl": "https://login.identity.test/oauth2/v2.0/token",
            "body": ["name": "Ada Lovelace", "email": "ada@analytical.test", "tags": ["vip", "beta"]],
            "count": 3, "enabled": true, "nothing": nil,
        ])
        #expect(findings.isEmpty)
        let code = """
            const url = 'https://api.crm.test/v2/contacts';
            const id = '3f2b8c1e-9d4a-4e7b-a6f1-0c5d2e8b9a47';
            const tokenCount = items.length;
            const password = items[0].json.password;
            return items.map(item => ({ json: { ...item.json, checksum: 'e3b0c44298fc1c14' } }));
            """
        #expect(scanCode(code).isEmpty)
    }
}

@Suite struct CredentialFindingShapeTests {
    @Test(
        "the message names the node and kind and never contains the whole secret",
        arguments: FakeSecrets.byKind + [("highEntropySecret", FakeSecrets.opaque)])
    func masked(kind: String, token: String) throws {
        let findings = scanCode("// header\n\nconst secretValue = '\(token)';\n", node: "Call CRM")
        #expect(findings.map(\.kind) == [kind])
        let finding = try #require(findings.first)
        #expect(finding.message.contains("Node 'Call CRM'"))
        #expect(!finding.message.contains(token))
        let encoded = String(decoding: try JSONEncoder().encode(finding), as: UTF8.self)
        #expect(!encoded.contains(token))
        if kind == "slackWebhook" {
            #expect(finding.message.contains("(hook…\(token.suffix(4)))"))
        } else if kind != "privateKey" {
            #expect(finding.message.contains("(\(token.prefix(4))…\(token.suffix(4)))"))
        }
    }

    @Test("a secret shorter than 20 characters gets no hint at all")
    func shortSecretHasNoHint() throws {
        let secret = FakeSecrets.random(17, seed: 99)
        let finding = try #require(scan(["apiKey": .string(secret)]).first)
        #expect(!finding.message.contains(String(secret.prefix(4))))
        #expect(!finding.message.contains(String(secret.suffix(4))))
    }

    @Test("one finding per field, line and kind, ordered by field, line, kind")
    func dedupedAndOrdered() {
        let code =
            "const a = '\(FakeSecrets.github)', b = '\(FakeSecrets.github)';\nconst c = '\(FakeSecrets.stripe)'; const d = '\(FakeSecrets.aws)';"
        let findings = CredentialScanner.scan(
            nodeName: "N", isCode: true,
            parameters: [
                "code": .string(code),
                "a": ["note": .string(FakeSecrets.jwt)],
            ])
        #expect(
            findings.map { "\($0.field):\($0.line.map(String.init) ?? "-"):\($0.kind)" } == [
                "a.note:-:jwt", "code:1:githubToken", "code:2:awsAccessKey", "code:2:stripeKey",
            ])
    }

    @Test("paths name array indices, and deep nesting is walked without recursion")
    func deepPaths() {
        var value = ScanValue.object(["token": .string(FakeSecrets.opaque)])
        for _ in 0..<10_000 { value = .array([value]) }
        let findings = scan(["a": ["b": [.null, ["c": value]]]])
        #expect(findings.map(\.field) == ["a.b[1].c" + String(repeating: "[0]", count: 10_000) + ".token"])
    }

    @Test("a 256 KiB Code node is scanned in linear time")
    func largeCodeNode() {
        let block = """
            for (const item of items) {
              const total = item.json.price * item.json.qty; // token: not a secret
              item.json.label = `${item.json.name}: ${total.toFixed(2)}`;
              headers = { 'Content-Type': 'application/json', Accept: "text/plain" };
            }

            """
        var code = String(repeating: block, count: 256 * 1024 / block.utf8.count)
        code += "const apiKey = '\(FakeSecrets.opaque)';\n"
        let pathological = String(repeating: "token:'a'token=", count: 256 * 1024 / 15)
        let clock = ContinuousClock()
        var findings: [CredentialFinding] = []
        let elapsed = clock.measure {
            findings = scanCode(code)
            _ = scan(["body": .string(pathological)])
        }
        #expect(findings.map(\.kind) == ["highEntropySecret"])
        #expect(findings.first?.line == code.split(separator: "\n", omittingEmptySubsequences: false).count - 1)
        // Well under 50 ms in release; the bound is loose so debug builds on a busy machine pass.
        #expect(elapsed < .seconds(2))
    }
}

@Suite struct AllowedHostsTests {
    @Test("allowedHosts matches plain host names only: exact, or subdomains of a *. entry")
    func matching() {
        let allowed = ["api.example.com", "*.files.example.com"]
        #expect(ConnectionSchema.hostAllowed("api.example.com", allowed))
        #expect(ConnectionSchema.hostAllowed("API.Example.com", allowed))
        #expect(ConnectionSchema.hostAllowed("a.files.example.com", allowed))
        #expect(!ConnectionSchema.hostAllowed("files.example.com", allowed))
        #expect(!ConnectionSchema.hostAllowed("evil.com", allowed))
        #expect(!ConnectionSchema.hostAllowed("api.example.com.evil.com", allowed))
        #expect(!ConnectionSchema.hostAllowed("evil.com\u{0}.files.example.com", allowed))
        #expect(!ConnectionSchema.hostAllowed("evil.com%00.files.example.com", allowed))
        #expect(ConnectionSchema.hostAllowed("anything.test", []))
    }
}
