import CJavaScriptCore
import Glibc

/// Limits of one request after defaults and clamping.
struct Limits {
    static let defaultTimeLimitMs = 10_000
    static let defaultMaxOutputBytes = 16 << 20
    static let defaultMaxLogBytes = 64 << 10

    var timeLimitMs = defaultTimeLimitMs
    var maxOutputBytes = defaultMaxOutputBytes
    var maxLogBytes = defaultMaxLogBytes
    /// Optional soft cap on this process's resident memory (0 = not checked by the child).
    var maxMemoryBytes = 0
}

/// Why the watchdog stopped the script.
enum StopReason {
    case timeout
    case memory
}

/// State shared with the watchdog callback. JavaScriptCore's watchdog counts CPU time of the JS
/// thread per VM entry and calls back once per armed period; the callback re-arms itself every
/// `slice` seconds so that this class can enforce one wall-clock budget for the whole request
/// (across every entry into the VM, including microtask draining) and check memory as it goes.
final class Watchdog {
    static let slice = 0.01

    var deadline: UInt64 = .max
    var maxMemoryBytes = 0
    var stopped: StopReason?

    func arm(timeLimitMs: Int, maxMemoryBytes: Int, startedAt: UInt64) {
        deadline = startedAt &+ UInt64(timeLimitMs) * 1_000_000
        self.maxMemoryBytes = maxMemoryBytes
        stopped = nil
    }

    func disarm() {
        deadline = .max
        maxMemoryBytes = 0
    }

    /// True when the running script must be terminated.
    func shouldTerminate() -> Bool {
        if stopped != nil { return true }
        if ProcessInfo.monotonicNanoseconds() >= deadline {
            stopped = .timeout
            return true
        }
        if maxMemoryBytes > 0, ProcessInfo.residentBytes() > maxMemoryBytes {
            stopped = .memory
            return true
        }
        return false
    }
}

/// The JSShouldTerminateCallback (runs on the JavaScript thread, inside the VM).
func watchdogCallback(_ ctx: JSContextRef?, _ raw: UnsafeMutableRawPointer?) -> Bool {
    guard let raw else { return true }
    let watchdog = Unmanaged<Watchdog>.fromOpaque(raw).takeUnretainedValue()
    if watchdog.shouldTerminate() { return true }
    // Returning false does not re-arm JavaScriptCore's timer; setting the limit again does.
    if let ctx {
        JSContextGroupSetExecutionTimeLimit(JSContextGetGroup(ctx), Watchdog.slice, watchdogCallback, raw)
    }
    return false
}

/// What the user's code produced.
enum Outcome {
    case pending
    case ok(items: [UInt8])
    case failed(kind: String, message: String, stack: String, line: Int, sourceURL: String)
}

/// Per-request state reachable from the `native` function given to the bootstrap.
final class RequestState {
    let limits: Limits
    /// The parent's end of the `$http.request` broker (nil in the start-up self check).
    let channel: LineReader?
    var brokerCalls = 0
    static let maximumBrokerCalls = 100
    var logs: [String] = []
    var logCost = 0
    var logTruncated = false
    var outcome = Outcome.pending

    init(limits: Limits, channel: LineReader?) {
        self.limits = limits
        self.channel = channel
    }

    /// Hands one `$http.request` call to the parent and waits for its answer (a JSON text). The
    /// request leaves this process as data; the parent's broker adds any credential, applies the
    /// SSRF guard and sends only the response back, so no secret ever enters the sandbox.
    func broker(_ payload: [UInt8]) -> String {
        guard let channel else { return #"{"error":"$http.request is not available here."}"# }
        guard brokerCalls < Self.maximumBrokerCalls else {
            return #"{"error":"A Code node run may make at most 100 $http.request calls."}"#
        }
        guard payload.count <= limits.maxOutputBytes else {
            return #"{"error":"$http.request options are larger than the limit of \#(limits.maxOutputBytes) bytes."}"#
        }
        brokerCalls += 1
        var writer = JSONWriter(capacity: payload.count + 16)
        writer.raw("{\"http\":")
        writer.raw(payload)
        writer.raw("}")
        guard Output.writeLine(writer.bytes), let reply = channel.next() else {
            // The parent is gone: nothing more can be answered.
            exit(0)
        }
        return String(decoding: reply, as: UTF8.self)
    }

    /// Appends one console line; false once the log budget is spent. Each line costs its UTF-8
    /// bytes plus one, so a flood of empty lines is bounded too.
    func appendLog(level: String, message: JSStringRef) -> Bool {
        if logTruncated { return false }
        let prefix = level == "warn" ? "[warn] " : level == "error" ? "[error] " : ""
        let remaining = limits.maxLogBytes - logCost - prefix.utf8.count - 1
        let units = JSStringGetLength(message)
        if remaining >= 0 {
            // UTF-8 never needs fewer bytes than UTF-16 units, so `remaining + 1` units decide it.
            let taken = min(units, remaining + 1)
            let text = JS.string(message, maxUnits: taken)
            let bytes = text.utf8.count
            if taken == units && bytes <= remaining {
                logs.append(prefix + text)
                logCost += prefix.utf8.count + bytes + 1
                return true
            }
            // Keep what fits.
            let kept = text.prefix(utf8Bytes: remaining)
            if !kept.isEmpty { logs.append(prefix + kept) }
        }
        logs.append("[log truncated]")
        logTruncated = true
        return false
    }
}

/// The `native(op, ...)` function the bootstrap receives (a JSClass callAsFunction callback whose
/// private data is the RequestState).
func nativeCallback(
    _ ctx: JSContextRef?, _ function: JSObjectRef?, _ thisObject: JSObjectRef?,
    _ argumentCount: Int, _ arguments: UnsafePointer<JSValueRef?>?, _ exception: UnsafeMutablePointer<JSValueRef?>?
) -> JSValueRef? {
    guard let ctx, let function, let raw = JSObjectGetPrivate(function) else { return JSValueMakeUndefined(ctx) }
    let state = Unmanaged<RequestState>.fromOpaque(raw).takeUnretainedValue()
    func argument(_ index: Int) -> JSValueRef? {
        guard index < argumentCount, let arguments else { return nil }
        return arguments[index]
    }
    guard let op = JS.string(ctx, argument(0)) else { return JSValueMakeUndefined(ctx) }
    switch op {
    case "log":
        let level = JS.string(ctx, argument(1)) ?? "log"
        guard let value = argument(2), let message = JSValueToStringCopy(ctx, value, nil) else {
            return JSValueMakeBoolean(ctx, !state.logTruncated)
        }
        defer { JSStringRelease(message) }
        return JSValueMakeBoolean(ctx, state.appendLog(level: level, message: message))
    case "http":
        guard let payload = JS.utf8(ctx, argument(1)) else { return JSValueMakeUndefined(ctx) }
        let reply = JS.makeString(state.broker(payload))
        defer { JSStringRelease(reply) }
        return JSValueMakeString(ctx, reply)
    case "ok":
        if case .pending = state.outcome {
            state.outcome = .ok(items: JS.utf8(ctx, argument(1)) ?? Array("[]".utf8))
        }
    case "fail":
        if case .pending = state.outcome {
            let line = JS.isNumber(ctx, argument(4)) ? JSValueToNumber(ctx, argument(4), nil) : 0
            state.outcome = .failed(
                kind: JS.string(ctx, argument(1)) ?? "runtime",
                // Only what `error(kind:message:…)` can keep: each UTF-16 unit is at least one UTF-8 byte.
                message: JS.string(ctx, argument(2), maxUnits: Engine.maximumErrorBytes + 1) ?? "Error",
                // Only read for the line of the innermost user frame, near its start.
                stack: JS.string(ctx, argument(3), maxUnits: 1 << 16) ?? "",
                line: line.isFinite ? Int(max(0, min(1e9, line))) : 0,
                sourceURL: JS.string(ctx, argument(5), maxUnits: 1 << 10) ?? "")
        }
    default:
        break
    }
    return JSValueMakeUndefined(ctx)
}

/// One request's response, plus what the server loop needs for its clean-up after sending it.
struct Reply {
    var bytes: [UInt8]
    /// The request ended by the watchdog or with a memory error: collect garbage afterwards.
    var collect = false
    /// The request's soft memory cap (0 = none).
    var maxMemoryBytes = 0
}

/// Runs requests: one long-lived context group, a fresh global context per request.
final class Engine {
    /// Where `$http.request` answers come from (the request stream); set by the server loop.
    var channel: LineReader?
    private let group: JSContextGroupRef
    private let nativeClass: JSClassRef
    private let watchdog = Watchdog()
    private let bootstrapSource: JSStringRef
    private let bootstrapURL: JSStringRef
    private let codeURL: JSStringRef
    private let evalDisabledMessage: JSStringRef
    private let prefixUnits = Array(Bootstrap.codePrefix.utf16)
    private let suffixUnits = Array(Bootstrap.codeSuffix.utf16)

    init() {
        group = JSContextGroupCreate()
        var definition = JSClassDefinition()
        definition.version = 0
        definition.className = UnsafePointer(strdup("FlowStackNative"))
        definition.callAsFunction = nativeCallback
        nativeClass = JSClassCreate(&definition)
        bootstrapSource = JS.makeString(Bootstrap.source)
        bootstrapURL = JS.makeString(Bootstrap.sourceURL)
        codeURL = JS.makeString(Bootstrap.codeURL)
        evalDisabledMessage = JS.makeString("eval and the Function constructor are disabled in Code nodes")
        JSContextGroupSetExecutionTimeLimit(
            group, Watchdog.slice, watchdogCallback, Unmanaged.passUnretained(watchdog).toOpaque())
    }

    /// Runs a small request end to end (also warms up the engine). True when it works.
    func selfCheck() -> Bool {
        let line =
            #"{"code":"return items.map(i => ({json: {n: i.json.n + 1}}))","mode":"all","items":[{"json":{"n":1}}],"timeLimitMs":5000}"#
        let reply = handle(line)
        return String(decoding: reply.bytes, as: UTF8.self).hasPrefix(#"{"ok":true,"items":[{"json":{"n":2}}]"#)
    }

    /// Resident memory measured at the start of the first request after the last full collection
    /// (JavaScriptCore's allocator hands freed pages back to the system a few hundred milliseconds
    /// after a collection, so measuring right after it would read too high).
    private var residentBaseline = 0
    private var needsBaseline = true
    static let collectionGrowth = 64 << 20

    /// A full, synchronous collection. Called from the server loop between requests: JavaScriptCore
    /// scans the stack conservatively, and a stale pointer to the previous request's context in a
    /// deeper frame would keep its whole heap alive.
    func collectGarbage() {
        guard let ctx = JSGlobalContextCreateInGroup(group, nil) else { return }
        JSSynchronousGarbageCollectForDebugging(ctx)
        JSGlobalContextRelease(ctx)
        needsBaseline = true
    }

    /// Clean-up after a reply was sent: a full collection after a timeout or memory error, or when
    /// resident memory grew by more than 64 MiB. Returns false when the process should exit because
    /// it is still over the request's memory cap a second after that collection; the parent then
    /// starts a fresh child.
    func afterRequest(_ reply: Reply) -> Bool {
        let resident = ProcessInfo.residentBytes()
        let cap = reply.maxMemoryBytes
        guard reply.collect || (cap > 0 && resident > cap) || resident > residentBaseline + Self.collectionGrowth else {
            return true
        }
        collectGarbage()
        guard cap > 0 else { return true }
        for _ in 0..<20 {
            if ProcessInfo.residentBytes() <= cap { return true }
            usleep(50_000)
        }
        return ProcessInfo.residentBytes() <= cap
    }

    func handle(_ line: String) -> Reply {
        let startedAt = ProcessInfo.monotonicNanoseconds()
        if needsBaseline {
            residentBaseline = ProcessInfo.residentBytes()
            needsBaseline = false
        }
        guard let ctx = JSGlobalContextCreateInGroup(group, nil) else {
            return Reply(
                bytes: Self.error(kind: "internal", message: "The sandbox could not create a JavaScript context", line: 0, logs: []))
        }
        JSGlobalContextSetEvalEnabled(ctx, false, evalDisabledMessage)
        var maxMemoryBytes = 0
        let roots = Roots(ctx)
        var reply = run(line, in: ctx, roots: roots, startedAt: startedAt, maxMemoryBytes: &maxMemoryBytes)
        reply.maxMemoryBytes = maxMemoryBytes
        watchdog.disarm()
        Self.clearPendingException(ctx)
        roots.release()
        JSGlobalContextRelease(ctx)
        return reply
    }

    /// When the watchdog terminates a script while the engine drains promise jobs, the termination
    /// exception stays pending on the VM and the next JSGlobalContextCreateInGroup aborts. Any API
    /// call with an exception out-parameter catches and clears it; this is a cheap one.
    static func clearPendingException(_ ctx: JSGlobalContextRef) {
        var exception: JSValueRef?
        let key = JS.makeString("undefined")
        _ = JSObjectGetProperty(ctx, JSContextGetGlobalObject(ctx), key, &exception)
        JSStringRelease(key)
    }

    private func run(
        _ line: String, in ctx: JSGlobalContextRef, roots: Roots, startedAt: UInt64, maxMemoryBytes: inout Int
    ) -> Reply {
        // The request is parsed by the engine itself: items reach user code exactly as JSON.parse
        // reads them, with no round trip through Swift types.
        let lineJS = JS.makeString(line)
        let parsed = roots.keep(JSValueMakeFromJSONString(ctx, lineJS))
        JSStringRelease(lineJS)
        guard let parsed, JSValueIsObject(ctx, parsed), !JSValueIsArray(ctx, parsed),
            let request = JSValueToObject(ctx, parsed, nil)
        else {
            return invalid("the request is not a JSON object")
        }
        let codeValue = JS.property(ctx, request, "code")
        guard JS.isString(ctx, codeValue), let code = JSValueToStringCopy(ctx, codeValue, nil) else {
            return invalid("\"code\" must be a string")
        }
        defer { JSStringRelease(code) }
        let modeValue = JS.property(ctx, request, "mode")
        let mode = JS.isString(ctx, modeValue) ? JS.string(ctx, modeValue) ?? "" : "all"
        guard mode == "all" || mode == "each" else {
            return invalid("\"mode\" must be \"all\" or \"each\"")
        }
        var limits = Limits()
        if let value = JS.integer(ctx, request, "timeLimitMs") { limits.timeLimitMs = max(1, min(value, 3_600_000)) }
        if let value = JS.integer(ctx, request, "maxOutputBytes") { limits.maxOutputBytes = max(2, min(value, 1 << 30)) }
        if let value = JS.integer(ctx, request, "maxLogBytes") { limits.maxLogBytes = max(0, min(value, 1 << 30)) }
        if let value = JS.integer(ctx, request, "maxMemoryBytes") { limits.maxMemoryBytes = max(0, value) }
        maxMemoryBytes = limits.maxMemoryBytes

        let state = RequestState(limits: limits, channel: channel)
        watchdog.arm(timeLimitMs: limits.timeLimitMs, maxMemoryBytes: limits.maxMemoryBytes, startedAt: startedAt)
        JSContextGroupSetExecutionTimeLimit(
            group, Watchdog.slice, watchdogCallback, Unmanaged.passUnretained(watchdog).toOpaque())

        // 1. The bootstrap defines the globals and returns run(userFunction).
        var exception: JSValueRef?
        let bootstrap = roots.keep(JSEvaluateScript(ctx, bootstrapSource, nil, bootstrapURL, 1, &exception))
        guard exception == nil, let bootstrapFunction = JS.isFunction(ctx, bootstrap) else {
            return stopped(state) ?? internalError(state, "the sandbox setup script failed")
        }
        guard let native = roots.keep(JSObjectMake(ctx, nativeClass, Unmanaged.passUnretained(state).toOpaque())) else {
            return internalError(state, "the sandbox could not create its native bridge")
        }
        let modeJS = JS.makeString(mode)
        let modeString = roots.keep(JSValueMakeString(ctx, modeJS))
        JSStringRelease(modeJS)
        // Numbers are immediates (no heap cell); everything else in here is protected.
        let arguments: [JSValueRef?] = [
            native, request, modeString,
            JSValueMakeNumber(ctx, Double(limits.maxOutputBytes)), JSValueMakeNumber(ctx, Double(limits.maxLogBytes)),
        ]
        let runValue = roots.keep(JSObjectCallAsFunction(ctx, bootstrapFunction, nil, arguments.count, arguments, &exception))
        guard exception == nil, let runFunction = JS.isFunction(ctx, runValue) else {
            return stopped(state) ?? internalError(state, "the sandbox setup script failed")
        }

        // 2. Compile the user's code as the body of an async function.
        let codeLength = JSStringGetLength(code)
        var units = prefixUnits
        units.reserveCapacity(prefixUnits.count + codeLength + suffixUnits.count)
        var userLines = 1
        if codeLength > 0, let characters = JSStringGetCharactersPtr(code) {
            let buffer = UnsafeBufferPointer(start: characters, count: codeLength)
            units.append(contentsOf: buffer)
            var previous: UInt16 = 0
            for unit in buffer {
                // JavaScript line terminators: LF, CR (CRLF counts once), U+2028, U+2029.
                if unit == 0x0A {
                    if previous != 0x0D { userLines += 1 }
                } else if unit == 0x0D || unit == 0x2028 || unit == 0x2029 {
                    userLines += 1
                }
                previous = unit
            }
        }
        units.append(contentsOf: suffixUnits)
        let wrapped = JS.makeString(utf16: units)
        exception = nil
        let compiled = roots.keep(JSEvaluateScript(ctx, wrapped, nil, codeURL, 1, &exception))
        JSStringRelease(wrapped)
        if let reply = stopped(state) { return reply }
        if let exception = roots.keep(exception) {
            return compileError(ctx, exception, state: state, userLines: userLines)
        }
        guard let userFunction = JS.isFunction(ctx, compiled) else {
            return Reply(
                bytes: Self.error(kind: "syntax", message: "SyntaxError: the code is not a valid function body", line: 0, logs: state.logs))
        }

        // 3. Run it. Promise jobs (await) run before JSObjectCallAsFunction returns.
        let runArguments: [JSValueRef?] = [userFunction]
        exception = nil
        roots.keep(JSObjectCallAsFunction(ctx, runFunction, nil, 1, runArguments, &exception))
        if let reply = stopped(state) { return reply }
        if exception != nil { return internalError(state, "the sandbox runner failed") }

        switch state.outcome {
        case .pending:
            return Reply(
                bytes: Self.error(
                    kind: "runtime", message: "The code did not finish: it awaited something that never completed",
                    line: 0, logs: state.logs))
        case .ok(let items):
            if items.count > limits.maxOutputBytes {
                return Reply(
                    bytes: Self.error(
                        kind: "output", message: "The output of the Code node is larger than the limit of \(limits.maxOutputBytes) bytes",
                        line: 0, logs: state.logs))
            }
            var writer = JSONWriter(capacity: items.count + 64)
            writer.raw("{\"ok\":true,\"items\":")
            writer.raw(items)
            writer.raw(",\"logs\":")
            writer.stringArray(state.logs)
            writer.raw("}")
            return Reply(bytes: writer.bytes)
        case .failed(let kind, let message, let stack, let line, let sourceURL):
            let userLine = Self.userLine(stack: stack, line: line, sourceURL: sourceURL, userLines: userLines)
            return Reply(bytes: Self.error(kind: kind, message: message, line: userLine, logs: state.logs), collect: kind == "memory")
        }
    }

    /// The reply when the watchdog stopped the script (checked after every VM entry: a script that
    /// was terminated while draining promise jobs reports no exception).
    private func stopped(_ state: RequestState) -> Reply? {
        switch watchdog.stopped {
        case nil:
            return nil
        case .timeout:
            return Reply(
                bytes: Self.error(
                    kind: "timeout", message: "The Code node exceeded its time limit of \(state.limits.timeLimitMs) ms",
                    line: 0, logs: state.logs), collect: true)
        case .memory:
            return Reply(
                bytes: Self.error(
                    kind: "memory", message: "The Code node used more memory than allowed (\(state.limits.maxMemoryBytes) bytes)",
                    line: 0, logs: state.logs), collect: true)
        }
    }

    private func compileError(_ ctx: JSContextRef, _ exception: JSValueRef, state: RequestState, userLines: Int) -> Reply {
        var message = "SyntaxError"
        var line = 0
        var kind = "syntax"
        if JSValueIsObject(ctx, exception), let object = JSValueToObject(ctx, exception, nil) {
            let name = JS.string(ctx, JS.property(ctx, object, "name")) ?? "SyntaxError"
            let text = JS.string(ctx, JS.property(ctx, object, "message")) ?? ""
            message = text.isEmpty ? name : name + ": " + text
            if name != "SyntaxError" { kind = "runtime" }
            if let raw = JS.integer(ctx, object, "line") { line = raw - Bootstrap.codePrefixLines }
        } else if let text = JS.string(ctx, exception) {
            message = text
            kind = "runtime"
        }
        if let reply = stopped(state) { return reply }
        let clamped = line > 0 ? min(line, userLines) : (line == 0 ? 0 : 1)
        return Reply(bytes: Self.error(kind: kind, message: message, line: clamped, logs: state.logs))
    }

    /// `text` cut to at most `limit` UTF-8 bytes, with a note saying so.
    static func clipped(_ text: String, to limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        let note = " … (cut at \(limit) bytes)"
        return text.prefix(utf8Bytes: limit - note.utf8.count) + note
    }

    /// The line of the innermost frame of user code in a JavaScriptCore stack
    /// ("name@code:LINE:COLUMN" per line), else the error's own line if it was thrown there.
    static func userLine(stack: String, line: Int, sourceURL: String, userLines: Int) -> Int {
        let marker = Array("@\(Bootstrap.codeURL):".utf8)
        for frame in stack.split(separator: "\n", omittingEmptySubsequences: true) {
            let bytes = Array(frame.utf8)
            guard bytes.count > marker.count else { continue }
            var index = bytes.count - marker.count
            while index >= 0 {
                if bytes[index] == marker[0] && Array(bytes[index..<(index + marker.count)]) == marker { break }
                index -= 1
            }
            guard index >= 0 else { continue }
            var number = 0
            var position = index + marker.count
            while position < bytes.count, bytes[position] >= 0x30, bytes[position] <= 0x39, number < 1_000_000_000 {
                number = number * 10 + Int(bytes[position] - 0x30)
                position += 1
            }
            if number > 0 { return max(1, min(number - Bootstrap.codePrefixLines, userLines)) }
        }
        if sourceURL == Bootstrap.codeURL, line > 0 { return max(1, min(line - Bootstrap.codePrefixLines, userLines)) }
        return 0
    }

    private func invalid(_ reason: String) -> Reply {
        Reply(bytes: Self.error(kind: "internal", message: "Invalid request: \(reason)", line: 0, logs: []))
    }

    private func internalError(_ state: RequestState, _ reason: String) -> Reply {
        Reply(bytes: Self.error(kind: "internal", message: "Internal sandbox error: \(reason)", line: 0, logs: state.logs))
    }

    /// The longest error message sent, in UTF-8 bytes: the code chooses what it throws, and a
    /// message of many megabytes would be stored with the execution.
    static let maximumErrorBytes = 8 << 10

    static func error(kind: String, message: String, line: Int, logs: [String]) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw("{\"ok\":false,\"error\":")
        writer.string(clipped(message, to: maximumErrorBytes))
        writer.raw(",\"errorKind\":")
        writer.string(kind)
        if line > 0 { writer.raw(",\"line\":\(line)") }
        writer.raw(",\"logs\":")
        writer.stringArray(logs)
        writer.raw("}")
        return writer.bytes
    }
}

extension String {
    /// The longest prefix of at most `limit` UTF-8 bytes that ends at a Unicode scalar boundary.
    func prefix(utf8Bytes limit: Int) -> String {
        var used = 0
        var end = unicodeScalars.startIndex
        for scalar in unicodeScalars {
            let size = UTF8.width(scalar)
            if used + size > limit { break }
            used += size
            end = unicodeScalars.index(after: end)
        }
        return String(unicodeScalars[..<end])
    }
}
