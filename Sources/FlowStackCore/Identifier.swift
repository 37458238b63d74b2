/// Random, prefixed identifiers such as `usr_01hx…`.
///
/// The prefix names the kind of resource, so an ID pasted in the wrong place is easy to spot;
/// the 128 random bits make IDs unguessable, so they never leak how many rows exist.
public enum Identifier {
    private static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")

    /// A new identifier: `prefix` + `_` + 26 base32 characters (128 random bits).
    public static func make(_ prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        var bits = (generator.next() as UInt64, generator.next() as UInt64)
        var chars: [Character] = []
        chars.reserveCapacity(26)
        for _ in 0..<26 {
            let index = Int(bits.0 & 31)
            chars.append(alphabet[index])
            bits.0 = (bits.0 >> 5) | ((bits.1 & 31) << 59)
            bits.1 >>= 5
        }
        return prefix + "_" + String(chars)
    }

    /// Whether `value` has the shape of an identifier with `prefix`.
    public static func isValid(_ value: String, prefix: String) -> Bool {
        guard value.hasPrefix(prefix + "_") else { return false }
        let rest = value.dropFirst(prefix.count + 1)
        return rest.count == 26 && rest.allSatisfy { alphabet.contains($0) }
    }
}
