import Glibc

/// The request loop: one JSON request per stdin line, one JSON response per stdout line.
enum Server {
    /// Exit status when the child asks to be replaced (memory still over the cap after a memory error).
    static let exitRecycle: Int32 = 3

    static func run() -> Int32 {
        let protections = Hardening.apply()
        let engine = Engine()
        guard engine.selfCheck() else {
            Output.writeError("flowstack-sandbox: JavaScriptCore failed its start-up check\n")
            return 70
        }
        engine.collectGarbage()
        guard Output.writeLine("{\"ready\":true,\"protections\":\(protections.json)}") else { return 0 }
        let input = LineReader(fd: 0)
        engine.channel = input
        while let bytes = input.next() {
            if isBlank(bytes) { continue }
            // Invalid UTF-8 is replaced with U+FFFD (the request then usually fails to parse).
            let reply = engine.handle(String(decoding: bytes, as: UTF8.self))
            guard Output.writeLine(reply.bytes) else { return 0 }
            guard engine.afterRequest(reply) else { return exitRecycle }
        }
        return 0
    }

    private static func isBlank(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { buffer in
            for byte in buffer where byte != 0x20 && byte != 0x09 && byte != 0x0D { return false }
            return true
        }
    }
}
