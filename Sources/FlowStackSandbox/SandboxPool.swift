import CSpawn
import FlowStackCore
import FlowStackRuntime
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Limits the parent enforces on every sandbox child.
public struct SandboxLimits: Sendable {
    /// Resident memory a child may use before it is killed.
    public var memoryBytes: Int = 512 << 20
    /// Extra wall-clock time past the Code node's own limit before the child is killed (some slow
    /// built-ins overrun JavaScriptCore's own limit by a second or two before it answers).
    public var killGrace: TimeInterval = 3
    /// Children kept warm and the most that run at once.
    public var warm: Int = 2
    public var maximum: Int = 8
    /// How long a child beyond `warm` is kept idle after a burst before it is stopped.
    public var idleLifetime: Duration = .seconds(60)

    public init() {}
}

public enum SandboxError: Error, Sendable, CustomStringConvertible {
    case unavailable(String)
    public var description: String {
        switch self {
        case .unavailable(let why): "The code sandbox is not available: \(why)"
        }
    }
}

/// A pool of warm `flowstack-sandbox` processes. Each Code node run borrows one; the child runs
/// the code in a fresh JavaScript context. The parent enforces what the child cannot: a
/// wall-clock kill and a resident-memory ceiling. A child that is killed, crashes or misbehaves
/// is discarded and replaced; the run fails with a clear error and nothing else is affected.
public actor SandboxPool: CodeRunning {
    public let executable: String
    public let limits: SandboxLimits
    /// Idle children, the most recently used last (taken first), with when each became idle.
    private var idle: [(child: SandboxChild, since: ContinuousClock.Instant)] = []
    /// Whether a task is waiting to stop the children a burst left beyond `warm`.
    private var trimming = false
    private let slots: RunSlots
    /// What the most recent child reported it enforces (network namespace, seccomp, …).
    public private(set) var protections: [String: JSONValue] = [:]

    public init(executable: String, limits: SandboxLimits = .init()) {
        self.executable = executable
        self.limits = limits
        self.slots = RunSlots(maximum: limits.maximum)
    }

    /// The `flowstack-sandbox` next to the running executable, if there is one.
    public static func defaultExecutable() -> String? {
        let own = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let candidate = own.appendingPathComponent("flowstack-sandbox").path
        return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
    }

    /// Starts the warm children (and checks that the sandbox works at all).
    public func warmUp() async throws {
        while idle.count < limits.warm {
            idle.append((try await spawn(), .now))
        }
    }

    public func run(_ request: CodeRequest) async throws -> CodeResponse {
        try await run(request, broker: nil)
    }

    public func run(_ request: CodeRequest, broker: CodeBroker?) async throws -> CodeResponse {
        await slots.acquire()
        defer { slots.release() }
        let child: SandboxChild
        if let warm = idle.popLast() {
            child = warm.child
        } else {
            child = try await spawn()
        }
        var request = request
        request.maxMemoryBytes = max(64 << 20, limits.memoryBytes - (64 << 20))
        let outcome = await child.run(request, limits: limits, broker: broker)
        switch outcome {
        case .answered(let response):
            idle.append((child, .now))
            if idle.count > limits.warm { scheduleTrim() }
            return response
        case .killed(let response):
            child.terminate()
            return response
        }
    }

    private func spawn() async throws -> SandboxChild {
        let child = try SandboxChild(executable: executable)
        let ready = try await child.readReady()
        protections = ready
        return child
    }

    /// Stops every idle child.
    public func shutdown() {
        for entry in idle { entry.child.terminate() }
        idle.removeAll()
    }

    /// Idle children now (for tests).
    public var idleCount: Int { idle.count }

    /// After a burst, the children beyond `warm` are stopped once they have been idle for
    /// `idleLifetime`: a burst does not leave its processes (and their memory) behind for good.
    private func scheduleTrim() {
        guard !trimming else { return }
        trimming = true
        Task { [limits] in
            try? await Task.sleep(for: limits.idleLifetime)
            self.trim()
        }
    }

    private func trim() {
        trimming = false
        let now = ContinuousClock.now
        // The oldest idle children are at the front.
        while idle.count > limits.warm, let oldest = idle.first, now - oldest.since >= limits.idleLifetime {
            idle.removeFirst().child.terminate()
        }
        if idle.count > limits.warm { scheduleTrim() }
    }
}

/// Admission to the pool's `maximum` concurrent runs, first come, first served.
///
/// A released slot passes straight to the longest waiter. (Freeing it and letting the waiter take
/// it when it is next scheduled let every caller arriving in between take it first: under load a
/// waiter could go to the back of the queue again and again, and requests timed out.)
final class RunSlots: Sendable {
    private struct State {
        var inUse = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        var head = 0
    }
    let maximum: Int
    private let state = Mutex(State())

    init(maximum: Int) { self.maximum = max(1, maximum) }

    /// Slots taken (a slot handed to a waiter counts from the moment it is handed over).
    var inUse: Int { state.withLock { $0.inUse } }
    /// Callers waiting for a slot.
    var waiting: Int { state.withLock { $0.waiters.count - $0.head } }

    func acquire() async {
        await withCheckedContinuation { continuation in
            let granted = state.withLock { state -> Bool in
                if state.inUse < maximum && state.head == state.waiters.count {
                    state.inUse += 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.head < state.waiters.count else {
                state.inUse -= 1
                return nil
            }
            // The slot stays taken: it now belongs to the longest waiter.
            let waiter = state.waiters[state.head]
            state.head += 1
            if state.head == state.waiters.count {
                state.waiters.removeAll(keepingCapacity: true)
                state.head = 0
            } else if state.head >= 64 && state.head * 2 >= state.waiters.count {
                // Under sustained load the queue may never empty: drop the served front now and then.
                state.waiters.removeFirst(state.head)
                state.head = 0
            }
            return waiter
        }
        next?.resume()
    }
}

/// One child process and its pipes.
///
/// Spawned with `posix_spawn` directly, not with Foundation's `Process`: `Process` notices a
/// child's exit by a socket the child inherits, and the sandbox closes every inherited descriptor
/// at start. `Process` then took the child for exited and waited for it in its one manager
/// thread, so while any sandbox child lived, no other `Process` in the server (the keyring
/// command) was ever seen to finish. Here `terminate()` kills and reaps the child itself.
final class SandboxChild: @unchecked Sendable {
    static let crashLogger = Logger(label: "flowstack.sandbox")
    // Only used by one run at a time (the pool hands a child to one caller).
    let pid: pid_t
    let input: FileHandle
    let output: ChildOutput
    let directory: String
    private let ended = Atomic<Bool>(false)
    /// Reaped already (its exit was read for a crash report): its pid may belong to another process now.
    private let reaped = Atomic<Bool>(false)
    /// The last resident size the watchdog saw, in bytes.
    private let lastResident = Atomic<Int>(0)

    enum Outcome: Sendable {
        case answered(CodeResponse)
        /// The child was killed or died; it must not be reused.
        case killed(CodeResponse)
    }

    init(executable: String) throws {
        Self.survivesBrokenPipes()
        directory = NSTemporaryDirectory() + "flowstack-sandbox-" + UUID().uuidString
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        do {
            (pid, input, output) = try Self.spawn(executable, directory: directory)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    /// Starts `executable` with an empty environment (no server secrets), `directory` as its working
    /// directory, the two pipes as its standard input and output, /dev/null as its standard error,
    /// no other descriptor, default signal handling and a process group of its own.
    private static func spawn(_ executable: String, directory: String) throws -> (pid_t, FileHandle, ChildOutput) {
        func failure(_ call: String, _ code: Int32) -> SandboxError {
            SandboxError.unavailable("\(call) failed: \(String(cString: strerror(code)))")
        }
        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        guard pipe2(&toChild, O_CLOEXEC) == 0 else { throw failure("pipe2", errno) }
        guard pipe2(&fromChild, O_CLOEXEC) == 0 else {
            let code = errno
            close(toChild[0])
            close(toChild[1])
            throw failure("pipe2", code)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        var allSignals = sigset_t()
        sigemptyset(&noSignals)
        sigfillset(&allSignals)
        var code = posix_spawn_file_actions_adddup2(&actions, toChild[0], STDIN_FILENO)
        if code == 0 { code = posix_spawn_file_actions_adddup2(&actions, fromChild[1], STDOUT_FILENO) }
        if code == 0 { code = posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0) }
        if code == 0 { code = posix_spawn_file_actions_addclosefrom_np(&actions, 3) }
        if code == 0 { code = posix_spawn_file_actions_addchdir_np(&actions, directory) }
        if code == 0 {
            code = posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        }
        if code == 0 { code = posix_spawnattr_setsigmask(&attributes, &noSignals) }
        if code == 0 { code = posix_spawnattr_setsigdefault(&attributes, &allSignals) }
        var pid: pid_t = 0
        if code == 0 {
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup(executable), nil]
            let envp: [UnsafeMutablePointer<CChar>?] = [strdup("SWIFT_BACKTRACE=enable=no"), nil]
            defer { for pointer in argv + envp { free(pointer) } }
            code = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        }
        close(toChild[0])
        close(fromChild[1])
        guard code == 0 else {
            close(toChild[1])
            close(fromChild[0])
            throw failure("posix_spawn", code)
        }
        return (
            pid, FileHandle(fileDescriptor: toChild[1], closeOnDealloc: true),
            ChildOutput(FileHandle(fileDescriptor: fromChild[0], closeOnDealloc: true))
        )
    }

    static let brokerPrefix = Data(#"{"http":"#.utf8)

    /// Writing to a child that has exited or closed its input must fail that run, not end this
    /// process with SIGPIPE. The server ignores SIGPIPE already (SwiftNIO does once it opens a
    /// socket), but `flowstack run` may have opened none. Children get default handling back.
    private static let ignoringSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()
    static func survivesBrokenPipes() { Self.ignoringSIGPIPE }

    /// The longest line a child may send for `request`: its items (`maxOutputBytes`), its logs
    /// (`maxLogBytes`, each byte at most six when escaped) and room for the rest of the answer
    /// (the child cuts an error message to 8 KiB).
    static func maximumLineBytes(_ request: CodeRequest) -> Int {
        request.maxOutputBytes + 6 * request.maxLogBytes + (256 << 10)
    }
    static let maximumBrokerCalls = 100

    /// The child's next line; nil once it has exited.
    func readLine() async -> Data? {
        await output.next()
    }

    func readReady() async throws -> [String: JSONValue] {
        guard let line = await readLine(), let value = try? JSONValue(parsing: Array(line)),
            value["ready"] == .bool(true)
        else {
            terminate()
            throw SandboxError.unavailable("the sandbox process did not start")
        }
        return value["protections"]?.objectValue?.dictionary ?? [:]
    }

    func run(_ request: CodeRequest, limits: SandboxLimits, broker: CodeBroker?) async -> Outcome {
        let reason = KillReason()
        let deadline = Double(request.timeLimitMs) / 1000 + limits.killGrace
        let pid = self.pid
        let watchdog = Task.detached {
            let started = ContinuousClock.now
            while !Task.isCancelled {
                if ContinuousClock.now - started > .seconds(deadline) {
                    reason.set("time")
                    kill(pid, SIGKILL)
                    return
                }
                let rss = Self.residentBytes(pid)
                if let rss { self.lastResident.store(rss, ordering: .relaxed) }
                if let rss, rss > limits.memoryBytes {
                    reason.set("memory")
                    kill(pid, SIGKILL)
                    return
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        defer { watchdog.cancel() }
        let maximumLine = Self.maximumLineBytes(request)
        output.limit(maximumLine)
        do {
            try input.write(contentsOf: request.jsonLine())
        } catch {
            return .killed(CodeResponse(ok: false, error: "The code sandbox stopped unexpectedly.", errorKind: "internal"))
        }
        var answer: Data?
        var calls = 0
        while true {
            answer = await readLine()
            // `$http.request` calls arrive as {"http": {...}} lines until the final answer.
            guard let line = answer, line.starts(with: Self.brokerPrefix) else { break }
            calls += 1
            let call = (try? JSONValue(parsing: Array(line)))?["http"] ?? .null
            // The child counts its calls too; the parent does not rely on it.
            let result: JSONValue =
                if calls > Self.maximumBrokerCalls {
                    .object(["error": .string("A Code node run may make at most \(Self.maximumBrokerCalls) $http.request calls.")])
                } else if let broker {
                    await broker(call)
                } else {
                    .object(["error": .string("$http.request is not available here.")])
                }
            do {
                var reply = result.jsonBytes()
                reply.append(0x0A)
                try input.write(contentsOf: reply)
            } catch {
                // The child is gone (killed at its limit while the call ran): report why below.
                answer = nil
                break
            }
        }
        guard let answer else {
            if output.overflowed {
                return .killed(
                    CodeResponse(
                        ok: false,
                        error:
                            "The Code node's sandbox sent a line of more than \(maximumLine) bytes, past its output limits; the run was stopped.",
                        errorKind: "output"))
            }
            switch reason.value {
            case "time":
                return .killed(
                    CodeResponse(
                        ok: false, error: "The Code node exceeded its time limit of \(request.timeLimitMs) ms and was stopped.",
                        errorKind: "timeout"))
            case "memory":
                return .killed(
                    CodeResponse(
                        ok: false, error: "The Code node used more than \(limits.memoryBytes >> 20) MiB of memory and was stopped.",
                        errorKind: "memory"))
            default:
                let how = exitDescription()
                SandboxChild.crashLogger.error(
                    "a Code node's sandbox process ended unexpectedly",
                    metadata: [
                        "pid": "\(pid)", "how": "\(how)", "rssBytes": "\(lastResident.load(ordering: .relaxed))",
                    ])
                return .killed(
                    CodeResponse(
                        ok: false,
                        error:
                            "The Code node's sandbox crashed (\(how); last resident size \(lastResident.load(ordering: .relaxed) >> 20) MiB); the run was stopped.",
                        errorKind: "crash"))
            }
        }
        guard let response = try? CodeResponse(parsing: Array(answer)) else {
            return .killed(CodeResponse(ok: false, error: "The code sandbox answered something unreadable.", errorKind: "internal"))
        }
        // A child that hit its memory cap may still hold a large heap: replace it. (After a
        // timeout the child is clean and is reused.)
        if response.errorKind == "memory" { return .killed(response) }
        return .answered(response)
    }

    /// Kills the child and reaps it (once; later calls do nothing). Until it is reaped here its pid
    /// cannot be reused, so the kill never reaches another process.
    /// How the child ended, read from its exit status: its output has closed, so it is exiting
    /// (if it is still running after a second, something closed the pipe under it).
    func exitDescription() -> String {
        let deadline = ContinuousClock.now + .seconds(1)
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                reaped.store(true, ordering: .releasing)
                let signal = status & 0x7F
                if signal == 0 { return "exit status \((status >> 8) & 0xFF)" }
                let name = strsignal(signal).map { String(cString: $0) } ?? "?"
                return "signal \(signal) (\(name))"
            }
            if result == -1 && errno != EINTR { return "exit status unknown (\(String(cString: strerror(errno))))" }
            if ContinuousClock.now >= deadline { return "its output closed while it was still running" }
            usleep(5_000)
        }
    }

    func terminate() {
        guard !ended.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if reaped.load(ordering: .acquiring) {
            try? input.close()
            try? FileManager.default.removeItem(atPath: directory)
            return
        }
        kill(pid, SIGKILL)
        let pid = self.pid
        let reaper = Thread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        }
        reaper.start()
        try? input.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The resident set size of a process, from /proc/PID/statm.
    static func residentBytes(_ pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// A child's output as lines, read by one thread of the child's own for its whole life: a blocking
/// read must never occupy a thread of the concurrency pool or of Dispatch, which the pool runs on
/// (and a thread per line cost a thread start per run). The thread ends at end of file, when the
/// child exits or is killed.
///
/// A line may be at most `maximumLineBytes` long (set per run from the request's limits). The
/// child keeps within them, but its output is untrusted: a longer line is never buffered whole.
/// The output then ends as if the child had exited, `overflowed` says why, and reading stops (the
/// child's next write fails).
final class ChildOutput: Sendable {
    private struct State {
        var lines: [Data] = []
        var ended = false
        var overflowed = false
        var maximumLineBytes: Int
        var reader: CheckedContinuation<Data?, Never>?
    }
    private let state: Mutex<State>

    init(_ handle: FileHandle, maximumLineBytes: Int = 1 << 20) {
        state = Mutex(State(maximumLineBytes: maximumLineBytes))
        let thread = Thread { [self] in
            // The unfinished line so far. Only each new chunk is searched for a newline, so a
            // long line costs its length, not its length times its chunks.
            var partial = Data()
            while true {
                let chunk = handle.availableData
                let maximum = state.withLock { $0.maximumLineBytes }
                var complete: [Data] = []
                var overflowed = false
                var rest = chunk[...]
                while let newline = rest.firstIndex(of: 0x0A) {
                    partial += rest[rest.startIndex..<newline]
                    if partial.count > maximum {
                        overflowed = true
                        break
                    }
                    complete.append(partial)
                    partial = Data()
                    rest = rest[rest.index(after: newline)...]
                }
                if !overflowed {
                    partial += rest
                    overflowed = partial.count > maximum
                }
                if overflowed { partial = Data() }
                let ended = chunk.isEmpty || overflowed
                let waiting = state.withLock { state -> (CheckedContinuation<Data?, Never>, Data?)? in
                    state.lines += complete
                    state.ended = ended
                    state.overflowed = overflowed
                    guard let reader = state.reader, !state.lines.isEmpty || ended else { return nil }
                    state.reader = nil
                    return (reader, state.lines.isEmpty ? nil : state.lines.removeFirst())
                }
                if let (reader, line) = waiting { reader.resume(returning: line) }
                // Returning releases the handle, which closes the pipe.
                if ended { return }
            }
        }
        thread.start()
    }

    /// The longest line accepted from now on.
    func limit(_ maximumLineBytes: Int) {
        state.withLock { $0.maximumLineBytes = maximumLineBytes }
    }

    /// True once the output ended because a line was longer than the limit.
    var overflowed: Bool { state.withLock { $0.overflowed } }

    /// The next line; nil once the output has ended. One reader at a time (a child serves one run).
    func next() async -> Data? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> (Data?, Bool) in
                if !state.lines.isEmpty { return (state.lines.removeFirst(), true) }
                if state.ended { return (nil, true) }
                precondition(state.reader == nil, "two readers of one sandbox child")
                state.reader = continuation
                return (nil, false)
            }
            if ready.1 { continuation.resume(returning: ready.0) }
        }
    }
}

/// Why the watchdog killed a child.
final class KillReason: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String?
    func set(_ value: String) { lock.withLock { reason = value } }
    var value: String? { lock.withLock { reason } }
}
