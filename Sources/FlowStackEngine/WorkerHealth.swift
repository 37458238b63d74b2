import Foundation
import Logging
import Synchronization

/// What `/readyz` needs to know of the worker: whether its loop still turns and whether its
/// claims reach the database. Each change of state is logged once, not once per tick.
public final class WorkerHealth: Sendable {
    private struct State {
        var lastCycle = ContinuousClock.now
        var failingSince: ContinuousClock.Instant?
        var started = false
    }

    private let state = Mutex(State())

    public init() {}

    func workerCycled() {
        state.withLock {
            $0.lastCycle = .now
            $0.started = true
        }
    }

    func claimSucceeded(logger: Logger) {
        let recovered = state.withLock { state -> Bool in
            defer { state.failingSince = nil }
            return state.failingSince != nil
        }
        if recovered { logger.notice("claiming executions works again") }
    }

    func claimFailed(_ error: any Error, logger: Logger) {
        let first = state.withLock { state -> Bool in
            if state.failingSince != nil { return false }
            state.failingSince = .now
            return true
        }
        if first {
            logger.error(
                "claiming executions failed; retrying at every tick", metadata: ["error": "\(String(describing: error).prefix(300))"])
        }
    }

    /// Why the worker is not healthy, or nil: its loop has not turned for `stall`, or its claims
    /// have failed for `stall`. A server that runs no worker is healthy.
    public func problem(stall: Duration) -> String? {
        state.withLock { state in
            guard state.started else { return nil }
            let now = ContinuousClock.now
            if now - state.lastCycle > stall {
                return "the execution worker has not run for \(Int((now - state.lastCycle).components.seconds)) s"
            }
            if let since = state.failingSince, now - since > stall {
                return "the execution worker's claims have failed for \(Int((now - since).components.seconds)) s"
            }
            return nil
        }
    }
}

/// A run that made no progress for too long: its lease is given up, so another worker takes it.
public struct RunStalled: Error, Sendable, CustomStringConvertible {
    public let executionID: String
    public let reason: String

    public var description: String { "execution \(executionID) stalled: \(reason)" }
}
