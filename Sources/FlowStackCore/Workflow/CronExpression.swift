import Foundation

/// A cron schedule: five fields (minute hour day-of-month month day-of-week) or six (with seconds
/// first). Fields take `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`, and month
/// and weekday names. As in Vixie cron, when both day-of-month and day-of-week are restricted, a
/// day matching either fires.
public struct CronExpression: Sendable, Equatable {
    public let source: String
    let seconds: Set<Int>
    let minutes: Set<Int>
    let hours: Set<Int>
    let daysOfMonth: Set<Int>
    let months: Set<Int>
    let daysOfWeek: Set<Int>
    let dayOfMonthRestricted: Bool
    let dayOfWeekRestricted: Bool

    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    private static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    private static let dayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    public init(_ text: String) throws(Problem) {
        source = text
        var fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 || fields.count == 6 else {
            throw Problem(
                description:
                    "a cron expression has 5 fields (minute hour day month weekday) or 6 (with seconds first); found \(fields.count)")
        }
        if fields.count == 5 { fields.insert("0", at: 0) }
        seconds = try Self.field(fields[0], "second", 0...59)
        minutes = try Self.field(fields[1], "minute", 0...59)
        hours = try Self.field(fields[2], "hour", 0...23)
        daysOfMonth = try Self.field(fields[3], "day of month", 1...31)
        months = try Self.field(fields[4], "month", 1...12, names: Self.monthNames, nameBase: 1)
        var weekdays = try Self.field(fields[5], "day of week", 0...7, names: Self.dayNames, nameBase: 0)
        if weekdays.contains(7) {
            weekdays.remove(7)
            weekdays.insert(0)
        }
        daysOfWeek = weekdays
        dayOfMonthRestricted = !(fields[3] == "*" || fields[3] == "?")
        dayOfWeekRestricted = !(fields[5] == "*" || fields[5] == "?")
    }

    private static func value(_ text: String, _ name: String, _ range: ClosedRange<Int>, names: [String], nameBase: Int) throws(Problem)
        -> Int
    {
        if let index = names.firstIndex(of: text.uppercased()) { return index + nameBase }
        guard let n = Int(text), range.contains(n) else {
            throw Problem(description: "'\(text)' is not a valid \(name) (\(range.lowerBound)–\(range.upperBound))")
        }
        return n
    }

    private static func field(_ text: String, _ name: String, _ range: ClosedRange<Int>, names: [String] = [], nameBase: Int = 0)
        throws(Problem) -> Set<Int>
    {
        var result = Set<Int>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            guard !part.isEmpty else { throw Problem(description: "empty list element in the \(name) field") }
            let stepParts = part.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard stepParts.count <= 2 else { throw Problem(description: "'\(part)' has more than one '/' in the \(name) field") }
            var step = 1
            if stepParts.count == 2 {
                guard let s = Int(stepParts[1]), s > 0, s <= range.upperBound else {
                    throw Problem(description: "'\(stepParts[1])' is not a valid step in the \(name) field")
                }
                step = s
            }
            let base = stepParts[0]
            var lower = range.lowerBound
            var upper = range.upperBound
            if base == "*" || base == "?" {
                // whole range
            } else if base.contains("-") {
                let bounds = base.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
                guard bounds.count == 2 else { throw Problem(description: "'\(base)' is not a valid range in the \(name) field") }
                lower = try value(bounds[0], name, range, names: names, nameBase: nameBase)
                upper = try value(bounds[1], name, range, names: names, nameBase: nameBase)
                guard lower <= upper else { throw Problem(description: "the range '\(base)' in the \(name) field runs backwards") }
            } else {
                lower = try value(base, name, range, names: names, nameBase: nameBase)
                upper = stepParts.count == 2 ? range.upperBound : lower
            }
            result.formUnion(stride(from: lower, through: upper, by: step))
        }
        return result
    }

    private func dayMatches(day: Int, weekday: Int) -> Bool {
        let dom = daysOfMonth.contains(day)
        let dow = daysOfWeek.contains(weekday)
        if dayOfMonthRestricted && dayOfWeekRestricted { return dom || dow }
        if dayOfMonthRestricted { return dom }
        if dayOfWeekRestricted { return dow }
        return true
    }

    /// The first time strictly after `date` that matches, in `timeZone`; nil when none within five years.
    public func next(after date: Date, in timeZone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let start = date.addingTimeInterval(1)
        let startComponents = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: start)
        guard
            var day = calendar.date(
                from: DateComponents(year: startComponents.year, month: startComponents.month, day: startComponents.day))
        else { return nil }
        let sortedHours = hours.sorted()
        let sortedMinutes = minutes.sorted()
        let sortedSeconds = seconds.sorted()
        for dayOffset in 0..<(366 * 5) {
            let c = calendar.dateComponents([.year, .month, .day, .weekday], from: day)
            if let month = c.month, let dom = c.day, let weekday = c.weekday, months.contains(month),
                dayMatches(day: dom, weekday: weekday - 1)
            {
                for h in sortedHours {
                    for m in sortedMinutes {
                        for s in sortedSeconds {
                            if dayOffset == 0 {
                                let startTime =
                                    (startComponents.hour ?? 0) * 3600 + (startComponents.minute ?? 0) * 60 + (startComponents.second ?? 0)
                                if h * 3600 + m * 60 + s < startTime { continue }
                            }
                            var fire = DateComponents(year: c.year, month: c.month, day: c.day, hour: h, minute: m, second: s)
                            fire.timeZone = timeZone
                            guard let candidate = calendar.date(from: fire) else { continue }
                            // Skip times that do not exist on this day (a daylight-saving gap).
                            let check = calendar.dateComponents([.hour, .minute], from: candidate)
                            if check.hour == h, check.minute == m, candidate >= start.addingTimeInterval(-0.999) { return candidate }
                        }
                    }
                }
            }
            guard let nextDay = calendar.date(byAdding: .day, value: 1, to: day) else { return nil }
            day = nextDay
        }
        return nil
    }
}
