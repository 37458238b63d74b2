import Foundation

/// Which outbound HTTP destinations the HTTP Request node may reach (the SSRF guard; OWASP ASVS 5
/// 1.3.6, 13.2.4, 13.2.5, 15.3.2).
///
/// By default every address that is not publicly routable is refused: loopback, private, CGNAT,
/// link-local (including the 169.254.169.254 metadata service), documentation, benchmarking,
/// multicast and reserved IPv4 ranges, and their IPv6 counterparts. IPv6 forms that carry an IPv4
/// address (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the
/// IPv4 address they carry. Names such as `localhost` and `metadata.google.internal` are refused
/// before any DNS lookup.
///
/// An operator can open exact host names and CIDR ranges with `init(allow:)`. An allowed name may
/// resolve to any address; an allowed range opens only the addresses inside it.
///
/// Use `vet(url:)`: it checks the URL, resolves the name, refuses the request if *any* resolved
/// address is blocked, and returns the vetted addresses. The caller must connect to one of those
/// addresses (not resolve the name again), so a DNS answer that changes between check and connect
/// cannot redirect the request.
public struct AddressPolicy: Sendable {
    /// Every non-public destination refused, nothing allowed.
    public static let `default` = AddressPolicy()

    /// The flag an operator uses to open a destination; named in refusal messages.
    public static let allowOption = "--http-allow"

    /// Host names allowed whatever they resolve to (lower case, no trailing dot).
    public let allowedNames: Set<String>
    /// Address ranges allowed although the deny list covers them.
    public let allowedRanges: [IPRange]

    private init() {
        allowedNames = []
        allowedRanges = []
    }

    /// Builds a policy from operator entries: CIDR ranges (`10.0.0.0/8`, `fd00:ec2::/32`), single
    /// addresses (`10.0.0.5`, `::1`, `[::1]`) and exact host names (`internal.example.com`; case and a
    /// trailing dot do not matter). Addresses must be in strict form (`a.b.c.d`, not `127.1` or hex)
    /// and ranges must not have host bits set. Throws `AllowlistError` naming the first bad entry.
    public init(allow entries: [String]) throws(AllowlistError) {
        var names: Set<String> = []
        var ranges: [IPRange] = []
        for entry in entries {
            let text = entry.trimmingCharacters(in: .whitespaces)
            func bad(_ reason: String) -> AllowlistError { .invalidEntry(entry: entry, reason: reason) }
            guard !text.isEmpty else { throw bad("the entry is empty") }
            if text.contains("/") || text.contains(":") || text.hasPrefix("[") {
                switch IPRange.parse(text) {
                case .success(let range): ranges.append(range)
                case .failure(let error): throw bad(error.reason)
                }
                continue
            }
            let parsed: ParsedHost
            do {
                parsed = try ParsedHost(text)
            } catch {
                throw bad(error.reasonText)
            }
            switch parsed {
            case .name(let name):
                names.insert(name)
            case .address(let address):
                // Only the plain dotted quad: an entry like 127.1 or 0x7f.0.0.1 is too easy to misread.
                guard IPAddress(text) == address else {
                    throw bad("write IPv4 addresses as four decimal parts (\(address))")
                }
                ranges.append(IPRange(network: address, prefixLength: 32))
            }
        }
        allowedNames = names
        allowedRanges = ranges
    }

    // MARK: - Checks

    /// What to do with a host before any DNS lookup.
    public enum HostVerdict: Sendable, Equatable {
        /// The host is an address literal (in any encoding) and it is allowed: connect to it directly.
        case address(IPAddress)
        /// The host is a name (lower case, no trailing dot) that must be resolved, then every address
        /// judged with `check(address:host:)`.
        case needsResolution(String)
        /// The host is invalid, a blocked name, or a blocked address literal.
        case refused(SSRFError)
    }

    /// The verdict on one address.
    public enum Verdict: Sendable, Equatable {
        case allowed
        case blocked(BlockReason)
    }

    /// Judges a host before DNS: literal addresses (every encoding) now, names by their spelling
    /// (`localhost`, `*.localhost`, metadata names); other names need resolving.
    public func check(host: String) -> HostVerdict {
        let parsed: ParsedHost
        do {
            parsed = try ParsedHost(host)
        } catch {
            return .refused(error)
        }
        switch parsed {
        case .address(let address):
            // Judged by the address alone: allowed names never open literal addresses.
            if case .blocked(let reason) = check(address) {
                return .refused(.blockedAddress(host: host, address: address, reason: reason))
            }
            return .address(address)
        case .name(let name):
            if !allowedNames.contains(name), let reason = AddressPolicy.blockedNameReason(name) {
                return .refused(.blockedHost(host: host, reason: reason))
            }
            return .needsResolution(name)
        }
    }

    /// Judges one address that `host` resolved to (or that `host` spells). Allowed if `host` is an
    /// allowed name, if a range in the allowlist holds the address, or if the deny list does not
    /// cover it.
    public func check(address: IPAddress, host: String) -> Verdict {
        var name = host.lowercased()
        if name.count > 1, name.hasSuffix(".") { name.removeLast() }
        if allowedNames.contains(name) { return .allowed }
        return check(address)
    }

    private func check(_ address: IPAddress) -> Verdict {
        if allowedRanges.contains(where: { $0.contains(address) }) { return .allowed }
        switch AddressPolicy.classify(address) {
        case .none:
            return .allowed
        case .some(.blocked(let reason)):
            return .blocked(reason)
        case .some(.embeds(let kind, let inner)):
            if case .blocked(let reason) = check(.v4(inner)) {
                return .blocked(.embedded(kind, .v4(inner), reason))
            }
            return .allowed
        }
    }

    /// Why the default deny list refuses an address, ignoring any allowlist; nil for a public one.
    public static func denyReason(for address: IPAddress) -> BlockReason? {
        if case .blocked(let reason) = AddressPolicy.default.check(address) { return reason }
        return nil
    }

    // MARK: - Deny list

    enum Classification: Equatable {
        case blocked(BlockReason)
        /// An IPv6 form carrying an IPv4 address, judged by that address.
        case embeds(BlockReason.Embedding, UInt32)
    }

    static let ipv4Deny: [(base: UInt32, prefix: Int, reason: BlockReason)] = [
        (0xFFFF_FFFF, 32, .broadcast), // 255.255.255.255
        (0x0000_0000, 8, .unspecified), // 0.0.0.0/8 "this network"
        (0x0A00_0000, 8, .privateNetwork), // 10.0.0.0/8
        (0x6440_0000, 10, .sharedAddressSpace), // 100.64.0.0/10 CGNAT
        (0x7F00_0000, 8, .loopback), // 127.0.0.0/8
        (0xA9FE_A9FE, 32, .cloudMetadata), // 169.254.169.254
        (0xA9FE_0000, 16, .linkLocal), // 169.254.0.0/16
        (0xAC10_0000, 12, .privateNetwork), // 172.16.0.0/12
        (0xC000_0000, 24, .ietfProtocolAssignment), // 192.0.0.0/24
        (0xC000_0200, 24, .documentation), // 192.0.2.0/24 TEST-NET-1
        (0xC058_6300, 24, .relayAnycast), // 192.88.99.0/24
        (0xC0A8_0000, 16, .privateNetwork), // 192.168.0.0/16
        (0xC612_0000, 15, .benchmarking), // 198.18.0.0/15
        (0xC633_6400, 24, .documentation), // 198.51.100.0/24 TEST-NET-2
        (0xCB00_7100, 24, .documentation), // 203.0.113.0/24 TEST-NET-3
        (0xE000_0000, 4, .multicast), // 224.0.0.0/4
        (0xF000_0000, 4, .reserved), // 240.0.0.0/4
    ]

    static let ipv6Deny: [(base: UInt128, prefix: Int, reason: BlockReason)] = [
        (0, 128, .unspecified), // ::
        (1, 128, .loopback), // ::1
        (0x0064_FF9B_0001 << 80, 48, .localNAT64), // 64:ff9b:1::/48
        (0x0100 << 112, 64, .discardOnly), // 100::/64
        (0x2001_0000 << 96, 32, .teredo), // 2001::/32
        (0x2001_0DB8 << 96, 32, .documentation), // 2001:db8::/32
        (0x3FFF << 112, 20, .documentation), // 3fff::/20 (RFC 9637)
        ((0xFD00_0EC2 << 96) | 0x254, 128, .cloudMetadata), // fd00:ec2::254 (AWS)
        (0xFC00 << 112, 7, .uniqueLocal), // fc00::/7
        (0xFE80 << 112, 10, .linkLocal), // fe80::/10
        (0xFEC0 << 112, 10, .siteLocal), // fec0::/10
        (0xFF00 << 112, 8, .multicast), // ff00::/8
    ]

    static func classify(_ address: IPAddress) -> Classification? {
        switch address {
        case .v4(let value):
            for entry in ipv4Deny where value & IPRange.mask32(entry.prefix) == entry.base {
                return .blocked(entry.reason)
            }
            return nil
        case .v6(let value):
            for entry in ipv6Deny where value & IPRange.mask128(entry.prefix) == entry.base {
                return .blocked(entry.reason)
            }
            let low32 = UInt32(truncatingIfNeeded: value)
            if value >> 32 == 0xFFFF { return .embeds(.ipv4Mapped, low32) } // ::ffff:0:0/96
            if value >> 32 == 0 { return .embeds(.ipv4Compatible, low32) } // ::/96
            if value >> 32 == 0x0064_FF9B << 64 { return .embeds(.nat64, low32) } // 64:ff9b::/96
            if value >> 112 == 0x2002 { return .embeds(.sixToFour, UInt32(truncatingIfNeeded: value >> 80)) } // 2002::/16
            if value >> 125 != 0b001 { return .blocked(.reserved) } // outside 2000::/3
            return nil
        }
    }

    /// Names refused before DNS (they mean this machine or a cloud metadata service).
    static func blockedNameReason(_ name: String) -> String? {
        switch name {
        case "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback":
            return "a loopback name"
        case "metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal":
            return "a cloud metadata service name"
        default:
            return name.hasSuffix(".localhost") ? "a loopback name (.localhost)" : nil
        }
    }

    // MARK: - Vetting a URL

    /// The outcome of `vet`: where the request may go.
    public struct Destination: Sendable, Equatable {
        /// "http" or "https".
        public let scheme: String
        /// The host as parsed: a lower-case name without trailing dot, or the canonical address text.
        public let host: String
        public let port: Int
        /// Every vetted address (resolver order, at least one). Connect only to these.
        public let addresses: [IPAddress]
        /// The address to connect to.
        public var address: IPAddress { addresses[0] }
    }

    /// Vets a URL: the scheme must be http or https, the host valid and allowed, and every address
    /// the name resolves to allowed. Returns the addresses the caller must connect to.
    public func vet(url: URL, resolver: any HostResolver = SystemResolver()) async throws(SSRFError) -> Destination {
        guard let host = url.host(percentEncoded: true), !host.isEmpty else {
            if let scheme = url.scheme?.lowercased(), scheme != "http", scheme != "https" {
                throw SSRFError.unsupportedScheme(scheme)
            }
            throw SSRFError.invalidHost(host: "", reason: "the URL has no host")
        }
        return try await vet(scheme: url.scheme ?? "", host: host, port: url.port, resolver: resolver)
    }

    /// Vets a destination given as parts; `port` nil means the scheme's default (80 or 443).
    public func vet(scheme: String, host: String, port: Int?, resolver: any HostResolver = SystemResolver()) async throws(SSRFError)
        -> Destination
    {
        let scheme = scheme.lowercased()
        guard scheme == "http" || scheme == "https" else { throw SSRFError.unsupportedScheme(scheme) }
        let port = port ?? (scheme == "https" ? 443 : 80)
        guard (1...65535).contains(port) else { throw SSRFError.invalidPort(port) }

        switch check(host: host) {
        case .refused(let error):
            throw error
        case .address(let address):
            return Destination(scheme: scheme, host: address.description, port: port, addresses: [address])
        case .needsResolution(let name):
            var addresses: [IPAddress]
            do {
                addresses = try await resolver.resolve(host: name, port: port)
            } catch {
                throw SSRFError.resolutionFailed(host: host, detail: "\(error)")
            }
            var seen: Set<IPAddress> = []
            addresses = addresses.filter { seen.insert($0).inserted }
            guard !addresses.isEmpty else { throw SSRFError.resolutionFailed(host: host, detail: "no addresses") }
            // Every address must pass: a name that resolves to one public and one private address
            // is refused rather than trimmed.
            for address in addresses {
                if case .blocked(let reason) = check(address: address, host: name) {
                    throw SSRFError.blockedAddress(host: host, address: address, reason: reason)
                }
            }
            return Destination(scheme: scheme, host: name, port: port, addresses: addresses)
        }
    }
}

/// Why an address is refused. `description` reads as the end of "The address … is …".
public indirect enum BlockReason: Sendable, Hashable, CustomStringConvertible {
    case unspecified
    case loopback
    case privateNetwork
    case sharedAddressSpace
    case linkLocal
    case cloudMetadata
    case ietfProtocolAssignment
    case documentation
    case relayAnycast
    case benchmarking
    case multicast
    case reserved
    case broadcast
    case uniqueLocal
    case siteLocal
    case teredo
    case discardOnly
    case localNAT64
    /// An IPv6 address carrying an IPv4 address that is blocked for `reason`.
    case embedded(Embedding, IPAddress, BlockReason)

    public enum Embedding: Sendable, Hashable, CustomStringConvertible {
        case ipv4Mapped, ipv4Compatible, nat64, sixToFour

        public var description: String {
            switch self {
            case .ipv4Mapped: "an IPv4-mapped address"
            case .ipv4Compatible: "an IPv4-compatible address"
            case .nat64: "a NAT64 address"
            case .sixToFour: "a 6to4 address"
            }
        }
    }

    public var description: String {
        switch self {
        case .unspecified: "unspecified (0.0.0.0/8 or ::, which can reach this machine)"
        case .loopback: "loopback"
        case .privateNetwork: "in a private network range"
        case .sharedAddressSpace: "in the carrier-grade NAT range 100.64.0.0/10"
        case .linkLocal: "link-local"
        case .cloudMetadata: "a cloud metadata service"
        case .ietfProtocolAssignment: "in the IETF protocol assignments range 192.0.0.0/24"
        case .documentation: "reserved for documentation"
        case .relayAnycast: "in the 6to4 relay anycast range 192.88.99.0/24"
        case .benchmarking: "reserved for benchmarking"
        case .multicast: "multicast"
        case .reserved: "reserved"
        case .broadcast: "the broadcast address"
        case .uniqueLocal: "a unique-local (private) IPv6 address"
        case .siteLocal: "a site-local IPv6 address"
        case .teredo: "a Teredo tunnel address"
        case .discardOnly: "in the discard-only range 100::/64"
        case .localNAT64: "in the local-use NAT64 range 64:ff9b:1::/48"
        case .embedded(let kind, let address, let reason): "\(kind) for \(address), which is \(reason)"
        }
    }
}

/// Why the HTTP Request node refuses a destination. The messages name the host and the reason and
/// are safe to show to the workflow author.
public enum SSRFError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The host is, or resolved to, an address on the deny list.
    case blockedAddress(host: String, address: IPAddress, reason: BlockReason)
    /// The host name itself is refused (`localhost`, metadata service names).
    case blockedHost(host: String, reason: String)
    /// The host is neither a valid name nor a valid address.
    case invalidHost(host: String, reason: String)
    /// Only http and https are fetched.
    case unsupportedScheme(String)
    case invalidPort(Int)
    case resolutionFailed(host: String, detail: String)

    static let blockedSuffix =
        "; requests to private, loopback, link-local and metadata addresses are blocked. "
        + "An operator can allow it with \(AddressPolicy.allowOption)."

    public var description: String {
        switch self {
        case .blockedAddress(let host, let address, let reason):
            return "The address \(address) of host '\(SSRFError.display(host))' is \(reason)" + SSRFError.blockedSuffix
        case .blockedHost(let host, let reason):
            return "The host '\(SSRFError.display(host))' is \(reason)" + SSRFError.blockedSuffix
        case .invalidHost(let host, let reason):
            return "The host '\(SSRFError.display(host))' is not a valid host name or IP address: \(reason)."
        case .unsupportedScheme(let scheme):
            let shown = scheme.isEmpty ? "(none)" : "'\(SSRFError.display(scheme))'"
            return "The URL scheme \(shown) is not allowed; only http and https URLs can be requested."
        case .invalidPort(let port):
            return "The port \(port) is not valid; ports run from 1 to 65535."
        case .resolutionFailed(let host, let detail):
            return "The host '\(SSRFError.display(host))' could not be resolved: \(detail)."
        }
    }

    /// The reason part alone (used for allowlist errors).
    var reasonText: String {
        switch self {
        case .invalidHost(_, let reason), .blockedHost(_, let reason): return reason
        default: return description
        }
    }

    /// Hosts come from workflow authors: show control characters escaped and cap the length so a
    /// message cannot forge log lines.
    static func display(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(300) {
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value)
                || scalar.properties.generalCategory == .lineSeparator || scalar.properties.generalCategory == .paragraphSeparator
            {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return text.unicodeScalars.count > 300 ? out + "…" : out
    }
}

/// A bad `--http-allow` entry.
public enum AllowlistError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidEntry(entry: String, reason: String)

    public var description: String {
        switch self {
        case .invalidEntry(let entry, let reason):
            return "The allowlist entry '\(SSRFError.display(entry))' is not valid: \(reason). "
                + "Use an exact host name, an address (10.0.0.5, ::1) or a CIDR range (10.0.0.0/8, fd00::/8)."
        }
    }
}
