import FlowStackCore
import Foundation
import Synchronization

/// The answer a webhook caller is waiting for, sent by the first Respond to Webhook node of the
/// run it started. The engine sends it only after the execution is durably recorded, so a caller
/// that got its answer can rely on the rest of the workflow running, even after a crash.
public final class WebhookReply: Sendable {
    private struct State {
        var item: Item?
        var waiter: CheckedContinuation<Item?, Never>?
        var cancelled = false
    }
    private let state = Mutex(State())

    public init() {}

    /// Delivers `item` to the waiting caller (only the first call counts).
    public func send(_ item: Item) {
        let waiter = state.withLock { state -> CheckedContinuation<Item?, Never>? in
            guard state.item == nil else { return nil }
            state.item = item
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: item)
    }

    /// Ends the wait without a reply (the run finished or stopped without one).
    public func close() {
        let waiter = state.withLock { state -> CheckedContinuation<Item?, Never>? in
            state.cancelled = true
            defer { state.waiter = nil }
            return state.item == nil ? state.waiter : nil
        }
        waiter?.resume(returning: nil)
    }

    /// The reply, once sent; nil when the run ends without one or the waiting task is cancelled.
    public func wait() async -> Item? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Item?? in
                    if let item = state.item { return .some(item) }
                    // Closed (or cancelled) without a reply: nothing will come.
                    if state.cancelled { return .some(nil) }
                    state.waiter = continuation
                    return .none
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Item?, Never>? in
                state.cancelled = true
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
