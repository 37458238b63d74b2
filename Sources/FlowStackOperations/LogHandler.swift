import Logging

/// `StreamLogHandler`'s lines, with metadata formatted only when something is logged.
///
/// Hummingbird gives every request a copy of the server's logger with a request id added, and
/// `StreamLogHandler` formats all of its metadata again on every change: work on every request
/// for lines that, at the default level, are almost never written.
public struct DeferredStreamLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    /// Writes the lines; its metadata is set only for the line being written.
    private let lines: StreamLogHandler

    public init(_ lines: StreamLogHandler) {
        self.lines = lines
        self.logLevel = lines.logLevel
        self.metadataProvider = lines.metadataProvider
    }

    /// Lines to standard error, where swift-log's default handler writes them (standard output
    /// carries the CLI's answers, such as `flowstack keys status --json`).
    public static func standardError(label: String) -> DeferredStreamLogHandler {
        DeferredStreamLogHandler(StreamLogHandler.standardError(label: label))
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var handler = lines
        handler.logLevel = logLevel
        handler.metadataProvider = metadataProvider
        handler.metadata = metadata
        handler.log(event: event)
    }
}
