import Foundation
import Testing

@testable import FlowStackNetwork

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

private func ip(_ text: String) -> IPAddress {
    guard let address = IPAddress(text) else { fatalError("bad address in test table: \(text)") }
    return address
}

/// Answers from a table instead of DNS; names missing from the table fail to resolve.
private struct StubResolver: HostResolver {
    var answers: [String: [IPAddress]]

    struct NotFound: Error, CustomStringConvertible {
        var description: String { "Name or service not known" }
    }

    func resolve(host: String, port: Int) async throws -> [IPAddress] {
        guard let addresses = answers[host] else { throw NotFound() }
        return addresses
    }
}

/// Answers every name with a public address: a host that reaches it was taken for a name.
private struct AnswersEverythingPublic: HostResolver {
    func resolve(host: String, port: Int) async throws -> [IPAddress] { [ip("93.184.216.34")] }
}

/// Resolves one made-up name through the real system resolver as `localhost`, so the getaddrinfo
/// path of `vet` is exercised without the name check stopping it first.
private struct LocalhostAliasResolver: HostResolver {
    func resolve(host: String, port: Int) async throws -> [IPAddress] {
        try await SystemResolver().resolve(host: host == "alias-of-localhost.test" ? "localhost" : host, port: port)
    }
}

@Suite struct IPAddressTests {
    @Test(
        "strict parsing and RFC 5952 text",
        arguments: [
            ("0.0.0.0", "0.0.0.0"),
            ("127.0.0.1", "127.0.0.1"),
            ("255.255.255.255", "255.255.255.255"),
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("fe80:0:0:0:1:0:0:0", "fe80::1:0:0:0"),
            ("1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
            ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
            ("::ffff:7f00:1", "::ffff:127.0.0.1"),
            ("::FFFF:127.0.0.1", "::ffff:127.0.0.1"),
            ("::1.2.3.4", "::102:304"),
            ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
            ("64:ff9b::8.8.8.8", "64:ff9b::808:808"),
            ("2606:4700:4700::1111", "2606:4700:4700::1111"),
        ])
    func roundTrip(input: String, canonical: String) {
        let address = IPAddress(input)
        #expect(address?.description == canonical)
        #expect(address.flatMap { IPAddress($0.description) } == address)
    }

    @Test(
        "strict parsing refuses everything else",
        arguments: [
            "", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1.2.3.-1", "0x7f.0.0.1", "2130706433", "127.1",
            "1.2.3.4 ", " 1.2.3.4", "1..2.3", ":::", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "::1:", ":1::", "1:::2",
            "1:2:3:4:5:6:7::8", "1:2:3:4:5:6:7", "::1.2.3", "1:2:3:4:5:6:7:1.2.3.4", "::ffff:01.2.3.4", "::1.2.3.4:5",
            "g::1", "[::1]", "fe80::1%eth0", "::ffff:1.2.3.4.5",
        ])
    func strictRefuses(input: String) {
        #expect(IPAddress(input) == nil)
    }

    @Test func bytes() {
        #expect(ip("1.2.3.4").bytes == [1, 2, 3, 4])
        #expect(ip("102:304:506:708:90a:b0c:d0e:f10").bytes == Array(1...16))
        #expect(IPAddress(v6Bytes: Array(1...16) as [UInt8]) == ip("102:304:506:708:90a:b0c:d0e:f10"))
        #expect(IPAddress(v6Bytes: [UInt8](repeating: 0, count: 15)) == nil)
    }

    @Test(
        "ranges contain exactly their addresses",
        arguments: [
            ("10.0.0.0/8", "10.0.0.0", true), ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "9.255.255.255", false), ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.5/32", "10.0.0.5", true), ("10.0.0.5", "10.0.0.6", false), ("0.0.0.0/0", "8.8.8.8", true),
            ("fd00::/8", "fd12::1", true), ("fd00::/8", "fe00::1", false), ("::1", "::1", true),
            ("[::1]/128", "::1", true), ("::/0", "2001:db8::1", true), ("0.0.0.0/0", "::1", false),
            ("::/0", "127.0.0.1", false),
        ])
    func rangeContains(range: String, address: String, expected: Bool) {
        #expect(IPRange(range)?.contains(ip(address)) == expected)
    }
}

@Suite struct HostParsingTests {
    /// Every way of writing an address a resolver or URL parser accepts must come out as that address.
    @Test(
        "every encoding is read as the address it means",
        arguments: [
            ("127.0.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0X7F.0.0.1", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0x7F000001", "127.0.0.1"),
            ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
            ("0177.0x0.0.01", "127.0.0.1"),
            ("0x00007f.0000.00.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("0177.1", "127.0.0.1"),
            ("127.0x1", "127.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("127.1.", "127.0.0.1"),
            ("%31%32%37.0.0.1", "127.0.0.1"),
            ("%31%32%37%2e%30%2e%30%2e%31", "127.0.0.1"),
            ("%30x7f.1", "127.0.0.1"),
            ("10.1", "10.0.0.1"),
            ("10.0.1", "10.0.0.1"),
            ("0", "0.0.0.0"),
            ("0x", "0.0.0.0"),
            ("00", "0.0.0.0"),
            ("169.254.43518", "169.254.169.254"),
            ("2852039166", "169.254.169.254"),
            ("0xa9fea9fe", "169.254.169.254"),
            ("0251.0376.0251.0376", "169.254.169.254"),
            ("4294967295", "255.255.255.255"),
            ("0xffffffff", "255.255.255.255"),
            ("1.2.3.0x", "1.2.3.0"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[0:0:0:0:0:0:0:1]", "::1"),
            ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
            ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
            ("[::FFFF:7F00:0001]", "::ffff:127.0.0.1"),
            ("[0:0:0:0:0:ffff:127.0.0.1]", "::ffff:127.0.0.1"),
            ("[::127.0.0.1]", "::7f00:1"),
            ("[fe80::1%25eth0]", "fe80::1"),
            ("[fe80::1%eth0]", "fe80::1"),
            ("fe80::1%25eth0", "fe80::1"),
            ("fe80::1%eth0", "fe80::1"),
            ("[FE80::1]", "fe80::1"),
        ])
    func encodings(host: String, expected: String) throws {
        #expect(try ParsedHost(host) == .address(ip(expected)))
    }

    @Test(
        "names come back in lower case without the trailing dot",
        arguments: [
            ("example.com", "example.com"), ("Example.COM.", "example.com"), ("a-b_c.example", "a-b_c.example"),
            ("%65xample.com", "example.com"), ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("1.2.3.4.example", "1.2.3.4.example"), ("0x7f.example", "0x7f.example"), ("123.com", "123.com"),
            ("1e100.net", "1e100.net"), ("localhost", "localhost"),
        ])
    func names(host: String, expected: String) throws {
        #expect(try ParsedHost(host) == .name(expected))
    }

    @Test(
        "invalid hosts are neither names nor addresses",
        arguments: [
            "", ".", "..", "a..b", ".example.com", "127.0.0.1..",
            "256.1.1.1", "1.256.1.1", "1.1.1.256", "1.1.65536", "1.16777216", "0x100000000", "4294967296",
            "99999999999999999999999", "1.2.3.4.5", "127.1.1.1.1", "08.0.0.1", "1.2.3.09", "0x7g.1", "example.123",
            "1.2.3.4 ", " 1.2.3.4", "127.0.0.1\n", "exa mple.com", "ex@mple.com", "user@127.0.0.1", "a/b", "a\\b",
            "%zz", "%3", "%2531%2532%2537.0.0.1", "127.0.0.1%00", "localhost%00.example.com", "%3a%3a1", "%5b::1%5d",
            "ｌｏｃａｌｈｏｓｔ", "127。0。0。1", "①②⑦.0.0.1", "bücher.example",
            "[::1", "::1]", "[127.0.0.1]", "[::1]:80", "::1::", "1:2:3:4:5:6:7:8:9", "[fe80::1%]", "[fe80::1%25]",
            "[fe80::1%25eth 0]", "example.com:80", "[]",
            String(repeating: "a", count: 64) + ".example", String(repeating: "a.", count: 127) + "aa",
        ])
    func invalid(host: String) {
        #expect(throws: SSRFError.self) { try ParsedHost(host) }
        if case .refused(.invalidHost(let named, _)) = AddressPolicy.default.check(host: host) {
            #expect(named == host)
        } else {
            Issue.record("\(host.debugDescription) was not refused as invalid")
        }
    }

    /// Whatever the C library reads as an IPv4 address, this parser reads as the same address
    /// (or refuses as invalid); it never takes it for a name.
    @Test(
        "agrees with inet_aton",
        arguments: [
            "127.0.0.1", "2130706433", "0177.0.0.1", "017700000001", "0x7f.0.0.1", "0x7f000001", "0X7F.1", "127.1",
            "127.0.1", "10.1", "0", "00", "0x0", "0x", "0xffffffff", "4294967295", "4294967296", "0x100000000",
            "256.1.1.1", "1.2.3.4.5", "08", "0.0.0.08", "1.2.3.0x", "0x7f.0x0.0x0.0x1", "0177.0x0.0.01", "1.2.65535",
            "1.2.65536", "1.16777215", "1.16777216", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518",
            "00000000000000000000127.1", "0x00000000000000007f.1", "1.2.3.4 ", "1.2.3.4\t", "1.2.3.4 junk",
        ])
    func agreesWithInetAton(text: String) {
        var raw = in_addr()
        guard inet_aton(text, &raw) != 0 else { return }
        let expected = IPAddress.v4(UInt32(bigEndian: raw.s_addr))
        switch try? ParsedHost(text) {
        case .address(let address): #expect(address == expected, "\(text)")
        case .name: Issue.record("\(text.debugDescription) is \(expected) to inet_aton but a name here")
        case nil: break
        }
    }
}

@Suite struct AddressPolicyTests {
    let policy = AddressPolicy.default

    /// Hosts that spell a blocked address in some encoding, with the address they mean.
    @Test(
        "blocked addresses are refused in every encoding",
        arguments: [
            ("127.0.0.1", "127.0.0.1"), ("127.255.255.254", "127.255.255.254"),
            ("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("017700000001", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0177.0x0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"), ("127.0.1", "127.0.0.1"), ("0x7F.1", "127.0.0.1"), ("127.0.0.1.", "127.0.0.1"),
            ("%31%32%37.0.0.1", "127.0.0.1"), ("0", "0.0.0.0"), ("0.0.0.0", "0.0.0.0"), ("0x0", "0.0.0.0"),
            ("10.1", "10.0.0.1"), ("10.0.0.1", "10.0.0.1"), ("10.255.255.255", "10.255.255.255"),
            ("167772161", "10.0.0.1"), ("012.0.0.1", "10.0.0.1"),
            ("100.64.0.1", "100.64.0.1"), ("100.127.255.255", "100.127.255.255"), ("100.100.100.200", "100.100.100.200"),
            ("169.254.169.254", "169.254.169.254"), ("2852039166", "169.254.169.254"), ("0xa9fea9fe", "169.254.169.254"),
            ("0251.0376.0251.0376", "169.254.169.254"), ("169.254.43518", "169.254.169.254"),
            ("169.254.170.2", "169.254.170.2"), ("169.254.0.1", "169.254.0.1"),
            ("172.16.0.1", "172.16.0.1"), ("172.31.255.255", "172.31.255.255"), ("0xac100001", "172.16.0.1"),
            ("192.0.0.1", "192.0.0.1"), ("192.0.0.192", "192.0.0.192"), ("192.0.2.1", "192.0.2.1"),
            ("192.88.99.1", "192.88.99.1"), ("192.168.0.1", "192.168.0.1"), ("192.168.1.1", "192.168.1.1"),
            ("3232235777", "192.168.1.1"), ("0xc0a80101", "192.168.1.1"), ("0300.0250.1.1", "192.168.1.1"),
            ("192.168.257", "192.168.1.1"), ("198.18.0.1", "198.18.0.1"), ("198.19.255.255", "198.19.255.255"),
            ("198.51.100.7", "198.51.100.7"), ("203.0.113.9", "203.0.113.9"), ("224.0.0.1", "224.0.0.1"),
            ("239.255.255.250", "239.255.255.250"), ("240.0.0.1", "240.0.0.1"), ("255.255.255.254", "255.255.255.254"),
            ("255.255.255.255", "255.255.255.255"), ("4294967295", "255.255.255.255"),
            ("[::]", "::"), ("::", "::"), ("[::1]", "::1"), ("::1", "::1"), ("[0:0:0:0:0:0:0:1]", "::1"),
            ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"), ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
            ("[0:0:0:0:0:ffff:127.0.0.1]", "::ffff:127.0.0.1"), ("[::FFFF:7F00:1]", "::ffff:127.0.0.1"),
            ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254"), ("[::ffff:a9fe:a9fe]", "::ffff:169.254.169.254"),
            ("[::ffff:10.0.0.1]", "::ffff:10.0.0.1"), ("[::ffff:0.0.0.0]", "::ffff:0.0.0.0"),
            ("[::127.0.0.1]", "::7f00:1"), ("[::169.254.169.254]", "::a9fe:a9fe"), ("[::2]", "::2"),
            ("[64:ff9b::127.0.0.1]", "64:ff9b::7f00:1"), ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"),
            ("[64:ff9b:1::8.8.8.8]", "64:ff9b:1::808:808"), ("[2002:7f00:1::]", "2002:7f00:1::"),
            ("[2002:c0a8:101::1]", "2002:c0a8:101::1"), ("[2002:a9fe:a9fe::]", "2002:a9fe:a9fe::"),
            ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            ("[100::1]", "100::1"), ("[2001:db8::1]", "2001:db8::1"), ("[3fff::1]", "3fff::1"),
            ("[fc00::1]", "fc00::1"), ("[fd00:ec2::254]", "fd00:ec2::254"), ("[fd12:3456::1]", "fd12:3456::1"),
            ("[fe80::1]", "fe80::1"), ("[fe80::1%25eth0]", "fe80::1"), ("fe80::1%eth0", "fe80::1"),
            ("[FEBF::1]", "febf::1"), ("[fec0::1]", "fec0::1"), ("[ff02::1]", "ff02::1"), ("[ff05::1:3]", "ff05::1:3"),
            ("[::ffff:0:127.0.0.1]", "::ffff:0:7f00:1"), ("[4000::1]", "4000::1"), ("[1::1]", "1::1"),
        ])
    func blockedEncodings(host: String, address: String) async {
        guard case .refused(.blockedAddress(let named, let found, _)) = policy.check(host: host) else {
            Issue.record("\(host) was not refused: \(policy.check(host: host))")
            return
        }
        #expect(named == host)
        #expect(found == ip(address))
        #expect(policy.check(address: ip(address), host: host) != .allowed)
        // The same host inside a URL: Foundation strips the brackets and keeps %-escapes; still refused,
        // and never handed to the resolver as a name.
        if let url = URL(string: "http://\(host)/") {
            let error = await #expect(throws: SSRFError.self) {
                try await policy.vet(url: url, resolver: AnswersEverythingPublic())
            }
            switch error {
            case .blockedAddress?, .invalidHost?: break
            default: Issue.record("\(url): \(String(describing: error))")
            }
        }
    }

    @Test(
        "reasons",
        arguments: [
            ("127.0.0.1", BlockReason.loopback), ("::1", .loopback), ("0.0.0.0", .unspecified), ("::", .unspecified),
            ("10.0.0.1", .privateNetwork), ("172.20.0.1", .privateNetwork), ("192.168.0.1", .privateNetwork),
            ("100.64.0.1", .sharedAddressSpace), ("169.254.169.254", .cloudMetadata), ("169.254.1.1", .linkLocal),
            ("fd00:ec2::254", .cloudMetadata), ("192.0.0.8", .ietfProtocolAssignment), ("192.0.2.1", .documentation),
            ("192.88.99.1", .relayAnycast), ("198.18.0.1", .benchmarking), ("224.0.0.1", .multicast),
            ("240.0.0.1", .reserved), ("255.255.255.255", .broadcast), ("fc00::1", .uniqueLocal),
            ("fec0::1", .siteLocal), ("fe80::1", .linkLocal), ("2001::1", .teredo), ("100::1", .discardOnly),
            ("2001:db8::1", .documentation), ("ff02::1", .multicast), ("64:ff9b:1::1", .localNAT64),
            ("::ffff:127.0.0.1", .embedded(.ipv4Mapped, ip("127.0.0.1"), .loopback)),
            ("::127.0.0.1", .embedded(.ipv4Compatible, ip("127.0.0.1"), .loopback)),
            ("64:ff9b::169.254.169.254", .embedded(.nat64, ip("169.254.169.254"), .cloudMetadata)),
            ("2002:c0a8:101::", .embedded(.sixToFour, ip("192.168.1.1"), .privateNetwork)),
            ("::ffff:0:7f00:1", .reserved),
        ])
    func reasons(address: String, reason: BlockReason) {
        #expect(AddressPolicy.denyReason(for: ip(address)) == reason)
        #expect(policy.check(address: ip(address), host: "h.example") == .blocked(reason))
    }

    @Test(
        "public addresses are allowed",
        arguments: [
            "8.8.8.8", "1.1.1.1", "93.184.216.34", "134744072", "0x08080808", "[2606:4700:4700::1111]",
            "2606:4700:4700::1111", "[2001:4860:4860::8888]", "[2a00:1450:4001::1]", "[::ffff:8.8.8.8]",
            "[64:ff9b::8.8.8.8]", "[2002:808:808::1]", "[::8.8.8.8]",
            "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "126.255.255.255", "128.0.0.0",
            "169.253.255.255", "169.255.0.0", "172.15.255.255", "172.32.0.0", "192.0.1.255", "192.0.3.0",
            "192.88.98.255", "192.88.100.0", "192.167.255.255", "192.169.0.0", "198.17.255.255", "198.20.0.0",
            "198.51.99.255", "198.51.101.0", "203.0.112.255", "203.0.114.0", "223.255.255.255",
            "[2001:1::1]", "[2001:db7:ffff::1]", "[2001:db9::1]", "[3ffe::1]", "[3fff:1000::1]",
        ])
    func publicAllowed(host: String) async throws {
        guard case .address(let address) = policy.check(host: host) else {
            Issue.record("\(host) was refused: \(policy.check(host: host))")
            return
        }
        #expect(AddressPolicy.denyReason(for: address) == nil)
        let destination = try await policy.vet(scheme: "https", host: host, port: nil, resolver: StubResolver(answers: [:]))
        #expect(destination.addresses == [address])
        #expect(destination.port == 443)
    }

    @Test(
        "blocked names are refused before DNS",
        arguments: [
            "localhost", "LOCALHOST", "localhost.", "LocalHost.", "foo.localhost", "a.b.localhost.", "ip6-localhost",
            "ip6-loopback", "localhost.localdomain", "metadata.google.internal", "METADATA.GOOGLE.INTERNAL.",
            "metadata", "instance-data", "%6c%6f%63%61%6c%68%6f%73%74",
        ])
    func blockedNames(host: String) async {
        guard case .refused(.blockedHost(let named, _)) = policy.check(host: host) else {
            Issue.record("\(host) was not refused by name: \(policy.check(host: host))")
            return
        }
        #expect(named == host)
        // Refused without asking the resolver, which would answer with a public address.
        let error = await #expect(throws: SSRFError.self) {
            try await policy.vet(scheme: "http", host: host, port: nil, resolver: AnswersEverythingPublic())
        }
        guard case .blockedHost(host, _)? = error else {
            Issue.record("\(host): \(String(describing: error))")
            return
        }
    }

    @Test(
        "other names need resolving",
        arguments: [
            ("example.com", "example.com"), ("Example.COM.", "example.com"), ("localhost.example.com", "localhost.example.com"),
            ("mylocalhost", "mylocalhost"), ("metadata.example", "metadata.example"),
        ])
    func needsResolution(host: String, name: String) {
        #expect(policy.check(host: host) == .needsResolution(name))
    }

    // MARK: Resolution

    @Test("every resolved address must pass; one bad address refuses the name")
    func allResolvedAddressesChecked() async throws {
        let resolver = StubResolver(answers: [
            "public.test": [ip("93.184.216.34"), ip("2606:4700:4700::1111"), ip("93.184.216.34")],
            "rebind.test": [ip("93.184.216.34"), ip("127.0.0.1")],
            "rebind6.test": [ip("2606:4700:4700::1111"), ip("::ffff:169.254.169.254")],
            "private.test": [ip("10.0.0.7")],
            "empty.test": [],
        ])
        let ok = try await policy.vet(url: URL(string: "http://PUBLIC.test.:8080/x")!, resolver: resolver)
        #expect(
            ok
                == AddressPolicy.Destination(
                    scheme: "http", host: "public.test", port: 8080,
                    addresses: [ip("93.184.216.34"), ip("2606:4700:4700::1111")]))
        #expect(ok.address == ip("93.184.216.34"))

        await #expect(throws: SSRFError.blockedAddress(host: "rebind.test", address: ip("127.0.0.1"), reason: .loopback)) {
            try await policy.vet(url: URL(string: "https://rebind.test/")!, resolver: resolver)
        }
        await #expect(
            throws: SSRFError.blockedAddress(
                host: "rebind6.test", address: ip("::ffff:169.254.169.254"),
                reason: .embedded(.ipv4Mapped, ip("169.254.169.254"), .cloudMetadata))
        ) {
            try await policy.vet(url: URL(string: "https://rebind6.test/")!, resolver: resolver)
        }
        await #expect(throws: SSRFError.blockedAddress(host: "private.test", address: ip("10.0.0.7"), reason: .privateNetwork)) {
            try await policy.vet(url: URL(string: "https://private.test/")!, resolver: resolver)
        }
        await #expect(throws: SSRFError.resolutionFailed(host: "empty.test", detail: "no addresses")) {
            try await policy.vet(url: URL(string: "https://empty.test/")!, resolver: resolver)
        }
        await #expect(throws: SSRFError.resolutionFailed(host: "missing.test", detail: "Name or service not known")) {
            try await policy.vet(url: URL(string: "https://missing.test/")!, resolver: resolver)
        }
    }

    @Test("the system resolver finds localhost, and its addresses are refused")
    func systemResolverLocalhost() async throws {
        let addresses = try await SystemResolver().resolve(host: "localhost", port: 80)
        #expect(!addresses.isEmpty)
        for address in addresses {
            #expect(policy.check(address: address, host: "localhost") == .blocked(.loopback))
        }
        let error = await #expect(throws: SSRFError.self) {
            try await policy.vet(url: URL(string: "http://alias-of-localhost.test/")!, resolver: LocalhostAliasResolver())
        }
        guard case .blockedAddress(let host, _, let reason) = error else {
            Issue.record("unexpected \(String(describing: error))")
            return
        }
        #expect(host == "alias-of-localhost.test")
        #expect(reason == .loopback)
        // The default resolver: localhost is refused by name before any lookup.
        await #expect(throws: SSRFError.blockedHost(host: "localhost", reason: "a loopback name")) {
            try await policy.vet(url: URL(string: "http://localhost:8443/")!)
        }
    }

    @Test("the system resolver reads numeric hosts without DNS")
    func systemResolverNumeric() async throws {
        #expect(try await SystemResolver().resolve(host: "127.0.0.1", port: 80) == [ip("127.0.0.1")])
        #expect(try await SystemResolver().resolve(host: "::1", port: 80) == [ip("::1")])
        #if canImport(Glibc)
            // glibc's getaddrinfo takes inet_aton forms: this is why they must never pass as names.
            #expect(try await SystemResolver().resolve(host: "0x7f.1", port: 80) == [ip("127.0.0.1")])
            #expect(try await SystemResolver().resolve(host: "2130706433", port: 80) == [ip("127.0.0.1")])
        #endif
    }

    // MARK: Schemes and ports

    @Test(
        "only http and https",
        arguments: [
            ("file:///etc/passwd", "file"), ("gopher://127.0.0.1:25/_HELO", "gopher"), ("ftp://example.com/", "ftp"),
            ("data:text/plain,hi", "data"), ("javascript:alert(1)", "javascript"), ("dict://localhost:11211/stat", "dict"),
            ("ldap://example.com/", "ldap"), ("FILE://localhost/etc/passwd", "file"), ("ws://example.com/", "ws"),
            ("//example.com/", ""),
        ])
    func schemes(url: String, scheme: String) async {
        await #expect(throws: SSRFError.unsupportedScheme(scheme)) {
            try await policy.vet(url: URL(string: url)!, resolver: StubResolver(answers: ["example.com": [ip("8.8.8.8")]]))
        }
    }

    @Test func schemesAndPorts() async throws {
        let resolver = StubResolver(answers: [:])
        #expect(try await policy.vet(url: URL(string: "HTTP://8.8.8.8/")!, resolver: resolver).port == 80)
        #expect(try await policy.vet(url: URL(string: "https://8.8.8.8:8443/")!, resolver: resolver).port == 8443)
        #expect(
            try await policy.vet(url: URL(string: "https://[2606:4700:4700::1111]/")!, resolver: resolver).address
                == ip("2606:4700:4700::1111"))
        await #expect(throws: SSRFError.invalidPort(0)) {
            try await policy.vet(url: URL(string: "http://8.8.8.8:0/")!, resolver: resolver)
        }
        await #expect(throws: SSRFError.invalidPort(70000)) {
            try await policy.vet(scheme: "http", host: "8.8.8.8", port: 70000, resolver: resolver)
        }
        await #expect(throws: SSRFError.invalidHost(host: "", reason: "the URL has no host")) {
            try await policy.vet(url: URL(string: "http:/127.0.0.1/")!, resolver: resolver)
        }
        // Userinfo does not change the host that is checked.
        await #expect(throws: SSRFError.self) {
            try await policy.vet(url: URL(string: "http://8.8.8.8@127.0.0.1/")!, resolver: resolver)
        }
    }

    // MARK: Allowlist

    @Test func allowlistOpensExactlyItsRanges() throws {
        let allowing = try AddressPolicy(allow: [
            "10.0.0.5/32", "192.168.10.0/24", " fd00:ec2::/32 ", "[::1]", "127.0.0.2", "Internal.Example.com.",
        ])
        let cases: [(String, Bool)] = [
            ("10.0.0.5", true), ("0x0a000005", true), ("10.5", true), ("167772165", true), ("[::ffff:10.0.0.5]", true),
            ("[64:ff9b::10.0.0.5]", true), ("10.0.0.4", false), ("10.0.0.6", false), ("10.0.0.0", false),
            ("192.168.10.0", true), ("192.168.10.255", true), ("192.168.9.255", false), ("192.168.11.0", false),
            ("[fd00:ec2::254]", true), ("[fd00:ec3::1]", false), ("[::1]", true), ("127.0.0.1", false),
            ("127.0.0.2", true), ("127.0.0.3", false), ("169.254.169.254", false), ("8.8.8.8", true),
        ]
        for (host, allowed) in cases {
            let verdict = allowing.check(host: host)
            if allowed {
                guard case .address = verdict else {
                    Issue.record("\(host) should be allowed: \(verdict)")
                    continue
                }
            } else {
                guard case .refused(.blockedAddress) = verdict else {
                    Issue.record("\(host) should be blocked: \(verdict)")
                    continue
                }
            }
        }
        #expect(allowing.allowedNames == ["internal.example.com"])
        #expect(
            allowing.allowedRanges.map(\.description) == ["10.0.0.5/32", "192.168.10.0/24", "fd00:ec2::/32", "::1/128", "127.0.0.2/32"])
    }

    @Test func allowlistedNames() async throws {
        let allowing = try AddressPolicy(allow: ["internal.example.com", "localhost"])
        #expect(allowing.check(host: "INTERNAL.example.com.") == .needsResolution("internal.example.com"))
        #expect(allowing.check(host: "localhost") == .needsResolution("localhost"))
        #expect(allowing.check(host: "foo.localhost") != .needsResolution("foo.localhost"))
        #expect(allowing.check(address: ip("10.1.2.3"), host: "internal.example.com") == .allowed)
        #expect(allowing.check(address: ip("10.1.2.3"), host: "Internal.Example.COM.") == .allowed)
        #expect(allowing.check(address: ip("10.1.2.3"), host: "other.example.com") == .blocked(.privateNetwork))
        #expect(allowing.check(address: ip("10.1.2.3"), host: "sub.internal.example.com") == .blocked(.privateNetwork))

        let resolver = StubResolver(answers: [
            "internal.example.com": [ip("10.1.2.3")], "other.example.com": [ip("10.1.2.3")],
        ])
        let destination = try await allowing.vet(url: URL(string: "https://internal.example.com/api")!, resolver: resolver)
        #expect(destination.addresses == [ip("10.1.2.3")])
        #expect(destination.host == "internal.example.com")
        await #expect(throws: SSRFError.blockedAddress(host: "other.example.com", address: ip("10.1.2.3"), reason: .privateNetwork)) {
            try await allowing.vet(url: URL(string: "https://other.example.com/")!, resolver: resolver)
        }
        // An allowed name still has to resolve.
        await #expect(throws: SSRFError.self) {
            try await allowing.vet(url: URL(string: "https://internal.example.com/")!, resolver: StubResolver(answers: [:]))
        }
        // The allowlist of names does not open addresses written as literals.
        #expect(allowing.check(host: "10.1.2.3") != .address(ip("10.1.2.3")))
    }

    @Test(
        "invalid allowlist entries are reported with the entry",
        arguments: [
            "", "   ", "10.0.0.5/33", "10.0.0.5/8", "10.0.0.0/", "10.0.0.0/a", "10.0.0.0/-1", "10.0.0.0/8/8",
            "256.0.0.0/8", "127.1", "0x7f.0.0.1", "2130706433", "127.0.0.1.", "1.2.3.4.5", "fd00::/129", "fd00::1/8",
            "::1/", "[::1", "fe80::1%eth0", "*.example.com", "exa mple.com", "http://example.com", "a..b", "%zz",
            "example.com:8080", "1.2.3/24",
        ])
    func invalidAllowlist(entry: String) {
        #expect(throws: AllowlistError.self) { try AddressPolicy(allow: ["8.8.8.8/32", entry, "example.com"]) }
        do {
            _ = try AddressPolicy(allow: ["8.8.8.8/32", entry, "example.com"])
        } catch {
            guard case .invalidEntry(let bad, let reason) = error else { return }
            #expect(bad == entry)
            #expect(!reason.isEmpty)
        }
    }

    // MARK: Messages

    @Test func messages() {
        let loopback = SSRFError.blockedAddress(host: "localhost", address: ip("127.0.0.1"), reason: .loopback)
        #expect(
            loopback.description == "The address 127.0.0.1 of host 'localhost' is loopback; requests to private, "
                + "loopback, link-local and metadata addresses are blocked. An operator can allow it with --http-allow.")
        guard case .refused(let mapped) = policy.check(host: "[::ffff:169.254.169.254]") else {
            Issue.record("not refused")
            return
        }
        #expect(
            mapped.description.hasPrefix(
                "The address ::ffff:169.254.169.254 of host '[::ffff:169.254.169.254]' is "
                    + "an IPv4-mapped address for 169.254.169.254, which is a cloud metadata service; "))
        guard case .refused(let named) = policy.check(host: "metadata.google.internal") else {
            Issue.record("not refused")
            return
        }
        #expect(named.description.hasPrefix("The host 'metadata.google.internal' is a cloud metadata service name; "))
        guard case .refused(let invalid) = policy.check(host: "256.1.1.1") else {
            Issue.record("not refused")
            return
        }
        #expect(
            invalid.description == "The host '256.1.1.1' is not a valid host name or IP address: "
                + "'256' is out of range for an IPv4 part (0 to 255).")
        // Control characters in a host cannot forge log lines.
        guard case .refused(let forged) = policy.check(host: "a\nERROR fake") else {
            Issue.record("not refused")
            return
        }
        #expect(!forged.description.contains("\n"))
        #expect(
            SSRFError.unsupportedScheme("file").description
                == "The URL scheme 'file' is not allowed; only http and https URLs can be requested.")
        #expect(AllowlistError.invalidEntry(entry: "10.0.0.5/8", reason: "x").description.contains("'10.0.0.5/8'"))
    }
}
