import Foundation

/// When a Schedule trigger is due: a cron expression in the workflow's time zone, or every N
/// seconds aligned to the epoch (so every replica agrees on the due times).
public enum ScheduleRule: Sendable, Equatable {
    case cron(CronExpression)
    case interval(seconds: Double)

    /// The rule of a Schedule node's parameters (`cron` or `intervalSeconds`); nil when it has none
    /// that is valid (the workflow validator reports that on save).
    public init?(parameters: [String: JSONValue]) {
        if let text = parameters["cron"]?.stringValue, let cron = try? CronExpression(text) {
            self = .cron(cron)
        } else if let seconds = parameters["intervalSeconds"]?.numberValue, seconds >= 1, seconds.isFinite {
            self = .interval(seconds: seconds)
        } else {
            return nil
        }
    }

    /// The first due time strictly after `date`.
    public func next(after date: Date, in zone: TimeZone) -> Date? {
        switch self {
        case .cron(let cron):
            return cron.next(after: date, in: zone)
        case .interval(let seconds):
            return Date(timeIntervalSince1970: ((date.timeIntervalSince1970 / seconds).rounded(.down) + 1) * seconds)
        }
    }

    /// The latest due time in [from, now], if any.
    public func latest(from: Date, upTo now: Date, in zone: TimeZone) -> Date? {
        guard from <= now else { return nil }
        switch self {
        case .cron(let cron):
            var latest: Date?
            var cursor = from.addingTimeInterval(-0.001)
            var steps = 0
            while let next = cron.next(after: cursor, in: zone), next <= now, steps < 10_000 {
                latest = next
                cursor = next
                steps += 1
            }
            return latest
        case .interval(let seconds):
            let due = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / seconds).rounded(.down) * seconds)
            return due >= from ? due : nil
        }
    }
}

/// One Schedule trigger of an active workflow, as the scheduler's table keeps it.
public struct ScheduleTrigger: Sendable, Equatable {
    public var node: String
    public var rule: ScheduleRule
    public var timeZone: TimeZone

    public init(node: String, rule: ScheduleRule, timeZone: TimeZone) {
        self.node = node
        self.rule = rule
        self.timeZone = timeZone
    }
}
