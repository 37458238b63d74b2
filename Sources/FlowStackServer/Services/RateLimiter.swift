import FlowStackCore
import Foundation
import Synchronization

/// Token buckets by key: each key may spend `burst` requests at once and gets `perSecond` back
/// every second. A refused request costs nothing and learns when a token is next due.
///
/// In memory, per process: with several replicas each enforces its own limits, so a client
/// spread over `n` replicas gets up to `n` times the rate (docs/security-model.md).
final class RateLimiter: Sendable {
    struct Rate: Sendable {
        var perSecond: Double
        var burst: Double
    }

    private struct Bucket {
        var tokens: Double
        var updated: Date
    }

    private let clock: any WallClock
    private let buckets = Mutex<[String: Bucket]>([:])
    /// Past this many keys, full buckets (clients that went quiet) are forgotten.
    private let maximumKeys: Int

    init(clock: any WallClock, maximumKeys: Int = 200_000) {
        self.clock = clock
        self.maximumKeys = maximumKeys
    }

    /// Takes a token from `key`'s bucket; nil when it had one, else the seconds until it has.
    func take(_ key: String, _ rate: Rate) -> Int? {
        guard rate.perSecond > 0 || rate.burst > 0 else { return nil }
        let now = clock.now()
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: rate.burst, updated: now)
            let elapsed = max(0, now.timeIntervalSince(bucket.updated))
            bucket.tokens = min(rate.burst, bucket.tokens + elapsed * rate.perSecond)
            bucket.updated = now
            defer {
                if buckets[key] == nil && buckets.count >= maximumKeys { Self.prune(&buckets, now: now, rate: rate) }
                buckets[key] = bucket
            }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            guard rate.perSecond > 0 else { return 3600 }
            return max(1, Int(((1 - bucket.tokens) / rate.perSecond).rounded(.up)))
        }
    }

    private static func prune(_ buckets: inout [String: Bucket], now: Date, rate: Rate) {
        let refill = rate.perSecond > 0 ? rate.burst / rate.perSecond : .infinity
        buckets = buckets.filter { now.timeIntervalSince($0.value.updated) < refill }
        if buckets.count > 0, buckets.count >= 100_000 {
            // Every client is active: drop the oldest half rather than grow without bound.
            let cut = buckets.values.map(\.updated).sorted()[buckets.count / 2]
            buckets = buckets.filter { $0.value.updated > cut }
        }
    }

    var trackedKeys: Int { buckets.withLock { $0.count } }
}

extension FlowStackError {
    static func rateLimited(_ what: String, retryAfter: Int) -> FlowStackError {
        FlowStackError(
            status: 429, code: "rate_limited", message: "Too many requests \(what); slow down and try again later.",
            retryAfter: retryAfter)
    }
}
