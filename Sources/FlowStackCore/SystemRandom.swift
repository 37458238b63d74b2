#if canImport(Glibc)
    import CSystemRandom
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Bytes from the kernel's random generator (the one `SystemRandomNumberGenerator` and
/// swift-crypto use), drawn in one system call: the standard generator makes a call per eight bytes.
public enum SystemRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { buffer in
            #if canImport(Glibc)
                var filled = 0
                while filled < count {
                    let read = getrandom(buffer.baseAddress! + filled, count - filled, 0)
                    if read < 0 {
                        // Interrupted before any byte: try again. Anything else leaves no safe way on.
                        precondition(errno == EINTR, "getrandom failed: \(errno)")
                        continue
                    }
                    filled += read
                }
            #else
                arc4random_buf(buffer.baseAddress!, count)
            #endif
        }
        return bytes
    }
}
