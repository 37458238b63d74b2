import FlowStackCore
import FlowStackOperations
import FlowStackStore
import Foundation
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What every connection of a listener shares: how many each address holds open, and how fast
/// each address opens new ones (each a TLS handshake, the expensive part of a connection).
final class ConnectionLimits: Sendable {
    private struct State {
        var open: [String: Int] = [:]
        var handshakes: [String: (tokens: Double, updated: ContinuousClock.Instant)] = [:]
    }
    private let state = Mutex(State())
    let edge: EdgeSettings
    /// Trusted proxies carry many clients' connections: their limits are the proxy's to enforce.
    let exempt: Set<String>

    init(edge: EdgeSettings, exempt: Set<String> = []) {
        self.edge = edge
        self.exempt = exempt
    }

    /// Counts a new connection from `address`; false (and nothing counted) when the address
    /// holds its maximum already or opens connections faster than the handshake rate.
    func admit(_ peer: String) -> Bool {
        let now = ContinuousClock.now
        if exempt.contains(peer) { return true }
        let address = AddressKey.of(peer)
        return state.withLock { state in
            if edge.connectionsPerAddress > 0, state.open[address, default: 0] >= edge.connectionsPerAddress { return false }
            if edge.handshakesPerSecond > 0 {
                var bucket = state.handshakes[address] ?? (edge.handshakeBurst, now)
                let elapsed = (now - bucket.updated).inSeconds
                bucket = (min(edge.handshakeBurst, bucket.tokens + elapsed * edge.handshakesPerSecond), now)
                guard bucket.tokens >= 1 else {
                    state.handshakes[address] = bucket
                    return false
                }
                bucket.tokens -= 1
                if state.handshakes.count > 100_000 {
                    // Forget full buckets; if every address is busy, the older half (a scan per
                    // 50,000 new addresses, not per connection).
                    let refill = Duration.seconds(edge.handshakeBurst / edge.handshakesPerSecond)
                    state.handshakes = state.handshakes.filter { now - $0.value.updated < refill }
                    if state.handshakes.count > 50_000 {
                        let cut = state.handshakes.values.map(\.updated).sorted()[state.handshakes.count / 2]
                        state.handshakes = state.handshakes.filter { $0.value.updated > cut }
                    }
                }
                state.handshakes[address] = bucket
            }
            state.open[address, default: 0] += 1
            return true
        }
    }

    func release(_ peer: String) {
        if exempt.contains(peer) { return }
        let address = AddressKey.of(peer)
        state.withLock { state in
            let left = state.open[address, default: 1] - 1
            state.open[address] = left > 0 ? left : nil
        }
    }
}

/// The first HTTP handler of every connection. It refuses a connection past its address's
/// limits, closes one that has not delivered a request's headers within the header timeout
/// of opening (so also one that never finishes its TLS handshake) or of its previous answer,
/// and gives answers written below the router (a request the HTTP parser refused) the
/// security headers too.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: ConnectionLimits
    private var address: String?
    private var deadline: Scheduled<Void>?
    /// A request's body is being read.
    private var reading = false
    /// Requests read whose answer has not been written to its end.
    private var unanswered = 0

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        guard limits.admit(address) else {
            context.close(promise: nil)
            return
        }
        self.address = address
        arm(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        if let address {
            limits.release(address)
            self.address = nil
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        if let address {
            limits.release(address)
            self.address = nil
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            // From the headers on, the body is due within the body timeout.
            arm(context, after: limits.edge.bodyTimeout)
            reading = true
            unanswered += 1
        case .end:
            reading = false
            deadline?.cancel()
            deadline = nil
            // Answered before its body was read: the next request's headers are due from now.
            if unanswered == 0 { arm(context) }
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.headerFields[HTTPField.Name("X-Content-Type-Options")!] == nil:
            for field in ResponseHeaders.security where head.headerFields[field.name] == nil {
                head.headerFields[field.name] = field.value
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            context.write(data, promise: promise)
            // The next request's headers are due within the header timeout of the last answer.
            unanswered = max(0, unanswered - 1)
            if unanswered == 0 && !reading { arm(context) }
        default:
            context.write(data, promise: promise)
        }
    }

    private func arm(_ context: ChannelHandlerContext, after timeout: Duration? = nil) {
        deadline?.cancel()
        let timeout = timeout ?? limits.edge.headerTimeout
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.inSeconds * 1_000_000_000))) {
            channel.close(promise: nil)
        }
    }
}

extension ConnectionLimits {
    /// The HTTP/1 configuration of a listener: the guard first, an idle timeout for bodies and
    /// answers that stall, and header limits a little above the request guard's (which answers
    /// with a typed 431 instead of the parser's bare 400).
    func http1Configuration() -> HTTP1Channel.Configuration {
        let idle = TimeAmount.nanoseconds(Int64(edge.idleTimeout.inSeconds * 1_000_000_000))
        let headerLimit = edge.maxHeaderBytes * 2 + edge.maxURLBytes
        return HTTP1Channel.Configuration(
            additionalChannelHandlers: [ConnectionGuardHandler(limits: self)], idleTimeout: idle,
            httpDecoderConfiguration: .init(maxHeaderFieldSize: headerLimit, maxHeaderListSize: headerLimit, maxHeaderFieldCount: 256))
    }
}
