import AsyncHTTPClient
import FlowStackCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Outbound HTTP for the HTTP Request node, behind the SSRF guard: every URL (and every redirect
/// target) is vetted after DNS resolution, and the connection goes to the very address that was
/// vetted (the client is told to use it instead of resolving again), so DNS rebinding cannot
/// swap in a private address. TLS certificates are verified against the host name.
///
/// Clients — and so their keep-alive connections — are pooled per vetted destination: a client
/// is reused only for the same host names pinned to the same vetted address with the same limits,
/// so reuse never connects anywhere the guard did not just approve.
public struct GuardedHTTPClient: OutboundFetching {
    public let policy: AddressPolicy
    let resolver: any HostResolver
    private let clients = ClientPool()

    public init(policy: AddressPolicy, resolver: any HostResolver = SystemResolver()) {
        self.policy = policy
        self.resolver = resolver
    }

    /// How many destinations have a pooled client (for tests).
    var pooledClients: Int { clients.count }

    public func fetch(_ request: OutboundRequest) async throws -> OutboundResponse {
        var url = request.url
        var method = request.method
        var body = request.body
        var headers = request.headers
        for _ in 0...max(0, request.maxRedirects) {
            guard let parsed = URL(string: url) else { throw NodeError("'\(url.prefix(200))' is not a valid URL.", field: "url") }
            let destination: AddressPolicy.Destination
            do {
                destination = try await policy.vet(url: parsed, resolver: resolver)
            } catch {
                throw NodeError(error.description, field: "url")
            }
            let response = try await send(
                url: url, parsed: parsed, destination: destination, method: method, headers: headers, body: body, request: request)
            guard request.followRedirects, [301, 302, 303, 307, 308].contains(response.status),
                let location = response.headers.first(where: { $0.0.lowercased() == "location" })?.1,
                let next = URL(string: location, relativeTo: parsed)?.absoluteURL
            else {
                return response
            }
            if response.status == 303 || ((response.status == 301 || response.status == 302) && method == "POST") {
                method = "GET"
                body = nil
                headers.removeAll { $0.0.lowercased() == "content-type" || $0.0.lowercased() == "content-length" }
            }
            if !Self.sameOrigin(next, parsed), request.credentialInBody, body != nil {
                throw NodeError("The server redirected a request whose body holds a secret to another origin; it was not sent there.")
            }
            if !Self.sameOrigin(next, parsed) {
                // Credentials are for the origin they were given for (scheme, host and port), not
                // for where it redirects: never to another host, nor from https down to http.
                headers.removeAll { header in
                    let name = header.0.lowercased()
                    return OutboundRequest.originBoundHeaders.contains(name) || request.credentialHeaders.contains(name)
                }
            }
            url = next.absoluteString
        }
        throw NodeError("The request was redirected more than \(request.maxRedirects) times.")
    }

    public static func sameOrigin(_ a: URL, _ b: URL) -> Bool { a.hasSameOrigin(as: b) }

    private func send(
        url: String, parsed: URL, destination: AddressPolicy.Destination, method: String, headers: [(String, String)],
        body: [UInt8]?, request: OutboundRequest
    ) async throws -> OutboundResponse {
        var override: [String: String] = [:]
        for host in [parsed.host(percentEncoded: true), parsed.host, Optional(destination.host)].compactMap({ $0 }) {
            override[host] = destination.address.description
            override[host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))] = destination.address.description
        }
        let readTimeout = Int64(request.timeout.rounded(.up))
        let key = ClientPool.Key(override: override, readTimeout: readTimeout, maxResponseBytes: request.maxResponseBytes)
        let client = clients.borrow(key) {
            var configuration = HTTPClient.Configuration(
                redirectConfiguration: .disallow,
                timeout: .init(connect: .seconds(10), read: .seconds(readTimeout)))
            configuration.dnsOverride = override
            configuration.decompression = .enabled(limit: .size(request.maxResponseBytes))
            // Keep-alive connections: up to 32 to one destination (beyond that requests wait for one).
            configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
            return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
        }
        defer { clients.giveBack(key, client) }
        do {
            var outbound = HTTPClientRequest(url: url)
            outbound.method = HTTPMethod(rawValue: method)
            for (name, value) in headers { outbound.headers.add(name: name, value: value) }
            if let body { outbound.body = .bytes(ByteBuffer(bytes: body)) }
            // One deadline for the whole exchange: a server that trickles its body byte by byte
            // cannot hold a node (or a Code node's sandbox slot) past the timeout.
            let limit = request.maxResponseBytes
            let timeout = request.timeout
            let prepared = outbound
            let result = try await withThrowingTaskGroup(of: OutboundResponse?.self) { group in
                group.addTask {
                    let response = try await client.execute(prepared, timeout: .seconds(Int64(timeout.rounded(.up))))
                    var collected: ByteBuffer
                    do {
                        collected = try await response.body.collect(upTo: limit)
                    } catch is NIOTooManyBytesError {
                        throw NodeError("The response is larger than \(limit) bytes.")
                    }
                    return OutboundResponse(
                        status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                        body: collected.readBytes(length: collected.readableBytes) ?? [])
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(timeout))
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let response = first else {
                    throw NodeError("The request to \(destination.host) failed: it timed out")
                }
                return response
            }
            return result
        } catch let error as NodeError {
            throw error
        } catch {
            throw NodeError("The request to \(destination.host) failed: \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout: return "it timed out"
            default:
                // Never the error's associated values: they can quote headers, credentials included.
                return error.shortDescription
            }
        }
        return String(describing: type(of: error))
    }
}

/// HTTP clients by vetted destination, at most `capacity` of them. A client evicted while in use
/// is shut down when its last request ends; the rest are shut down with the pool.
final class ClientPool: Sendable {
    struct Key: Hashable, Sendable {
        let override: [String: String]
        let readTimeout: Int64
        let maxResponseBytes: Int
    }

    private struct Entry {
        let client: HTTPClient
        var inUse = 0
        var lastUsed: UInt64 = 0
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var retired: [ObjectIdentifier: Entry] = [:]
        var clock: UInt64 = 0
    }

    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int = 32) {
        self.capacity = capacity
    }

    var count: Int { state.withLock { $0.entries.count } }

    func borrow(_ key: Key, make: () -> HTTPClient) -> HTTPClient {
        var evicted: HTTPClient?
        let client = state.withLock { state -> HTTPClient in
            state.clock += 1
            if var entry = state.entries[key] {
                entry.inUse += 1
                entry.lastUsed = state.clock
                state.entries[key] = entry
                return entry.client
            }
            if state.entries.count >= capacity, let (oldKey, oldest) = state.entries.min(by: { $0.value.lastUsed < $1.value.lastUsed }) {
                state.entries[oldKey] = nil
                if oldest.inUse == 0 {
                    evicted = oldest.client
                } else {
                    state.retired[ObjectIdentifier(oldest.client)] = oldest
                }
            }
            let client = make()
            state.entries[key] = Entry(client: client, inUse: 1, lastUsed: state.clock)
            return client
        }
        evicted?.shutdown { _ in }
        return client
    }

    /// Ends one request on `client` (borrowed under `key`).
    func giveBack(_ key: Key, _ client: HTTPClient) {
        let id = ObjectIdentifier(client)
        let finished = state.withLock { state -> HTTPClient? in
            if var entry = state.entries[key], ObjectIdentifier(entry.client) == id {
                entry.inUse -= 1
                state.entries[key] = entry
                return nil
            }
            // Evicted while in use: shut down after its last request.
            guard var entry = state.retired[id] else { return nil }
            entry.inUse -= 1
            if entry.inUse > 0 {
                state.retired[id] = entry
                return nil
            }
            state.retired[id] = nil
            return entry.client
        }
        finished?.shutdown { _ in }
    }

    deinit {
        state.withLock { state in
            for entry in state.entries.values { entry.client.shutdown { _ in } }
            for entry in state.retired.values { entry.client.shutdown { _ in } }
        }
    }
}
