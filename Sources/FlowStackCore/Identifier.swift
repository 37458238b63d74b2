import Foundation

/// Random, prefixed identifiers such as `usr_01hx…`.
///
/// The prefix names the kind of resource, so an ID pasted in the wrong place is easy to spot;
/// the random bits make IDs unguessable, so they never leak how many rows exist.
public enum Identifier {
    /// Ascending in ASCII, so identifiers sort as the numbers they encode.
    private static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz".utf8)

    /// A new identifier: `prefix` + `_` + 26 base32 characters (128 random bits).
    public static func make(_ prefix: String) -> String {
        let random = SystemRandom.bytes(16)
        var characters: [UInt8] = []
        characters.reserveCapacity(26)
        append(random, to: &characters)
        return prefix + "_" + String(decoding: characters, as: UTF8.self)
    }

    /// A new identifier of the same shape whose first 10 characters are `date` in milliseconds
    /// (50 bits, big-endian), followed by 80 random bits (16 characters).
    ///
    /// For rows written at a high rate (executions): new keys land at the end of the primary-key
    /// index instead of on a random page of it, so a group commit dirties a few pages rather
    /// than one per row. 80 random bits still cannot be guessed (OWASP asks 64 for session IDs),
    /// which matters because a waiting execution's resume URL is its ID; what the prefix shows
    /// is when the execution was created, to the millisecond, as its record does.
    public static func makeOrdered(_ prefix: String, at date: Date = Date()) -> String {
        let milliseconds = UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded(.down))) & (1 << 50 - 1)
        var characters: [UInt8] = []
        characters.reserveCapacity(26)
        for shift in stride(from: 45, through: 0, by: -5) {
            characters.append(alphabet[Int((milliseconds >> UInt64(shift)) & 31)])
        }
        append(SystemRandom.bytes(10), to: &characters)
        return prefix + "_" + String(decoding: characters, as: UTF8.self)
    }

    /// Appends `bytes` as base32 characters, five bits each (the last one zero-padded).
    private static func append(_ bytes: [UInt8], to characters: inout [UInt8]) {
        var buffer: UInt64 = 0
        var buffered = 0
        for byte in bytes {
            buffer = buffer << 8 | UInt64(byte)
            buffered += 8
            while buffered >= 5 {
                buffered -= 5
                characters.append(alphabet[Int((buffer >> UInt64(buffered)) & 31)])
            }
        }
        if buffered > 0 {
            characters.append(alphabet[Int((buffer << UInt64(5 - buffered)) & 31)])
        }
    }

    /// Whether `value` has the shape of an identifier with `prefix`.
    public static func isValid(_ value: String, prefix: String) -> Bool {
        guard value.hasPrefix(prefix + "_") else { return false }
        let rest = value.utf8.dropFirst(prefix.utf8.count + 1)
        return rest.count == 26 && rest.allSatisfy { alphabet.contains($0) }
    }
}
