import FlowStackStore
import Synchronization

/// Keeps the leases of the executions this process is running, from one ticker for all of them:
/// it writes an inline run that is still pending after `flushAfter` (see `StoreJournal`), renews
/// each lease every `heartbeatInterval`, and stops a run whose lease is lost or whose flush or
/// heartbeat failed: its journal refuses further steps, and its task is cancelled when the task
/// serves that run alone. A ticker per engine instead of a timer task per run: at thousands of
/// runs a second, a timer and a task group per run cost more than the run itself.
final class LeaseKeeper: Sendable {
    /// The task a run drives in. It is only used under `state`'s lock while the run is
    /// registered, and a run unregisters (under the lock) before its task can end.
    private struct RunningTask: @unchecked Sendable {
        let task: UnsafeCurrentTask
    }

    private struct Run {
        let journal: StoreJournal
        /// Cancelled when the run fails; nil when the task also serves other work.
        let task: RunningTask?
        let started: ContinuousClock.Instant
        var lastBeat: ContinuousClock.Instant
        /// Still to be written after `flushAfter` (an inline run that has not been written yet).
        var pending: Bool
        /// A flush or heartbeat of this run is under way.
        var busy = false
        /// Why the run was cancelled, thrown instead of the cancellation.
        var failure: (any Error)?
    }

    private struct State {
        var runs: [Int: Run] = [:]
        var nextKey = 0
        var ticking = false
    }

    private let state = Mutex(State())
    private let flushAfter: Duration
    private let heartbeat: Duration
    private let tick: Duration

    init(flushAfter: Double, heartbeat: Double) {
        self.flushAfter = .milliseconds(Int64(flushAfter * 1000))
        self.heartbeat = .milliseconds(Int64(heartbeat * 1000))
        // Fine enough for both deadlines, coarse enough to cost nothing.
        tick = .milliseconds(max(5, min(50, Int64(min(flushAfter, heartbeat) * 1000 / 5))))
    }

    /// Runs `body` in the current task while keeping its lease. A lost lease or a failed flush or
    /// heartbeat makes the journal refuse further steps, and is what this throws. With
    /// `cancelsTask`, it also cancels the current task, so the node in flight stops: only for a
    /// task that serves this run alone (a request handler's task serves its whole connection).
    func watch<T: Sendable>(_ journal: StoreJournal, pending: Bool, cancelsTask: Bool, _ body: () async throws -> T) async throws -> T {
        let key = withUnsafeCurrentTask { current -> Int in
            let now = ContinuousClock.now
            let task = cancelsTask ? current.map(RunningTask.init(task:)) : nil
            let (key, start) = state.withLock { state -> (Int, Bool) in
                let key = state.nextKey
                state.nextKey += 1
                state.runs[key] = Run(journal: journal, task: task, started: now, lastBeat: now, pending: pending)
                defer { state.ticking = true }
                return (key, !state.ticking)
            }
            if start { startTicking() }
            return key
        }
        let result: Result<T, any Error>
        do {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        let failure = state.withLock { $0.runs.removeValue(forKey: key)?.failure }
        if let failure, cancelsTask || (try? result.get()) == nil {
            // A cancelled task is not handed back as if the run had gone well.
            throw failure
        }
        return try result.get()
    }

    private func startTicking() {
        // Detached: the ticker outlives the run that started it and must not keep its task's
        // priority or task-locals.
        Task.detached { [self] in
            while true {
                try? await Task.sleep(for: tick)
                guard let (flushes, beats) = due() else { return }
                for (key, journal) in flushes {
                    Task {
                        do {
                            try await journal.flush()
                            self.finished(key)
                        } catch {
                            self.fail(key, error)
                        }
                    }
                }
                for (key, journal) in beats {
                    Task {
                        do {
                            if try await journal.heartbeat() {
                                self.finished(key)
                            } else {
                                self.fail(key, LeaseLost(executionID: journal.record.id))
                            }
                        } catch {
                            // Unrenewed, the lease would run out while this run goes on.
                            self.fail(key, error)
                        }
                    }
                }
            }
        }
    }

    /// The runs due for a flush or a heartbeat now; nil (and the ticker stops) when none runs.
    private func due() -> (flushes: [(Int, StoreJournal)], beats: [(Int, StoreJournal)])? {
        let now = ContinuousClock.now
        return state.withLock { state in
            if state.runs.isEmpty {
                state.ticking = false
                return nil
            }
            var flushes: [(Int, StoreJournal)] = []
            var beats: [(Int, StoreJournal)] = []
            for (key, run) in state.runs where !run.busy && run.failure == nil {
                if run.pending, now - run.started >= flushAfter {
                    state.runs[key]!.pending = false
                    state.runs[key]!.busy = true
                    flushes.append((key, run.journal))
                } else if now - run.lastBeat >= heartbeat {
                    state.runs[key]!.lastBeat = now
                    state.runs[key]!.busy = true
                    beats.append((key, run.journal))
                }
            }
            return (flushes, beats)
        }
    }

    private func finished(_ key: Int) {
        state.withLock { state in
            state.runs[key]?.busy = false
        }
    }

    private func fail(_ key: Int, _ error: any Error) {
        state.withLock { state in
            guard let run = state.runs[key] else { return }
            state.runs[key]!.failure = error
            run.journal.abandon(error)
            // Under the lock: the run cannot unregister, and so its task cannot end, meanwhile.
            run.task?.task.cancel()
        }
    }
}
