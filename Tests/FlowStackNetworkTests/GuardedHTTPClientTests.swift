import AsyncHTTPClient
import FlowStackCore
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOPosix
import Synchronization
import Testing

@testable import FlowStackNetwork

/// A resolver whose answer the test changes (DNS rebinding).
final class SwitchingResolver: HostResolver {
    let answer: Mutex<[IPAddress]>
    init(_ answer: [IPAddress]) { self.answer = Mutex(answer) }
    func resolve(host: String, port: Int) async throws -> [IPAddress] { answer.withLock { $0 } }
}

/// A resolver that answers from a table: stands in for DNS, which tests cannot control.
struct TableResolver: HostResolver {
    let table: [String: [IPAddress]]
    func resolve(host: String, port: Int) async throws -> [IPAddress] {
        guard let answer = table[host] else { throw CancellationError() }
        return answer
    }
}

/// SECURITY-TESTS 27: the HTTP Request node's outbound client against a real server on loopback.
@Suite struct OutboundHTTPTests {
    /// Runs `body` with the port of a local server that answers `/hello` and redirects `/away?to=`.
    func withServer(_ body: @Sendable @escaping (Int) async throws -> Void) async throws {
        let router = Router()
        router.get("hello") { _, _ in "hello from loopback" }
        // Sends its body one byte every 300 ms: only a deadline on the whole exchange stops it.
        router.get("trickle") { _, _ -> Response in
            Response(
                status: .ok,
                body: ResponseBody { writer in
                    for _ in 0..<40 {
                        try await writer.write(ByteBuffer(string: "x"))
                        try await Task.sleep(for: .milliseconds(300))
                    }
                    try await writer.finish(nil)
                })
        }
        router.get("away") { request, _ -> Response in
            let target = request.uri.queryParameters["to"].map(String.init) ?? "/"
            return Response(status: .found, headers: [.location: target])
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await body(try #require(client.port))
        }
    }

    func get(_ client: GuardedHTTPClient, _ url: String) async throws -> OutboundResponse {
        try await client.fetch(OutboundRequest(method: "GET", url: url, timeout: 5))
    }

    @Test("private and loopback addresses are refused in every encoding, and on redirects")
    func refused() async throws {
        try await withServer { port in
            let guarded = GuardedHTTPClient(policy: .default)
            for host in [
                "127.0.0.1", "0x7f.1", "2130706433", "0177.0.0.1", "127.1", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "localhost",
                "LOCALHOST.", "%31%32%37.0.0.1",
            ] {
                await #expect(throws: NodeError.self, "\(host)") { _ = try await get(guarded, "http://\(host):\(port)/hello") }
            }
            for url in [
                "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[fd00:ec2::254]/", "file:///etc/passwd",
                "gopher://127.0.0.1/",
            ] {
                await #expect(throws: NodeError.self, "\(url)") { _ = try await get(guarded, url) }
            }
            // Allowed to reach 127.0.0.1 only: a redirect to ::1 is vetted again and refused.
            let allowed = GuardedHTTPClient(policy: try AddressPolicy(allow: ["127.0.0.1/32"]))
            let ok = try await get(allowed, "http://127.0.0.1:\(port)/hello")
            #expect(ok.status == 200)
            #expect(String(decoding: ok.body, as: UTF8.self) == "hello from loopback")
            let followed = try await get(allowed, "http://127.0.0.1:\(port)/away?to=/hello")
            #expect(String(decoding: followed.body, as: UTF8.self) == "hello from loopback")
            await #expect(throws: NodeError.self) {
                _ = try await get(allowed, "http://127.0.0.1:\(port)/away?to=http://%5B::1%5D:\(port)/hello")
            }
            await #expect(throws: NodeError.self) { _ = try await get(allowed, "http://127.0.0.1:\(port)/away?to=http://169.254.169.254/") }
            // The allowlist opens exactly its range.
            let neighbour = GuardedHTTPClient(policy: try AddressPolicy(allow: ["127.0.0.2/32"]))
            await #expect(throws: NodeError.self) { _ = try await get(neighbour, "http://127.0.0.1:\(port)/hello") }
        }
    }

    @Test("a server that trickles its body cannot hold a request past its timeout")
    func trickle() async throws {
        try await withServer { port in
            let client = GuardedHTTPClient(policy: try AddressPolicy(allow: ["127.0.0.1/32"]))
            let started = ContinuousClock.now
            await #expect(throws: NodeError.self) {
                _ = try await client.fetch(OutboundRequest(method: "GET", url: "http://127.0.0.1:\(port)/trickle", timeout: 1))
            }
            // The trickle lasts 12 s; a 1 s timeout ends it long before. The bound leaves room for
            // a loaded 2-core machine running the other suites beside this one (4.9 s seen).
            #expect(ContinuousClock.now - started < .seconds(8))
        }
    }

    @Test("the connection goes to the address that was vetted, not to a second DNS answer")
    func connectsToVettedAddress() async throws {
        try await withServer { port in
            // "api.example.test" exists only in this resolver: reaching the server proves the client did not resolve it again.
            let resolver = TableResolver(table: ["api.example.test": [IPAddress("127.0.0.1")!]])
            let client = GuardedHTTPClient(policy: try AddressPolicy(allow: ["127.0.0.1/32"]), resolver: resolver)
            let response = try await get(client, "http://api.example.test:\(port)/hello")
            #expect(String(decoding: response.body, as: UTF8.self) == "hello from loopback")
            // A name whose answer includes a private address is refused, even if another answer is public.
            let mixed = TableResolver(table: ["mixed.example.test": [IPAddress("93.184.216.34")!, IPAddress("127.0.0.1")!]])
            let strict = GuardedHTTPClient(policy: .default, resolver: mixed)
            await #expect(throws: NodeError.self) { _ = try await get(strict, "http://mixed.example.test:\(port)/hello") }
        }
    }
}

extension OutboundHTTPTests {
    @Test("clients are pooled per vetted destination: reused for the same address, never for a new DNS answer")
    func pooling() async throws {
        try await withServer { port in
            let resolver = SwitchingResolver([IPAddress("127.0.0.1")!])
            let client = GuardedHTTPClient(policy: try AddressPolicy(allow: ["127.0.0.0/8"]), resolver: resolver)
            for _ in 0..<5 {
                #expect(try await get(client, "http://api.example.test:\(port)/hello").status == 200)
            }
            #expect(client.pooledClients == 1)
            // The name now points elsewhere (nothing listens on 127.0.0.2): the pooled client and its
            // open connection to 127.0.0.1 must not be used for it.
            resolver.answer.withLock { $0 = [IPAddress("127.0.0.2")!] }
            await #expect(throws: NodeError.self) { _ = try await get(client, "http://api.example.test:\(port)/hello") }
            #expect(client.pooledClients == 2)
        }
    }

    @Test("the pool keeps at most its capacity; a client evicted while in use is shut down after its request")
    func poolCapacity() throws {
        let pool = ClientPool(capacity: 2)
        func key(_ n: Int) -> ClientPool.Key { .init(override: ["h\(n)": "127.0.0.1"], readTimeout: 5, maxResponseBytes: 1) }
        func make() -> HTTPClient { HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton) }
        let first = pool.borrow(key(1), make: make)
        let second = pool.borrow(key(2), make: make)
        pool.giveBack(key(2), second)
        #expect(pool.borrow(key(1), make: make) === first)
        pool.giveBack(key(1), first)
        let third = pool.borrow(key(3), make: make)
        #expect(pool.count == 2)
        // key 2 was the least recently used and idle: evicted. key 1 is still borrowed once.
        #expect(pool.borrow(key(1), make: make) === first)
        let fourth = pool.borrow(key(4), make: make)
        #expect(pool.count == 2)
        for (k, c) in [(1, first), (1, first), (3, third), (4, fourth)] { pool.giveBack(key(k), c) }
    }
}

@Suite struct RedirectOriginTests {
    @Test("credentials survive a redirect only within one origin: scheme, host and port")
    func origins() {
        let base = URL(string: "https://api.example.com/a")!
        #expect(GuardedHTTPClient.sameOrigin(URL(string: "https://api.example.com:443/b")!, base))
        #expect(!GuardedHTTPClient.sameOrigin(URL(string: "http://api.example.com/b")!, base))
        #expect(!GuardedHTTPClient.sameOrigin(URL(string: "https://api.example.com:8443/b")!, base))
        #expect(!GuardedHTTPClient.sameOrigin(URL(string: "https://evil.example.com/b")!, base))
    }
}
