import Foundation

/// The host of a URL, read the way URL parsers (WHATWG) and C resolvers (`inet_aton`, `getaddrinfo`)
/// read it, so that no encoding of an IP address is mistaken for a host name:
///
/// - IPv6 in brackets or bare, any case, with an optional zone id (`[fe80::1%25eth0]`,
///   `fe80::1%eth0`, `[::ffff:127.0.0.1]`); the zone id is checked and dropped.
/// - Percent-encoded hosts are decoded first (`%31%32%37.0.0.1`).
/// - IPv4 in every `inet_aton` form: one to four parts, each decimal, octal (leading `0`) or hex
///   (`0x`), the last part filling the remaining bytes (`2130706433`, `0177.0.0.1`, `0x7f.1`,
///   `127.1`), with an optional trailing dot.
/// - A host whose last label is a number is always an IPv4 address; if it is not a valid one
///   (`256.1.1.1`, `0x100000000`, `1.2.3.4.5`) the host is invalid, never a name.
/// - Names are ASCII letters, digits, `-` and `_` in dot-separated labels; they come back in lower
///   case without the trailing dot. Anything else (spaces, `%`, `@`, non-ASCII, empty labels) is an
///   invalid host: internationalized names must be given in their `xn--` form.
public enum ParsedHost: Sendable, Hashable {
    case address(IPAddress)
    case name(String)

    /// Throws `SSRFError.invalidHost` naming the host and what is wrong with it.
    public init(_ host: String) throws(SSRFError) {
        func invalid(_ reason: String) -> SSRFError { .invalidHost(host: host, reason: reason) }
        guard !host.isEmpty else { throw invalid("the host is empty") }
        guard host.utf8.count <= 1024 else { throw invalid("the host is too long") }

        var text = Substring(host)
        let bracketed = text.hasPrefix("[")
        if bracketed {
            guard text.count >= 2, text.hasSuffix("]") else { throw invalid("the '[' of an IPv6 address has no matching ']'") }
            text = text.dropFirst().dropLast()
        }
        if bracketed || text.contains(":") {
            self = .address(try ParsedHost.ipv6(text, invalid))
            return
        }

        // Percent-decoding comes before everything else, as in URL parsers.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(), ASCII.isHexDigit(high), ASCII.isHexDigit(low) else {
                throw invalid("'%' is not followed by two hex digits")
            }
            bytes.append(ASCII.hexValue(high) << 4 | ASCII.hexValue(low))
        }
        for (index, byte) in bytes.enumerated() {
            if byte >= 0x80 { throw invalid("it contains non-ASCII characters; write internationalized names in their xn-- form") }
            if byte >= UInt8(ascii: "A"), byte <= UInt8(ascii: "Z") {
                bytes[index] = byte | 0x20
                continue
            }
            let allowed =
                ASCII.isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
            if !allowed { throw invalid("it contains the character \(ParsedHost.describe(byte))") }
        }

        var labels = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        if labels.count > 1, labels.last?.isEmpty == true { labels.removeLast() } // one trailing dot
        if let last = labels.last, ParsedHost.isNumber(last) {
            self = .address(.v4(try ParsedHost.ipv4(labels, invalid)))
            return
        }
        guard !labels.contains(where: \.isEmpty) else { throw invalid("it has an empty label") }
        guard !labels.contains(where: { $0.count > 63 }) else { throw invalid("a label is longer than 63 characters") }
        let name = String(decoding: Array(labels.joined(separator: [UInt8(ascii: ".")])), as: UTF8.self)
        guard name.utf8.count <= 253 else { throw invalid("the name is longer than 253 characters") }
        self = .name(name)
    }

    // MARK: - IPv4 in inet_aton forms

    /// WHATWG "ends in a number": all digits, or `0x` followed by hex digits (possibly none).
    static func isNumber(_ label: ArraySlice<UInt8>) -> Bool {
        guard !label.isEmpty else { return false }
        if label.allSatisfy(ASCII.isDigit) { return true }
        return label.count >= 2 && label.first == UInt8(ascii: "0") && label.dropFirst().first == UInt8(ascii: "x")
            && label.dropFirst(2).allSatisfy(ASCII.isHexDigit)
    }

    /// One to four numeric parts; all but the last at most 255, the last filling the bytes left.
    static func ipv4(_ parts: [ArraySlice<UInt8>], _ invalid: (String) -> SSRFError) throws(SSRFError) -> UInt32 {
        guard parts.count <= 4 else { throw invalid("an IPv4 address has at most four parts") }
        var numbers: [UInt64] = []
        for part in parts {
            guard let number = ipv4Number(part) else {
                let text = String(decoding: part, as: UTF8.self)
                throw invalid(part.isEmpty ? "an IPv4 address cannot have an empty part" : "'\(text)' is not a valid IPv4 part")
            }
            guard number <= UInt64(UInt32.max) else {
                throw invalid("'\(String(decoding: part, as: UTF8.self))' is out of range for an IPv4 address")
            }
            numbers.append(number)
        }
        for (index, number) in numbers.dropLast().enumerated() where number > 255 {
            throw invalid("'\(String(decoding: parts[index], as: UTF8.self))' is out of range for an IPv4 part (0 to 255)")
        }
        let lastBits = 8 * (5 - numbers.count)
        guard numbers[numbers.count - 1] < UInt64(1) << lastBits else {
            throw invalid(
                "'\(String(decoding: parts[parts.count - 1], as: UTF8.self))' is out of range for the last part of this IPv4 address")
        }
        var value = numbers[numbers.count - 1]
        for (index, number) in numbers.dropLast().enumerated() { value |= number << (8 * (3 - index)) }
        return UInt32(value)
    }

    /// Decimal, octal (leading 0) or hex (0x, digits optional); nil if malformed. Values beyond 32 bits
    /// come back as `UInt32.max + 1` so the caller reports them as out of range.
    static func ipv4Number(_ part: ArraySlice<UInt8>) -> UInt64? {
        guard !part.isEmpty else { return nil }
        var digits = part
        var radix: UInt64 = 10
        if part.count >= 2, part.first == UInt8(ascii: "0"), part.dropFirst().first == UInt8(ascii: "x") {
            radix = 16
            digits = part.dropFirst(2)
        } else if part.count >= 2, part.first == UInt8(ascii: "0") {
            radix = 8
            digits = part.dropFirst()
        }
        let tooLarge = UInt64(UInt32.max) + 1
        var value: UInt64 = 0
        for byte in digits {
            let digit: UInt64
            switch radix {
            case 16:
                guard ASCII.isHexDigit(byte) else { return nil }
                digit = UInt64(ASCII.hexValue(byte))
            case 8:
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "7") else { return nil }
                digit = UInt64(byte - UInt8(ascii: "0"))
            default:
                guard ASCII.isDigit(byte) else { return nil }
                digit = UInt64(byte - UInt8(ascii: "0"))
            }
            value = min(value * radix + digit, tooLarge)
        }
        return value
    }

    // MARK: - IPv6 with an optional zone id

    static func ipv6(_ text: Substring, _ invalid: (String) -> SSRFError) throws(SSRFError) -> IPAddress {
        var addressText = text
        if let percent = text.firstIndex(of: "%") {
            addressText = text[..<percent]
            var zone = text[text.index(after: percent)...]
            if zone.hasPrefix("25") { zone = zone.dropFirst(2) } // RFC 6874: "%25" in URLs
            let zoneOK =
                !zone.isEmpty && zone.utf8.count <= 64
                && zone.utf8.allSatisfy {
                    ASCII.isDigit($0) || ($0 | 0x20 >= UInt8(ascii: "a") && $0 | 0x20 <= UInt8(ascii: "z"))
                        || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "~")
                }
            guard zoneOK else { throw invalid("the IPv6 zone id is not valid") }
        }
        guard let value = IPAddress.parseIPv6(Array(addressText.utf8)[...]) else {
            throw invalid("it is not a valid IPv6 address")
        }
        return .v6(value)
    }

    static func describe(_ byte: UInt8) -> String {
        if byte >= 0x21, byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "0x" + String(byte, radix: 16, uppercase: true)
    }
}
