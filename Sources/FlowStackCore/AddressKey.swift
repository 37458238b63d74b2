import Glibc

/// The key a client address is limited by: an IPv4 address as it is (also when written as an
/// IPv4-mapped IPv6 address), an IPv6 address by its /64, the smallest block one subscriber is
/// usually given, so that one holder of a /64 is one client and not 2^64 of them.
public enum AddressKey {
    public static func of(_ address: String) -> String {
        guard address.contains(":") else { return address }
        var raw = in6_addr()
        guard inet_pton(AF_INET6, address, &raw) == 1 else { return address }
        let bytes = withUnsafeBytes(of: &raw) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
            return bytes[12...].map(String.init).joined(separator: ".")
        }
        let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }
}
