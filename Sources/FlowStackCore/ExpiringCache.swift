import Synchronization

/// Values kept for a short `lifetime`, each loaded once however many callers ask for it at the
/// same moment, and read again in the background before it expires.
///
/// A busy key is asked for by every request in flight. Were each caller that finds the entry
/// missing or expired to load it itself, the instant it expired every one of them would go to the
/// database. Coalescing those callers onto one load is not enough either: they would all wait for
/// it, and under load a load waits its turn on the shared executor several times (tens of
/// milliseconds at 200 concurrent requests). Both stalled a busy webhook once a second. So the
/// first caller past half an entry's lifetime starts one load in the background and is answered
/// from the entry, which is still within its lifetime; only a missing or expired entry makes
/// callers wait, and then all of them wait for the same load.
///
/// A value is never served more than `lifetime` after the load that read it began. `remove(_:)`
/// and `removeAll()` also disown the loads under way, so a load that began before a change never
/// puts what it read back into the cache (the callers waiting for it still get it). A load that
/// answers nil is handed to its callers and drops the entry instead of being kept: unknown keys
/// cannot crowd out known ones. A load that throws throws to its callers and changes nothing.
public final class ExpiringCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        /// When the load that read it began: the value is at most `lifetime` older than the source.
        var loaded: ContinuousClock.Instant
    }

    private struct Load {
        let task: Task<Value?, any Error>
        let id: Int
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        /// The load under way for a key. A load stores its value only while it is still the one
        /// registered here.
        var loads: [Key: Load] = [:]
        var nextLoad = 0
    }

    public let lifetime: Duration
    private let capacity: Int
    private let now: @Sendable () -> ContinuousClock.Instant
    private let state = Mutex(State())

    /// `now` is the clock the lifetimes are measured on (tests move it by hand).
    public init(lifetime: Duration, capacity: Int = 10_000, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.lifetime = lifetime
        self.capacity = capacity
        self.now = now
    }

    /// The cached value of `key`, or what `load` answers (through the load already under way for
    /// `key`, if there is one).
    public func value(for key: Key, load: @escaping @Sendable () async throws -> Value?) async throws -> Value? {
        let asked = now()
        let (cached, loading): (Value?, Task<Value?, any Error>?) = state.withLock { state in
            if let entry = state.entries[key], asked - entry.loaded < lifetime {
                if asked - entry.loaded >= lifetime / 2, state.loads[key] == nil {
                    // Read again in the background while this value is still good to serve.
                    _ = start(key, load, at: asked, in: &state)
                }
                return (entry.value, nil)
            }
            return (nil, state.loads[key]?.task ?? start(key, load, at: asked, in: &state))
        }
        if let cached { return cached }
        return try await loading!.value
    }

    /// Starts loading `key`, called under the lock. The load runs in a detached task of its own:
    /// a caller that is cancelled must not fail the others waiting, and the load serves them all,
    /// so it carries no one caller's priority or task-local values. It cannot finish before it is
    /// registered, since `finish` takes the lock held here.
    private func start(
        _ key: Key, _ load: @escaping @Sendable () async throws -> Value?, at asked: ContinuousClock.Instant,
        in state: inout State
    ) -> Task<Value?, any Error> {
        let id = state.nextLoad
        state.nextLoad += 1
        let task = Task.detached { [self] in
            do {
                let value = try await load()
                finish(key, load: id, storing: .some(value.map { Entry(value: $0, loaded: asked) }))
                return value
            } catch {
                finish(key, load: id, storing: nil)
                throw error
            }
        }
        state.loads[key] = Load(task: task, id: id)
        return task
    }

    /// Records the end of load `id`: `result` is nil when it failed (the entry stays as it was),
    /// `.some(nil)` when it found nothing (the entry goes).
    private func finish(_ key: Key, load id: Int, storing result: Entry??) {
        state.withLock { state in
            guard state.loads[key]?.id == id else { return }
            state.loads[key] = nil
            switch result {
            case .some(.some(let entry)):
                if state.entries[key] == nil, state.entries.count >= capacity { state.entries.removeAll() }
                state.entries[key] = entry
            case .some(.none):
                state.entries[key] = nil
            case .none:
                break
            }
        }
    }

    /// The cached value of `key` if it is within its lifetime; nothing is loaded.
    public func cached(_ key: Key) -> Value? {
        let asked = now()
        return state.withLock { state in
            state.entries[key].flatMap { asked - $0.loaded < lifetime ? $0.value : nil }
        }
    }

    /// Keeps `value`, which the caller has just read from the source, as the value of `key`
    /// (for values read together with other data, outside `value(for:load:)`).
    public func insert(_ key: Key, _ value: Value) {
        let read = now()
        state.withLock { state in
            if state.entries[key] == nil, state.entries.count >= capacity { state.entries.removeAll() }
            state.entries[key] = Entry(value: value, loaded: read)
        }
    }

    /// Changes the cached value of `key`, if there is one, keeping its age (for a change this
    /// server has just written itself).
    public func update(_ key: Key, _ change: (inout Value) -> Void) {
        state.withLock { state in
            if state.entries[key] != nil { change(&state.entries[key]!.value) }
        }
    }

    /// Forgets `key` (after a change to what it caches).
    public func remove(_ key: Key) {
        state.withLock { state in
            state.entries[key] = nil
            state.loads[key] = nil
        }
    }

    /// Forgets everything.
    public func removeAll() {
        state.withLock { state in
            state.entries = [:]
            state.loads = [:]
        }
    }
}
