import FlowStackOperations
import Logging
import Synchronization
import Testing

/// Lines written to memory.
final class CapturedLines: TextOutputStream, @unchecked Sendable {
    private let storage = Mutex<[String]>([])
    func write(_ string: String) { storage.withLock { $0.append(string) } }
    /// The lines without their timestamps (up to the first space).
    var lines: [String] { storage.withLock { $0 }.map { String($0.drop(while: { $0 != " " })) } }
}

@Suite struct LogHandlerTests {
    @Test("the deferred handler writes what StreamLogHandler writes, metadata, levels and all")
    func sameLines() {
        let provider = Logger.MetadataProvider { ["provided": "p"] }
        func exercise(_ make: @escaping @Sendable (String, CapturedLines) -> any LogHandler) -> [String] {
            let captured = CapturedLines()
            var logger = Logger(label: "flowstack.test") { make($0, captured) }
            logger.logLevel = .info
            logger.debug("not written")
            logger.info("plain")
            logger[metadataKey: "hb.request.id"] = "abc"
            logger[metadataKey: "user"] = "u1"
            logger[metadataKey: "roles"] = .array(["a", "b"])
            logger.warning("with metadata", metadata: ["explicit": "x", "user": "overridden"])
            var copy = logger
            copy[metadataKey: "hb.request.id"] = nil
            copy.logLevel = .error
            copy.warning("not written either")
            copy.error("copy")
            logger.error("original again")
            var provided = Logger(label: "flowstack.provided") { label in
                var handler = make(label, captured)
                handler.metadataProvider = provider
                return handler
            }
            provided[metadataKey: "k"] = "v"
            provided.notice("provider")
            return captured.lines
        }
        let deferred = exercise { label, stream in DeferredStreamLogHandler(StreamLogHandler(label: label, stream: stream)) }
        let stream = exercise { label, stream in StreamLogHandler(label: label, stream: stream) }
        #expect(deferred.count == 5)
        #expect(deferred == stream)
        #expect(deferred.first == " info flowstack.test: [FlowStackOperationsTests] plain\n")
    }
}
