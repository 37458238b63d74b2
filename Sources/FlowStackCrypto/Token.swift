import Crypto
import FlowStackCore
import Foundation

/// Random secrets (session tokens, API keys, setup tokens) and their one-way hashes.
public enum Token {
    public static func randomBytes(_ count: Int) -> [UInt8] {
        SystemRandom.bytes(count)
    }

    /// `prefix` followed by 256 random bits in base64url.
    public static func make(prefix: String, bytes: Int = 32) -> String {
        prefix + base64url(randomBytes(bytes))
    }

    /// The SHA-256 of a token, hex: what the database stores instead of the token. A plain hash is
    /// enough because every token carries at least 128 random bits.
    public static func hash(_ token: String) -> String {
        hex(Array(SHA256.hash(data: Array(token.utf8))))
    }

    public static func base64url(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Compares two strings in time that depends only on their lengths.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    /// HMAC-SHA256 of `message` under `key`, base64url.
    public static func hmac(_ message: String, key: some ContiguousBytes) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key))
        return base64url(Array(mac))
    }
}
