import Foundation
import Synchronization

/// A database call that did not finish within its deadline. The call is abandoned: its task is
/// cancelled and its answer, if one ever comes, is dropped.
public struct DatabaseTimeout: Error, CustomStringConvertible, Sendable {
    public let seconds: Double

    public var description: String { "the database did not answer within \(seconds) seconds" }
}

/// How long FlowStack's own database calls and sessions may take. A call past `call` fails with
/// `DatabaseTimeout` whatever the driver does; on PostgreSQL the session also carries
/// `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout`, so the server
/// releases what a stalled or frozen process holds.
public struct DatabaseTimeouts: Sendable, Equatable {
    /// The whole call as the caller sees it: waiting for a connection, the statements, the commit.
    public var call: Duration = .seconds(20)
    public var statement: Duration = .seconds(15)
    public var lock: Duration = .seconds(10)
    public var idleInTransaction: Duration = .seconds(15)

    public init() {}

    /// The PostgreSQL settings sent at connection start-up, in milliseconds.
    var startupParameters: [(String, String)] {
        [
            ("statement_timeout", "\(statement.milliseconds)"),
            ("lock_timeout", "\(lock.milliseconds)"),
            ("idle_in_transaction_session_timeout", "\(idleInTransaction.milliseconds)"),
        ]
    }
}

extension Duration {
    /// Whole milliseconds.
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Runs calls under deadlines, from one ticker for all of them: a timer task per database call
/// would cost more than many of the calls.
///
/// The body runs in a task of its own, so a call whose driver never returns (a connection that
/// died mid-statement) cannot keep its caller waiting: at the deadline the caller gets
/// `DatabaseTimeout` and the body's task is cancelled.
public final class DeadlineRunner: Sendable {
    public static let shared = DeadlineRunner()

    private struct Entry {
        let deadline: ContinuousClock.Instant
        let expire: @Sendable () -> Void
    }

    private struct State {
        var entries: [Int: Entry] = [:]
        var nextKey = 0
        var ticking = false
    }

    private let state = Mutex(State())
    private let tick: Duration = .milliseconds(50)

    public func run<T: Sendable>(within limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let once = Once<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                once.set(continuation)
                let work = Task {
                    let result: Result<T, any Error>
                    do { result = .success(try await body()) } catch { result = .failure(error) }
                    once.resume(with: result)
                }
                once.setWork(work)
                let key = register(ContinuousClock.now.advanced(by: limit)) {
                    if once.resume(with: .failure(DatabaseTimeout(seconds: limit.inSeconds))) { work.cancel() }
                }
                once.onFinish { [self] in unregister(key) }
            }
        } onCancel: {
            once.cancelWork()
        }
    }

    private func register(_ deadline: ContinuousClock.Instant, expire: @escaping @Sendable () -> Void) -> Int {
        let (key, start) = state.withLock { state -> (Int, Bool) in
            let key = state.nextKey
            state.nextKey += 1
            state.entries[key] = Entry(deadline: deadline, expire: expire)
            defer { state.ticking = true }
            return (key, !state.ticking)
        }
        if start {
            Task.detached { [self] in
                while true {
                    try? await Task.sleep(for: tick)
                    guard let expired = due() else { return }
                    for expire in expired { expire() }
                }
            }
        }
        return key
    }

    private func unregister(_ key: Int) {
        _ = state.withLock { $0.entries.removeValue(forKey: key) }
    }

    /// The calls past their deadline (removed); nil, and the ticker stops, when none is left.
    private func due() -> [@Sendable () -> Void]? {
        let now = ContinuousClock.now
        return state.withLock { state in
            if state.entries.isEmpty {
                state.ticking = false
                return nil
            }
            var expired: [@Sendable () -> Void] = []
            for (key, entry) in state.entries where entry.deadline <= now {
                expired.append(entry.expire)
                state.entries[key] = nil
            }
            return expired
        }
    }
}

/// Resumes a continuation exactly once, from whichever of the body, the deadline or a
/// cancellation comes first.
private final class Once<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var done = false
        var work: Task<Void, Never>?
        var cancelled = false
        var finish: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    func setWork(_ work: Task<Void, Never>) {
        let cancel = state.withLock { state -> Bool in
            state.work = work
            return state.cancelled
        }
        if cancel { work.cancel() }
    }

    func cancelWork() {
        let work = state.withLock { state -> Task<Void, Never>? in
            state.cancelled = true
            return state.work
        }
        work?.cancel()
    }

    /// Runs `body` once the continuation has been resumed (at once if it has been).
    func onFinish(_ body: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.done { return true }
            state.finish = body
            return false
        }
        if now { body() }
    }

    /// True when this call resumed the continuation.
    @discardableResult
    func resume(with result: Result<T, any Error>) -> Bool {
        let (continuation, finish) = state.withLock { state -> (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) in
            guard !state.done else { return (nil, nil) }
            state.done = true
            defer {
                state.continuation = nil
                state.finish = nil
            }
            return (state.continuation, state.finish)
        }
        guard let continuation else { return false }
        continuation.resume(with: result)
        finish?()
        return true
    }
}
