import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns a host name into addresses. `AddressPolicy.vet` takes one so tests can stand in for DNS.
public protocol HostResolver: Sendable {
    /// Every address `host` resolves to, in the order the system prefers; throws if it does not.
    func resolve(host: String, port: Int) async throws -> [IPAddress]
}

/// The system resolver (`getaddrinfo`: /etc/hosts, DNS, ...). The blocking call runs on a thread
/// of its own: never on the Swift concurrency pool, nor on Dispatch's (which that pool runs on
/// under Linux, so a slow DNS server could starve it). It returns every IPv4 and IPv6 address for
/// TCP; IPv6 scope ids are dropped. Timeouts are those of the system resolver (resolv.conf).
public struct SystemResolver: HostResolver {
    public init() {}

    public func resolve(host: String, port: Int) async throws -> [IPAddress] {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[IPAddress], any Error>) in
            let thread = Thread {
                continuation.resume(with: Result { try SystemResolver.lookup(host: host, port: port) })
            }
            thread.start()
        }
    }

    /// Why `getaddrinfo` failed, in its own words.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public let code: Int32
        public let description: String
    }

    /// The blocking lookup.
    static func lookup(host: String, port: Int) throws(Failure) -> [IPAddress] {
        guard !host.utf8.contains(0) else { throw Failure(code: 0, description: "the host contains NUL") }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if os(Linux)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        hints.ai_protocol = Int32(IPPROTO_TCP)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        defer { if let list { freeaddrinfo(list) } }
        guard status == 0 else {
            var text = String(cString: gai_strerror(status))
            if status == EAI_SYSTEM { text += " (\(String(cString: strerror(errno))))" }
            throw Failure(code: status, description: text)
        }
        var addresses: [IPAddress] = []
        var next = list
        while let info = next?.pointee {
            next = info.ai_next
            guard let socketAddress = info.ai_addr else { continue }
            if info.ai_family == AF_INET, Int(info.ai_addrlen) >= MemoryLayout<sockaddr_in>.size {
                let raw = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                addresses.append(.v4(UInt32(bigEndian: raw)))
            } else if info.ai_family == AF_INET6, Int(info.ai_addrlen) >= MemoryLayout<sockaddr_in6>.size {
                var raw = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                if let address = withUnsafeBytes(of: &raw, { IPAddress(v6Bytes: $0) }) { addresses.append(address) }
            }
        }
        var seen: Set<IPAddress> = []
        return addresses.filter { seen.insert($0).inserted }
    }
}
