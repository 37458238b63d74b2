import Hummingbird
import Synchronization

/// The served routes, so that a request for a known path with an unsupported method gets
/// 405 with an `Allow` header instead of 404.
final class RouteTable: Sendable {
    private struct Entry {
        var segments: [String]
        var method: String
    }

    private let entries = Mutex<[Entry]>([])

    func load<Context>(from router: Router<Context>) {
        let loaded = router.routes.map { route in
            Entry(segments: route.path.components.map { "\($0)" }, method: route.method.rawValue)
        }
        entries.withLock { $0 = loaded }
    }

    /// The methods served for `path`, or nil when no route has this path.
    func methods(for path: String) -> [String]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let methods = entries.withLock { entries in
            entries.filter { entry in
                // A trailing `**` (the webhooks) takes one segment or more.
                let catchAll = entry.segments.last == "**"
                let fits = catchAll ? segments.count >= entry.segments.count : segments.count == entry.segments.count
                return fits
                    && zip(entry.segments, segments).allSatisfy { pattern, value in
                        pattern.hasPrefix(":") || pattern == "**" || pattern == value
                    }
            }.map(\.method)
        }
        return methods.isEmpty ? nil : Array(Set(methods)).sorted()
    }
}
