import Glibc

/// Raw writes to stdout/stderr (no stdio buffering, nothing shared with other code).
enum Output {
    /// Writes `bytes` plus a newline to stdout. False when stdout is gone.
    @discardableResult
    static func writeLine(_ bytes: [UInt8]) -> Bool {
        var line = bytes
        line.append(0x0A)
        return writeAll(1, line)
    }

    @discardableResult
    static func writeLine(_ text: String) -> Bool {
        writeLine(Array(text.utf8))
    }

    static func writeError(_ text: String) {
        _ = writeAll(2, Array(text.utf8))
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
    }
}

/// A minimal JSON writer for the responses (the items payload arrives already serialized).
struct JSONWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    mutating func raw(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    mutating func raw(_ other: [UInt8]) {
        bytes.append(contentsOf: other)
    }

    /// A JSON string literal. Works on UTF-8 bytes: multi-byte sequences never contain bytes below
    /// 0x80, so only ASCII needs escaping.
    mutating func string(_ text: String) {
        bytes.append(0x22)
        for byte in text.utf8 {
            switch byte {
            case 0x22:
                bytes.append(0x5C)
                bytes.append(0x22)
            case 0x5C:
                bytes.append(0x5C)
                bytes.append(0x5C)
            case 0x0A:
                bytes.append(0x5C)
                bytes.append(0x6E)
            case 0x0D:
                bytes.append(0x5C)
                bytes.append(0x72)
            case 0x09:
                bytes.append(0x5C)
                bytes.append(0x74)
            case 0x00..<0x20, 0x7F:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(0x22)
    }

    mutating func stringArray(_ values: [String]) {
        bytes.append(0x5B)
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(0x2C) }
            string(value)
        }
        bytes.append(0x5D)
    }
}

/// Monotonic clock and resident memory of this process.
enum ProcessInfo {
    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Resident set size in bytes from /proc/self/statm (0 if unreadable).
    static func residentBytes() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return 0 }
        // "size resident shared text lib data dt", in pages.
        var field = 0
        var value = 0
        for byte in buffer[0..<count] {
            if byte == 0x20 {
                if field == 1 { break }
                field += 1
                continue
            }
            if field == 1, byte >= 0x30, byte <= 0x39 { value = value * 10 + Int(byte - 0x30) }
        }
        return value * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
