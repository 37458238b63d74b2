import FlowStackCore
import Synchronization
import Testing

/// `ExpiringCache`: one load per key however many callers want it, refreshes in the background
/// before entries expire, and never keeps what a change or a failed load made stale.
@Suite struct ExpiringCacheTests {
    /// A clock the tests move by hand.
    final class ManualClock: Sendable {
        private let instant = Mutex(ContinuousClock.now)
        var now: ContinuousClock.Instant { instant.withLock { $0 } }
        func advance(_ duration: Duration) { instant.withLock { $0 += duration } }
    }

    struct LoadFailed: Error {}

    /// Counts loads and answers `answer`; while gated, loads wait until `open()`.
    actor Loader {
        private(set) var calls = 0
        var answer: String? = "v1"
        var fails = false
        private var gated = false
        private var waiting: [CheckedContinuation<Void, Never>] = []

        func load() async throws -> String? {
            calls += 1
            if gated { await withCheckedContinuation { waiting.append($0) } }
            if fails { throw LoadFailed() }
            return answer
        }

        func set(answer: String?, fails: Bool = false) {
            self.answer = answer
            self.fails = fails
        }

        func close() { gated = true }

        func open() {
            gated = false
            for continuation in waiting { continuation.resume() }
            waiting = []
        }
    }

    let clock = ManualClock()
    let loader = Loader()

    func makeCache() -> ExpiringCache<String, String> {
        ExpiringCache(lifetime: .seconds(1), now: { [clock] in clock.now })
    }

    func get(_ cache: ExpiringCache<String, String>, _ key: String = "k") async throws -> String? {
        try await cache.value(for: key) { [loader] in try await loader.load() }
    }

    @Test("Callers that miss at the same time share one load")
    func concurrentMissesShareOneLoad() async throws {
        let cache = makeCache()
        await loader.close()
        let answers = try await withThrowingTaskGroup(of: String?.self) { group in
            for _ in 0..<50 {
                group.addTask { try await get(cache) }
            }
            // Every caller has had time to arrive while the first load is held.
            try await Task.sleep(for: .milliseconds(100))
            await loader.open()
            return try await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(answers.count == 50)
        #expect(answers.allSatisfy { $0 == "v1" })
        #expect(await loader.calls == 1)
    }

    @Test("A fresh entry is served without loading")
    func freshEntryIsServed() async throws {
        let cache = makeCache()
        #expect(try await get(cache) == "v1")
        await loader.set(answer: "v2")
        clock.advance(.milliseconds(400))
        #expect(try await get(cache) == "v1")
        #expect(await loader.calls == 1)
    }

    @Test("Past half its lifetime an entry is still served while one load refreshes it")
    func refreshesInBackground() async throws {
        let cache = makeCache()
        #expect(try await get(cache) == "v1")
        await loader.set(answer: "v2")
        await loader.close()
        clock.advance(.milliseconds(600))
        // The refresh is held, yet the callers are answered at once, and only one refresh starts.
        #expect(try await get(cache) == "v1")
        #expect(try await loaderCalled(2))
        #expect(try await get(cache) == "v1")
        #expect(try await get(cache) == "v1")
        #expect(await loader.calls == 2)
        await loader.open()
        #expect(try await eventually(cache, is: "v2"))
        #expect(await loader.calls == 2)
        // The refreshed entry counts its lifetime from its own load.
        clock.advance(.milliseconds(450))
        #expect(try await get(cache) == "v2")
        #expect(await loader.calls == 2)
    }

    @Test("An expired entry is not served: callers wait for the load")
    func expiredEntryWaits() async throws {
        let cache = makeCache()
        #expect(try await get(cache) == "v1")
        await loader.set(answer: "v2")
        clock.advance(.milliseconds(1000))
        #expect(try await get(cache) == "v2")
        #expect(await loader.calls == 2)
    }

    @Test("A removal disowns the load under way: its callers get it, the cache does not keep it")
    func removalDisownsLoad() async throws {
        let cache = makeCache()
        await loader.close()
        let first = Task { try await get(cache) }
        #expect(try await loaderCalled(1))
        cache.remove("k")
        await loader.open()
        #expect(try await first.value == "v1")
        await loader.set(answer: "v2")
        #expect(try await get(cache) == "v2")
        #expect(await loader.calls == 2)

        // removeAll does the same.
        clock.advance(.milliseconds(1000))
        await loader.close()
        let second = Task { try await get(cache) }
        #expect(try await loaderCalled(3))
        cache.removeAll()
        await loader.open()
        #expect(try await second.value == "v2")
        #expect(try await get(cache) == "v2")
        #expect(await loader.calls == 4)
    }

    @Test("Nothing found and failed loads are not kept")
    func nilAndFailuresAreNotKept() async throws {
        let cache = makeCache()
        await loader.set(answer: nil)
        #expect(try await get(cache) == nil)
        #expect(try await get(cache) == nil)
        #expect(await loader.calls == 2)

        await loader.set(answer: nil, fails: true)
        await #expect(throws: LoadFailed.self) { try await get(cache) }
        await loader.set(answer: "v1")
        #expect(try await get(cache) == "v1")
        #expect(await loader.calls == 4)

        // A failed refresh leaves the entry as it was: callers are still answered from it (they
        // would wait for the next load, and see it fail, had it been dropped), and each ask
        // after a refresh has ended may start another.
        await loader.set(answer: nil, fails: true)
        clock.advance(.milliseconds(600))
        for _ in 0..<400 where await loader.calls < 6 {
            #expect(try await get(cache) == "v1")
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(await loader.calls >= 6)
        // A refresh that finds nothing drops the entry.
        await loader.set(answer: nil)
        #expect(try await eventuallyLoads(cache, calls: 8))
        #expect(try await eventually(cache, is: nil))
    }

    @Test("An update changes a cached value in place and keeps its age; a missing key stays missing")
    func updateKeepsAge() async throws {
        let cache = makeCache()
        cache.update("k") { $0 = "ignored" }
        #expect(try await get(cache) == "v1")
        cache.update("k") { $0 += "+touched" }
        #expect(try await get(cache) == "v1+touched")
        #expect(await loader.calls == 1)
        // Its age runs from the load, not the update: past half-life a refresh starts.
        await loader.set(answer: "v2")
        clock.advance(.milliseconds(600))
        #expect(try await get(cache) == "v1+touched")
        #expect(try await eventually(cache, is: "v2"))
        #expect(await loader.calls == 2)
    }

    @Test("Keys are cached apart")
    func keysAreSeparate() async throws {
        let cache = makeCache()
        #expect(try await get(cache, "a") == "v1")
        await loader.set(answer: "v2")
        #expect(try await get(cache, "b") == "v2")
        #expect(try await get(cache, "a") == "v1")
        #expect(await loader.calls == 2)
    }

    /// Waits (two seconds at most) until the loader has been called `calls` times.
    func loaderCalled(_ calls: Int) async throws -> Bool {
        for _ in 0..<400 {
            if await loader.calls >= calls { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    /// Asks until the cache answers `expected` (a background load lands on its own time).
    func eventually(_ cache: ExpiringCache<String, String>, is expected: String?) async throws -> Bool {
        for _ in 0..<400 {
            if try await get(cache) == expected { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    /// Asks until the loader has been called `calls` times (each ask past half-life may start one).
    func eventuallyLoads(_ cache: ExpiringCache<String, String>, calls: Int) async throws -> Bool {
        for _ in 0..<400 {
            _ = try? await get(cache)
            if await loader.calls >= calls { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return false
    }
}
