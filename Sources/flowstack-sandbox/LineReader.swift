import Glibc

/// Reads newline-terminated lines from a file descriptor with read(2).
///
/// Not the standard library's readLine(): it retries getline() while errno is EINTR, and at end of
/// input getline() leaves errno alone. JavaScriptCore interrupts the main thread with signals (to
/// suspend it for the garbage collector), so a stale EINTR made readLine() spin forever at EOF.
///
/// Works on raw memory with memchr/memcpy, so it stays fast in unoptimized builds too.
final class LineReader {
    private let fd: Int32
    private var storage: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    /// Unconsumed bytes are storage[start..<end]; storage[start..<scanned] holds no newline.
    private var start = 0
    private var scanned = 0
    private var end = 0
    private var atEnd = false

    init(fd: Int32) {
        self.fd = fd
        capacity = 1 << 16
        storage = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
    }

    deinit {
        storage.deallocate()
    }

    /// The next line without its "\n" (a final line without one counts too), or nil at end of input.
    func next() -> [UInt8]? {
        while true {
            if scanned < end, let found = memchr(storage + scanned, 0x0A, end - scanned) {
                let newline = storage.distance(to: found.assumingMemoryBound(to: UInt8.self))
                let line = Array(UnsafeBufferPointer(start: storage + start, count: newline - start))
                start = newline + 1
                scanned = start
                return line
            }
            scanned = end
            if atEnd {
                guard start < end else { return nil }
                let line = Array(UnsafeBufferPointer(start: storage + start, count: end - start))
                start = end
                scanned = end
                return line
            }
            fill()
        }
    }

    private func fill() {
        // Move the unconsumed bytes to the front, and grow when less than 16 KiB would be free.
        if start > 0 {
            let pending = end - start
            if pending > 0 { memmove(storage, storage + start, pending) }
            scanned -= start
            end = pending
            start = 0
        }
        if capacity - end < 1 << 14 {
            let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * 2)
            grown.update(from: storage, count: end)
            storage.deallocate()
            storage = grown
            capacity *= 2
        }
        while true {
            let count = read(fd, storage + end, capacity - end)
            if count > 0 {
                end += count
                return
            }
            if count < 0 && errno == EINTR { continue }
            atEnd = true
            return
        }
    }
}
