import CArgon2
import Foundation
import NIOPosix

/// Password hashing with argon2id (libargon2), at or above OWASP ASVS appendix C's minimum
/// (m = 19 MiB, t = 2, p = 1). The stored form is the standard encoded string
/// `$argon2id$v=19$m=…,t=…,p=…$salt$hash`, which names the algorithm and its parameters.
///
/// Hashing runs on NIO's blocking thread pool, whose size bounds how many hashes (and how much
/// memory) can be in flight at once, so a burst of logins cannot exhaust memory.
public struct PasswordHasher: Sendable {
    public var memoryKiB: UInt32
    public var iterations: UInt32
    public var parallelism: UInt32

    public static let minimumMemoryKiB: UInt32 = 19 * 1024
    public static let minimumIterations: UInt32 = 2

    public init(memoryKiB: UInt32 = 19 * 1024, iterations: UInt32 = 2, parallelism: UInt32 = 1) {
        precondition(
            memoryKiB >= Self.minimumMemoryKiB && iterations >= Self.minimumIterations,
            "argon2id parameters below the ASVS minimum")
        self.memoryKiB = memoryKiB
        self.iterations = iterations
        self.parallelism = parallelism
    }

    public struct HashingError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The encoded hash of `password` with a fresh 16-byte salt.
    public func hash(_ password: String) async throws -> String {
        let params = self
        return try await NIOThreadPool.singleton.runIfActive {
            try params.hashNow(password)
        }
    }

    /// Whether `password` matches `encoded` (constant time inside libargon2).
    public func verify(_ password: String, against encoded: String) async -> Bool {
        guard encoded.hasPrefix("$argon2id$") else { return false }
        return
            (try? await NIOThreadPool.singleton.runIfActive {
                let pwd = Array(password.utf8)
                return pwd.withUnsafeBytes { p in
                    argon2id_verify(encoded, p.baseAddress, p.count) == ARGON2_OK.rawValue
                }
            }) ?? false
    }

    func hashNow(_ password: String) throws -> String {
        let salt = Token.randomBytes(16)
        let pwd = Array(password.utf8)
        let hashLength = 32
        let encodedLength = argon2_encodedlen(iterations, memoryKiB, parallelism, UInt32(salt.count), UInt32(hashLength), Argon2_id)
        var encoded = [CChar](repeating: 0, count: encodedLength)
        let result = pwd.withUnsafeBytes { p in
            salt.withUnsafeBytes { s in
                argon2id_hash_encoded(
                    iterations, memoryKiB, parallelism, p.baseAddress, p.count,
                    s.baseAddress, s.count, hashLength, &encoded, encodedLength)
            }
        }
        guard result == ARGON2_OK.rawValue else {
            throw HashingError(description: String(cString: argon2_error_message(result)))
        }
        return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
