import FlowStackCore
import Foundation

/// Counts failed authentication attempts per client address in a sliding window; past the limit
/// the address gets 429 until old failures age out. This stops password spraying across many
/// accounts, which per-account lockout alone cannot.
///
/// In memory, per process: with several replicas each enforces its own limit.
actor FailureThrottle {
    private let limit: Int
    private let window: TimeInterval
    private let clock: any WallClock
    private var failures: [String: [Date]] = [:]
    private let maximumTrackedAddresses = 100_000

    init(limit: Int, window: TimeInterval, clock: any WallClock) {
        self.limit = limit
        self.window = window
        self.clock = clock
    }

    /// Seconds until `address` may try again, or nil when it may try now.
    func retryAfter(_ address: String) -> Int? {
        let now = clock.now()
        guard var list = failures[address] else { return nil }
        list.removeAll { now.timeIntervalSince($0) >= window }
        failures[address] = list.isEmpty ? nil : list
        guard list.count >= limit, let oldest = list.first else { return nil }
        return max(1, Int((window - now.timeIntervalSince(oldest)).rounded(.up)))
    }

    func recordFailure(_ address: String) {
        let now = clock.now()
        if failures[address] == nil && failures.count >= maximumTrackedAddresses {
            // Forget the addresses whose failures are oldest rather than grow without bound.
            failures = failures.filter { now.timeIntervalSince($0.value.last ?? now) < window }
        }
        failures[address, default: []].append(now)
        if failures[address]!.count > limit * 2 { failures[address]!.removeFirst(failures[address]!.count - limit * 2) }
    }
}
