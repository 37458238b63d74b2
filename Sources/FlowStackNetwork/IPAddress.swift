import Foundation

/// An IP address. IPv4 is a 32-bit number and IPv6 a 128-bit number (16 bytes), both with the first
/// byte of the address as the most significant, so `.v4(0x7F00_0001)` is 127.0.0.1 and
/// `.v6(1)` is `::1`.
///
/// `init?(_:)` parses only the strict textual forms (RFC 791 dotted quad with four decimal parts,
/// RFC 4291 IPv6 text without brackets or zone). Hosts taken from URLs, which can be written in many
/// more encodings, go through `ParsedHost` instead.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(UInt32)
    case v6(UInt128)

    /// Parses `a.b.c.d` (four decimal parts, no leading zeros) or an IPv6 address in RFC 4291 text
    /// form (hex groups, `::`, optional trailing dotted quad). No brackets, no zone id.
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        if let v4 = IPAddress.parseDottedQuad(bytes[...]) {
            self = .v4(v4)
        } else if let v6 = IPAddress.parseIPv6(bytes[...]) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    /// An IPv6 address from its 16 bytes in network order; nil for any other count.
    public init?(v6Bytes bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var value: UInt128 = 0
        for byte in bytes { value = value << 8 | UInt128(byte) }
        self = .v6(value)
    }

    /// The address in network order: 4 bytes for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let value): return (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * (3 - $0))) }
        case .v6(let value): return (0..<16).map { UInt8(truncatingIfNeeded: value >> (8 * (15 - $0))) }
        }
    }

    public var isIPv4: Bool {
        if case .v4 = self { return true }
        return false
    }

    /// Dotted quad for IPv4; RFC 5952 canonical text for IPv6 (lower case, the longest run of two or
    /// more zero groups shortened to `::`, IPv4-mapped addresses as `::ffff:a.b.c.d`).
    public var description: String {
        switch self {
        case .v4(let value):
            return IPAddress.dottedQuad(value)
        case .v6(let value):
            if value >> 32 == 0xFFFF {
                return "::ffff:" + IPAddress.dottedQuad(UInt32(truncatingIfNeeded: value))
            }
            let groups = (0..<8).map { UInt16(truncatingIfNeeded: value >> (16 * (7 - $0))) }
            var bestStart = -1
            var bestLength = 0
            var index = 0
            while index < 8 {
                guard groups[index] == 0 else {
                    index += 1
                    continue
                }
                let start = index
                while index < 8, groups[index] == 0 { index += 1 }
                if index - start > bestLength {
                    bestStart = start
                    bestLength = index - start
                }
            }
            let hex = groups.map { String($0, radix: 16) }
            guard bestLength >= 2 else { return hex.joined(separator: ":") }
            let head = hex[..<bestStart].joined(separator: ":")
            let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
            return head + "::" + tail
        }
    }

    static func dottedQuad(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }

    // MARK: - Strict parsers (shared with the host parser and the allowlist)

    /// Exactly four decimal parts 0...255, each 1...3 digits without leading zeros ("0" is fine).
    static func parseDottedQuad(_ bytes: ArraySlice<UInt8>) -> UInt32? {
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var result: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy(ASCII.isDigit) else { return nil }
            if part.count > 1, part.first == UInt8(ascii: "0") { return nil }
            let value = part.reduce(UInt32(0)) { $0 * 10 + UInt32($1 - UInt8(ascii: "0")) }
            guard value <= 255 else { return nil }
            result = result << 8 | value
        }
        return result
    }

    /// RFC 4291 section 2.2 text: eight groups of 1...4 hex digits, at most one `::` standing for one
    /// or more zero groups, and optionally a dotted quad in place of the last two groups.
    static func parseIPv6(_ bytes: ArraySlice<UInt8>) -> UInt128? {
        let b = Array(bytes)
        guard !b.isEmpty, b.count <= 45 else { return nil }
        let colon = UInt8(ascii: ":")
        var groups: [UInt16] = []
        var compressAt: Int?
        var i = 0
        if b[0] == colon {
            guard b.count >= 2, b[1] == colon else { return nil }
            compressAt = 0
            i = 2
        }
        while i < b.count {
            let start = i
            while i < b.count, ASCII.isHexDigit(b[i]) { i += 1 }
            if i < b.count, b[i] == UInt8(ascii: ".") {
                guard let quad = parseDottedQuad(b[start...]) else { return nil }
                groups.append(UInt16(truncatingIfNeeded: quad >> 16))
                groups.append(UInt16(truncatingIfNeeded: quad))
                i = b.count
                break
            }
            guard (1...4).contains(i - start) else { return nil }
            groups.append(b[start..<i].reduce(UInt16(0)) { $0 << 4 | UInt16(ASCII.hexValue($1)) })
            guard groups.count <= 8 else { return nil }
            if i == b.count { break }
            guard b[i] == colon else { return nil }
            i += 1
            if i < b.count, b[i] == colon {
                guard compressAt == nil else { return nil }
                compressAt = groups.count
                i += 1
            } else if i == b.count {
                return nil // a single trailing colon
            }
        }
        if let at = compressAt {
            guard groups.count <= 7 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: at)
        }
        guard groups.count == 8 else { return nil }
        return groups.reduce(UInt128(0)) { $0 << 16 | UInt128($1) }
    }
}

/// A CIDR range such as `10.0.0.0/8` or `fd00::/8`; a bare address is a range of one.
public struct IPRange: Sendable, Hashable, CustomStringConvertible {
    /// The first address of the range (host bits are zero).
    public let network: IPAddress
    public let prefixLength: Int

    /// Strict: the address must be in `IPAddress` text form, the prefix 0...32 or 0...128 in decimal,
    /// and the host bits must be zero (`10.0.0.5/8` is refused as a likely typo).
    public init?(_ text: String) {
        guard case .success(let range) = IPRange.parse(text) else { return nil }
        self = range
    }

    init(network: IPAddress, prefixLength: Int) {
        self.network = network
        self.prefixLength = prefixLength
    }

    public func contains(_ address: IPAddress) -> Bool {
        switch (network, address) {
        case (.v4(let base), .v4(let value)):
            return value & IPRange.mask32(prefixLength) == base
        case (.v6(let base), .v6(let value)):
            return value & IPRange.mask128(prefixLength) == base
        default:
            return false
        }
    }

    public var description: String { "\(network)/\(prefixLength)" }

    static func mask32(_ prefix: Int) -> UInt32 { prefix == 0 ? 0 : UInt32.max << (32 - prefix) }
    static func mask128(_ prefix: Int) -> UInt128 { prefix == 0 ? 0 : UInt128.max << (128 - prefix) }

    /// Parses with a reason on failure (used for allowlist error messages).
    static func parse(_ text: String) -> Result<IPRange, RangeSyntaxError> {
        var addressText = Substring(text)
        var prefixText: Substring?
        if let slash = text.firstIndex(of: "/") {
            addressText = text[..<slash]
            prefixText = text[text.index(after: slash)...]
        }
        if addressText.hasPrefix("["), addressText.hasSuffix("]"), addressText.count >= 2 {
            addressText = addressText.dropFirst().dropLast()
        }
        guard let address = IPAddress(String(addressText)) else {
            return .failure(RangeSyntaxError(reason: "'\(addressText)' is not an IPv4 address in a.b.c.d form or an IPv6 address"))
        }
        let maxPrefix = address.isIPv4 ? 32 : 128
        var prefix = maxPrefix
        if let prefixText {
            guard !prefixText.isEmpty, prefixText.count <= 3, prefixText.utf8.allSatisfy(ASCII.isDigit),
                let value = Int(prefixText), value <= maxPrefix
            else {
                return .failure(RangeSyntaxError(reason: "the prefix length must be a number from 0 to \(maxPrefix)"))
            }
            prefix = value
        }
        let network: IPAddress
        switch address {
        case .v4(let value): network = .v4(value & mask32(prefix))
        case .v6(let value): network = .v6(value & mask128(prefix))
        }
        guard network == address else {
            return .failure(
                RangeSyntaxError(reason: "the address has bits set outside the /\(prefix) prefix; did you mean \(network)/\(prefix)?"))
        }
        return .success(IPRange(network: network, prefixLength: prefix))
    }

    struct RangeSyntaxError: Error {
        let reason: String
    }
}

/// ASCII byte classes for the parsers in this folder.
enum ASCII {
    @inline(__always) static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    @inline(__always) static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
    }

    /// The value of a hex digit (the caller checked `isHexDigit`).
    @inline(__always) static func hexValue(_ byte: UInt8) -> UInt8 {
        isDigit(byte) ? byte - UInt8(ascii: "0") : (byte | 0x20) - UInt8(ascii: "a") + 10
    }
}
