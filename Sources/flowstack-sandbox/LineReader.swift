import Glibc

/// Reads newline-terminated lines from a file descriptor with read(2).
///
/// Not the standard library's readLine(): it retries getline() while errno is EINTR, and at end of
/// input getline() leaves errno alone. JavaScriptCore interrupts the main thread with signals (to
/// suspend it for the garbage collector), so a stale EINTR made readLine() spin forever at EOF.
struct LineReader {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var scanned = 0
    private var atEnd = false

    init(fd: Int32) {
        self.fd = fd
        buffer.reserveCapacity(1 << 16)
    }

    /// The next line without its "\n" (a final line without one counts too), or nil at end of input.
    mutating func next() -> [UInt8]? {
        while true {
            if let newline = buffer[scanned...].firstIndex(of: 0x0A) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                scanned = start
                return line
            }
            scanned = buffer.count
            if atEnd {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                scanned = start
                return line
            }
            if start > 0 && start * 2 >= buffer.count {
                buffer.removeSubrange(0..<start)
                scanned -= start
                start = 0
            }
            fill()
        }
    }

    private mutating func fill() {
        let chunk = 1 << 16
        let oldCount = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: chunk))
        var count = 0
        while true {
            count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + oldCount, chunk) }
            if count < 0 && errno == EINTR { continue }
            break
        }
        buffer.removeSubrange((oldCount + max(0, count))...)
        if count <= 0 { atEnd = true }
    }
}
